"""Colour names and codes for ``--color``: text to a BGR tuple, with nothing heavier than webcolors.

Apart from ``composite`` (its user), so that the command line can show its help without OpenCV.
"""

from __future__ import annotations

import re

import webcolors

from deepbg_live.errors import UserError

DEFAULT_COLOR = "#00ff00"

# CSS Color 4 names its 148 colours: webcolors holds CSS3's 147, and level 4 added one. The
# keying names are what video people type.
_EXTRA_NAMES = {
    "rebeccapurple": "#663399",
    "chromakey": "#00ff00",
    "greenscreen": "#00ff00",
    "bluescreen": "#0000ff",
}
_HEX = re.compile(r"#([0-9a-f]{3}|[0-9a-f]{6})")
COLOR_HELP = "#RRGGBB, #RGB or one of the 148 CSS colour names (green, chartreuse, skyblue, ...)"


def parse_color(text: str) -> tuple[int, int, int]:
    """``"#RGB"``, ``"#RRGGBB"`` or a CSS colour name to a BGR tuple (OpenCV's channel order)."""
    key = str(text).strip().lower().replace(" ", "").replace("-", "").replace("_", "")
    match = _HEX.fullmatch(key)
    if match:
        digits = match.group(1)
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
    else:
        digits = _named_hex(key)
        if digits is None:
            raise UserError(f"bad colour '{text}': use {COLOR_HELP}")
    red, green, blue = (int(digits[i : i + 2], 16) for i in (0, 2, 4))
    return blue, green, red


def _named_hex(name: str) -> str | None:
    """The six hex digits of a colour name, or None for a name CSS does not define."""
    if name in _EXTRA_NAMES:
        return _EXTRA_NAMES[name][1:]
    try:
        return webcolors.name_to_hex(name, spec=webcolors.CSS3)[1:]
    except ValueError:
        return None
