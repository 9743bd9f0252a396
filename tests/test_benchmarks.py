"""The benchmark suite: its measuring helpers, the reference-model adapter, report writing, and
the quick mode end to end on tiny generated data (no camera, GPU or network; timings are never
asserted, only that they are there)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from benchmarks import cpu_choices, pipeline_speed, reference, report, temporal
from benchmarks.__main__ import main, skipped_parts
from benchmarks.context import Context
from benchmarks.flops import conv_macs, count_macs
from benchmarks.timing import ResourceMeter, run_child, summarise, time_calls

# --- tiny generated data --------------------------------------------------------------------------


def write_pair(folder: Path, name: str, image: np.ndarray, mask: np.ndarray) -> None:
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(folder / "images" / f"{name}.jpg"), image)
    cv2.imwrite(str(folder / "masks" / f"{name}.png"), mask)


def person(left: int, size: tuple[int, int] = (64, 48), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 'person' (a bright rectangle) on a noisy background, and its mask."""
    width, height = size
    image = np.random.default_rng(seed).integers(0, 80, (height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), np.uint8)
    mask[10:44, left : left + 20] = 255
    image[mask > 0] = (200, 180, 160)
    return image, mask


def miniature_data(root: Path, photos: int, clip_frames: int) -> Path:
    """The shared layout in miniature: ``photos`` portraits (every tenth validates) and a DAVIS clip."""
    for i in range(photos):
        write_pair(root / "portraits-tiny", f"p{i:02d}", *person(10 + 2 * i, seed=i))
    for t in range(clip_frames):
        write_pair(root / "video-davis" / "lucia", f"{t:05d}", *person(15 + 3 * t, seed=100 + t))
    return root


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """11 photos (2 in the validation split) and a 6-frame clip."""
    return miniature_data(tmp_path_factory.mktemp("data"), photos=11, clip_frames=6)


class NhwcTwoClass(nn.Module):
    """A reference-like model: NHWC input, two-channel (background, person) logits, NHWC output."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        brightness = x.mean(dim=3, keepdim=True)  # 0..1 input: the bright 'person' scores high
        person_logit = 20 * (brightness - 0.5)
        return torch.cat([-person_logit, person_logit], dim=3)


class NhwcSelfie(nn.Module):
    """MediaPipe selfie's interface in miniature: NHWC RGB in 0..1, one probability channel out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(20 * (x.mean(dim=3, keepdim=True) - 0.5))


@pytest.fixture(scope="module")
def references_dir(tmp_path_factory) -> Path:
    """A shared reference folder holding only a stand-in for MediaPipe selfie, under its file name."""
    folder = tmp_path_factory.mktemp("references")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            NhwcSelfie(), (torch.zeros(1, 24, 32, 3),), str(folder / "mediapipe_selfie.onnx"), dynamo=False
        )
    return folder


@pytest.fixture(scope="module")
def reference_onnx(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ref") / "tiny-ref.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(
            NhwcTwoClass(), (torch.zeros(1, 24, 32, 3),), str(path), dynamo=False, input_names=["img"]
        )
    return path


# --- timing and FLOPs --------------------------------------------------------------------------


def test_summarise_percentiles():
    stats = summarise([float(v) for v in range(1, 101)])
    assert stats["p50_ms"] == pytest.approx(50.5)
    assert stats["p95_ms"] == pytest.approx(95.05)
    assert stats["n"] == 100
    assert np.isnan(summarise([])["p50_ms"])


def test_time_calls_warms_up_then_times_each_call():
    calls = []
    samples = time_calls(lambda: calls.append(1), repeats=5, warmup=2)
    assert len(calls) == 7 and len(samples) == 5
    assert all(s >= 0 for s in samples)


def test_resource_meter_reports_cpu_and_memory():
    with ResourceMeter() as meter:
        sum(i * i for i in range(100_000))
    assert meter.usage.wall_s > 0
    assert meter.usage.cpu_percent >= 0
    assert meter.usage.peak_rss_mb > 0


def test_run_child_counts_the_childs_own_cpu_and_keeps_what_it_printed():
    code = "import sys; sum(range(2_000_000)); sys.stderr.write('12 frames at 3.0 fps'); sys.exit(3)"
    run = run_child([sys.executable, "-c", code])
    assert run.returncode == 3 and run.stderr == "12 frames at 3.0 fps"
    assert run.cpu_s > 0 and run.wall_s > 0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux seeds a child's peak from its parent")
def test_a_childs_peak_memory_is_its_own_not_the_benchmarks():
    held = b"\x01" * 400_000_000  # resident: this process's peak is now over 400 MB
    code = "x = b'1' * 60_000_000"
    run = run_child([sys.executable, "-c", code])
    assert len(held) and 60 <= run.peak_rss_mb < 200


def test_run_child_says_when_the_command_cannot_start():
    run = run_child(["/nonexistent/deepbg-benchmark-child"])
    assert run.returncode == 127


def test_conv_macs_by_hand():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    x = torch.zeros(1, 3, 10, 10)
    assert conv_macs(conv, x, conv(x)) == 8 * 10 * 10 * (3 * 3 * 3)  # outputs x (cin k k)
    up = nn.ConvTranspose2d(8, 4, 2, stride=2)
    y = torch.zeros(1, 8, 5, 5)
    assert conv_macs(up, y, up(y)) == 8 * 5 * 5 * (4 * 2 * 2)  # inputs x (cout k k)
    depthwise = nn.Conv2d(8, 8, 3, padding=1, groups=8)
    z = torch.zeros(1, 8, 10, 10)
    assert conv_macs(depthwise, z, depthwise(z)) == 8 * 10 * 10 * 9


def test_count_macs_sums_every_convolution():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1))
    assert count_macs(model, (1, 3, 6, 6)) == 4 * 36 * 3 + 2 * 36 * 4 * 9


