"""Stopping on request: a stop signal unwinds the program like Ctrl-C, so outputs are finalised, not cut off.

The one place signals are handled. Each command line (``deepbg-live``, ``python -m training``) enters
``GracefulShutdown`` once around its work, lets ``with``/``finally`` close what it opened, and exits
with ``INTERRUPTED``.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

INTERRUPTED = 130  # the shell's status for a job stopped by Ctrl-C; a stop signal reports the same
STOP_SIGNALS = (signal.SIGTERM,)  # SIGINT already raises KeyboardInterrupt


class GracefulShutdown:
    """While entered, each of ``signals`` raises KeyboardInterrupt in the main thread, as Ctrl-C does.

    The previous handlers are put back on exit. Off the main thread, where Python cannot set signal
    handlers, it changes nothing.
    """

    def __init__(self, signals: tuple[signal.Signals, ...] = STOP_SIGNALS):
        self.signals = signals
        self._previous: dict[signal.Signals, object] = {}

    def __enter__(self) -> GracefulShutdown:
        if threading.current_thread() is threading.main_thread():
            for signum in self.signals:
                self._previous[signum] = signal.signal(signum, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            # None: the old handler was not set from Python; the default is the closest we can restore
            signal.signal(signum, signal.SIG_DFL if handler is None else handler)
        self._previous.clear()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt
