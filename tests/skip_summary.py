"""A pytest plugin: one line at the end naming what was skipped and why.

Skips are otherwise easy to miss in ``-q`` output: the window tests skip quietly where Xvfb,
x11-apps or xdotool are missing, and a run that tested less would look like a full pass.
"""

from __future__ import annotations


def pytest_terminal_summary(terminalreporter) -> None:
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        return
    reasons: dict[str, int] = {}
    for report in skipped:
        reason = str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    summary = "; ".join(f"{reason} ({count})" for reason, count in sorted(reasons.items()))
    terminalreporter.write_line(f"skipped {len(skipped)}: {summary}")
