"""Run a command as the child of this small process, and write the child's resource use as JSON.

Usage: ``python benchmarks/launch.py RESULT.json COMMAND...`` (run as a script: it imports nothing
of the project). Why a launcher: Linux seeds an exec'd process's peak-RSS figure with the
high-water mark of the process it was forked from, so a child of the (large) benchmark process
would report the benchmark's peak. Forked from here, it reports its own, plus at most this
launcher's few MB. Wall and CPU time are the child's alone, this launcher's start-up excluded.
"""

import json
import os
import signal
import sys
import time

KIB_PER_MAXRSS = 1 if sys.platform.startswith("linux") else 1 / 1024  # macOS counts bytes


def main(result_path: str, command: list[str]) -> int:
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            os.execvp(command[0], command)
        finally:
            os._exit(127)  # not found or not executable, as a shell says
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    result = {
        "wall_s": wall,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss * KIB_PER_MAXRSS / 1024,
        "returncode": os.waitstatus_to_exitcode(status),
    }
    with open(result_path, "w") as out:
        json.dump(result, out)
    return result["returncode"]


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the child, which decides
    code = main(sys.argv[1], sys.argv[2:])
    sys.exit(code if code >= 0 else 128 - code)
