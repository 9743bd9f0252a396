"""Results to disk: ``results.json`` (everything, with the machine and command), ``report.md``
(tables a person reads) and PNG plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import matplotlib
import matplotlib.ticker
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)

from deepbg_live.pipeline import STAGES  # noqa: E402

PARTS = ("model", "pipeline", "cpu_choices", "accuracy", "temporal", "training", "reference")
TITLES = {
    "model": "1. Model throughput",
    "pipeline": "2. Pipeline",
    "cpu_choices": "2b. CPU per frame: spinning, threads, x264 presets",
    "accuracy": "3. Accuracy",
    "temporal": "4. Temporal stability",
    "training": "5. Training throughput",
    "reference": "6. Ours beside the reference models",
}


def write_all(results: dict, out: Path) -> Path:
    """Write the JSON, the plots and the markdown report; returns the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=_jsonable) + "\n")
    plots = write_plots(results, out)
    report = out / "report.md"
    report.write_text(markdown(results, plots))
    return report


def _jsonable(value: object) -> object:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to JSON")


# --- markdown ---------------------------------------------------------------------------------


def fmt(value: object) -> str:
    """Three significant digits (0.961, 47.5, 129), whole numbers from 1000 up; '–' for missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"
    return str(value)


def table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown(results: dict, plots: dict[str, list[str]]) -> str:
    meta = results["meta"]
    parts = [header(meta)]
    for name in PARTS:
        if name in results:
            body = SECTIONS[name](results[name])
            images = "".join(f"\n![{p}]({p})\n" for p in plots.get(name, []))
            parts.append(f"## {TITLES[name]}\n\n{body}{images}")
    return "\n".join(parts)


def header(meta: dict) -> str:
    system = meta["system"]
    libraries = ", ".join(f"{k} {v}" for k, v in system["libraries"].items())
    gpu = system.get("gpu") or "none"
    lines = [
        "# deepbg-live benchmarks\n",
        f"- Command: `{system['command']}` ({'quick' if meta['quick'] else 'full'} mode, {meta['duration_s']:.0f} s)",
        f"- Date: {system['date']}, commit {system['commit'] or 'unknown'}",
        f"- Machine: {system['cpu']}, {system['cores']} cores, {system['memory_gb']} GB, GPU: {gpu}; "
        f"load average at start {system['load_average_1m']}, benchmark threads {meta['threads']}",
        f"- Libraries: {libraries}",
        f"- Our model: `{meta['weights']}`",
    ]
    if meta["notes"]:
        lines += ["", "**Notes**", ""] + [f"- {note}" for note in meta["notes"]]
    return "\n".join(lines) + "\n"


def model_section(data: dict) -> str:
    rows = [
        [
            r["config"],
            r["backend"],
            r["input"],
            f"{r['params'] / 1e6:.2f}M",
            r["gmacs"],
            r["p50_ms"],
            r["p95_ms"],
            1000 / r["p50_ms"],
        ]
        for r in data["rows"]
    ]
    headers = ["config", "backend", "input", "params", "GMACs", "p50 ms", "p95 ms", "fps at p50"]
    note = f"Batch 1, {data['threads']} threads, warm-up excluded. 1 MAC = 2 FLOPs.\n\n"
    return note + table(headers, rows)


def pipeline_section(data: dict) -> str:
    file_rows = [r for r in data["rows"] if r["mode"] == "file"]
    live_rows = [r for r in data["rows"] if r["mode"] == "live"]
    stages = ["decode", *STAGES]
    rows = [
        [r["resolution"], r["fps"], *[_pair(r, s) for s in stages], r["cpu_percent"], r["peak_rss_mb"]]
        for r in file_rows
    ]
    text = (
        f"Backend {data['backend']} ({data.get('precision', 'fp32')}"
        f"{', flip-average' if data.get('flip_average') else ''}), model long side {data['long_side']}, "
        f"{data['threads']} threads; "
        f"{data['settings']['background']} background, smoothing and edge refinement on, H.264 file output. "
        "Stage times in ms (p50 / p95, then the stage thread's CPU-ms p50 where measured, which "
        "contention does not inflate); CPU % where 100 = one core. 'decode' is the clip decoded alone; "
        "'capture' is the time the capture thread took to obtain each frame inside the run (decoding, "
        "or waiting for the paced 'camera'). Stages overlap on separate threads, so they sum to more "
        "than 1000 / fps.\n\n"
        "**As fast as possible (file, no drops)**\n\n"
        + table(["resolution", "fps", *stages, "CPU %", "peak MB"], rows)
    )
    if any(r.get("peak_rss_is_process_lifetime") for r in file_rows):
        text += "\nPeak memory could not be reset per run here, so it is the whole process's peak so far.\n"
    if data.get("isolated"):
        isolated = [
            [
                r["resolution"],
                _ms(r["refine"]),
                _ms(r["refine_composite_color"]),
                _ms(r["refine_composite_blur"]),
            ]
            for r in data["isolated"]
        ]
        text += "\n**Refinement and compositing alone** (one thread, ms p50 / p95; budget: 4 ms at 720p)\n\n"
        text += table(
            ["resolution", "refine", "refine + composite, colour", "refine + composite, blur"], isolated
        )
    if live_rows:
        live = [
            [
                r["resolution"],
                r["latency_p50_ms"],
                r["latency_p95_ms"],
                f"{r['dropped']} / {r['frames'] + r['dropped']}",
                r["fps"],
                r["cpu_percent"],
                r.get("lowest_quality"),
            ]
            for r in live_rows
        ]
        text += (
            "\n**Live-paced (the file played as a 30 fps camera, as a live job runs: 1 ONNX Runtime "
            "thread, no spinning, adaptive quality)**\n\n"
        )
        headers = ["resolution", "latency p50 ms", "latency p95 ms", "dropped / frames", "fps", "CPU %"]
        text += table([*headers, "lowest quality"], live)
    if data.get("reference_loop"):
        text += "\n" + race_section(data["reference_loop"])
    return text


RACE_GOALS = {"file_fps": ">= 1.5", "file_cpu_ms_per_frame": "<= 0.67"}  # issue 17's targets
LAUNCH_GOALS = {"help": "<= 0.5 s", "photo": "<= 1.0 s"}  # issue 17's start-up targets


def race_section(data: dict) -> str:
    """Ours against the reference loop: each side's figures, their ratio and issue 17's goal, one row each."""
    summary, ratios = data["summary"], data["ratios"]
    text = (
        f"**Ours beside a plain MediaPipe loop** ({data['resolution']}, {data['frames']} frames, "
        f"median of {data['repeats']} runs a side, alternated, each a fresh process: start-up included). "
        "The loop decodes with our capture code, runs MediaPipe selfie on ONNX Runtime "
        f"({data['reference_threads']} thread{'s' * (data['reference_threads'] != 1)}), upsamples its mask bilinearly, composites in float onto "
        "green and encodes with our VideoFileSink (the same x264 preset and crf). CPU-ms per frame is "
        "the child's user + system time over its frames, start-up included; it is the figure to trust "
        "on a busy machine, where wall fps is not.\n\n"
        f"- ours: `{data['commands']['ours']}`\n- reference: `{data['commands']['reference']}`\n\n"
    )
    rows = [
        ["file to file, fps", *_sides(summary, "file", "fps"), ratios["file_fps"], RACE_GOALS["file_fps"]],
        [
            "file to file, CPU-ms per frame",
            *_sides(summary, "file", "cpu_ms_per_frame"),
            ratios["file_cpu_ms_per_frame"],
            RACE_GOALS["file_cpu_ms_per_frame"],
        ],
        ["start-up (a 1-frame clip), s", *_sides(summary, "startup", "wall_s"), ratios["startup_wall_s"], ""],
        ["file to file, peak RSS MB", *_sides(summary, "file", "peak_rss_mb"), None, "ours <= 250"],
    ]
    if "live" in summary:
        rows += [
            [
                "live 30 fps, CPU % of one core",
                *_sides(summary, "live", "cpu_percent"),
                ratios["live_cpu_percent"],
                "",
            ],
            [
                "live 30 fps, CPU % after start-up",
                *_sides(summary, "live", "steady_cpu_percent"),
                ratios["live_steady_cpu_percent"],
                "ours <= 50%",
            ],
            ["live 30 fps, dropped frames", *_sides(summary, "live", "dropped"), None, "0"],
        ]
    text += table(["", "ours", "reference loop", "ours / reference", "goal"], rows)
    return text + launch_section(data) if data.get("launch") else text


def launch_section(data: dict) -> str:
    """Ours alone as a user first meets it: ``--help`` and one photo, each a fresh process."""
    launch, commands = data["launch"], data["launch_commands"]
    rows = [
        [f"`{commands[mode]}`", launch[mode]["wall_s"], launch[mode]["cpu_s"], launch[mode]["peak_rss_mb"]]
        + [LAUNCH_GOALS[mode]]
        for mode in ("help", "photo")
    ]
    text = f"\n**Ours alone, from launch to exit** (median of {data['repeats']}, each a fresh process)\n\n"
    return text + table(["command", "wall s", "CPU s", "peak RSS MB", "goal"], rows)


def _sides(summary: dict, mode: str, key: str) -> list[object]:
    return [summary[mode][side].get(key) for side in ("ours", "reference")]


def cpu_choices_section(data: dict) -> str:
    text = (
        f"Our model at {data['resolution']} (its own input size), ONNX Runtime; CPU-ms per frame is this "
        "process's CPU time over the whole window (spinning threads and idle waits included) divided by "
        f"the frames. Paced = one frame every 1/{data['fps']} s, as from a camera; otherwise back to back.\n\n"
    )
    model = [
        [
            "30 fps" if r["paced"] else "back to back",
            r["threads"],
            "on" if r["spinning"] else "off",
            r["wall_p50_ms"],
            r["wall_p95_ms"],
            r["cpu_ms_per_frame"],
            r["cpu_percent"],
        ]
        for r in data["model"]
    ]
    text += table(
        ["frames", "threads", "spinning", "wall p50 ms", "wall p95 ms", "CPU-ms / frame", "CPU %"], model
    )
    text += (
        f"\nx264 at crf {data['crf']} through VideoFileSink (BGR to I420, encode, mux), the clip's frames "
        "held in memory; luma PSNR against the frames given to the encoder, over all frames. "
        "deepbg-live uses ultrafast live and superfast for files.\n\n"
    )
    x264 = [
        [
            r["preset"],
            r["cpu_ms_per_frame"],
            r["wall_ms_per_frame"],
            r["kbit_s"],
            r["bytes"] / 1024,
            r["psnr_y_db"],
        ]
        for r in data["x264"]
    ]
    text += table(["preset", "CPU-ms / frame", "wall ms / frame", "kbit/s", "KiB", "Y-PSNR dB"], x264)
    if data.get("x264_threads"):
        threads = [
            [r["preset"], r["threads"], r["cpu_ms_per_frame"], r["wall_ms_per_frame"]]
            for r in data["x264_threads"]
        ]
        text += (
            "\nThe same sink by x264 thread count ('auto': x264's own, 1.5x the cores; deepbg-live uses 1 "
            "live and x264's own for files):\n\n"
        )
        text += table(["preset", "threads", "CPU-ms / frame", "wall ms / frame"], threads)
    return text


def _ms(summary: dict) -> str:
    return f"{summary['p50_ms']:.2f} / {summary['p95_ms']:.2f}"


def _pair(row: dict, stage: str) -> str:
    """Wall p50 / p95, and the stage's CPU-ms p50 where the run measured it."""
    p50, p95 = row.get(f"{stage}_p50_ms"), row.get(f"{stage}_p95_ms")
    if p50 is None:
        return "–"
    cpu = row.get(f"{stage}_cpu_p50_ms")
    return f"{p50:.1f} / {p95:.1f}" + ("" if cpu is None else f" ({cpu:.1f} CPU)")


