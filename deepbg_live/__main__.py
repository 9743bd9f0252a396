"""The ``deepbg-live`` command's entry point (and ``python -m deepbg_live``): quiet at any moment of start-up.

Loading the command line (click, NumPy, OpenCV, ONNX Runtime behind it) takes about half a second,
and Python's own Ctrl-C handler would print a traceback from wherever the import had got to. So this
module takes the stop signals first, importing nothing heavy, and only then loads the CLI. Until
``cli.main`` enters ``GracefulShutdown`` (the one handler while the job runs, which puts this one
back when it is done), a stop signal ends the process with ``INTERRUPTED`` and no message: nothing
has been opened yet, so there is nothing to finish.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

from deepbg_live.shutdown import INTERRUPTED, STOP_SIGNALS

_received = 0


def _exit_quietly(signum: int, frame: FrameType | None) -> None:
    """SystemExit unwinds any import or click's parsing silently (click lets it through, unlike
    KeyboardInterrupt, which it turns into "Aborted!" and status 1); a repeat while unwinding ends at once."""
    global _received
    _received += 1
    if _received > 1:
        os._exit(INTERRUPTED)
    raise SystemExit(INTERRUPTED)


def main() -> None:
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:  # `nohup`, or '&' in a script: not ours to take
            signal.signal(signum, _exit_quietly)
    from deepbg_live.cli import main as run_cli

    run_cli()


if __name__ == "__main__":
    main()
