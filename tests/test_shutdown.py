"""Stop signals: while GracefulShutdown is entered SIGTERM unwinds like Ctrl-C, and afterwards nothing is left changed."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from deepbg_live.shutdown import INTERRUPTED, GracefulShutdown


def test_sigterm_unwinds_like_ctrl_c_and_the_previous_handler_comes_back() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), GracefulShutdown():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # interrupted by the handler long before it ends
    assert signal.getsignal(signal.SIGTERM) is before


def test_off_the_main_thread_it_changes_nothing() -> None:
    before = signal.getsignal(signal.SIGTERM)
    seen = []

    def body() -> None:
        with GracefulShutdown():
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [before]


def test_an_interrupted_run_exits_with_the_shells_ctrl_c_status() -> None:
    assert INTERRUPTED == 128 + signal.SIGINT