# --- temporal helpers ---------------------------------------------------------------------------


def test_static_camera_clip_moves_mask_exactly_like_image():
    image, mask = person(20)
    rng = np.random.default_rng(0)
    steps = [temporal.sway_matrix(t, 64, 48)[:, 2] for t in range(temporal.SWAY_PERIOD)]
    assert max(np.abs(np.diff(steps, axis=0)).max(axis=0)) < 0.25  # a slow, sub-pixel sway
    frame, truth = temporal.still_frame(image, mask, 17, rng)
    expected = cv2.warpAffine(
        mask,
        temporal.sway_matrix(17, 64, 48),
        (64, 48),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    np.testing.assert_array_equal(truth, expected)
    assert frame.shape == image.shape and frame.dtype == np.uint8


def test_truth_as_prediction_is_perfectly_stable_and_lag_free():
    image, mask = person(20)
    rng = np.random.default_rng(0)
    truths = [temporal.still_frame(image, mask, t, rng)[1] for t in range(8)]
    scores = temporal.stability(truths, truths)
    assert scores["flicker"] == 0.0 and scores["dtssd"] == 0.0
    assert scores["iou"] == 1.0 and scores["lag_frames"] == 0


def test_lag_is_found_in_a_delayed_output():
    truths = [person(5 + 4 * t)[1] for t in range(10)]
    delayed = truths[:2] + truths[:-2]
    assert temporal.lag_frames(delayed, truths) == 2


# --- reference-model adapter --------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [(1, 1, 6, 8), (1, 6, 8, 1), (1, 6, 8), (6, 8)],
    ids=["NCHW-1", "NHWC-1", "NHW", "HW"],
)
def test_single_channel_outputs_of_any_layout(shape):
    prob = np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8)
    np.testing.assert_allclose(reference.to_probability(prob.reshape(shape)), prob)


def test_logits_and_two_class_outputs_become_probabilities():
    logits = np.array([[-10.0, 0.0, 10.0]], np.float32)
    np.testing.assert_allclose(reference.to_probability(logits), [[0.0, 0.5, 1.0]], atol=1e-4)
    two = np.stack([-logits, logits])[None]  # NCHW, channel 1 = person
    np.testing.assert_allclose(reference.to_probability(two), [[0.0, 0.5, 1.0]], atol=1e-4)
    np.testing.assert_allclose(
        reference.to_probability(np.moveaxis(two, 1, -1)), [[0.0, 0.5, 1.0]], atol=1e-4
    )


def test_layout_and_size_detection():
    assert reference.detect_layout([1, 3, 256, 256]) == "nchw"
    assert reference.detect_layout([1, "h", "w", 3]) == "nhwc"
    assert reference.fixed_size([1, 256, 144, 3], "nhwc") == (144, 256)
    assert reference.fixed_size([1, 3, "height", "width"], "nchw") is None
    assert reference.dynamic_size(1280, 720) == (256, 128)
    assert reference.parse_size("256x144") == (256, 144)


def test_onnx_reference_model_runs_on_any_frame(reference_onnx):
    model = reference.OnnxSegmenter(reference.ReferenceSettings(str(reference_onnx)), threads=1)
    assert model.layout == "nhwc" and model.fixed_size == (32, 24)
    image, mask = person(20)
    prob = model(image)
    assert prob.shape == (24, 32) and prob.dtype == np.float32
    small_mask = cv2.resize(mask, (32, 24), interpolation=cv2.INTER_NEAREST) > 0
    assert prob[small_mask].mean() > 0.9 and prob[~small_mask].mean() < 0.1