METRIC_HEADERS = ["IoU", "mIoU", "Dice", "boundary F", "MAD"]
METRIC_KEYS = ["iou", "miou", "dice", "boundary_f", "mad"]


def accuracy_section(data: dict) -> str:
    text = f"{data['pairs']} image/mask pairs" + (
        f" (folders {data['settings']['images']} / {data['settings']['masks']})."
        if data["settings"]["images"]
        else " from the fixed validation split."
    )
    text += " Scored at each image's own resolution; MAD on the soft probability.\n\n"
    rows = []
    for model, scores in data["models"].items():
        for dataset, m in scores["per_dataset"].items():
            rows.append([model, dataset, m["pairs"], *[m[k] for k in METRIC_KEYS]])
        rows.append(
            [
                f"**{model}**",
                "**all**",
                scores["overall"]["pairs"],
                *[scores["overall"][k] for k in METRIC_KEYS],
            ]
        )
    return text + table(["model", "dataset", "pairs", *METRIC_HEADERS], rows)


def temporal_section(data: dict) -> str:
    if not data["rows"]:
        return "Nothing measured (no clips found).\n"
    strength = data["rows"][0]["strength"]
    text = (
        f"Smoothing strength {strength} when on; edge refinement {'on' if data['settings']['refine'] else 'off'} in both. "
        "Flicker = mean |Δalpha| (0..1) on pixels whose truth did not change; lag = the truth delay in frames "
        "that best matches the output. 'still' clips are made from portraits (sub-pixel sway, noise, exposure drift).\n\n"
    )
    keys = ["flicker", "dtssd", "iou", "mad", "lag_frames"]
    headers = ["model", "clips", *[f"{k} off / on" for k in keys]]
    rows = [
        [model, kind, *[f"{fmt(v['off'][k])} / {fmt(v['on'][k])}" for k in keys]]
        for model, kinds in data["summary"].items()
        for kind, v in kinds.items()
    ]
    per_clip = [
        [
            r["model"],
            r["sequence"],
            r["frames"],
            *[f"{fmt(r['off'][k])} / {fmt(r['on'][k])}" for k in keys],
        ]
        for r in data["rows"]
    ]
    return (
        text
        + table(headers, rows)
        + "\nPer clip:\n\n"
        + table(["model", "clip", "frames", *headers[2:]], per_clip)
    )


