"""The virtual camera: frames sent to a virtual webcam device, in the pixel format it was opened with."""

from __future__ import annotations

import gc
import sys
from collections.abc import Callable

import cv2
import numpy as np

from deepbg_live.capture import Frame
from deepbg_live.errors import UserError, first_line
from deepbg_live.outputs.base import SinkBase

# The same line as the README's troubleshooting: /dev/video10, which --vcam-device then names.
MODPROBE = 'sudo modprobe v4l2loopback devices=1 video_nr=10 exclusive_caps=1 card_label="deepbg-live"'


def driver_hint(backend: str | None, platform: str = sys.platform) -> str:
    """What to install for ``backend`` (None: the OS's default) on ``platform``."""
    linux = platform.startswith("linux")
    if backend == "unitycapture":
        return "install Unity Capture (github.com/schellingb/UnityCapture) and run its Install.bat once"
    if backend == "obs" and linux:
        return (
            "the obs backend exists only on Windows and macOS; on Linux use v4l2loopback: install "
            f"v4l2loopback-dkms, run `{MODPROBE}`, then pass --vcam-device /dev/video10"
        )
    if backend in (None, "v4l2loopback") and linux:
        return f"install v4l2loopback (package v4l2loopback-dkms), run `{MODPROBE}`, then pass --vcam-device /dev/video10"
    if backend == "v4l2loopback":
        return "v4l2loopback exists only on Linux; leave --vcam-backend out to use OBS's virtual camera"
    return "install OBS Studio (28 or newer) and start its Virtual Camera once (this registers the driver), then close OBS"


def _bgr_to(fmt: str, bgr: np.ndarray) -> np.ndarray:
    """Convert to the layout pyvirtualcam expects for ``fmt`` (planar YUV as flat bytes)."""
    if fmt == "BGR":
        return bgr
    if fmt == "RGB":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if fmt == "RGBA":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA)
    if fmt == "GRAY":
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    if fmt == "I420":
        return i420
    h, w = bgr.shape[:2]
    y, uv = i420[:h], i420[h:].reshape(2, -1)
    if fmt == "NV12":
        return np.concatenate([y.reshape(-1), uv.T.reshape(-1)])
    return _packed_422(bgr, fmt)


def _packed_422(bgr: np.ndarray, fmt: str) -> np.ndarray:
    """YUYV/UYVY: full-resolution luma, chroma averaged over horizontal pairs."""
    yuv = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV)
    h, w = yuv.shape[:2]
    y = yuv[:, :, 0]
    uv = yuv[:, :, 1:].reshape(h, w // 2, 2, 2).mean(axis=2).round().astype(np.uint8)
    out = np.empty((h, w // 2, 4), np.uint8)
    if fmt == "YUYV":
        out[..., 0], out[..., 1], out[..., 2], out[..., 3] = y[:, 0::2], uv[..., 0], y[:, 1::2], uv[..., 1]
    else:
        out[..., 0], out[..., 1], out[..., 2], out[..., 3] = uv[..., 0], y[:, 0::2], uv[..., 1], y[:, 1::2]
    return out


def _quietly(open_camera: Callable[[], object]) -> object:
    """The camera, or the first line of why it could not open, with nothing else printed.

    A ``pyvirtualcam.Camera`` whose backend fails is half built, and its ``__del__`` then prints an
    "Exception ignored ... '_backend'" traceback; that object is collected here, with it hushed.
    """
    hook = sys.unraisablehook
    sys.unraisablehook = lambda unraisable: None
    try:
        try:
            return open_camera()
        except Exception as exc:  # pyvirtualcam raises RuntimeError/ValueError/OSError by backend
            reason = first_line(exc)
        gc.collect()  # the half-built camera goes now, while its complaint is hushed
        return reason
    finally:
        sys.unraisablehook = hook


class VirtualCameraSink(SinkBase):
    """Feeds a virtual webcam (v4l2loopback, OBS, Unity Capture) so Zoom/Meet/Teams can pick us as a camera."""

    def __init__(
        self,
        width: int,
        height: int,
        fps: float,
        device: str | None = None,
        fmt: str = "RGB",
        backend: str | None = None,
    ):
        import pyvirtualcam

        self.fmt = fmt.upper()
        if self.fmt not in pyvirtualcam.PixelFormat.__members__:
            choices = ", ".join(pyvirtualcam.PixelFormat.__members__)
            raise UserError(f"virtual camera format {fmt!r} is not supported; use one of {choices}")
        self.size = (int(width), int(height))
        camera = _quietly(
            lambda: pyvirtualcam.Camera(
                width, height, fps, fmt=pyvirtualcam.PixelFormat[self.fmt], device=device, backend=backend
            )
        )
        if isinstance(camera, str):
            raise UserError(f"no virtual camera available ({camera}); {driver_hint(backend)}")
        self._cam = camera
        self.device = self._cam.device
        self._closed = False

    def write(self, frame: Frame, image: np.ndarray, alpha: np.ndarray) -> None:
        if image.ndim == 3 and image.shape[2] == 4:  # cameras have no alpha: show the subject over black
            image = cv2.multiply(
                image[:, :, :3], cv2.cvtColor(image[:, :, 3], cv2.COLOR_GRAY2BGR), scale=1 / 255
            )
        if (image.shape[1], image.shape[0]) != self.size:
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        self._cam.send(_bgr_to(self.fmt, image))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._cam.close()
