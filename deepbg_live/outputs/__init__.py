"""Where composited frames go: files, folders, videos, the preview window and the virtual camera.

Every output is a ``Sink``: ``write(frame, image, alpha)`` per frame, ``close()`` once, and ``with``.
Whoever builds a sink closes it; the pipeline only writes. Every file output follows ``safety``: no
output touches an input, and no file gets its name before it is complete.
"""

from deepbg_live.outputs.base import Sink, SinkBase
from deepbg_live.outputs.files import FolderSink, ImageFileSink, MaskSink
from deepbg_live.outputs.preview import PreviewWindow, display_available
from deepbg_live.outputs.vcam import VirtualCameraSink
from deepbg_live.outputs.video import VideoFileSink, VideoFormat, write_clip

__all__ = [
    "FolderSink",
    "ImageFileSink",
    "MaskSink",
    "PreviewWindow",
    "Sink",
    "SinkBase",
    "VideoFileSink",
    "VideoFormat",
    "VirtualCameraSink",
    "display_available",
    "write_clip",
]