# --- report -------------------------------------------------------------------------------------


def fake_results() -> dict:
    metrics = {
        "iou": 0.9,
        "miou": 0.93,
        "dice": 0.95,
        "pixel_acc": 0.97,
        "boundary_f": 0.7,
        "mad": 0.04,
        "pairs": 3,
    }
    variant = {"flicker": 0.01, "dtssd": 0.02, "iou": 0.9, "mad": 0.04, "lag_frames": 0}
    live = {
        "resolution": "640x480",
        "mode": "live",
        "frames": 58,
        "dropped": 2,
        "fps": 29.5,
        "cpu_percent": 150.0,
    }
    stage_times = {f"{s}_p{q}_ms": 1.0 for s in ("decode", "capture", "inference") for q in (50, 95)}
    stage_times["inference_cpu_p50_ms"] = 0.5  # measured per stage thread; absent for decode
    side = {"fps": 40.0, "cpu_ms_per_frame": 30.0, "cpu_percent": 120.0, "wall_s": 1.5, "dropped": 0}
    side["peak_rss_mb"] = 180.0
    race = {
        "resolution": "640x480",
        "frames": 90,
        "repeats": 1,
        "reference_threads": 1,
        "commands": {
            "ours": "deepbg-live --input clip.mp4",
            "reference": "python -m benchmarks.reference_loop",
        },
        "summary": {
            mode: {"ours": side, "reference": side | {"fps": 80.0, "cpu_ms_per_frame": 20.0}}
            for mode in ("startup", "file", "live")
        },
        "ratios": {
            "file_fps": 0.5,
            "file_cpu_ms_per_frame": 1.5,
            "startup_wall_s": 1.0,
            "live_cpu_percent": 1.0,
            "live_steady_cpu_percent": None,
        },
        "launch": {
            "help": {"wall_s": 0.21, "cpu_s": 0.2, "peak_rss_mb": 60.0},
            "photo": {"wall_s": 0.74, "cpu_s": 0.9, "peak_rss_mb": 150.0},
        },
        "launch_commands": {"help": "deepbg-live --help", "photo": "deepbg-live --input p.jpg"},
    }
    choices = {
        "resolution": "640x480",
        "fps": 30,
        "crf": 23,
        "model": [
            {"paced": True, "threads": 2, "spinning": s, "wall_p50_ms": 9.0, "wall_p95_ms": 12.0}
            | {"cpu_ms_per_frame": 40.0 if s else 17.0, "cpu_percent": 50.0}
            for s in (True, False)
        ],
        "x264": [
            {"preset": p, "cpu_ms_per_frame": 4.0, "wall_ms_per_frame": 3.0, "kbit_s": 900.0}
            | {"bytes": 100_000, "psnr_y_db": 41.5}
            for p in cpu_choices.PRESETS
        ],
        "x264_threads": [
            {"preset": "ultrafast", "threads": t, "cpu_ms_per_frame": 3.0, "wall_ms_per_frame": 2.0}
            for t in (1, "auto")
        ],
    }
    return {
        "meta": {
            "system": {
                "command": "python -m benchmarks --quick",
                "date": "2025-01-01T00:00:00+00:00",
                "commit": "abc1234",
                "cpu": "Test CPU",
                "cores": 2,
                "memory_gb": 8.0,
                "load_average_1m": 0.1,
                "libraries": {"torch": "2.13"},
            },
            "quick": True,
            "threads": 2,
            "weights": "random-init",
            "notes": ["a caveat"],
            "duration_s": 12.0,
        },
        "model": {
            "threads": 2,
            "rows": [
                {"config": "realtime", "backend": b, "input": "192x144", "params": 490_000, "gmacs": 0.32}
                | {"p50_ms": 10.0, "p95_ms": 12.0, "samples_ms": [9.0, 10.0, 12.0]}
                for b in ("torch-cpu", "onnxruntime")
            ],
        },
        "pipeline": {
            "settings": {"background": "blur"},
            "backend": "onnxruntime",
            "long_side": 192,
            "threads": 2,
            "rows": [
                {
                    "resolution": "640x480",
                    "mode": "file",
                    "fps": 40.0,
                    "cpu_percent": 180.0,
                    "peak_rss_mb": 400.0,
                }
                | stage_times,
                live | {"latency_p50_ms": 50.0, "latency_p95_ms": 70.0, "latencies_ms": [45.0, 50.0, 70.0]},
            ],
            "reference_loop": race,
        },
        "cpu_choices": choices,
        "accuracy": {
            "settings": {"images": None, "masks": None},
            "pairs": 3,
            "models": {"ours": {"per_dataset": {"portraits": metrics}, "overall": metrics}},
        },
        "temporal": {
            "settings": {"refine": True},
            "rows": [
                {"model": "ours", "sequence": "still/a", "kind": "still", "frames": 30, "strength": 0.5}
                | {"off": variant, "on": variant | {"flicker": 0.004}}
            ],
            "summary": {"ours": {"still": {"off": variant, "on": variant | {"flicker": 0.004}}}},
        },
        "training": {
            "settings": {"crop": 128, "batch_size": 8},
            "device": "cpu",
            "threads": 2,
            "rows": [{"config": "realtime", "images_per_s": 30.0, "p50_ms": 266.0, "p95_ms": 270.0, "n": 3}],
        },
    }


