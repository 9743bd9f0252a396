"""Fixtures shared by several test files."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests import media

pytest_plugins = ["tests.skip_summary"]


@pytest.fixture(scope="module")
def xvfb() -> Iterator[str]:
    """A private virtual X display (":N") for window tests; skipped where Xvfb or xwd is missing."""
    started = media.start_xvfb() if shutil.which("xwd") else None
    if started is None:
        pytest.skip("Xvfb and xwd (packages xvfb, x11-apps) are needed for window tests")
    proc, display = started
    yield display
    proc.terminate()
    proc.wait(10)
