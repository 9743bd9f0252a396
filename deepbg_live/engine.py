"""Person segmentation at run time: load a model, pick the fastest backend, turn frames into masks.

The U-Net is small enough that on a CPU the per-frame overhead around it matters as much as the
network, so preprocessing works on the already-shrunk image and the default CPU backend is ONNX
Runtime (1.5-4x faster than eager torch here, see shared/notes/measured-facts.md).
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch

from deepbg_live.errors import UserError
from deepbg_live.geometry import long_side_size
from deepbg_live.model import DEFAULT_CONFIG, NORM_MEAN, NORM_STD, UNet, load_weights

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / f"{DEFAULT_CONFIG}.safetensors"
BACKENDS = ("torch-cpu", "onnxruntime", "torch-cuda")
PRECISIONS = ("auto", "fp32", "int8")
INT8_SUFFIX = ".int8.onnx"  # realtime.safetensors -> realtime.int8.onnx, made by training.export
FALLBACK_LONG_SIDE = 192  # for .onnx files that carry no "long_side" metadata
ONNX_OPSET = 17

# Normalisation folded into one multiply-add on 0..255 RGB: (x/255 - mean)/std = x*scale + offset.
_SCALE = (1.0 / (255.0 * np.asarray(NORM_STD, dtype=np.float32))).astype(np.float32)
_OFFSET = (-np.asarray(NORM_MEAN, dtype=np.float32) / np.asarray(NORM_STD, dtype=np.float32)).astype(
    np.float32
)


def resolve_device(device: str) -> str:
    """Map the user's ``--device`` choice to the device we will really use."""
    device = device.lower()
    if device not in ("auto", "cpu", "cuda"):
        raise UserError(f"unknown device '{device}'; use --device auto, cpu or cuda")
    has_cuda = torch.cuda.is_available()
    if device == "cuda" and not has_cuda:
        raise UserError(
            "--device cuda was requested but no CUDA GPU is available; use --device cpu "
            "(or install a CUDA build of PyTorch)"
        )
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    return device


