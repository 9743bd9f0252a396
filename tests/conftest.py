"""Fixtures shared by several test files."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator

import pytest

from tests import media

pytest_plugins = ["tests.skip_summary"]


def _take_back_ignored_stop_signals() -> None:
    """Give the suite, and every program it starts, the stop signals a terminal would.

    A suite started in the background (``cmd &`` in a script ignores SIGINT, ``nohup`` SIGHUP)
    inherits them ignored and passes that on to its children, and deepbg-live rightly leaves an
    ignored signal ignored; the signal tests would then test nothing.
    """
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    defaults[signal.SIGHUP] = signal.SIG_DFL
    for signum, handler in defaults.items():
        if signal.getsignal(signum) is signal.SIG_IGN:
            signal.signal(signum, handler)


_take_back_ignored_stop_signals()


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
