"""Which board this is, which GPIO backend it takes, and which of its pins a rig may use.

A Raspberry Pi names itself in ``/proc/device-tree/model``. pigpio drives the Pi 1-4 (its daemon programs the
BCM283x's DMA); the Pi 5's GPIOs sit behind the RP1 chip, which pigpio cannot reach, so it takes lgpio.
Anything else (a PC) runs the ``sim`` backend. On the 40-pin header a rig may use BCM 2-27 except:

* 0 and 1: the HAT ID EEPROM's I2C bus (a HAT's identity is read from it at boot);
* 18-21 with a HiFiBerry (or any I2S) sound card: its clock and data lines.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

MODEL_FILE = Path('/proc/device-tree/model')
HEADER_PINS = tuple(range(2, 28))
I2S_PINS = (18, 19, 20, 21)


@dataclass(frozen=True)
class Board:
    """``model`` as the board names itself ('' off a Pi), the backend it takes, the pins a rig may use."""

    model: str
    backend: str
    pins: tuple[int, ...] = HEADER_PINS
    #: pin -> why it is not available
    reserved: dict[int, str] = field(default_factory=dict)

    @property
    def is_pi(self) -> bool:
        return self.model.startswith('Raspberry Pi')

    def with_i2s_card(self) -> Board:
        """The same board with an I2S sound card (HiFiBerry) on the header: its pins are taken."""
        taken = {pin: 'the I2S sound card (HiFiBerry) uses it' for pin in I2S_PINS}
        return Board(self.model, self.backend, self.pins, {**self.reserved, **taken})

    def pin_problem(self, pin: int) -> str | None:
        """Why ``pin`` cannot be used on this board, or None."""
        if pin in self.reserved:
            return f'GPIO {pin} is reserved: {self.reserved[pin]}'
        if self.is_pi and pin not in self.pins:
            return f'GPIO {pin} is not on the 40-pin header (use {self.pins[0]}-{self.pins[-1]})'
        return None


def backend_for(model: str) -> str:
    if not model.startswith('Raspberry Pi'):
        return 'sim'
    return 'lgpio' if model.startswith('Raspberry Pi 5') or 'Compute Module 5' in model else 'pigpio'


def for_model(model: str) -> Board:
    """The board that names itself ``model`` ('' for a machine that is no Raspberry Pi)."""
    reserved = {0: 'the HAT ID EEPROM uses it', 1: 'the HAT ID EEPROM uses it'} if model.startswith('Raspberry Pi') else {}
    return Board(model, backend_for(model), HEADER_PINS, reserved)


def detect(model_file: Path = MODEL_FILE) -> Board:
    """This machine's board (``model_file``: where the device tree names it)."""
    try:
        model = model_file.read_bytes().rstrip(b'\x00').decode(errors='replace').strip()
    except OSError:
        model = ''
    return for_model(model)
