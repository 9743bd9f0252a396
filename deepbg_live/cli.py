"""The ``deepbg-live`` command: parse options, build the pipeline, run it, report errors in one line."""

from __future__ import annotations

import os
import signal
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import click
import cv2

from deepbg_live.capture import Source, open_source
from deepbg_live.composite import (
    DEFAULT_COLOR,
    Background,
    BlurBackground,
    ColorBackground,
    ImageBackground,
    VideoBackground,
)
from deepbg_live.engine import PRECISIONS, Segmenter, model_option_help
from deepbg_live.errors import UserError
from deepbg_live.pipeline import Pipeline, Result
from deepbg_live.refine import EdgeRefiner
from deepbg_live.sinks import (
    FolderSink,
    ImageFileSink,
    MaskSink,
    PreviewWindow,
    VideoFileSink,
    VirtualCameraSink,
)
from deepbg_live.smoothing import TemporalSmoother

PALETTE = ("#00ff00", "#0000ff", "#ffffff", "#0a4678", "#202020")  # colours the c key cycles through
BLUR_STEPS = (15, 31, 61)  # blur kernels the b key cycles through
DEMO_OUTPUT = "deepbg-demo.mp4"


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        width, height = (int(part) for part in text.lower().split("x"))
        if width <= 0 or height <= 0:
            raise ValueError
    except ValueError:
        raise UserError(f"bad --size {text!r}: use WIDTHxHEIGHT, for example 1280x720") from None
    return width, height


def choose_background(
    color: str | None, image: str | None, video: str | None, blur: int | None
) -> Background:
    chosen = [
        name
        for name, value in (("--color", color), ("--image", image), ("--video", video), ("--blur", blur))
        if value
    ]
    if len(chosen) > 1:
        raise UserError(f"choose one background, not {' and '.join(chosen)}")
    if image:
        return ImageBackground(image)
    if video:
        return VideoBackground(video)
    if blur:
        return BlurBackground(blur)
    return ColorBackground(color or DEFAULT_COLOR)


class Hotkeys:
    """The preview window's keys: quit, pause, snapshot, overlay, and cycling the background."""

    def __init__(self, pipeline: Pipeline, window: PreviewWindow, user_backgrounds: list[Background]):
        self.pipeline, self.window = pipeline, window
        self.user_backgrounds = user_backgrounds
        self.colour, self.blur, self.user = 0, 0, 0
        self.last: Result | None = None
        self.ticks: list[float] = []

    def __call__(self, result: Result) -> bool:
        self.last = result
        self._update_overlay()
        action = self.window.poll_key()
        if action == "pause":
            action = self.wait_while_paused()
        return self.handle(action)

    def wait_while_paused(self) -> str | None:
        """Hold the current picture until space is pressed again; other keys still act."""
        while True:
            action = self.window.poll_key(wait_ms=30)
            if action in ("pause", "quit"):
                return None if action == "pause" else action
            if action is not None:
                self.handle(action)

    def handle(self, action: str | None) -> bool:
        if action == "quit":
            return False
        if action == "color":
            self.colour = (self.colour + 1) % len(PALETTE)
            self.pipeline.background = ColorBackground(PALETTE[self.colour])
        elif action == "background":
            self.blur = (self.blur + 1) % len(BLUR_STEPS)
            self.pipeline.background = BlurBackground(BLUR_STEPS[self.blur])
        elif action == "image" and self.user_backgrounds:
            self.user = (self.user + 1) % len(self.user_backgrounds)
            self.pipeline.background = self.user_backgrounds[self.user]
        elif action == "image":
            click.echo("no picture to show: start with --image FILE or --video FILE to use 'i'", err=True)
        elif action == "snapshot" and self.last is not None:
            path = Path(time.strftime("deepbg-snapshot-%Y%m%d-%H%M%S.png"))
            cv2.imwrite(str(path), self.last.image)
            click.echo(f"saved {path}", err=True)
        elif action == "stats":
            self.window.show_stats = not self.window.show_stats
        return True

    def _update_overlay(self) -> None:
        now = time.perf_counter()
        self.ticks = [t for t in self.ticks if now - t < 1.0] + [now]
        latency = self.pipeline.stats.latencies[-1] if self.pipeline.stats.latencies else 0.0
        self.window.set_stats(len(self.ticks), latency)


