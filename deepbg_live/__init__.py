"""deepbg-live: real-time background replacement for webcams and video.

The public API, importable from the package itself::

    from deepbg_live import ColorBackground, EdgeRefiner, Segmenter
    from deepbg_live.composite import composite

    segment, refine, green = Segmenter(), EdgeRefiner(), ColorBackground("green")
    alpha = refine(segment(frame), frame)
    out = composite(frame, alpha, green.render(frame))

(``composite`` the function shares its name with its module, so it is imported from there.)
"""

# cv2 must be imported before av: PyAV bundles its own libxcb, and if it loads first OpenCV's Qt
# window picks it up and hangs in namedWindow. Importing the package settles the order.
import cv2  # noqa: F401, I001

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


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"deepbg_live.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'deepbg_live' has no attribute {name!r}")
