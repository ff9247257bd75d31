"""Sound server logic without ROS: rendered samples, validation messages, mixer, clock map, null backend."""

from __future__ import annotations

import queue
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from autopilot_core import stamps
from autopilot_hardware.sound.backends import DeviceError, NullBackend, SoundDeviceBackend, parse_device
from autopilot_hardware.sound.mixer import SOURCE_NULL, ClockMap, Mixer, PlayRequest
from autopilot_hardware.sound.render import (
    KIND_FM_SWEEP,
    KIND_GAMMATONE,
    KIND_GAP,
    KIND_NOISE,
    KIND_WAV,
    Limits,
    SoundCache,
    Spec,
    SpecError,
    UnknownSound,
    cosine_ramp,
    render,
)

SR = 48000
LIM = Limits(samplerate=SR, max_amplitude=0.5, max_duration_s=10.0)


def peak_hz(x: np.ndarray, sr: int = SR) -> float:
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x)), n=len(x) * 4))
    return float(np.argmax(spec)) * sr / (len(x) * 4)


def write_wav(path: Path, x: np.ndarray, sr: int = SR, channels: int = 1) -> None:
    with wave.open(str(path), 'wb') as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.repeat(x[:, None], channels, axis=1) * 32767).astype('<i2').tobytes())


def test_tone_frequency_duration_amplitude() -> None:
    x = render(Spec(frequency_hz=5000, duration_ms=200, amplitude=0.3), LIM)
    assert x.dtype == np.float32 and len(x) == 9600
    assert abs(peak_hz(x) - 5000) < 5
    assert abs(float(np.max(np.abs(x))) - 0.3) < 1e-3


