"""Event messages decoded from CDR with struct (autopilot_terminal.cdr) agree with rclpy's own decoding.

The generated message types serialise each sample (so a field added to GpioEvent or SoundOnset shifts
the layout here first), and damaged bytes are refused with CdrError rather than read as other values.
"""

from __future__ import annotations

import pytest
from autopilot_msgs.msg import GpioEvent, SoundOnset
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import serialize_message

from autopilot_terminal.cdr import CdrError, gpio_columns, sound_columns

text = st.text(st.characters(blacklist_categories=('Cs',), blacklist_characters='\0'), max_size=40)
stamps = st.tuples(st.integers(-2**31, 2**31 - 1), st.integers(0, 999_999_999))


def gpio(stamp: tuple[int, int], frame_id: str, device: str, pin: int, level: bool, tick: int, tick_us: int,
         backend: str, run_id: int = 1, seq: int = 1) -> GpioEvent:
    m = GpioEvent(device=device, pin=pin, level=level, tick=tick, tick_us=tick_us, backend=backend, run_id=run_id,
                  seq=seq)
    m.header.stamp.sec, m.header.stamp.nanosec = stamp
    m.header.frame_id = frame_id
    return m


@settings(max_examples=300, deadline=None)
@given(stamps, text, text, st.integers(0, 255), st.booleans(), st.integers(0, 2**32 - 1),
       st.integers(0, 2**64 - 1), text, st.integers(1, 2**62), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1))
def test_gpio_event_columns_match_the_message(stamp, frame_id, device, pin, level, tick, tick_us, backend,
                                               recv_ns, run_id, seq) -> None:
    m = gpio(stamp, frame_id, device, pin, level, tick, tick_us, backend, run_id, seq)
    cols = gpio_columns([(recv_ns, serialize_message(m))])
    assert cols == {'stamp_ns': [stamp[0] * 10**9 + stamp[1]], 'tick_us': [tick_us], 'device': [device],
                    'pin': [pin], 'level': [level], 'run_id': [run_id], 'seq': [seq], 'recv_ns': [recv_ns]}


@settings(max_examples=300, deadline=None)
@given(stamps, text, text, st.integers(0, 2**64 - 1), st.floats(allow_nan=False), st.floats(allow_nan=False),
       st.integers(0, 255), st.booleans(), text)
def test_sound_onset_columns_match_the_message(stamp, frame_id, sound_id, play_id, duration, latency, source,
                                                ok, message) -> None:
    m = SoundOnset(sound_id=sound_id, play_id=play_id, duration_ms=duration, latency_ms=latency, source=source,
                   ok=ok, message=message)
    m.header.stamp.sec, m.header.stamp.nanosec = stamp
    m.header.frame_id = frame_id
    cols = sound_columns([(7, serialize_message(m))])
    assert cols == {'stamp_ns': [stamp[0] * 10**9 + stamp[1]], 'sound_id': [sound_id], 'play_id': [play_id],
                    'source': [source], 'ok': [ok], 'latency_ms': [latency], 'duration_ms': [duration],
                    'recv_ns': [7]}


def test_many_samples_keep_their_order() -> None:
    msgs = [gpio((i, i), '', f'dev{i}', i % 256, bool(i % 2), i, 10 * i, 'sim') for i in range(100)]
    cols = gpio_columns([(1000 + i, serialize_message(m)) for i, m in enumerate(msgs)])
    assert cols['device'] == [m.device for m in msgs]
    assert cols['tick_us'] == [m.tick_us for m in msgs]
    assert cols['recv_ns'] == [1000 + i for i in range(100)]
    assert gpio_columns([]) == {k: [] for k in cols}


def test_damaged_bytes_are_refused() -> None:
    data = serialize_message(gpio((1, 2), 'f', 'poke_left', 17, True, 5, 6, 'sim'))
    with pytest.raises(CdrError, match='not an XCDR1 message'):
        gpio_columns([(1, b'')])
    with pytest.raises(CdrError, match='not an XCDR1 message'):
        gpio_columns([(1, b'\x07' + data[1:])])
    with pytest.raises(CdrError, match='not an XCDR1 message'):  # XCDR2 aligns tick_us differently
        gpio_columns([(1, b'\x00\x07' + data[2:])])
    for cut in (6, 12, 20, 30, len(data) - 8):
        with pytest.raises(CdrError, match='GpioEvent'):
            gpio_columns([(1, data[:cut])])
    # a string length pointing past the end of the message
    bad = bytearray(data)
    bad[12:16] = (10_000).to_bytes(4, 'little')
    with pytest.raises(CdrError, match='bad string'):
        gpio_columns([(1, bytes(bad))])
    with pytest.raises(CdrError, match='SoundOnset'):
        sound_columns([(1, serialize_message(SoundOnset(sound_id='x'))[:-20])])
