"""What is plugged into this host, for the setup dialogue's pickers: sound cards, cameras, mice.

Read from the kernel's own lists (no audio, video or input library needed, and nothing is opened):

* ALSA sound cards from ``/proc/asound/cards`` (the names JACK's ``hw:NAME`` and PortAudio's device matching use);
* V4L2 cameras from ``/sys/class/video4linux/video*`` (capture nodes only: a USB camera also makes a metadata node);
* mice (input devices with relative X/Y motion) from ``/proc/bus/input/devices``, by their event node.

Each reader takes its path, so tests give it a file of their own; a missing file is an empty list.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ASOUND_CARDS = Path('/proc/asound/cards')
VIDEO4LINUX = Path('/sys/class/video4linux')
INPUT_DEVICES = Path('/proc/bus/input/devices')
_CARD = re.compile(r'^\s*(\d+)\s+\[(\S+)\s*\]:\s*(.*)$')


@dataclass(frozen=True)
class Found:
    """One device: what the dialogue stores (``value``) and what it shows (``label``)."""

    value: str
    label: str


def _read(path: Path) -> str:
    try:
        return path.read_text(errors='replace')[:1_000_000]
    except OSError:
        return ''


def sound_cards(path: Path = ASOUND_CARDS) -> list[Found]:
    """ALSA cards: the card id (``sndrpihifiberry``), labelled with its index and description."""
    out = []
    for line in _read(path).splitlines():
        m = _CARD.match(line)
        if m:
            out.append(Found(m[2], f'{m[2]} (card {m[1]}: {m[3].strip()})'))
    return out


def cameras(root: Path = VIDEO4LINUX) -> list[Found]:
    """V4L2 capture nodes: ``/dev/videoN``, labelled with the camera's name."""
    out = []
    for node in sorted(root.glob('video*'), key=lambda p: int(re.sub(r'\D', '', p.name) or 0)):
        if _read(node / 'index').strip() not in ('', '0'):
            continue  # a second node of the same camera (metadata)
        out.append(Found(f'/dev/{node.name}', f'/dev/{node.name} ({_read(node / "name").strip() or "camera"})'))
    return out


def mice(path: Path = INPUT_DEVICES) -> list[Found]:
    """Input devices with relative X and Y motion: ``/dev/input/eventN``, labelled with the device's name."""
    out = []
    for block in _read(path).split('\n\n'):
        name = re.search(r'^N: Name="(.*)"$', block, re.M)
        handlers = re.search(r'^H: Handlers=(.*)$', block, re.M)
        rel = re.search(r'^B: REL=([0-9a-fA-F]+)', block, re.M)
        event = re.search(r'\b(event\d+)\b', handlers[1]) if handlers else None
        if event and rel and int(rel[1], 16) & 0b11 == 0b11:  # REL_X and REL_Y
            out.append(Found(f'/dev/input/{event[1]}', f'/dev/input/{event[1]} ({name[1] if name else "mouse"})'))
    return out