def test_cosine_ramps_shape() -> None:
    x = render(Spec(frequency_hz=1000, duration_ms=100, amplitude=0.4, ramp_ms=10), LIM)
    n = 480
    env = np.abs(x)
    assert env[0] == 0.0 and float(np.max(env[:24])) < 0.4 * 0.01  # starts from silence
    # Envelope at the ramp's middle is half, and the middle of the sound is at full amplitude.
    assert cosine_ramp(n)[n // 2] == pytest.approx(0.5, abs=1e-6)
    assert float(np.max(env[n: len(x) - n])) == pytest.approx(0.4, abs=1e-3)
    assert np.allclose(x[:n], 0.4 * np.sin(2 * np.pi * 1000 * np.arange(n) / SR) * cosine_ramp(n), atol=1e-6)
    assert float(np.max(env[-24:])) < 0.4 * 0.01  # and ends in it


def test_noise_seeded_reproducible() -> None:
    a = render(Spec(kind=KIND_NOISE, duration_ms=50, amplitude=0.2, seed=7), LIM)
    b = render(Spec(kind=KIND_NOISE, duration_ms=50, amplitude=0.2, seed=7), LIM)
    c = render(Spec(kind=KIND_NOISE, duration_ms=50, amplitude=0.2, seed=8), LIM)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert float(np.max(np.abs(a))) == pytest.approx(0.2, abs=1e-6) and len(a) == 2400
    # White: the spectrum's upper and lower halves carry comparable power.
    p = np.abs(np.fft.rfft(a)) ** 2
    assert 0.7 < p[1:len(p) // 2].sum() / p[len(p) // 2:].sum() < 1.4


def test_fm_sweep_start_and_end_frequency() -> None:
    x = render(Spec(kind=KIND_FM_SWEEP, frequency_hz=2000, end_frequency_hz=8000, duration_ms=500, amplitude=0.3), LIM)
    seg = 2400  # 50 ms windows at each end: mean instantaneous frequency 2300 Hz and 7700 Hz
    assert abs(peak_hz(x[:seg]) - 2300) < 60
    assert abs(peak_hz(x[-seg:]) - 7700) < 60


def test_wav_file_is_read_and_peak_normalised(tmp_path: Path) -> None:
    t = np.arange(4800) / SR
    write_wav(tmp_path / 'a.wav', 0.9 * np.sin(2 * np.pi * 3000 * t), channels=2)
    x = render(Spec(kind=KIND_WAV, path=str(tmp_path / 'a.wav'), amplitude=0.25, duration_ms=0), LIM)
    assert len(x) == 4800 and abs(peak_hz(x) - 3000) < 10
    assert float(np.max(np.abs(x))) == pytest.approx(0.25, abs=1e-4)
    part = render(Spec(kind=KIND_WAV, path=str(tmp_path / 'a.wav'), amplitude=0.25, duration_ms=50), LIM)
    assert len(part) == 2400


def test_a_wav_file_at_another_rate_is_resampled_to_the_servers(tmp_path: Path) -> None:
    t = np.arange(44100) / 44100  # 1 s of 3 kHz at 44.1 kHz
    write_wav(tmp_path / 'b.wav', 0.5 * np.sin(2 * np.pi * 3000 * t), sr=44100)
    x = render(Spec(kind=KIND_WAV, path=str(tmp_path / 'b.wav'), amplitude=0.2, duration_ms=0), LIM)
    assert len(x) == SR and abs(peak_hz(x) - 3000) < 2  # same duration, same pitch at 48 kHz
    assert float(np.max(np.abs(x))) == pytest.approx(0.2, abs=1e-4)
    write_wav(tmp_path / 'c.wav', 0.5 * np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000), sr=8000)
    y = render(Spec(kind=KIND_WAV, path=str(tmp_path / 'c.wav'), amplitude=0.2, duration_ms=500), LIM)
    assert len(y) == SR // 2 and abs(peak_hz(y) - 1000) < 3


def test_gap_is_silence_of_its_duration() -> None:
    x = render(Spec(kind=KIND_GAP, duration_ms=20, amplitude=0.0), LIM)
    assert len(x) == 960 and not x.any()


def test_gammatone_noise_is_a_seeded_band_around_its_frequency() -> None:
    a = render(Spec(kind=KIND_GAMMATONE, frequency_hz=4000, duration_ms=500, amplitude=0.3, seed=3), LIM)
    b = render(Spec(kind=KIND_GAMMATONE, frequency_hz=4000, duration_ms=500, amplitude=0.3, seed=3), LIM)
    c = render(Spec(kind=KIND_GAMMATONE, frequency_hz=4000, duration_ms=500, amplitude=0.3, seed=4), LIM)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert float(np.max(np.abs(a))) == pytest.approx(0.3, abs=1e-4)
    power = np.abs(np.fft.rfft(a)) ** 2
    hz = np.fft.rfftfreq(len(a), 1 / SR)
    band = power[(hz > 3500) & (hz < 4500)].sum() / power.sum()
    assert band > 0.6, band  # most of the power within about an ERB (456 Hz at 4 kHz) of the centre
    assert 3800 < float((hz * power).sum() / power.sum()) < 4300


def test_a_channel_must_exist() -> None:
    stereo = Limits(samplerate=SR, max_amplitude=0.5, max_duration_s=10.0, channels=2)
    assert len(render(Spec(channel=2), stereo)) == 4800
    with pytest.raises(SpecError, match='channel 3 does not exist: the server has 2 output channel'):
        render(Spec(channel=3), stereo)


def test_the_cache_refuses_a_load_past_its_bound_and_counts_a_replaced_sound_once() -> None:
    cache = SoundCache(Limits(samplerate=SR, max_amplitude=0.5, max_duration_s=60.0, max_cache_mb=1.0))
    cache.load(Spec(id='a', duration_ms=4000))            # 192,000 samples: 0.73 MiB
    cache.load(Spec(id='a', duration_ms=5000))            # replaces it: 0.92 MiB in all
    with pytest.raises(SpecError, match='more than max_cache_mb=1'):
        cache.load(Spec(id='b', duration_ms=1000))
    assert cache.ids() == ['a'] and cache.nbytes() == 240_000 * 4


@pytest.mark.parametrize('spec, fragment', [
    (Spec(duration_ms=-5), 'duration_ms -5 is out of range, allowed (0, 10000] ms'),
    (Spec(frequency_hz=30000), 'frequency_hz 30000 is out of range, allowed (0, 24000) Hz (below Nyquist'),
    (Spec(kind=KIND_FM_SWEEP, frequency_hz=1000, end_frequency_hz=25000), 'end_frequency_hz 25000 is out of range'),
    (Spec(amplitude=0.8), 'amplitude 0.8 is above the ceiling max_amplitude=0.5'),
    (Spec(amplitude=-0.1), 'amplitude -0.1 is out of range, allowed [0, 0.5]'),
    (Spec(ramp_ms=60, duration_ms=100), 'ramp_ms 60 is out of range, allowed [0, 50] ms'),
    (Spec(kind=KIND_WAV, path='/nonexistent/x.wav'), "path '/nonexistent/x.wav': no such file"),
    (Spec(kind=KIND_WAV, path='relative.wav'), 'must be an absolute path'),
    (Spec(kind=9), 'kind 9 is unknown, allowed TONE=0'),
    (Spec(kind=KIND_GAMMATONE, frequency_hz=24000), 'frequency_hz 24000 is out of range'),
    (Spec(id=''), 'id is empty'),
    (Spec(duration_ms=float('nan')), 'duration_ms nan is out of range'),
])
def test_bad_specs_name_field_and_range(spec: Spec, fragment: str) -> None:
    with pytest.raises(SpecError) as err:
        render(spec, LIM)
    assert fragment in str(err.value)


def test_cache_by_id_and_unknown_id() -> None:
    cache = SoundCache(LIM)
    cache.load(Spec(id='a', duration_ms=10))
    cache.load(Spec(id='a', duration_ms=20))  # replaced
    assert len(cache.get('a')) == 960 and cache.ids() == ['a']
    with pytest.raises(UnknownSound, match=r"unknown sound id 'b'.*loaded: 'a'"):
        cache.get('b')
    with pytest.raises(ValueError):
        cache.get('a')[0] = 1.0  # cached samples are read-only


def _req(samples: np.ndarray, play_id: int = 0) -> PlayRequest:
    return PlayRequest('s', play_id, samples.astype(np.float32), time.monotonic())


def test_mixer_starts_at_block_and_mixes_overlaps() -> None:
    m = Mixer(channels=2)
    out = np.zeros((4, 2), np.float32)
    assert m.fill(out) == [] and not out.any()
    a, b = _req(np.full(6, 0.25)), _req(np.full(2, 0.5))
    m.submit(a)
    m.submit(b)
    started = m.fill(out)
    assert [(r.play_id, f) for r, f in started] == [(0, 4), (0, 4)]
    assert np.allclose(out[:, 0], [0.75, 0.75, 0.25, 0.25]) and np.array_equal(out[:, 0], out[:, 1])
    assert m.fill(out) == [] and np.allclose(out[:, 0], [0.25, 0.25, 0, 0])
    assert m.active == 0 and m.frames == 12
    m.submit(_req(np.full(4, 0.8)))
    m.submit(_req(np.full(4, 0.8)))
    m.fill(out)
    assert float(out.max()) == 1.0 and m.clipped_blocks == 1


def test_mixer_stop_fades_playing_and_drops_queued() -> None:
    m = Mixer(channels=1)
    m.fade_frames = 4
    out = np.zeros((3, 1), np.float32)
    m.submit(_req(np.full(100, 0.5), play_id=1))
    m.fill(out)
    queued = _req(np.full(10, 0.5), play_id=2)
    m.submit(queued)
    assert m.stop() == [queued]
    m.fill(out)  # the playing sound fades linearly to silence over 4 frames, the queued one never starts
    assert np.allclose(out[:, 0], [0.375, 0.25, 0.125])
    m.fill(out)
    assert not out.any() and m.active == 0
    m.submit(_req(np.full(3, 0.5), play_id=3))  # sounds after a stop play normally
    assert [r.play_id for r, _ in m.fill(out)] == [3] and np.allclose(out[:, 0], 0.5)


def test_mixer_cancel_fades_one_play_and_leaves_the_others() -> None:
    m = Mixer(channels=1)
    m.fade_frames = 4
    out = np.zeros((3, 1), np.float32)
    m.submit(_req(np.full(100, 0.25), play_id=1))
    m.submit(_req(np.full(100, 0.25), play_id=2))
    m.fill(out)
    queued = _req(np.full(10, 0.5), play_id=3)
    later = _req(np.full(10, 0.125), play_id=4)
    m.submit(queued)
    m.submit(later)
    assert m.cancel(3) == [queued]   # queued: never starts
    assert m.cancel(1) == []         # playing: fades
    started = m.fill(out)
    assert [r.play_id for r, _ in started] == [4]
    assert np.allclose(out[:, 0], [0.25 + 0.1875 + 0.125, 0.25 + 0.125 + 0.125, 0.25 + 0.0625 + 0.125])
    m.fill(out)
    assert np.allclose(out[:, 0], 0.25 + 0.125)  # play 2 and 4 go on


def test_mixer_routes_a_sound_to_its_channel() -> None:
    m = Mixer(channels=2)
    out = np.zeros((2, 2), np.float32)
    m.submit(PlayRequest('l', 1, np.full(2, 0.25, np.float32), time.monotonic(), channel=1))
    m.submit(PlayRequest('r', 2, np.full(2, 0.5, np.float32), time.monotonic(), channel=2))
    m.submit(PlayRequest('both', 3, np.full(2, 0.125, np.float32), time.monotonic()))
    m.fill(out)
    assert np.allclose(out[:, 0], 0.375) and np.allclose(out[:, 1], 0.625)


def test_a_looping_sound_plays_on_and_a_gap_cuts_into_it_sample_accurately() -> None:
    m = Mixer(channels=2)
    out = np.zeros((8, 2), np.float32)
    background = PlayRequest('bg', 1, np.array([0.1, 0.2, 0.3], np.float32), time.monotonic(), loop=True)
    m.submit(background)
    blocks = []
    for _ in range(2):
        m.fill(out)
        blocks.append(out.copy())
    assert np.allclose(np.concatenate(blocks)[:, 0], np.tile([0.1, 0.2, 0.3], 6)[:16])  # wraps, never ends
    # A 6-frame gap on the left channel only, with 2-frame raised-cosine edges, from the next block's first frame.
    gap = PlayRequest('gap', 2, np.zeros(6, np.float32), time.monotonic(), channel=1, gap=True, ramp=2)
    m.submit(gap)
    started = m.fill(out)
    assert [(r.play_id, f) for r, f in started] == [(2, 16)]
    level = np.tile([0.1, 0.2, 0.3], 8)[16:24]
    assert np.allclose(out[:, 1], level)                               # the right channel is untouched
    assert np.allclose(out[:, 0], level * np.array([1.0, 0.5, 0, 0, 0.0, 0.5, 1, 1]))
    m.fill(out)
    assert np.allclose(out[:, 0], np.tile([0.1, 0.2, 0.3], 11)[24:32]) and m.active == 1  # the gap is over
    assert m.cancel(1) == []                                          # cancelling the background fades it
    m.fade_frames = 4
    m.fill(out)
    m.fill(out)
    assert not out.any() and m.active == 0


def test_a_gap_cannot_loop() -> None:
    with pytest.raises(SpecError, match='a GAP cannot loop'):
        SoundCache(LIM).load(Spec(id='g', kind=KIND_GAP, loop=True))


def test_clock_map_finds_offset_under_delay_jitter_and_drift() -> None:
    rng = np.random.default_rng(1)
    for drift in (0.0, 0.002, -0.002):  # 0.2 % is what JACK's dummy driver drifts here
        c = ClockMap(window_s=1.0)
        for k in range(600):  # 3 s of 5 ms callbacks; reads are late by 0-3 ms, rarely by less than 0.1 ms
            mono = 100.0 + k * 0.005
            stream = (mono - 100.0) * (1 - drift) + 7.0
            c.update(stream, mono + rng.exponential(0.0005) + rng.uniform(0, 0.0025) * (k % 3 != 0))
        true_offset = mono - stream
        assert abs(c.offset() - true_offset) < 0.0002, (drift, c.offset() - true_offset)
        assert c.to_monotonic(stream + 0.01) == pytest.approx(mono + 0.01, abs=0.0003)
    with pytest.raises(RuntimeError):
        ClockMap().offset()


def test_null_backend_keeps_real_time_and_writes_wav(tmp_path: Path) -> None:
    onsets: queue.Queue = queue.Queue()
    m = Mixer(1)
    wav_path = tmp_path / 'null.wav'
    b = NullBackend(m, SR, 240, 1, onsets.put, str(wav_path))
    b.start()
    time.sleep(0.1)
    tone = render(Spec(frequency_hz=1000, duration_ms=20, amplitude=0.5), LIM)
    r = _req(tone, 3)
    m.submit(r)
    o = onsets.get(timeout=2)
    assert o.source == SOURCE_NULL and o.request is r and o.frame % 240 == 0
    assert 0 <= o.latency_s <= 240 / SR + 0.05
    assert o.time == pytest.approx(b.t0 + o.frame / SR)
    time.sleep(0.1)
    b.stop()
    elapsed = time.monotonic() - b.t0
    with wave.open(str(wav_path), 'rb') as w:
        n = w.getnframes()
        data = np.frombuffer(w.readframes(n), '<i2') / 32767
    assert abs(n / SR - elapsed) < 0.05  # real time: as many frames as seconds passed
    assert not data[:o.frame].any()
    assert np.allclose(data[o.frame:o.frame + len(tone)], tone, atol=1e-4)
    assert not data[o.frame + len(tone):].any()


def test_parse_device_and_missing_device_message() -> None:
    assert parse_device('') is None and parse_device(' 3 ') == 3 and parse_device('system') == 'system'
    with pytest.raises(DeviceError) as err:
        SoundDeviceBackend(Mixer(1), SR, 256, 1, lambda o: None, device='no-such-card-xyz')
    msg = str(err.value)
    assert "'no-such-card-xyz'" in msg and 'backend:=null' in msg


def test_null_backend_late_thread_underruns_instead_of_stamping_the_past(tmp_path: Path) -> None:
    onsets: queue.Queue = queue.Queue()
    m = Mixer(1)
    b = NullBackend(m, SR, 240, 1, onsets.put, str(tmp_path / 'late.wav'))
    b.t0 = time.monotonic() - 0.1  # as if the thread had been stalled for 100 ms (20 blocks)
    b._thread.start()
    time.sleep(0.02)
    r = _req(np.full(240, 0.25), 1)
    m.submit(r)
    o = onsets.get(timeout=2)
    b.stop()
    assert b.late_blocks >= 19 and o.latency_s >= 0
    assert o.time == pytest.approx(b.t0 + o.frame / SR)
    with wave.open(str(tmp_path / 'late.wav'), 'rb') as w:
        data = np.frombuffer(w.readframes(w.getnframes()), '<i2') / 32767
    assert not data[:o.frame].any() and np.allclose(data[o.frame:o.frame + 240], 0.25, atol=1e-4)


def test_clock_offset_keeps_the_tightest_bracket() -> None:
    # The first read is "preempted" for 5 ms inside its bracket: its midpoint would be 2.5 ms off.
    calls = [0]
    true_offset = 1_000_000_000_000

    def read() -> int:
        calls[0] += 1
        now = time.monotonic_ns() + true_offset
        if calls[0] == 1:
            time.sleep(0.005)
        return now

    got = stamps.offset_from_monotonic_ns(read)
    assert calls[0] >= 2
    assert abs(got - true_offset) < 1_000_000, got - true_offset