def training_section(data: dict) -> str:
    s = data["settings"]
    text = (
        f"One optimiser step (forward, BCE + Dice, backward, AdamW) on random {s['crop']}² crops, batch {s['batch_size']}, "
        f"device {data['device']}, {data['threads']} threads; data loading and augmentation excluded.\n\n"
    )
    rows = [[r["config"], r["images_per_s"], r["p50_ms"], r["p95_ms"], r["n"]] for r in data["rows"]]
    return text + table(["config", "images/s", "step p50 ms", "step p95 ms", "steps"], rows)


def reference_section(data: dict) -> str:
    text = (
        "Same pairs, clips and machine for every model. **ours** is the product's video and camera path "
        "(the Segmenter, then the EdgeRefiner; flip-averaging only with --flip-average); each reference gets "
        "the frame squashed to its input and its probability upsampled bilinearly, as its usual wrappers do. "
        "IoU per validation folder; boundary F over all pairs; flicker x1e3 (mean |Δalpha| where the truth "
        "did not change) and lag in frames with our temporal smoothing off / on; ms per frame = preprocess + "
        f"inference of a {data['frame']} BGR frame (p50, ONNX Runtime, not counting upsampling or refinement). "
        "Best in bold.\n\n"
    )
    text += comparison_table(data["comparison"])
    models = [
        [m["name"], f"`{m['path']}`", m["layout"], m["input"], m["norm"], m["channels"], m["output"]]
        for m in data["models"].values()
    ]
    text += "\nReference models:\n\n" + table(
        ["model", "file", "layout", "input", "normalisation", "channels", "output"], models
    )
    latency = [
        [model, r["frame"], r["threads"], r["p50_ms"], r["p95_ms"]]
        for model, rows in data["latency"].items()
        for r in rows
    ]
    text += "\nPer-frame latency (preprocess + inference, BGR frame in):\n\n" + table(
        ["model", "frame", "threads", "p50 ms", "p95 ms"], latency
    )
    if "accuracy" in data:
        text += "\n" + accuracy_section(data["accuracy"])
    if "temporal" in data:
        text += "\n" + temporal_section(data["temporal"])
    return text