def test_report_writes_json_markdown_and_plots(tmp_path):
    path = report.write_all(fake_results(), tmp_path)
    text = path.read_text()
    for title in ("Model throughput", "Pipeline", "Accuracy", "Temporal stability", "Training throughput"):
        assert title in text
    assert "a caveat" in text and "| realtime | onnxruntime | 192x144 |" in text
    assert "0.01 / 0.004" in text  # flicker, smoothing off / on
    assert "1.0 / 1.0 (0.5 CPU)" in text and "| 1.0 / 1.0 |" in text  # CPU-ms only where measured
    assert "| file to file, peak RSS MB | 180 | 180 | – | ours <= 250 |" in text
    assert "| `deepbg-live --help` | 0.21 | 0.2 | 60 | <= 0.5 s |" in text
    assert "| file to file, fps | 40 | 80 | 0.5 | >= 1.5 |" in text
    assert "| file to file, CPU-ms per frame | 30 | 20 | 1.5 | <= 0.67 |" in text
    assert "| 30 fps | 2 | off | 9 | 12 | 17 | 50 |" in text
    assert all(f"| {preset} | 4 |" in text for preset in cpu_choices.PRESETS)
    assert "| ultrafast | auto | 3 | 2 |" in text
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["meta"]["system"]["cpu"] == "Test CPU"
    for plot in ("model_latency", "pipeline_fps", "pipeline_latency", "accuracy", "flicker", "training"):
        assert (tmp_path / f"{plot}.png").stat().st_size > 1000
        assert f"({plot}.png)" in text


# --- the quick mode end to end ------------------------------------------------------------------


def test_quick_mode_on_tiny_generated_input(tmp_path, data_root, reference_onnx):
    out = tmp_path / "bench"
    args = ["--quick", "--out", str(out), "--data-root", str(data_root), "--resolutions", "64x48"]
    args += ["--reference", str(reference_onnx), "--no-progress"]
    args += ["--references", str(tmp_path / "no-references")]  # as for a user: no shared models
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert set(results) >= {"meta", "model", "pipeline", "cpu_choices", "accuracy", "temporal", "training"}
    assert "reference" in results and "reference_loop" not in results["pipeline"]  # no shared models
    assert results["meta"]["quick"] and results["meta"]["system"]["libraries"]["torch"]
    assert {r["backend"] for r in results["model"]["rows"]} >= {
        "torch-cpu",
        "onnxruntime",
        "onnxruntime-int8",
    }
    assert {(r["resolution"], r["mode"]) for r in results["pipeline"]["rows"]} == {
        ("64x48", "file"),
        ("64x48", "live"),
    }
    assert all(r["frames"] > 0 and r["fps"] > 0 for r in results["pipeline"]["rows"])
    live = next(r for r in results["pipeline"]["rows"] if r["mode"] == "live")
    assert live["lowest_quality"].startswith("q ")  # the live pass runs the adaptive controller
    assert set(results["accuracy"]["models"]) == {"ours", "tiny-ref"}
    assert results["accuracy"]["pairs"] == 8  # two validation photos and the 'lucia' clip
    assert results["accuracy"]["models"]["tiny-ref"]["overall"]["iou"] > 0.8  # the reference can see it
    kinds = {(r["model"], r["kind"]) for r in results["temporal"]["rows"]}
    assert kinds == {(m, k) for m in ("ours", "tiny-ref") for k in ("video", "still")}
    assert results["training"]["rows"][0]["images_per_s"] > 0
    assert set(results["reference"]["latency"]) == {"ours", "tiny-ref"}
    assert [row["model"] for row in results["reference"]["comparison"]] == ["ours", "tiny-ref"]
    assert any("No reference models at" in note for note in results["meta"]["notes"])
    assert (out / "report.md").is_file() and (out / "flicker.png").is_file()
    assert not (out / ".scratch").exists()  # generated clips and stand-in weights are cleaned up


