"""The suite ends with one line naming what it skipped and why."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_run_with_skips_ends_with_one_line_naming_them(tmp_path):
    (tmp_path / "test_some.py").write_text(
        "import pytest\n"
        "def test_runs(): pass\n"
        "def test_needs_x(): pytest.skip('Xvfb is needed for window tests')\n"
        "@pytest.mark.parametrize('n', [1, 2])\n"
        "def test_needs_gpu(n): pytest.skip('no CUDA GPU')\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.skip_summary",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("skipped ")]
    assert lines == ["skipped 3: Xvfb is needed for window tests (1); no CUDA GPU (2)"], result.stdout