def comparison_table(rows: list[dict]) -> str:
    """One row per model: per-folder IoU, boundary F, flicker, lag and ms per frame."""
    folders = sorted({folder for row in rows for folder in row["iou"]})
    threads = sorted({t for row in rows for t in row["ms"]}, key=int)
    columns = {  # header -> (cell value per row, which value is best: max, min or None)
        **{f"IoU {f}": ([r["iou"].get(f) for r in rows], max) for f in folders},
        "boundary F": ([r["boundary_f"] for r in rows], max),
        "still flicker x1e3": ([_off_on(r["flicker_still"], 1000) for r in rows], None),
        "DAVIS flicker x1e3": ([_off_on(r["flicker_video"], 1000) for r in rows], None),
        "DAVIS lag": ([_off_on(r["lag_frames"]) for r in rows], None),
        **{f"ms, {t} thread{'s' * (t != '1')}": ([r["ms"].get(t) for r in rows], min) for t in threads},
    }
    cells = [[row["model"]] for row in rows]
    for values, best in columns.values():
        present = [v for v in values if isinstance(v, float)]
        top = best(present) if best and present else None
        for line, value in zip(cells, values, strict=True):
            line.append(f"**{fmt(value)}**" if top is not None and value == top else fmt(value))
    return table(["model", *columns], cells)


