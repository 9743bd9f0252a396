"""The ``deepbg-live`` command: parse options, build the pipeline, run it, report errors in one line."""

from __future__ import annotations

import math
import os
import sys
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import click

from deepbg_live import geometry
from deepbg_live.colors import COLOR_HELP, DEFAULT_COLOR
from deepbg_live.errors import UserError, WriteFailed
from deepbg_live.formats import IMAGE_EXTENSIONS
from deepbg_live.image_header import MAX_PIXELS
from deepbg_live.model_files import model_option_help, model_path
from deepbg_live.runtimes import PRECISIONS, Device, Runtime, open_live_runtime, open_runtime
from deepbg_live.shutdown import INTERRUPTED, GracefulShutdown

# The pipeline's modules (OpenCV, PyAV, ONNX Runtime behind them) are imported in the functions
# that use them, so that `--help` and a mistyped option answer at once.
if TYPE_CHECKING:
    from deepbg_live.adaptive import QualityController
    from deepbg_live.capture import Source
    from deepbg_live.composite import Background
    from deepbg_live.outputs import PreviewWindow, Sink
    from deepbg_live.pipeline import OutputMode, Stats

DEMO_OUTPUT = "deepbg-demo.mp4"
EXIT_WRITE_FAILED = 1  # an output failed part way (a full disk); what it wrote is kept
EXIT_USER_ERROR = 2  # refused before any work: a bad option, input or output; click's own status too
MIN_SIDE, MAX_SIDE = 16, 16384  # --size: below 16 px nobody is recognisable; 16K is past any camera
SIZE_RULE = f"use WIDTHxHEIGHT, each side {MIN_SIDE} to {MAX_SIDE}, for example 1280x720"
MAX_FPS = 1000.0  # --fps and --vcam-fps: above this a frame rate is a typo
FALLBACK_MODEL = "fast"  # the cheaper shipped model a live job on the default model falls back to, last


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``--size`` as ``(w, h)``, or None when not given; a UserError unless each side is in range."""
    if text is None:
        return None
    try:
        size = geometry.parse_size(text)
    except ValueError:
        size = None
    if size is None or not all(MIN_SIDE <= side <= MAX_SIDE for side in size):
        raise UserError(f"bad --size {text!r}: {SIZE_RULE}")
    return size


class _FiniteFloat(click.FloatRange):
    """A float in a range, never nan or inf: nan compares false with every bound, so FloatRange takes it."""

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


def _check_size(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    try:
        parse_size(value)
    except UserError:
        raise click.BadParameter(f"{value!r}: {SIZE_RULE}") from None
    return value


class _OneLineCommand(click.Command):
    """A bad option is reported like any user error: one line, exit 2 (click adds usage and a hint)."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: click.Context | None = None, **extra: object
    ) -> click.Context:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except click.UsageError as error:
            raise _OneLineError(error.format_message()) from None


class _OneLineError(click.ClickException):
    exit_code = 2


def choose_background(
    color: str | None, image: str | None, video: str | None, blur: int | None
) -> Background:
    from deepbg_live.composite import BlurBackground, ColorBackground, ImageBackground, VideoBackground

    chosen = [
        name
        for name, value in (("--color", color), ("--image", image), ("--video", video), ("--blur", blur))
        if value is not None  # an empty --color is a mistake to report, not the default
    ]
    if len(chosen) > 1:
        raise UserError(f"choose one background, not {' and '.join(chosen)}")
    if image:
        return ImageBackground(image)
    if video:
        return VideoBackground(video)
    if blur is not None:
        return BlurBackground(blur)
    return ColorBackground(DEFAULT_COLOR if color is None else color)


def build_sinks(source: Source, opts: Options, window: bool, stack: ExitStack) -> list[Sink]:
    """The outputs the options ask for, each entered on ``stack`` as it opens; an error if none."""
    from deepbg_live.outputs import MaskSink, PreviewWindow, VirtualCameraSink

    sinks: list[Sink] = []
    if opts.output:
        sinks.append(stack.enter_context(file_sink(source, Path(opts.output), opts.transparent)))
    if opts.save_mask:
        sinks.append(stack.enter_context(MaskSink(opts.save_mask)))
    if opts.virtual_cam:
        width, height = source.size
        fps = opts.vcam_fps or source.fps
        camera = VirtualCameraSink(
            width, height, fps, device=opts.vcam_device, fmt=opts.vcam_format, backend=opts.vcam_backend
        )
        sinks.append(stack.enter_context(camera))
    if window:
        sinks.append(stack.enter_context(PreviewWindow()))
    if not sinks:
        raise UserError("nothing to do: give --output PATH, --virtual-cam, --save-mask DIR or --window")
    return sinks


