"""Messages read straight from their CDR bytes, without building rclpy message objects.

Raw subscriptions hand the recorder CDR bytes. :class:`CdrReader` reads a message field by field (the
camera frames of :mod:`.video`). The event decoders (:func:`gpio_columns`, :func:`sound_columns`) are
unrolled for speed: the recorder keeps every event message raw in the bag and also fills the session's
event tables, and ``rclpy.serialization.deserialize_message`` costs 20-45 us per ``GpioEvent`` (80 % of
the writer thread at 20k events/s, ``bench/recorder.py --profile``) where :mod:`struct` takes ~4 us.

Layout (XCDR1, as rclpy serialises): a 4-byte encapsulation header saying the byte order, then the fields
in ``.msg`` order, every primitive aligned to its size counted from the end of that header, strings as a
uint32 length that includes the terminating NUL. ``tests/test_cdr.py`` checks the decoders against
``serialize_message`` of the generated types, so a field added to a message fails there rather than
shifting columns silently.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

#: One message as the recorder holds it: (receive time ns, CDR bytes).
Sample = tuple[int, bytes]
Columns = dict[str, list[Any]]
#: Decodes samples into the columns of one event table (``store.EVENT_COLUMNS``).
ColumnDecoder = Callable[[Sequence[Sample]], Columns]


class CdrError(ValueError):
    """A message's bytes do not hold the type they were recorded as."""


# Formats per byte order (encapsulation 0x0000: XCDR1 big endian, 0x0001: XCDR1 little endian, as rclpy writes).
_LE = {n: struct.Struct('<' + n) for n in ('iI', 'I', 'II', 'BB', 'Q', 'dd')}
_BE = {n: struct.Struct('>' + n) for n in _LE}
#: Encapsulation id -> byte order for :class:`CdrReader`. PLAIN_CDR2 (0x0006/0x0007) lays out messages without
#: 8-byte fields or nested appendable types as XCDR1 does (images: yes; GpioEvent, with a uint64, no).
ENCAPSULATIONS = {b'\x00\x00': '>', b'\x00\x01': '<', b'\x00\x06': '>', b'\x00\x07': '<'}


def _order(data: bytes) -> dict[str, struct.Struct]:
    if len(data) < 4 or data[0] != 0 or data[1] > 1:
        raise CdrError(f'not an XCDR1 message (encapsulation header {data[:4].hex() or "missing"}; 0001 expected, '
                       'as rclpy serialises)')
    return _LE if data[1] else _BE


class CdrReader:
    """A cursor over the fields of one message, in order, checking bounds: for messages read field by field
    where clarity beats the last microsecond (camera frames: a handful of fields, then the pixels).

    ``error``: the CdrError subclass to raise (callers with their own error family pass theirs).
    """

    __slots__ = ('data', 'pos', 'what', 'error', '_fmt')

    def __init__(self, data: bytes | bytearray | memoryview, what: str, error: type[CdrError] | None = None) -> None:
        self.data, self.what, self.error = data, what, error or CdrError
        if len(data) < 4:
            raise self.error(f'{what}: {len(data)} bytes, shorter than the 4-byte CDR encapsulation header')
        order = ENCAPSULATIONS.get(bytes(data[:2]))
        if order is None:
            raise self.error(f'{what}: unsupported CDR encapsulation {bytes(data[:2]).hex()} (expected 0001 = '
                             'XCDR1 little-endian, as rclpy serialises)')
        self._fmt = _LE if order == '<' else _BE
        self.pos = 4

    def _take(self, align: int, size: int, field: str) -> int:
        pos = self.pos + (-(self.pos - 4) % align)
        if pos + size > len(self.data):
            raise self.error(f'{self.what}: truncated at {field}: needs bytes {pos}..{pos + size} of '
                             f'{len(self.data)}')
        self.pos = pos + size
        return pos

    def u8(self, field: str) -> int:
        return self.data[self._take(1, 1, field)]

    def u32(self, field: str) -> int:
        return self._fmt['I'].unpack_from(self.data, self._take(4, 4, field))[0]

    def u32_pair(self, field: str) -> tuple[int, int]:
        return self._fmt['II'].unpack_from(self.data, self._take(4, 8, field))

    def stamp_ns(self) -> int:
        """A builtin_interfaces/Time (as in std_msgs/Header) in nanoseconds."""
        sec, nanosec = self._fmt['iI'].unpack_from(self.data, self._take(4, 8, 'header.stamp'))
        return sec * 1_000_000_000 + nanosec

    def string(self, field: str) -> str:
        n = self.u32(f'{field} length')
        if n == 0:  # not what rclpy writes (it counts the NUL), but valid CDR
            return ''
        at = self._take(1, n, field)
        if self.data[at + n - 1] != 0:
            raise self.error(f'{self.what}: {field} is not NUL-terminated (length {n} at byte {at}): the bytes '
                             'are not of this message type')
        try:
            return bytes(self.data[at:at + n - 1]).decode('utf-8')
        except UnicodeDecodeError as exc:
            raise self.error(f'{self.what}: {field} is not UTF-8 ({exc})') from exc

    def octets(self, field: str) -> tuple[int, int]:
        """(offset, length) of a sequence<uint8>, without copying it."""
        n = self.u32(f'{field} length')
        return self._take(1, n, field), n