def build_sinks(source: Source, opts: Options, window: bool) -> list:
    """The outputs the options ask for; an error if they ask for none."""
    sinks: list = []
    if opts.output:
        sinks.append(file_sink(source, Path(opts.output), opts.transparent))
    if opts.save_mask:
        sinks.append(MaskSink(opts.save_mask))
    if opts.virtual_cam:
        width, height = source.size
        fps = opts.vcam_fps or source.fps
        sinks.append(
            VirtualCameraSink(
                width, height, fps, device=opts.vcam_device, fmt=opts.vcam_format, backend=opts.vcam_backend
            )
        )
    if window:
        sinks.append(PreviewWindow())
    if not sinks:
        raise UserError("nothing to do: give --output PATH, --virtual-cam, --save-mask DIR or --window")
    return sinks


def file_sink(source: Source, output: Path, transparent: bool):
    """An image for an image, a folder for a folder (or a suffix-less name), else a video."""
    if source.kind == "image":
        return ImageFileSink(output, transparent=transparent)
    if source.kind == "folder" or not output.suffix:
        return FolderSink(output, suffix=".png")
    audio = source.path if source.kind == "video" else None
    return VideoFileSink(
        output, source.fps, source.size, audio_from=audio, transparent=transparent, live=source.live
    )


@click.command(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.option(
    "--demo",
    is_flag=True,
    help=f"Process the built-in sample clip (no camera needed) into --output [default: {DEMO_OUTPUT}].",
)
@click.option("--camera", default=None, help="Camera index (0, 1, ...) or device path.")
@click.option("--input", "input_path", default=None, help="Video file, image file, or folder of images.")
@click.option("--sequence", is_flag=True, help="Treat an --input folder as ordered video frames.")
@click.option("--realtime", is_flag=True, help="Pace a video file at its frame rate, like a live camera.")
@click.option("--size", default=None, help="Requested camera size, WIDTHxHEIGHT.")
@click.option(
    "--fps", type=float, default=None, help="Requested camera frame rate (or --sequence frame rate)."
)
@click.option(
    "--color", default=None, help=f"Background colour: #RRGGBB, #RGB or a name [default: {DEFAULT_COLOR}]."
)
@click.option("--image", default=None, help="Background image, cover-fitted to the frame.")
@click.option("--video", default=None, help="Background video, looped.")
@click.option("--blur", type=int, default=None, help="Blur the real background with this kernel size.")
@click.option(
    "--transparent", is_flag=True, help="Write an alpha channel instead of a background (PNG, WebM, MOV)."
)
@click.option("--show-mask", is_flag=True, help="Output the mask instead of the composite.")
@click.option("--output", "-o", default=None, help="Output video, image or folder.")
@click.option("--virtual-cam", is_flag=True, help="Send the result to a virtual camera (Zoom, Meet, OBS).")
@click.option("--vcam-device", default=None, help="Virtual camera device, e.g. /dev/video10.")
@click.option(
    "--vcam-format",
    type=click.Choice(["RGB", "BGR", "I420", "YUYV", "NV12", "UYVY"]),
    default="RGB",
    help="Virtual camera pixel format.",
)
@click.option(
    "--vcam-fps", type=float, default=None, help="Virtual camera frame rate [default: the input's]."
)
@click.option(
    "--vcam-backend",
    default=None,
    help="pyvirtualcam backend: v4l2loopback, obs or unitycapture [default: the OS's].",
)
@click.option(
    "--save-mask", default=None, help="Also write each frame's alpha as an 8-bit PNG in this folder."
)
@click.option(
    "--window/--no-window", default=None, help="Preview window [default: on for cameras, off for files]."
)
@click.option(
    "--model",
    default=None,
    help=model_option_help(),
)
@click.option(
    "--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", help="Where the model runs."
)
@click.option(
    "--precision",
    type=click.Choice(list(PRECISIONS)),
    default="auto",
    help="Model arithmetic on a CPU. auto: int8 where the model ships an int8 file (1.7-1.9x as fast "
    "here, same masks), else fp32. A GPU always runs fp16.",
)
@click.option(
    "--flip-average/--no-flip-average",
    default=None,
    help="Also segment the mirrored frame and average the two: a little more accurate (about 0.2 IoU "
    "points here) at twice the model time. [default: on for photos, off for video and cameras]",
)
@click.option(
    "--smoothing", type=click.FloatRange(0, 1), default=0.5, help="Temporal smoothing, 0 (off) to 1."
)
@click.option(
    "--feather", type=click.IntRange(0, 100), default=0, help="Soften the mask edge by this many pixels."
)
@click.option("--refine/--no-refine", default=True, help="Guided-filter edge refinement.")
@click.option("--progress/--no-progress", default=True, help="Progress bar for file inputs.")
def main(**options) -> None:
    """Replace the background behind people in camera or video frames, in real time."""
    try:
        run(Options(**options))
    except UserError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


@dataclass
class Options:
    """Everything the command line can say, as one value (names match the options)."""

    demo: bool = False
    camera: str | None = None
    input_path: str | None = None
    sequence: bool = False
    realtime: bool = False
    size: str | None = None
    fps: float | None = None
    color: str | None = None
    image: str | None = None
    video: str | None = None
    blur: int | None = None
    transparent: bool = False
    show_mask: bool = False
    output: str | None = None
    virtual_cam: bool = False
    vcam_device: str | None = None
    vcam_format: str = "RGB"
    vcam_fps: float | None = None
    vcam_backend: str | None = None
    save_mask: str | None = None
    window: bool | None = None
    model: str | None = None
    device: str = "auto"
    precision: str = "auto"
    flip_average: bool | None = None  # None: on for photos, off for video and cameras
    smoothing: float = 0.5
    feather: int = 0
    refine: bool = True
    progress: bool = True

    @property
    def mode(self) -> str:
        return "transparent" if self.transparent else "mask" if self.show_mask else "composite"


def run(opts: Options) -> None:
    """Open the input, build the pipeline and its outputs, and stream until done or stopped."""
    if opts.demo:
        opts = replace(opts, input_path=str(_demo_input()), output=opts.output or DEMO_OUTPUT)
    if (opts.camera is None) == (opts.input_path is None):
        raise UserError("give exactly one of --camera N or --input PATH (or try --demo)")
    background = choose_background(opts.color, opts.image, opts.video, opts.blur)
    segmenter = Segmenter(opts.model, device=opts.device, precision=opts.precision)
    size = parse_size(opts.size)
    source = open_source(
        opts.camera, opts.input_path, sequence=opts.sequence, realtime=opts.realtime, size=size, fps=opts.fps
    )
    _stop_on_sigterm()
    with source:
        window = source.kind == "camera" if opts.window is None else opts.window
        sinks = build_sinks(source, opts, window)
        smoother = TemporalSmoother(opts.smoothing if _is_temporal(source) else 0.0)
        # A photo has no frame rate to keep, so it can afford the more accurate mirrored average.
        segmenter.flip_average = not _is_temporal(source) if opts.flip_average is None else opts.flip_average
        refiner = EdgeRefiner(feather=opts.feather, guided=opts.refine)
        pipeline = Pipeline(segmenter, background, sinks, smoother, refiner, mode=opts.mode)
        preview = next((s for s in sinks if isinstance(s, PreviewWindow)), None)
        user_backgrounds = [background] if opts.image or opts.video else []
        controller = Hotkeys(pipeline, preview, user_backgrounds) if preview else None
        try:
            stats = pipeline.run(source, progress=opts.progress, controller=controller)
        finally:
            background.close()  # a looping --video background holds an open file
    dropped = f", {stats.dropped} dropped" if stats.dropped else ""
    click.echo(f"{stats.frames} frames at {stats.fps():.1f} fps{dropped}", err=True)
    if opts.output:
        click.echo(f"wrote {opts.output}", err=True)


def _demo_input() -> Path:
    """The sample clip, generated once into the user's cache folder."""
    import tempfile

    from deepbg_live.sample import make_sample_clip

    path = Path(tempfile.gettempdir()) / "deepbg-live-sample.mp4"
    if not path.exists():
        partial = make_sample_clip(path.with_name(f"{path.stem}-{os.getpid()}.mp4"))
        partial.replace(path)  # atomic: an interrupted first run never leaves a broken sample
    return path


def _is_temporal(source) -> bool:
    return source.kind in ("camera", "video", "sequence")


def _stop_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so outputs are finalised instead of cut off."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    main()