def file_sink(source: Source, output: Path, transparent: bool) -> Sink:
    """An image for an image, a folder for a folder (or a suffix-less name), else a video."""
    from deepbg_live.outputs import FolderSink, ImageFileSink, VideoFileSink

    if source.single_image:
        return ImageFileSink(output, transparent=transparent)
    if not source.temporal or not output.suffix:  # independent photos have no frame rate to make a clip
        return FolderSink(output, suffix=".png")
    audio = source.audio_path
    return VideoFileSink(
        output, source.fps, source.size, audio_from=audio, transparent=transparent, live=source.live
    )


@click.command(
    cls=_OneLineCommand, context_settings={"help_option_names": ["-h", "--help"], "show_default": True}
)
@click.option(
    "--demo",
    is_flag=True,
    help=f"Process the built-in sample clip (no camera needed) into --output [default: {DEMO_OUTPUT}].",
)
@click.option("--camera", default=None, help="Camera index (0, 1, ...) or device path.")
@click.option("--input", "input_path", default=None, help="Video file, image file, or folder of images.")
@click.option("--sequence", is_flag=True, help="Treat an --input folder as ordered video frames.")
@click.option("--realtime", is_flag=True, help="Pace a video file at its frame rate, like a live camera.")
@click.option(
    "--adaptive/--no-adaptive",
    default=None,
    help="While the CPU cannot keep up with a live source, lower the model's input size rather than drop "
    "frames, and raise it again once it can. [default: on for cameras and --realtime; files never adapt]",
)
@click.option("--size", default=None, callback=_check_size, help="Requested camera size, WIDTHxHEIGHT.")
@click.option(
    "--fps",
    type=_FiniteFloat(0, MAX_FPS, min_open=True),
    default=None,
    help="Requested camera frame rate (or --sequence frame rate).",
)
@click.option("--color", default=None, help=f"Background colour: {COLOR_HELP} [default: {DEFAULT_COLOR}].")
@click.option("--image", default=None, help="Background image, cover-fitted to the frame.")
@click.option("--video", default=None, help="Background video, looped.")
@click.option(
    "--blur",
    type=click.IntRange(1, 1000),
    default=None,
    help="Blur the real background with this kernel size.",
)
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
    "--vcam-fps",
    type=_FiniteFloat(0, MAX_FPS, min_open=True),
    default=None,
    help="Virtual camera frame rate [default: the input's].",
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
    "--device", type=click.Choice([d.value for d in Device]), default="auto", help="Where the model runs."
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
    help="Also segment the mirrored frame and average the two: a little more accurate (IoU +0.14 points "
    "on portraits, +0.16 on full-body here) at twice the model time. [default: on for photos, off for "
    "video and cameras]",
)
@click.option("--smoothing", type=_FiniteFloat(0, 1), default=0.5, help="Temporal smoothing, 0 (off) to 1.")
@click.option(
    "--feather", type=click.IntRange(0, 100), default=0, help="Soften the mask edge by this many pixels."
)
@click.option("--refine/--no-refine", default=True, help="Guided-filter edge refinement.")
@click.option(
    "--max-pixels",
    type=click.IntRange(min=1),
    default=MAX_PIXELS,
    help="Refuse input pictures larger than this many pixels (a small file can decode to gigabytes).",
)
@click.option("--progress/--no-progress", default=True, help="Progress bar for file inputs.")
def main(**options) -> None:
    """Replace the background behind people in camera or video frames, in real time."""
    shutdown = GracefulShutdown()
    try:
        with shutdown:
            run(Options(**options), shutdown)
    except WriteFailed as error:  # the job had started: what it wrote is kept, and the message says where
        click.echo(f"Error: {error}", err=True)
        sys.exit(EXIT_WRITE_FAILED)
    except UserError as error:
        if shutdown.requested:  # a signal in a compiled module's import reads as "not installed" (pybind11)
            sys.exit(INTERRUPTED)
        click.echo(f"Error: {error}", err=True)
        sys.exit(EXIT_USER_ERROR)
    except KeyboardInterrupt:  # a stop signal while starting up, before any output was opened
        sys.exit(INTERRUPTED)
    if shutdown.requested:
        sys.exit(INTERRUPTED)


