"""Model files: which one ``--model`` names, the ONNX exports beside it, and what an ONNX file records.

Weights ``NAME.safetensors`` (or ``.pt``) may have two exports beside them, written by
``python -m training.export``: ``NAME.onnx`` (fp32) and ``NAME.int8.onnx``. Each records the
SHA-256 of the weights it was made from, so that a runtime uses it only with exactly those. The
shipped models carry both (int8 where it pays), so running one needs neither torch nor an export.

Torch-free (and ONNX-Runtime-free), so the command line can list the shipped models and a runtime
can pick its file without importing the network.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from deepbg_live.errors import UserError

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL = "realtime"  # the shipped model ``--model`` defaults to
DEFAULT_WEIGHTS = WEIGHTS_DIR / f"{DEFAULT_MODEL}.safetensors"
FP32_SUFFIX = ".onnx"  # realtime.safetensors -> realtime.onnx, made by training.export
INT8_SUFFIX = ".int8.onnx"  # realtime.safetensors -> realtime.int8.onnx, made by training.export --calibrate
WEIGHTS_SHA256 = "weights_sha256"  # the metadata key that ties an export to its weights
MODEL_SUFFIXES = (".safetensors", ".pt", ".onnx")
METADATA_PROPS = 14  # ModelProto's field number for metadata_props (onnx.proto)


def shipped_models() -> list[str]:
    """Names of the models bundled with the package, usable as ``--model NAME``."""
    return sorted(path.stem for path in WEIGHTS_DIR.glob("*.safetensors"))


def model_option_help() -> str:
    """The help text of every ``--model`` option, naming the shipped models and the default."""
    return (
        f"A shipped model's name ({', '.join(shipped_models())}) or a weights file (.safetensors, .pt "
        f"or .onnx) [default: {DEFAULT_MODEL}]."
    )


def model_path(model: str | Path | None) -> Path:
    """The weights file for ``--model``: a shipped model's name, a path, or None for the default."""
    if model is None:
        return DEFAULT_WEIGHTS
    if str(model) in shipped_models():
        return WEIGHTS_DIR / f"{model}.safetensors"
    return Path(model)


def is_onnx(path: Path) -> bool:
    return path.suffix.lower() == ".onnx"


def is_shipped(path: Path) -> bool:
    """True for the weights of a model bundled with the package (whose exports must be there too)."""
    return path.suffix == ".safetensors" and path.resolve().parent == WEIGHTS_DIR.resolve()


def fp32_path(weights: Path) -> Path:
    """Where the fp32 ONNX export of ``weights`` lives: beside it, as ``NAME.onnx``."""
    return weights.with_name(weights.stem + FP32_SUFFIX)


def int8_path(weights: Path) -> Path:
    """Where the int8 export of ``weights`` lives: beside it, as ``NAME.int8.onnx``."""
    return weights.with_name(weights.stem + INT8_SUFFIX)


def weights_digest(path: str | Path) -> str:
    """SHA-256 of a weights file: what ties an ONNX export to the weights it was made from."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def made_from(model: bytes, weights: Path) -> bool:
    """True when the ONNX ``model`` records exactly the SHA-256 of ``weights``."""
    return onnx_metadata(model).get(WEIGHTS_SHA256) == weights_digest(weights)


def check_model_file(path: Path, is_default: bool) -> None:
    """Refuse a missing file or one of an unknown type, saying what to pass instead."""
    if path.is_file():
        if path.suffix.lower() not in MODEL_SUFFIXES:
            raise UserError(f"model file '{path}' has an unknown type; use a .safetensors, .pt or .onnx file")
        return
    if is_default:
        raise UserError(
            f"the bundled model weights '{path}' are missing; reinstall deepbg-live or pass --model PATH"
        )
    names = ", ".join(shipped_models())
    raise UserError(f"model file '{path}' not found; check the path given to --model, or use one of: {names}")


def read_model_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise UserError(f"could not read model file '{path}': {exc.strerror}; check its permissions") from exc


def onnx_metadata(model: bytes) -> dict[str, str]:
    """An ONNX model's metadata, read from its protobuf bytes: no session, and no ``onnx`` package.

    This is how a stale int8 file is told apart without loading it: the graph is skipped, and only
    the top-level ``metadata_props`` entries (key = field 1, value = field 2) are decoded.
    """
    try:
        entries = [
            dict(_fields(entry)) for number, entry in _fields(memoryview(model)) if number == METADATA_PROPS
        ]
        return {bytes(e.get(1, b"")).decode(): bytes(e.get(2, b"")).decode() for e in entries}
    except (IndexError, ValueError) as exc:
        raise UserError("could not read the ONNX model: it is not an ONNX file; re-export it") from exc


def with_metadata(model: bytes, entries: dict[str, str]) -> bytes:
    """``model`` with ``entries`` added to its metadata, without the ``onnx`` package.

    A protobuf message may be extended by appending fields, so each entry is one
    ``metadata_props`` field (a key/value message) written after the model's bytes.
    """
    extra = bytearray()
    for key, value in entries.items():
        entry = _field(1, key.encode()) + _field(2, value.encode())
        extra += _field(METADATA_PROPS, entry)
    return model + bytes(extra)


def _field(number: int, payload: bytes) -> bytes:
    """One length-delimited protobuf field (wire type 2)."""
    return _encode_varint(number << 3 | 2) + _encode_varint(len(payload)) + payload


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _fields(data: memoryview):
    """``(field number, bytes)`` for each length-delimited field of a protobuf message; others skipped."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        wire_type = key & 7
        if wire_type == 0:
            _, pos = _varint(data, pos)
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        elif wire_type == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            yield key >> 3, data[pos : pos + length]
            pos += length
        else:
            raise ValueError(f"unexpected protobuf wire type {wire_type}")


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        pos, shift = pos + 1, shift + 7
        if byte < 0x80:
            return value, pos