def _align(pos: int, n: int) -> int:
    return pos + (-pos) % n


# Offsets below are body offsets (from the end of the encapsulation header); data[4 + pos] reads them.
def _string(data: bytes, pos: int, fmt: dict[str, struct.Struct]) -> tuple[str, int]:
    """The string at body offset ``pos`` and the body offset after it."""
    pos = _align(pos, 4)
    (n,) = fmt['I'].unpack_from(data, 4 + pos)
    end = 8 + pos + n  # one past the NUL
    if n == 0 or end > len(data) or data[end - 1] != 0:
        raise CdrError(f'bad string at byte {4 + pos}: length {n} in a {len(data)}-byte message')
    return data[8 + pos:end - 1].decode('utf-8'), pos + 4 + n


def _end(data: bytes, pos: int, fmt: dict[str, struct.Struct]) -> None:
    """Check the message's last field, a string at ``pos``, lies within the bytes (a cut message fails here)."""
    pos = _align(pos, 4)
    (n,) = fmt['I'].unpack_from(data, 4 + pos)
    if n == 0 or 8 + pos + n > len(data) or data[7 + pos + n] != 0:
        raise CdrError(f'bad string at byte {4 + pos}: length {n} in a {len(data)}-byte message')


def _header(data: bytes, fmt: dict[str, struct.Struct]) -> tuple[int, int]:
    """std_msgs/Header: (stamp in ns, body offset after frame_id)."""
    sec, nsec = fmt['iI'].unpack_from(data, 4)
    _, pos = _string(data, 8, fmt)
    return sec * 1_000_000_000 + nsec, pos


def gpio_columns(samples: Sequence[Sample]) -> Columns:
    """``autopilot_msgs/msg/GpioEvent`` samples -> ``events/gpio`` columns."""
    stamp, tick_us, device, pin, level, run_ids, seqs, recv = [], [], [], [], [], [], [], []
    for recv_ns, data in samples:
        try:
            fmt = _order(data)
            ns, pos = _header(data, fmt)
            name, pos = _string(data, pos, fmt)
            p, lv = fmt['BB'].unpack_from(data, 4 + pos)
            # then tick (uint32, 4-aligned) and tick_us (uint64, 8-aligned); only tick_us is stored
            pos = _align(_align(pos + 2, 4) + 4, 8)
            (tus,) = fmt['Q'].unpack_from(data, 4 + pos)
            _, pos = _string(data, pos + 8, fmt)  # backend
            pos = _align(pos, 4)
            (run_id,) = fmt['I'].unpack_from(data, 4 + pos)
            pos = _align(pos + 4, 8)
            (seq,) = fmt['Q'].unpack_from(data, 4 + pos)  # the last field: struct.error when cut short
        except (struct.error, UnicodeDecodeError, CdrError) as exc:
            raise CdrError(f'GpioEvent: {exc}') from exc
        stamp.append(ns)
        tick_us.append(tus)
        device.append(name)
        pin.append(p)
        level.append(lv != 0)
        run_ids.append(run_id)
        seqs.append(seq)
        recv.append(recv_ns)
    return {'stamp_ns': stamp, 'tick_us': tick_us, 'device': device, 'pin': pin, 'level': level,
            'run_id': run_ids, 'seq': seqs, 'recv_ns': recv}


def sound_columns(samples: Sequence[Sample]) -> Columns:
    """``autopilot_msgs/msg/SoundOnset`` samples -> ``events/sound`` columns."""
    stamp, sound_id, play_ids, sources, oks, latency, duration, recv = [], [], [], [], [], [], [], []
    for recv_ns, data in samples:
        try:
            fmt = _order(data)
            ns, pos = _header(data, fmt)
            sid, pos = _string(data, pos, fmt)
            pos = _align(pos, 8)
            (play_id,) = fmt['Q'].unpack_from(data, 4 + pos)
            dur, lat = fmt['dd'].unpack_from(data, 12 + pos)
            source, ok = fmt['BB'].unpack_from(data, 28 + pos)
            _end(data, pos + 26, fmt)  # message
        except (struct.error, UnicodeDecodeError, CdrError) as exc:
            raise CdrError(f'SoundOnset: {exc}') from exc
        stamp.append(ns)
        sound_id.append(sid)
        play_ids.append(play_id)
        sources.append(source)
        oks.append(ok != 0)
        latency.append(lat)
        duration.append(dur)
        recv.append(recv_ns)
    return {'stamp_ns': stamp, 'sound_id': sound_id, 'play_id': play_ids, 'source': sources, 'ok': oks,
            'latency_ms': latency, 'duration_ms': duration, 'recv_ns': recv}


#: Event table kind -> (message type, decoder).
EVENT_DECODERS: dict[str, tuple[str, ColumnDecoder]] = {
    'gpio': ('autopilot_msgs/msg/GpioEvent', gpio_columns),
    'sound': ('autopilot_msgs/msg/SoundOnset', sound_columns),
}
