"""Stop signals: Ctrl-C, SIGTERM and SIGHUP set one flag; only outside ``polling()`` does the first one raise.

A second signal only says that shutdown is under way, a third ends the process with status 130, and
afterwards every handler is back as it was.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from deepbg_live import shutdown as shutdown_module
from deepbg_live.shutdown import INTERRUPTED, STOP_SIGNALS, UNDER_WAY, GracefulShutdown

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _keep_the_test_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGHUP sends a terminal's output to /dev/null; the test runner's own terminal must stay."""
    monkeypatch.setattr(shutdown_module, "_detach_from_terminal", lambda: None)


@pytest.mark.parametrize("sig", STOP_SIGNALS)
def test_a_stop_signal_unwinds_like_ctrl_c_and_the_previous_handler_comes_back(sig: signal.Signals) -> None:
    before = signal.getsignal(sig)
    with pytest.raises(KeyboardInterrupt), GracefulShutdown() as shutdown:
        os.kill(os.getpid(), sig)
        time.sleep(5)  # interrupted by the handler long before it ends
    assert shutdown.requested
    assert signal.getsignal(sig) is before


def test_a_signal_the_user_ignored_stays_ignored_as_under_nohup() -> None:
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        with GracefulShutdown() as shutdown:
            assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.05)
        assert not shutdown.requested, "a closed terminal must not stop a job started with nohup"
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGHUP, previous)


@pytest.mark.parametrize("sig", STOP_SIGNALS)
def test_while_polling_a_signal_only_sets_the_flag(sig: signal.Signals) -> None:
    with GracefulShutdown() as shutdown, shutdown.polling() as stop:
        os.kill(os.getpid(), sig)
        deadline = time.monotonic() + 5
        while not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)  # the loop between frames: nothing is raised into it
    assert shutdown.requested


def test_polling_ends_with_the_block_so_a_signal_raises_again_after_it() -> None:
    with GracefulShutdown() as shutdown:
        with shutdown.polling():
            pass
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)


def test_request_sets_the_flag_without_a_signal() -> None:
    shutdown = GracefulShutdown()
    shutdown.request()
    assert shutdown.requested and shutdown.stop.is_set()


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


# A clean-up that takes far longer than the test waits: only the third signal can end it early.
_SLOW_CLEAN_UP = textwrap.dedent("""
    import os, signal, sys, time
    from deepbg_live.shutdown import GracefulShutdown
    with GracefulShutdown() as shutdown, shutdown.polling():
        print("ready", flush=True)
        while not shutdown.requested:
            time.sleep(0.01)
        print("cleaning up", flush=True)
        time.sleep(60)
    print("finished")
""")


def _slow_clean_up() -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", _SLOW_CLEAN_UP],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout.readline().strip() == "ready"
    return process


def test_a_second_signal_says_shutdown_is_under_way_and_lets_the_clean_up_run() -> None:
    process = _slow_clean_up()
    try:
        process.send_signal(signal.SIGTERM)
        assert process.stdout.readline().strip() == "cleaning up"
        process.send_signal(signal.SIGHUP)
        time.sleep(0.5)
        assert process.poll() is None  # still cleaning up
    finally:
        process.kill()
        _, stderr = process.communicate(timeout=10)
    assert stderr == UNDER_WAY


def test_a_third_signal_quits_at_once_with_status_130() -> None:
    process = _slow_clean_up()
    try:
        process.send_signal(signal.SIGTERM)
        assert process.stdout.readline().strip() == "cleaning up"
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)  # two signals sent together could arrive as one
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == INTERRUPTED
        assert time.monotonic() - started < 10  # not the minute the clean-up would take
    finally:
        process.kill()
    stdout, stderr = process.communicate(timeout=10)
    assert "finished" not in stdout
    assert stderr.startswith(UNDER_WAY) and "quitting at once" in stderr and "Traceback" not in stderr


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="a hang-up is a POSIX terminal's")
def test_after_a_hang_up_output_to_the_gone_terminal_goes_nowhere_and_pipes_keep_working() -> None:
    import pty

    script = textwrap.dedent("""
        import os, signal, sys, time
        from deepbg_live.shutdown import GracefulShutdown
        with GracefulShutdown() as shutdown, shutdown.polling():
            print("ready", flush=True)
            os.kill(os.getpid(), signal.SIGHUP)
            time.sleep(0.2)
            print("after the hang-up", flush=True)  # would fail with EIO on a terminal really gone
            sys.stderr.write("to the pipe\\n")
    """)
    terminal, child_end = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, stdout=child_end, stderr=subprocess.PIPE, text=True
    )
    os.close(child_end)
    _, stderr = process.communicate(timeout=30)
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 1024)
        except OSError:  # EIO: the child's end is closed and everything was read
            break
        if not chunk:
            break
        shown += chunk
    os.close(terminal)
    assert process.returncode == 0, stderr
    assert b"ready" in shown and b"after the hang-up" not in shown
    assert stderr == "to the pipe\n"