def export_onnx(model: UNet, path: str | Path | io.BytesIO) -> None:
    """Write ``model`` as ONNX with dynamic height/width and its config in the metadata.

    The legacy TorchScript exporter is used (``dynamo=False``) because it needs no extra package.
    Tracing bakes in Python branches, so the dummy input's sides are deliberately *not*
    multiples of the U-Net stride: that way the padding in ``pad_to_multiple`` is traced with
    dynamic amounts and any input size works.
    """
    model = model.eval()
    dummy = torch.zeros(1, 3, 120, 200)  # 120 % 16 == 8, 200 % 16 == 8
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # deprecation notice and tracer warnings about the padding
        torch.onnx.export(
            model,
            (dummy,),
            buffer,
            input_names=["image"],
            output_names=["logits"],
            dynamic_axes={"image": {2: "height", 3: "width"}, "logits": {2: "height", 3: "width"}},
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    data = _add_onnx_metadata(buffer.getvalue(), model)
    if isinstance(path, io.BytesIO):
        path.write(data)
    else:
        Path(path).write_bytes(data)


def _add_onnx_metadata(data: bytes, model: UNet) -> bytes:
    """Record the config and inference resolution so an .onnx file is self-describing."""
    try:
        import onnx
    except ImportError:  # the metadata is a convenience; a runtime install may lack onnx
        return data
    proto = onnx.load_from_string(data)
    config = model.config
    for key, value in {"long_side": str(config.long_side), "config": config.name}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    return proto.SerializeToString()


def _metadata_long_side(metadata: dict[str, str]) -> int:
    """The inference long side an exported model records, or the fallback for files without one."""
    try:
        return int(metadata.get("long_side", FALLBACK_LONG_SIDE))
    except ValueError:
        return FALLBACK_LONG_SIDE


def weights_digest(path: str | Path) -> str:
    """SHA-256 of a weights file: what ties an int8 export to the weights it was made from."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    """Sigmoid via tanh: same values, no overflow warnings for very negative logits."""
    return (0.5 + 0.5 * np.tanh(0.5 * logits, dtype=np.float32)).astype(np.float32, copy=False)


class Segmenter:
    """Frame in, person probability out, whatever the model file and device.

    Holds one of three backends: ``onnxruntime`` (CPU default), ``torch-cpu`` (fallback) or
    ``torch-cuda`` (fp16, channels_last).
    """

    def __init__(
        self,
        model: str | Path | None = None,
        device: str = "auto",
        long_side: int | None = None,
        threads: int | None = None,
        backend: str | None = None,
        precision: str = "auto",
        flip_average: bool = False,
    ):
        path = model_path(model)
        # People are left-right symmetric and the network is not quite: averaging a frame's
        # prediction with its mirror image's cancels part of its error, at twice the model time.
        self.flip_average = flip_average
        self.device = resolve_device(device)
        self.threads = threads or min(4, os.cpu_count() or 1)
        is_onnx = path.suffix.lower() == ".onnx"
        self.backend = backend or self._natural_backend(is_onnx)
        self._check_backend(is_onnx)
        _check_model_file(path, is_default=model is None)

        self._run = None
        if precision not in PRECISIONS:
            raise UserError(f"unknown precision '{precision}'; choose one of {', '.join(PRECISIONS)}")
        if is_onnx:
            file_long_side = _metadata_long_side(self._init_onnxruntime(_read_bytes(path)))
            self._check_onnx_precision(precision, path)
        else:
            file_long_side = self._init_weights(path, precision)
        self.long_side = int(long_side or file_long_side)
        if self.long_side < 16:
            raise UserError(f"inference long side {self.long_side} is too small; use at least 16")

    # --- construction helpers ----------------------------------------------------------------

    def _natural_backend(self, is_onnx: bool) -> str:
        if is_onnx:
            return "onnxruntime"
        if self.device == "cuda":
            return "torch-cuda"
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "torch-cpu"
        return "onnxruntime"

    def _check_backend(self, is_onnx: bool) -> None:
        if self.backend not in BACKENDS:
            raise UserError(f"unknown backend '{self.backend}'; choose one of {', '.join(BACKENDS)}")
        if is_onnx and self.backend != "onnxruntime":
            raise UserError(
                f"backend '{self.backend}' cannot run an .onnx model; use a .safetensors/.pt model "
                "or the onnxruntime backend"
            )
        if self.backend == "torch-cuda" and not torch.cuda.is_available():
            raise UserError("backend torch-cuda needs a CUDA GPU and none is available; use --device cpu")

    def _init_weights(self, weights: Path, precision: str) -> int:
        """Run a .safetensors/.pt file, through its int8 export when usable; returns its long side.

        The torch network is built only for the float path: the int8 file carries the same
        config (its hash ties it to these weights), and building the net took half of start-up.
        """
        int8_metadata = self._run_matching_int8(weights, precision)
        if int8_metadata is not None:
            return _metadata_long_side(int8_metadata)
        net = _load_torch_model(weights)
        self._init_float(net)
        return net.config.long_side

    def _run_matching_int8(self, weights: Path, precision: str) -> dict[str, str] | None:
        """Run the int8 model exported beside ``weights`` from exactly these weights, if wanted and usable.

        Returns the int8 model's metadata, or None when it is not used. Only for ONNX Runtime on a
        CPU: int8 is a CPU speed-up, and on a GPU fp16 is faster.
        """
        if precision == "fp32" or self.backend != "onnxruntime" or self.device != "cpu":
            if precision == "int8":
                raise UserError("int8 runs only on the CPU with ONNX Runtime; use --precision auto or fp32")
            return None
        int8_path = weights.with_name(weights.stem + INT8_SUFFIX)
        if not int8_path.is_file():
            if precision == "int8":
                raise UserError(
                    f"no int8 model '{int8_path.name}' beside '{weights}'; make one with "
                    "`python -m training.export WEIGHTS --calibrate DATA_ROOT`, or use --precision auto"
                )
            return None
        metadata = self._init_onnxruntime(_read_bytes(int8_path))
        if metadata.get("weights_sha256") == weights_digest(weights):
            return metadata
        message = f"'{int8_path}' was made from other weights than '{weights}'; re-export it"
        if precision == "int8":
            raise UserError(message + ", or use --precision auto")
        warnings.warn(message + "; running in fp32 meanwhile", stacklevel=4)
        return None

    def _init_float(self, net: UNet) -> None:
        if self.backend == "onnxruntime":
            # exported at load time (under a second) so no .onnx copy can drift from the weights
            buffer = io.BytesIO()
            export_onnx(net, buffer)
            self._init_onnxruntime(buffer.getvalue())
        else:
            self._init_torch(net)

    def _check_onnx_precision(self, precision: str, path: Path) -> None:
        if precision != "auto" and precision != self.precision:
            raise UserError(
                f"'{path}' is an {self.precision} model, not {precision}; use --precision auto with it"
            )

    def _init_onnxruntime(self, data: bytes) -> dict[str, str]:
        """Open an ORT session to run; returns the model's custom metadata."""
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise UserError(
                "onnxruntime is not installed; `pip install onnxruntime` or use a .safetensors model"
            ) from exc
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CPUExecutionProvider"]
        if self.device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            session = ort.InferenceSession(data, sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises several unrelated types for a bad file
            raise UserError(
                f"could not load the ONNX model: {_first_line(exc)}; re-export it with export_onnx"
            ) from exc
        input_name = session.get_inputs()[0].name
        self._run = lambda batch: session.run(None, {input_name: batch})[0]
        metadata = dict(session.get_modelmeta().custom_metadata_map)
        self.precision = metadata.get("precision", "fp32")
        return metadata

    def _init_torch(self, net: UNet) -> None:
        self.precision = "fp16" if self.backend == "torch-cuda" else "fp32"
        if self.backend == "torch-cuda":
            torch.backends.cudnn.benchmark = True  # frame size is fixed, so autotuning pays off
            net = net.to("cuda").half().to(memory_format=torch.channels_last)

            def run(batch: np.ndarray) -> np.ndarray:
                x = torch.from_numpy(batch).to("cuda", non_blocking=True).half()
                with torch.inference_mode():
                    out = net(x.contiguous(memory_format=torch.channels_last))
                return out.float().cpu().numpy()

        else:
            torch.set_num_threads(self.threads)
            net = net.to(memory_format=torch.channels_last)  # 10-30% faster on CPU

            def run(batch: np.ndarray) -> np.ndarray:
                x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
                with torch.inference_mode():
                    return net(x).numpy()

        self._run = run

    # --- per frame ---------------------------------------------------------------------------

    def input_size(self, frame_width: int, frame_height: int) -> tuple[int, int]:
        """Model input ``(w, h)``: the frame scaled so its long side is ``long_side``.

        The aspect ratio is kept because the network was trained on undistorted people; a
        squashed 16:9 frame makes everyone look thin and costs accuracy.
        """
        return long_side_size(frame_width, frame_height, self.long_side)

    def preprocess(self, frame_bgr: np.ndarray) -> np.ndarray:
        """BGR frame to the normalised RGB NCHW float32 batch the network expects."""
        small = _shrink(frame_bgr, self.input_size(frame_bgr.shape[1], frame_bgr.shape[0]))
        rgb = small[:, :, ::-1].astype(np.float32)
        rgb *= _SCALE
        rgb += _OFFSET
        return np.ascontiguousarray(rgb.transpose(2, 0, 1))[None]

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Probability that each pixel is a person, ``(h, w)`` float32 in 0..1."""
        prob = self._probability(batch)
        if self.flip_average:
            prob = 0.5 * (prob + self._probability(batch[..., ::-1])[:, ::-1])
        return prob

    def _probability(self, batch: np.ndarray) -> np.ndarray:
        return _sigmoid(np.asarray(self._run(np.ascontiguousarray(batch)))[0, 0])

    def __call__(self, frame_bgr: np.ndarray) -> np.ndarray:
        return self.infer(self.preprocess(frame_bgr))


def _shrink(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Downscale to ``size`` almost as well as INTER_AREA (what training used) at 1/15 the cost.

    INTER_AREA costs ~2.8 ms on 720p; INTER_LINEAR alone samples only 2x2 pixels, so a 6x
    shrink aliases (mean error 4.1 vs INTER_AREA on a portrait, 12 with sensor noise). Going
    linearly to twice the target, then halving (where bilinear is an exact 2x2 box average),
    gives error 0.9 / 4.9 for 0.19 ms; pyrDown twice + linear: 4.5 / 5.0 for 0.86 ms.
    """
    width, height = size
    if frame.shape[1] > 2 * width and frame.shape[0] > 2 * height:
        frame = cv2.resize(frame, (2 * width, 2 * height), interpolation=cv2.INTER_LINEAR)
    if (frame.shape[1], frame.shape[0]) == size:
        return frame
    return cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR)


def shipped_models() -> list[str]:
    """Names of the models bundled with the package, usable as ``--model NAME``."""
    return sorted(path.stem for path in WEIGHTS_DIR.glob("*.safetensors"))


def model_option_help() -> str:
    """The help text of every ``--model`` option, naming the shipped models and the default."""
    return (
        f"A shipped model's name ({', '.join(shipped_models())}) or a weights file (.safetensors, .pt "
        f"or .onnx) [default: {DEFAULT_CONFIG}]."
    )


def model_path(model: str | Path | None) -> Path:
    """The weights file for ``--model``: a shipped model's name, a path, or None for the default."""
    if model is None:
        return DEFAULT_WEIGHTS
    if str(model) in shipped_models():
        return WEIGHTS_DIR / f"{model}.safetensors"
    return Path(model)


def _check_model_file(path: Path, is_default: bool) -> None:
    if path.is_file():
        if path.suffix.lower() not in (".safetensors", ".pt", ".onnx"):
            raise UserError(f"model file '{path}' has an unknown type; use a .safetensors, .pt or .onnx file")
        return
    if is_default:
        raise UserError(
            f"the bundled model weights '{path}' are missing; reinstall deepbg-live or pass --model PATH"
        )
    names = ", ".join(shipped_models())
    raise UserError(f"model file '{path}' not found; check the path given to --model, or use one of: {names}")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"could not read model file '{path}': {exc.strerror}; check its permissions") from exc


def _load_torch_model(path: Path) -> UNet:
    """Load our weights safely (no pickled code) and turn any failure into a UserError."""
    try:
        net, _ = load_weights(path)
    except Exception as exc:  # safetensors/torch/json raise many types for a wrong file
        raise UserError(
            f"could not load model '{path}': {_first_line(exc)}; pass a deepbg-live .safetensors/.pt "
            "model (see `python -m training`)"
        ) from exc
    return net


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
