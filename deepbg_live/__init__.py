"""deepbg-live: real-time background replacement for webcams and video.

The public API, importable from the package itself::

    from deepbg_live import ColorBackground, EdgeRefiner, Segmenter
    from deepbg_live.composite import composite

    segment, refine, green = Segmenter(), EdgeRefiner(), ColorBackground("green")
    alpha = refine(segment(frame), frame)
    out = composite(frame, alpha, green.render(frame))

(``composite`` the function shares its name with its module, so it is imported from there.)
"""

import sys
from contextlib import suppress
from importlib import import_module

__version__ = "0.1.0"

# name -> module; resolved on first use so that `import deepbg_live.errors` stays light
_EXPORTS = {
    "Segmenter": "engine",
    "TemporalSmoother": "smoothing",
    "EdgeRefiner": "refine",
    "ColorBackground": "composite",
    "ImageBackground": "composite",
    "VideoBackground": "composite",
    "BlurBackground": "composite",
    "open_source": "capture",
    "Pipeline": "pipeline",
    "UserError": "errors",
}
__all__ = [*_EXPORTS, "__version__"]


class _OpenCvBeforePyAv:
    """Imports cv2 just before the process first imports av, wherever that happens.

    cv2 must be loaded before av: PyAV bundles its own libxcb, and if it loads first OpenCV's Qt
    window picks it up and hangs in namedWindow. Importing cv2 here instead would cost every
    ``deepbg-live --help`` a fifth of a second.
    """

    def find_spec(self, name: str, path=None, target=None):
        if name == "av" and self in sys.meta_path:
            sys.meta_path.remove(self)
            with suppress(ImportError):  # no OpenCV: nothing to protect
                import cv2  # noqa: F401
        return None  # the ordinary finders import av itself


if "av" not in sys.modules:
    sys.meta_path.insert(0, _OpenCvBeforePyAv())


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"deepbg_live.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'deepbg_live' has no attribute {name!r}")
