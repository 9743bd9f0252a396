"""Imports point one way: the contracts in pyproject.toml's ``[tool.importlinter]`` hold.

``benchmarks`` may import ``training``, both may import ``evaluation``, and all three may import
``deepbg_live``, never the other way round; the scoring and image modules never import torch.
"""

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_import_contracts_are_kept():
    lint = shutil.which("lint-imports") or str(Path(sys.executable).with_name("lint-imports"))
    result = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "broken" in result.stdout and " 0 broken" in result.stdout