def _off_on(pair: dict[str, float | None], scale: float = 1.0) -> str:
    return " / ".join(fmt(None if pair[k] is None else pair[k] * scale) for k in ("off", "on"))


SECTIONS: dict[str, Callable[[dict], str]] = {
    "model": model_section,
    "pipeline": pipeline_section,
    "cpu_choices": cpu_choices_section,
    "accuracy": accuracy_section,
    "temporal": temporal_section,
    "training": training_section,
    "reference": reference_section,
}


# --- plots ------------------------------------------------------------------------------------


def write_plots(results: dict, out: Path) -> dict[str, list[str]]:
    """Every plot the results allow, by part; file names are relative to ``out``."""
    makers = {
        "model": [("model_latency.png", plot_model_latency)],
        "pipeline": [("pipeline_fps.png", plot_pipeline_fps), ("pipeline_latency.png", plot_live_latency)],
        "accuracy": [("accuracy.png", plot_accuracy)],
        "temporal": [("flicker.png", plot_flicker)],
        "training": [("training.png", plot_training)],
        "reference": [("reference_comparison.png", plot_comparison)],
    }
    written: dict[str, list[str]] = {}
    for part, plots in makers.items():
        for filename, plot in plots:
            if part in results and plot(results[part], out / filename):
                written.setdefault(part, []).append(filename)
    return written