def test_the_suite_on_a_fresh_clone_runs_what_it_can_and_names_what_it_skipped(tmp_path):
    out = tmp_path / "bench"
    args = ["--quick", "--out", str(out), "--data-root", str(tmp_path / "no-data"), "--no-progress"]
    args += ["--references", str(tmp_path / "no-references"), "--resolutions", "64x48", "--configs", "fast"]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert {"model", "pipeline", "training"} <= set(results) and "accuracy" not in results
    skipped = [line for line in result.output.splitlines() if line.startswith("skipped ")]
    names = [line.split(":")[0] for line in skipped]
    assert names == ["skipped accuracy", "skipped temporal", "skipped reference-loop"]
    assert all("--data-root" in line for line in skipped[:2]) and "--references" in skipped[2]
    assert any("Skipped accuracy" in note for note in results["meta"]["notes"])


# --- ours against the reference loop, and the CPU choices -------------------------------------------


def test_the_reference_loop_is_skipped_with_a_reason_without_its_model(tmp_path, references_dir):
    ctx = Context(out=tmp_path, data_root=tmp_path)
    reason = skipped_parts(ctx, tmp_path / "no-references")["reference-loop"]
    assert "mediapipe_selfie.onnx" in reason and "--references" in reason
    assert "reference-loop" not in skipped_parts(ctx, references_dir)


def test_ours_races_the_reference_loop_and_times_its_own_launch_on_a_tiny_clip(tmp_path, references_dir):
    ctx = Context(out=tmp_path, threads=1, progress=False)
    settings = pipeline_speed.PipelineSettings(
        resolutions=["64x48"], references=str(references_dir), race_frames=6, race_repeats=1
    )
    race = pipeline_speed.race_reference(ctx, settings)
    assert set(race["ratios"]) == {
        "file_fps",
        "file_cpu_ms_per_frame",
        "startup_wall_s",
        "live_cpu_percent",
        "live_steady_cpu_percent",
    }
    assert all(value is None or value > 0 for value in race["ratios"].values())
    assert race["frames"] == 6 and len(race["runs"]) == 8  # start-up, file, live each side; help, photo
    for mode in ("startup", "file", "live"):
        for side in ("ours", "reference"):
            assert race["summary"][mode][side]["cpu_ms_per_frame"] > 0
            assert 20 < race["summary"][mode][side]["peak_rss_mb"] < 2000  # a Python process's own
    assert [r["side"] for r in race["runs"][:2]] == ["ours", "reference"]  # alternated
    assert (tmp_path / ".scratch" / "race" / "race-reference-file.mp4").stat().st_size > 0
    # and ours alone as a user first meets it: the help text, and one photo of the clip's size
    for mode in ("help", "photo"):
        assert race["launch"][mode]["wall_s"] > 0 and 10 < race["launch"][mode]["peak_rss_mb"] < 2000
    assert race["launch_commands"]["help"].endswith("--help")
    photo = cv2.imread(str(tmp_path / ".scratch" / "race" / "race-photo.png"))
    assert photo is not None and photo.shape == (48, 64, 3)


def test_the_x264_table_has_a_row_per_preset(tmp_path):
    from deepbg_live.capture import Frame

    ctx = Context(out=tmp_path, progress=False)
    frames = [Frame(person(10 + 3 * t)[0], t, 0.0, t / 30) for t in range(6)]
    rows = cpu_choices.x264_rows(ctx, frames, 30.0, (64, 48))
    assert [row["preset"] for row in rows] == list(cpu_choices.PRESETS)
    assert all(row["cpu_ms_per_frame"] > 0 and row["bytes"] > 0 for row in rows)
    assert all(25 < row["psnr_y_db"] < 80 for row in rows)  # a lossy copy, close to the original
    threads = cpu_choices.x264_thread_rows(ctx, frames, 30.0)
    assert [(r["preset"], r["threads"]) for r in threads] == [
        (p, t) for p in cpu_choices.PRODUCT_PRESETS for t in (1, "auto")
    ]


def test_model_cost_paced_counts_the_idle_window():
    cost = cpu_choices.model_cost(lambda: None, frames=3, paced=True, warmup=0)
    assert cost["frames"] == 3 and cost["cpu_percent"] < 50  # the calls are free; the waits are idle