@dataclass
class Options:
    """Everything the command line can say, as one value (names match the options)."""

    demo: bool = False
    camera: str | None = None
    input_path: str | None = None
    sequence: bool = False
    realtime: bool = False
    adaptive: bool | None = None  # None: on for live sources; files never adapt
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
    max_pixels: int = MAX_PIXELS

    @property
    def mode(self) -> OutputMode:
        from deepbg_live.pipeline import OutputMode

        if self.transparent:
            return OutputMode.TRANSPARENT
        return OutputMode.MASK if self.show_mask else OutputMode.COMPOSITE


def run(opts: Options, shutdown: GracefulShutdown | None = None) -> None:
    """Open the input, build the pipeline and its outputs, and stream until done or stopped.

    ``shutdown`` is the signal handler ``main`` entered: once the outputs are open its flag, read
    between frames, stops the run, so every output is finished cleanly.
    """
    from deepbg_live.capture import open_source
    from deepbg_live.engine import Segmenter
    from deepbg_live.hotkeys import Hotkeys
    from deepbg_live.outputs import PreviewWindow
    from deepbg_live.pipeline import Pipeline
    from deepbg_live.refine import EdgeRefiner
    from deepbg_live.smoothing import TemporalSmoother

    if opts.demo:
        opts = replace(opts, input_path=str(_demo_input()), output=opts.output or DEMO_OUTPUT)
    if (opts.camera is None) == (opts.input_path is None):
        raise UserError("give exactly one of --camera N or --input PATH (or try --demo)")
    check_options(opts)
    window = opts.camera is not None if opts.window is None else opts.window
    check_job_paths(opts, window)  # before anything is opened, so no output can touch an input
    background = choose_background(opts.color, opts.image, opts.video, opts.blur)
    # Opened before the input, so that a bad --model fails before a camera turns on.
    if _live_job(opts):
        runtime = open_live_runtime(opts.model, device=opts.device, precision=opts.precision)
    else:  # file jobs want wall time: every thread (none spins, as in every job)
        runtime = open_runtime(opts.model, device=opts.device, precision=opts.precision)
    size = parse_size(opts.size)
    source = open_source(
        opts.camera,
        opts.input_path,
        sequence=opts.sequence,
        realtime=opts.realtime,
        size=size,
        fps=opts.fps,
        max_pixels=opts.max_pixels,
    )
    polling = shutdown.polling() if shutdown is not None else nullcontext(None)
    with polling as stop, source, ExitStack() as outputs:  # outputs close first, still polling
        outputs.callback(background.close)  # a looping --video background holds an open file
        sinks = build_sinks(source, opts, window, outputs)
        smoother = TemporalSmoother(opts.smoothing if source.temporal else 0.0)
        # A photo has no frame rate to keep, so it can afford the more accurate mirrored average.
        flip_average = not source.temporal if opts.flip_average is None else opts.flip_average
        adaptive = source.live and opts.adaptive is not False
        fallback = _fallback_runtime(opts) if adaptive else None
        segmenter = Segmenter(runtime, flip_average=flip_average, fallback=fallback)
        refiner = EdgeRefiner(feather=opts.feather, guided=opts.refine)
        pipeline = Pipeline(segmenter, background, sinks, smoother, refiner, mode=opts.mode)
        preview = next((s for s in sinks if isinstance(s, PreviewWindow)), None)
        user_backgrounds = [background] if opts.image or opts.video else []
        controller = Hotkeys(pipeline, preview, user_backgrounds, stop) if preview else None
        quality = _live_quality(source.fps, preview, with_fallback=fallback is not None) if adaptive else None
        stats = pipeline.run(
            source, progress=opts.progress, controller=controller, stop=stop, quality=quality
        )
    stopped = shutdown is not None and shutdown.requested
    if not source.single_image:  # a rate means nothing for one photo
        click.echo(_run_summary(stats, quality, stopped), err=True)
    if opts.output:
        click.echo(f"wrote {opts.output}", err=True)


def _live_quality(fps: float, preview: PreviewWindow | None, with_fallback: bool) -> QualityController:
    """The adaptive controller for a live job, shown in the preview's overlay when there is one."""
    from deepbg_live.adaptive import LADDER, LADDER_WITH_FALLBACK, AdaptiveConfig, QualityController

    show = (lambda level: preview.set_quality(level.label)) if preview else None
    config = AdaptiveConfig(LADDER_WITH_FALLBACK if with_fallback else LADDER)
    quality = QualityController(fps, config, on_change=show)
    if preview:
        preview.set_quality(quality.level.label)
    return quality