def _save(fig: plt.Figure, path: Path) -> bool:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def plot_model_latency(data: dict, path: Path) -> bool:
    """Histogram of per-frame latency, one panel per config and input, backends overlaid."""
    panels: dict[str, list[dict]] = {}
    for row in data["rows"]:
        panels.setdefault(f"{row['config']} {row['input']}", []).append(row)
    if not panels:
        return False
    columns = min(4, len(panels))
    lines = math.ceil(len(panels) / columns)
    fig, axes = plt.subplots(lines, columns, figsize=(4 * columns, 3 * lines), squeeze=False)
    for ax, (title, rows) in zip(axes.flat, panels.items(), strict=False):
        # Backends differ by 100x (torch eager against int8), so a linear axis puts the fast ones in one bin.
        samples = [s for row in rows for s in row["samples_ms"] if s > 0]
        bins = np.geomspace(min(samples) * 0.9, max(samples) * 1.1, 40)
        for row in rows:
            ax.hist(
                row["samples_ms"], bins=bins, alpha=0.6, label=f"{row['backend']} ({row['p50_ms']:.3g} ms)"
            )
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.tick_params(axis="x", which="minor", labelsize=7)
        ax.set_title(title)
        ax.set_xlabel("ms per frame (log scale)")
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    return _save(fig, path)


def plot_pipeline_fps(data: dict, path: Path) -> bool:
    """Sustained fps per resolution, and where each frame's time goes (stage p50s)."""
    rows = [r for r in data["rows"] if r["mode"] == "file"]
    if not rows:
        return False
    labels = [r["resolution"] for r in rows]
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    left.bar_label(left.bar(labels, [r["fps"] for r in rows], color="tab:blue"), fmt="%.0f")
    left.axhline(30, color="grey", linestyle="--", label="30 fps")
    left.set_ylabel("frames per second")
    left.set_title("Sustained fps (file input)")
    left.legend()
    bottom = [0.0] * len(rows)
    for stage in ["decode", *STAGES[1:]]:  # the work; "capture" is queue wait in file mode
        values = [r.get(f"{stage}_p50_ms", 0.0) for r in rows]
        right.bar(labels, values, bottom=bottom, label=stage)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    right.set_ylabel("ms (p50; stages overlap in threads)")
    right.set_title("Per-stage time")
    right.legend(fontsize=7)
    return _save(fig, path)


def plot_live_latency(data: dict, path: Path) -> bool:
    rows = [r for r in data["rows"] if r["mode"] == "live" and r.get("latencies_ms")]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for row in rows:
        ax.hist(row["latencies_ms"], bins=30, alpha=0.6, label=row["resolution"])
    ax.set_xlabel("capture-to-output latency, ms")
    ax.set_ylabel("frames")
    ax.set_title("Live-paced latency (30 fps)")
    ax.legend()
    return _save(fig, path)


def plot_accuracy(data: dict, path: Path) -> bool:
    """Foreground IoU per dataset, one bar per model."""
    models = data["models"]
    datasets = sorted({d for m in models.values() for d in m["per_dataset"]})
    if not datasets:
        return False
    fig, ax = plt.subplots(figsize=(max(6, 1.5 * len(datasets)), 4))
    width = 0.8 / len(models)
    for i, (name, scores) in enumerate(models.items()):
        values = [scores["per_dataset"].get(d, {}).get("iou", 0.0) for d in datasets]
        bars = ax.bar([x + i * width for x in range(len(datasets))], values, width, label=name)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, rotation=90, padding=2)
    ax.set_xticks([x + width * (len(models) - 1) / 2 for x in range(len(datasets))], datasets, rotation=15)
    ax.set_ylim(0, 1.12)  # room for the labels
    ax.set_ylabel("foreground IoU")
    ax.set_title("Accuracy per dataset")
    ax.legend()
    return _save(fig, path)


