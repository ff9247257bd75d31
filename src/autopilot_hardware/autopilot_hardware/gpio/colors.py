"""Colours of an RGB LED: a name or ``#rrggbb`` turned into three duty cycles, in one place.

The gpio node parses every colour it is sent here; the pilot and the fake rig call the same function so a
task's bad colour fails in the task, where its author sees it, not only in the gpio node's log.
"""

from __future__ import annotations

import re

RGB = tuple[float, float, float]

#: Names a command may use. Duty cycles, not perceived colours: an LED's channels differ in brightness, so
#: a lab that needs a calibrated colour gives it as #rrggbb for its own LED.
NAMED: dict[str, RGB] = {
    'off': (0.0, 0.0, 0.0),
    'black': (0.0, 0.0, 0.0),
    'white': (1.0, 1.0, 1.0),
    'red': (1.0, 0.0, 0.0),
    'green': (0.0, 1.0, 0.0),
    'blue': (0.0, 0.0, 1.0),
    'yellow': (1.0, 1.0, 0.0),
    'cyan': (0.0, 1.0, 1.0),
    'magenta': (1.0, 0.0, 1.0),
    'orange': (1.0, 0.5, 0.0),
    'amber': (1.0, 0.75, 0.0),
    'purple': (0.5, 0.0, 1.0),
    'pink': (1.0, 0.4, 0.7),
}
OFF: RGB = NAMED['off']
WHITE: RGB = NAMED['white']
_HEX = re.compile(r'#([0-9a-fA-F]{2})([0-9a-fA-F]{2})([0-9a-fA-F]{2})')


class ColorError(ValueError):
    """A colour that is neither a known name nor ``#rrggbb``; the message lists the choices."""


def parse_color(text: str) -> RGB:
    """(red, green, blue) duty cycles in [0, 1] of ``text``: a name of :data:`NAMED` or ``#rrggbb``."""
    if not isinstance(text, str):
        raise ColorError(f'colour {text!r} is not text: give a name ({", ".join(NAMED)}) or #rrggbb')
    name = text.strip().lower()
    if name in NAMED:
        return NAMED[name]
    match = _HEX.fullmatch(name)
    if match is None:
        shown = repr(text) if len(text) <= 40 else f'{text[:40]!r}... ({len(text)} characters)'
        raise ColorError(f'colour {shown} is not known: give a name ({", ".join(NAMED)}) or #rrggbb '
                         f'(e.g. #ff8000 for orange)')
    r, g, b = (int(h, 16) / 255 for h in match.groups())
    return (r, g, b)