def _run_summary(stats: Stats, quality: QualityController | None, stopped: bool) -> str:
    """The closing line of a video or camera job: frames, rate, drops and the lowest quality used."""
    dropped = f", {stats.dropped} dropped" if stats.dropped else ""
    lowered = f", quality down to {quality.lowest.label}" if quality is not None and quality.changes else ""
    frames = f"{stats.frames} frame{'' if stats.frames == 1 else 's'}"
    return f"{'stopped after ' if stopped else ''}{frames} at {stats.fps():.1f} fps{dropped}{lowered}"


def check_options(opts: Options) -> None:
    """Refuse, in one line, options that would otherwise be silently ignored or overruled."""
    if opts.transparent:
        for option, value in (("--color", opts.color), ("--image", opts.image), ("--video", opts.video)):
            if value is not None:
                raise UserError(f"--transparent writes no background, so {option} would be ignored; drop one")
        if opts.blur is not None:
            raise UserError("--transparent writes no background, so --blur would be ignored; drop one")
        if opts.show_mask:
            raise UserError(
                "choose --transparent (the person with alpha) or --show-mask (the mask), not both"
            )
    if opts.adaptive and not _live_job(opts):
        raise UserError("--adaptive applies to live sources only: a --camera, or a video with --realtime")
    folder = opts.input_path is not None and Path(opts.input_path).expanduser().is_dir()
    if folder and not opts.sequence and opts.output and Path(opts.output).suffix:
        raise UserError(
            f"a folder of photos gives a folder of PNGs: name --output a folder ('{Path(opts.output).stem}'), "
            "or add --sequence to make a video of it"
        )


def _fallback_runtime(opts: Options) -> Runtime | None:
    """The cheaper shipped model for the last quality level of a live job on the default model.

    None for a model the user chose: that one is never swapped behind their back.
    """
    if model_path(opts.model) != model_path(None):
        return None
    return open_live_runtime(FALLBACK_MODEL, device=opts.device)


def _live_job(opts: Options) -> bool:
    """Whether frames will come on their own clock, as ``open_source`` will decide: a camera, or a
    video or ``--sequence`` paced by ``--realtime`` (photos have no clock to keep)."""
    if opts.camera is not None:
        return True
    if not opts.realtime or opts.input_path is None:
        return False
    path = Path(opts.input_path).expanduser()
    return opts.sequence if path.is_dir() else path.suffix.lower() not in IMAGE_EXTENSIONS


def check_job_paths(opts: Options, window: bool) -> None:
    """Refuse, in one line, an output that is an input, would overwrite one, or lies in an input folder."""
    from deepbg_live.outputs.safety import Input, Output, check_paths

    named = [("--input", opts.input_path), ("--image", opts.image), ("--video", opts.video)]
    named += [("--model", opts.model), ("--camera", None if str(opts.camera).isdigit() else opts.camera)]
    inputs = [Input(Path(path).expanduser(), option) for option, path in named if path]
    outputs = []
    if opts.output:
        outputs.append(Output(Path(opts.output), "--output", folder=_writes_a_folder(opts)))
    if opts.save_mask:
        outputs.append(Output(Path(opts.save_mask), "--save-mask", folder=True))
    if window:  # the s key saves snapshots into the current folder
        outputs.append(
            Output(Path.cwd(), "the snapshot folder (the s key)", folder=True, shares_folders=True)
        )
    check_paths(inputs, outputs)


def _writes_a_folder(opts: Options) -> bool:
    """Whether --output will be a folder of images (as ``file_sink`` decides once the input is open)."""
    independent_photos = opts.input_path is not None and os.path.isdir(opts.input_path) and not opts.sequence
    return independent_photos or not Path(opts.output).suffix


def _demo_input() -> Path:
    """The sample clip, generated once into the temp folder and reused by later runs."""
    import tempfile

    from deepbg_live.sample import make_sample_clip

    path = Path(tempfile.gettempdir()) / "deepbg-live-sample.mp4"
    if not _plays(path):  # missing, or damaged by something else: the user never gave this file
        partial = make_sample_clip(path.with_name(f"{path.stem}-{os.getpid()}.mp4"))
        partial.replace(path)  # atomic: an interrupted first run never leaves a broken sample
    return path


def _plays(path: Path) -> bool:
    """Whether ``path`` is a video whose first frame decodes."""
    import av

    try:
        with av.open(str(path)) as container:
            next(container.decode(video=0))
    except (OSError, av.error.FFmpegError, StopIteration, IndexError):
        return False
    return True


if __name__ == "__main__":
    main()
