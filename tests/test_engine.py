"""Segmenter: loads our model files safely, keeps the frame's shape, backends agree."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from deepbg_live import model_files
from deepbg_live.engine import Segmenter
from deepbg_live.errors import UserError
from deepbg_live.export import export_onnx
from deepbg_live.geometry import long_side_size
from deepbg_live.model import CONFIGS, build_model, normalise, save_weights
from deepbg_live.runtimes import Backend, Precision, Runtime, onnx_runtime, open_runtime, resolve_device
from evaluation.metrics import iou


@pytest.fixture(scope="module")
def model(frame) -> torch.nn.Module:
    """A randomly initialised realtime model whose head is rescaled to logits of mean 0 and spread 2
    on the test frame, so its probabilities cover 0..1 instead of sitting at 0.5 (backend comparisons
    would be vacuous)."""
    torch.manual_seed(0)
    model = build_model("realtime").eval()
    size = long_side_size(frame.shape[1], frame.shape[0], CONFIGS["realtime"].long_side)
    shrunk = normalise(cv2.resize(frame, size, interpolation=cv2.INTER_AREA)[:, :, ::-1].copy())
    with torch.no_grad():
        model.head.bias.zero_()
        logits = model(shrunk)
        model.head.weight.mul_(2.0 / logits.std())
        model.head.bias.fill_(-2.0 * logits.mean() / logits.std())
    return model


@pytest.fixture(scope="module")
def weights(model, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("model") / "m.safetensors"
    save_weights(model, path)
    return str(path)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def ort_segmenter(weights) -> Segmenter:
    return Segmenter(weights, device="cpu")


def test_cpu_device_defaults_to_onnxruntime_with_the_configs_resolution(ort_segmenter):
    assert ort_segmenter.backend == "onnxruntime"
    assert ort_segmenter.long_side == CONFIGS["realtime"].long_side


def test_output_is_a_probability_map_at_model_resolution(weights, frame):
    prob = Segmenter(weights, device="cpu", long_side=192)(frame)
    assert prob.dtype == np.float32
    assert prob.shape == (144, 192)
    assert prob.min() >= 0.0 and prob.max() <= 1.0


@pytest.mark.parametrize(
    ("width", "height", "expected"),
    [(1280, 720, (192, 108)), (640, 480, (192, 144)), (480, 640, (144, 192)), (1920, 1080, (192, 108))],
)
def test_input_size_keeps_the_aspect_ratio(weights, width, height, expected):
    assert Segmenter(weights, device="cpu", long_side=192).input_size(width, height) == expected


def test_odd_frame_sizes_work(ort_segmenter):
    frame = np.random.default_rng(1).integers(0, 256, (333, 517, 3), dtype=np.uint8)
    w, h = ort_segmenter.input_size(517, 333)
    assert ort_segmenter(frame).shape == (h, w)


def test_preprocess_matches_the_models_normalisation(ort_segmenter):
    width = ort_segmenter.long_side
    height = width * 3 // 4
    frame = np.random.default_rng(2).integers(0, 256, (height, width, 3), dtype=np.uint8)  # no resize needed
    batch = ort_segmenter.preprocess(frame)
    expected = normalise(frame[:, :, ::-1].copy()).numpy()
    assert batch.shape == (1, 3, height, width) and batch.dtype == np.float32
    np.testing.assert_allclose(batch, expected, atol=1e-5)


def test_torch_and_onnxruntime_backends_agree(weights, ort_segmenter, frame):
    torch_segmenter = Segmenter(weights, device="cpu", backend="torch-cpu")
    assert torch_segmenter.backend == "torch-cpu"
    prob = ort_segmenter(frame)
    assert prob.std() > 0.05  # a meaningful comparison, not two flat maps
    np.testing.assert_allclose(torch_segmenter(frame), prob, atol=1e-4)


def test_training_checkpoints_load_without_pickled_code(model, tmp_path, ort_segmenter, frame):
    path = tmp_path / "last.pt"
    torch.save({"config": json.dumps(asdict(model.config)), "model": model.state_dict()}, path)
    segmenter = Segmenter(path, device="cpu", backend="torch-cpu")
    np.testing.assert_allclose(segmenter(frame), ort_segmenter(frame), atol=1e-4)


def test_onnx_file_input_reads_long_side_from_metadata(model, tmp_path, ort_segmenter, frame):
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    onnx_segmenter = Segmenter(path, device="cpu")
    assert onnx_segmenter.backend == "onnxruntime"
    assert onnx_segmenter.long_side == CONFIGS["realtime"].long_side
    np.testing.assert_allclose(onnx_segmenter(frame), ort_segmenter(frame), atol=1e-5)


def test_export_to_memory_gives_dynamic_sizes(weights):
    import onnxruntime as ort

    session = ort.InferenceSession(export_onnx(build_model("realtime")), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    for h, w in [(108, 192), (144, 192), (37, 53)]:
        out = session.run(None, {"image": np.zeros((1, 3, h, w), np.float32)})[0]
        assert out.shape == (1, 1, h, w)
    assert session.get_modelmeta().custom_metadata_map["long_side"] == str(CONFIGS["realtime"].long_side)


def test_the_long_side_can_change_between_frames(ort_segmenter, frame):
    # The live quality controller lowers it while a camera runs; the ONNX model takes any size.
    full = ort_segmenter.long_side
    try:
        ort_segmenter.long_side = 112
        assert ort_segmenter(frame).shape == (84, 112)
        with pytest.raises(UserError, match="too small"):
            ort_segmenter.long_side = 8
        assert ort_segmenter.long_side == 112
    finally:
        ort_segmenter.long_side = full
    assert ort_segmenter(frame).shape == long_side_size(640, 480, full)[::-1]


def test_explicit_long_side_overrides_the_config(weights, frame):
    segmenter = Segmenter(weights, device="cpu", long_side=128, backend="torch-cpu")
    assert segmenter(frame).shape == (96, 128)


def test_missing_model_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="nope.safetensors"):
        Segmenter(tmp_path / "nope.safetensors", device="cpu")


def test_missing_default_weights_say_how_to_fix_it(tmp_path, monkeypatch):
    monkeypatch.setattr(model_files, "DEFAULT_WEIGHTS", tmp_path / "realtime.safetensors")
    with pytest.raises(UserError, match="--model"):
        Segmenter(device="cpu")


def test_a_shipped_model_can_be_named_instead_of_given_as_a_path():
    assert model_files.DEFAULT_WEIGHTS.stem in model_files.shipped_models()
    for name in model_files.shipped_models():
        assert model_files.model_path(name) == model_files.WEIGHTS_DIR / f"{name}.safetensors"
    assert model_files.model_path(None) == model_files.DEFAULT_WEIGHTS
    assert model_files.model_path("my/own.onnx") == Path("my/own.onnx")


def test_a_file_that_is_not_a_model_is_a_user_error(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"this is not a weights file")
    with pytest.raises(UserError, match="junk.safetensors"):
        Segmenter(path, device="cpu")


def test_unknown_model_type_is_a_user_error(tmp_path):
    path = tmp_path / "model.h5"
    path.write_bytes(b"x")
    with pytest.raises(UserError, match="model.h5"):
        Segmenter(path, device="cpu")


def test_unknown_backend_is_a_user_error(weights):
    with pytest.raises(UserError, match="backend"):
        Segmenter(weights, device="cpu", backend="tensorrt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_a_user_error():
    with pytest.raises(UserError, match="--device cpu"):
        resolve_device("cuda")


def test_auto_device_picks_what_exists():
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"


# --- int8 -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.imread(str(Path(model_files.__file__).parent / "samples" / "astronaut.jpg"))


def shipped_int8() -> Path:
    return model_files.DEFAULT_WEIGHTS.with_name(model_files.DEFAULT_WEIGHTS.stem + model_files.INT8_SUFFIX)


def test_the_shipped_model_runs_in_int8_on_a_cpu_by_default():
    segmenter = Segmenter(device="cpu")
    assert (segmenter.backend, segmenter.precision) == ("onnxruntime", "int8")


def test_the_shipped_int8_file_was_quantised_from_the_shipped_weights():
    import onnxruntime as ort

    session = ort.InferenceSession(str(shipped_int8()), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["weights_sha256"] == model_files.weights_digest(model_files.DEFAULT_WEIGHTS)
    assert meta["precision"] == "int8"


def test_flip_average_is_the_mean_of_the_frames_and_its_mirror_images_predictions(
    ort_segmenter, weights, frame
):
    averaged = Segmenter(weights, device="cpu", flip_average=True)(frame)
    plain = ort_segmenter(frame)
    mirrored_back = ort_segmenter(np.ascontiguousarray(frame[:, ::-1]))[:, ::-1]
    assert np.abs(averaged - 0.5 * (plain + mirrored_back)).max() < 0.01
    assert np.abs(averaged - plain).mean() > 0.01, "an asymmetric network's mirror image changes the result"


def test_int8_runs_at_the_weights_resolution_without_building_the_torch_network():
    # without torch imported at all, no torch network can have been built
    script = (
        "import sys; from deepbg_live.runtimes import open_runtime; runtime = open_runtime(device='cpu'); "
        "print(runtime.precision, runtime.long_side, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["int8", str(CONFIGS["realtime"].long_side), "False"]


def test_int8_and_fp32_find_the_same_person_in_a_photo(astronaut):
    int8 = Segmenter(device="cpu", precision="int8")(astronaut)
    fp32 = Segmenter(device="cpu", precision="fp32")(astronaut)
    person, same = fp32 > 0.5, (int8 > 0.5) == (fp32 > 0.5)
    assert 0.2 < person.mean() < 0.8  # a real person fills the photo, so agreement means something
    assert iou(int8, fp32) > 0.97
    assert same.mean() > 0.98 and np.abs(int8 - fp32).mean() < 0.02


def test_fp32_precision_leaves_the_int8_file_unused():
    assert Segmenter(device="cpu", precision="fp32").precision == "fp32"


def test_an_int8_file_made_from_other_weights_is_ignored_with_a_warning(weights, tmp_path):
    own = tmp_path / "m.safetensors"
    own.write_bytes(Path(weights).read_bytes())
    (tmp_path / f"m{model_files.INT8_SUFFIX}").write_bytes(shipped_int8().read_bytes())
    with pytest.warns(UserWarning, match="other weights"):
        assert Segmenter(own, device="cpu").precision == "fp32"
    with pytest.raises(UserError, match="re-export it"):
        Segmenter(own, device="cpu", precision="int8")


def test_a_users_fp32_export_beside_the_weights_is_used_only_if_made_from_them(weights, model, tmp_path):
    own = tmp_path / "m.safetensors"
    own.write_bytes(Path(weights).read_bytes())
    fp32 = model_files.fp32_path(own)
    fp32.write_bytes(model_files.fp32_path(model_files.DEFAULT_WEIGHTS).read_bytes())  # other weights
    with pytest.warns(UserWarning, match="exporting the weights in memory meanwhile"):
        assert open_runtime(own, device="cpu").long_side == model.config.long_side
    fp32.write_bytes(
        model_files.with_metadata(export_onnx(model), {"weights_sha256": model_files.weights_digest(own)})
    )
    loaded = open_runtime(own, device="cpu")  # used as it is: no warning, no export
    assert (loaded.name, loaded.precision) == (Backend.ONNXRUNTIME, Precision.FP32)


def test_asking_for_int8_without_an_int8_file_says_how_to_make_one(weights):
    with pytest.raises(UserError, match="training.export"):
        Segmenter(weights, device="cpu", precision="int8")


def test_int8_runs_only_with_onnxruntime(weights):
    with pytest.raises(UserError, match="ONNX Runtime"):
        Segmenter(device="cpu", backend="torch-cpu", precision="int8")
    assert Segmenter(device="cpu", backend="torch-cpu").precision == "fp32"


def test_an_onnx_model_file_reports_its_own_precision():
    assert Segmenter(shipped_int8(), device="cpu").precision == "int8"
    with pytest.raises(UserError, match="int8 model, not fp32"):
        Segmenter(shipped_int8(), device="cpu", precision="fp32")


def test_an_unknown_precision_is_a_user_error():
    with pytest.raises(UserError, match="precision"):
        Segmenter(device="cpu", precision="fp8")


# --- the runtime choice ---------------------------------------------------------------------------


def test_a_stale_int8_file_gives_fp32_with_a_warning_and_is_never_loaded(weights, tmp_path, monkeypatch):
    own = tmp_path / "m.safetensors"
    own.write_bytes(Path(weights).read_bytes())
    stale = shipped_int8().read_bytes()
    (tmp_path / f"m{model_files.INT8_SUFFIX}").write_bytes(stale)
    loaded = []
    create_session = onnx_runtime.create_session

    def recording_create_session(model, *args, **kwargs):
        loaded.append(model)
        return create_session(model, *args, **kwargs)

    monkeypatch.setattr(onnx_runtime, "create_session", recording_create_session)
    with pytest.warns(UserWarning, match="other weights"):
        runtime = open_runtime(own, device="cpu")
    assert (runtime.name, runtime.precision) == (Backend.ONNXRUNTIME, Precision.FP32)
    assert len(loaded) == 1 and loaded[0] != stale


def test_a_matching_int8_file_is_chosen_on_a_cpu_unless_fp32_is_asked_for():
    assert open_runtime(device="cpu").precision == Precision.INT8
    assert open_runtime(device="cpu", precision="fp32").precision == Precision.FP32
    assert open_runtime(device="cpu", backend="torch-cpu").precision == Precision.FP32


@pytest.mark.parametrize("backend", ["torch-cpu", "torch-cuda"])
def test_an_onnx_file_refuses_the_torch_backends(backend):
    with pytest.raises(UserError, match="cannot run an .onnx model"):
        open_runtime(shipped_int8(), device="cpu", backend=backend)


@pytest.mark.parametrize(
    ("model", "kwargs", "message"),
    [
        (None, {"precision": "fp8"}, "unknown precision 'fp8'"),
        (None, {"precision": "fp16"}, "unknown precision 'fp16'"),  # what a GPU runs, not a choice
        (None, {"precision": "int8", "backend": "torch-cpu"}, "int8 runs only on the CPU with ONNX Runtime"),
        ("int8-file", {"precision": "fp32"}, "is an int8 model, not fp32"),
    ],
)
def test_precision_errors_say_what_to_do(model, kwargs, message):
    with pytest.raises(UserError, match=message):
        open_runtime(shipped_int8() if model else None, device="cpu", **kwargs)


def test_constructing_a_segmenter_leaves_torchs_thread_count_alone(weights):
    before = torch.get_num_threads()
    for backend in ("torch-cpu", "onnxruntime"):
        Segmenter(weights, device="cpu", backend=backend)
        assert torch.get_num_threads() == before


def test_a_segmenter_can_run_an_opened_runtime(weights, ort_segmenter, frame):
    runtime = open_runtime(weights, device="cpu")
    assert isinstance(runtime, Runtime)
    segmenter = Segmenter(runtime, flip_average=True)
    assert segmenter.runtime is runtime and segmenter.flip_average
    assert segmenter.long_side == ort_segmenter.long_side
    with pytest.raises(ValueError, match="already has"):
        Segmenter(runtime, precision="int8")


def test_onnx_metadata_is_read_without_a_session_as_onnx_runtime_reads_it(model):
    import onnxruntime as ort

    for data in (shipped_int8().read_bytes(), export_onnx(model)):
        session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        assert model_files.onnx_metadata(data) == dict(session.get_modelmeta().custom_metadata_map)
    with pytest.raises(UserError, match="not an ONNX file"):
        model_files.onnx_metadata(b"\xff" * 64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_runs_fp16_and_agrees_with_the_cpu(weights, ort_segmenter, frame):
    segmenter = Segmenter(weights, device="cuda")
    assert (segmenter.backend, segmenter.precision) == ("torch-cuda", "fp16")
    np.testing.assert_allclose(segmenter(frame), ort_segmenter(frame), atol=1e-2)