def plot_flicker(data: dict, path: Path) -> bool:
    """Flicker per clip with smoothing off and on (one panel per model)."""
    rows = data["rows"]
    models = sorted({r["model"] for r in rows})
    if not rows:
        return False
    fig, axes = plt.subplots(1, len(models), figsize=(7.5 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes.flat, models, strict=True):
        mine = [r for r in rows if r["model"] == model]
        xs = range(len(mine))
        off = ax.bar([x - 0.2 for x in xs], [r["off"]["flicker"] for r in mine], 0.4, label="smoothing off")
        on = ax.bar([x + 0.2 for x in xs], [r["on"]["flicker"] for r in mine], 0.4, label="smoothing on")
        for bars in (off, on):
            ax.bar_label(bars, fmt="%.2g", fontsize=6)
        ax.set_xticks(list(xs), [f"{r['sequence']}\n({r['kind']})" for r in mine], rotation=20, fontsize=7)
        ax.set_yscale("log")  # still clips flicker 10-100x less than moving ones: both must be readable
        ax.set_ylabel("flicker (mean |Δalpha|, log scale)")
        kinds = Counter(r["kind"] for r in mine)
        counts = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
        ax.set_title(f"Flicker: {model}, {len(mine)} clips ({counts})")
        ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def plot_training(data: dict, path: Path) -> bool:
    rows = data["rows"]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    bars = ax.bar([r["config"] for r in rows], [r["images_per_s"] for r in rows], color="tab:green")
    ax.bar_label(bars, fmt="%.1f")
    ax.set_ylabel("images per second")
    ax.set_title(f"Training step throughput ({data['device']})")
    return _save(fig, path)


def plot_comparison(data: dict, path: Path) -> bool:
    """Ours beside each reference: IoU per folder, flicker, and ms per frame, one colour per model."""
    rows = data["comparison"]
    folders = sorted({folder for row in rows for folder in row["iou"]})
    if not rows or not folders:
        return False
    threads = sorted({t for row in rows for t in row["ms"]}, key=int)
    panels = [
        (
            "Foreground IoU per validation folder",
            folders,
            [[r["iou"].get(f) for f in folders] for r in rows],
            "%.3f",
        ),
        (
            "Flicker x1e3 (lower is better)",
            ["still, off", "still, on", "DAVIS, off", "DAVIS, on"],
            [_flicker_values(r) for r in rows],
            "%.2f",
        ),
        (
            f"ms per {data['frame']} frame",
            [f"{t} thread{'s' * (t != '1')}" for t in threads],
            [[r["ms"].get(t) for t in threads] for r in rows],
            "%.1f",
        ),
    ]
    ratios = [max(3, len(folders)), 3, max(2, len(threads))]
    fig, axes = plt.subplots(1, 3, figsize=(sum(ratios) * 1.1 + 2, 4.8), gridspec_kw={"width_ratios": ratios})
    for ax, (title, groups, values, label) in zip(axes, panels, strict=True):
        _grouped_bars(ax, groups, [r["model"] for r in rows], values, label)
        ax.set_title(title, fontsize=10)
    iou_values = [v for r in rows for v in r["iou"].values() if v is not None]
    low = max(0.0, math.floor((min(iou_values) - 0.1) * 10) / 10)  # differences near 1 stay visible
    axes[0].set_ylim(low, 1.0 + 0.12 * (1.0 - low))  # room for the labels
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(rows), frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _flicker_values(row: dict) -> list[float | None]:
    return [
        None if row[key][variant] is None else row[key][variant] * 1000
        for key in ("flicker_still", "flicker_video")
        for variant in ("off", "on")
    ]


def _grouped_bars(ax, groups: list[str], models: list[str], values: list[list], label: str) -> None:
    """One group of bars per x label, one bar per model, each with its value written on it."""
    width = 0.8 / len(models)
    for i, (model, heights) in enumerate(zip(models, values, strict=True)):
        xs = [x + (i - (len(models) - 1) / 2) * width for x in range(len(groups))]
        shown = [0.0 if h is None else h for h in heights]
        bars = ax.bar(xs, shown, width, label=model, color=f"C{i}")
        texts = ["" if h is None else label % h for h in heights]
        ax.bar_label(bars, texts, rotation=90, fontsize=7, padding=2)
    ax.set_xticks(range(len(groups)), groups, rotation=15, fontsize=8)
    ax.margins(y=0.15)
