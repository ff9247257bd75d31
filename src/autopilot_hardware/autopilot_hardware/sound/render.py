"""Rendering of SoundSpec descriptions into sample arrays, with validation that names the bad field.

Everything here is plain Python + numpy, so tests check the samples without ROS. A spec is any object
with SoundSpec's fields (the ROS message itself, or :class:`Spec` in tests). Samples are mono float32
in [-1, 1]; the mixer copies them to every output channel.

Amplitudes above the server's ceiling are refused, never clipped: a clipped tone is a different
stimulus (harmonics), and a refused load is a bug the experimenter sees before an animal hears it.
"""

from __future__ import annotations

import math
import os
import threading
import wave
from dataclasses import dataclass
from typing import Any

import numpy as np

KIND_TONE, KIND_NOISE, KIND_FM_SWEEP, KIND_WAV, KIND_GAP, KIND_GAMMATONE = 0, 1, 2, 3, 4, 5
KIND_NAMES = {KIND_TONE: 'TONE', KIND_NOISE: 'NOISE', KIND_FM_SWEEP: 'FM_SWEEP', KIND_WAV: 'WAV', KIND_GAP: 'GAP',
              KIND_GAMMATONE: 'GAMMATONE'}
CHANNEL_ALL = 0
#: Largest output channel a spec may name (the node also checks it against its own channel count).
MAX_CHANNEL = 32


class SpecError(ValueError):
    """A sound spec that cannot be rendered; the message names the field and what is allowed."""


class UnknownSound(LookupError):
    """A play of a sound id that was never loaded."""


@dataclass
class Spec:
    """SoundSpec's fields as a plain object (for tests and callers without ROS)."""

    id: str = 'sound'
    kind: int = KIND_TONE
    frequency_hz: float = 1000.0
    end_frequency_hz: float = 0.0
    duration_ms: float = 100.0
    amplitude: float = 0.1
    ramp_ms: float = 0.0
    seed: int = 0
    path: str = ''
    channel: int = CHANNEL_ALL
    loop: bool = False


@dataclass(frozen=True)
class Limits:
    """What the server allows: its sample rate, amplitude ceiling and longest sound."""

    samplerate: int = 48000
    max_amplitude: float = 0.5
    max_duration_s: float = 60.0
    channels: int = 1
    max_cache_mb: float = 256.0


def _check_range(name: str, value: float, lo: float, hi: float, unit: str, *, lo_open: bool = False,
                 hi_open: bool = False, why: str = '') -> None:
    ok = math.isfinite(value) and (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        allowed = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'} {unit}".rstrip()
        raise SpecError(f'{name} {value:g} is out of range, allowed {allowed}{why}')


def cosine_ramp(n: int) -> np.ndarray:
    """Rising half-cosine of ``n`` samples, 0 at the first sample and approaching 1 (raised-cosine gate)."""
    return (0.5 * (1.0 - np.cos(np.pi * np.arange(n) / n))).astype(np.float32) if n > 0 else np.ones(0, np.float32)


def apply_ramps(x: np.ndarray, n_ramp: int) -> np.ndarray:
    """Gate ``x`` on and off with cosine ramps of ``n_ramp`` samples each (in place; returns x)."""
    if n_ramp > 0:
        r = cosine_ramp(n_ramp)
        x[:n_ramp] *= r
        x[-n_ramp:] *= r[::-1]
    return x


def read_wav(path: str) -> tuple[np.ndarray, int]:
    """Mono float samples in [-1, 1] and the sample rate of a PCM WAV file (channels averaged)."""
    if not path or not os.path.isabs(path):
        raise SpecError(f"path {path!r} must be an absolute path of a WAV file on the sound server's host")
    if not os.path.isfile(path):
        raise SpecError(f'path {path!r}: no such file on the sound server\'s host')
    try:
        with wave.open(path, 'rb') as w:
            rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
            raw = w.readframes(w.getnframes())
    except (wave.Error, EOFError, OSError) as exc:
        raise SpecError(f'path {path!r}: not a readable PCM WAV file ({exc})') from None
    if width == 1:  # 8-bit WAV is unsigned
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        x = np.frombuffer(raw, '<i2').astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        i = (b[:, 0].astype(np.int32) | (b[:, 1].astype(np.int32) << 8) | (b[:, 2].astype(np.int32) << 16))
        x = (np.where(i >= 1 << 23, i - (1 << 24), i) / float(1 << 23)).astype(np.float32)
    elif width == 4:
        x = (np.frombuffer(raw, '<i4') / float(1 << 31)).astype(np.float32)
    else:
        raise SpecError(f'path {path!r}: sample width {width} bytes is not supported (1-4)')
    return x.reshape(-1, channels).mean(axis=1).astype(np.float32), rate


def resample(x: np.ndarray, rate: int, samplerate: int) -> np.ndarray:
    """``x`` at ``rate`` resampled to ``samplerate`` (scipy's polyphase filter: band-limited, no drift)."""
    from scipy.signal import resample_poly

    g = math.gcd(int(rate), int(samplerate))
    return resample_poly(x, samplerate // g, rate // g).astype(np.float32)


def gammatone_noise(frequency_hz: float, n: int, samplerate: int, seed: int) -> np.ndarray:
    """``n`` samples of seeded white noise through a 4th-order gammatone filter centred on ``frequency_hz`` (an
    auditory filter's band, one ERB wide: scipy's design), unscaled."""
    from scipy.signal import gammatone, lfilter

    b, a = gammatone(frequency_hz, 'iir', fs=samplerate)
    rng = np.random.default_rng(seed)
    warm = min(n, samplerate // 10)  # the filter's ring-up happens before the sound starts
    return np.asarray(lfilter(b, a, rng.uniform(-1.0, 1.0, n + warm))[warm:], dtype=np.float64)


def render(spec: Any, limits: Limits) -> np.ndarray:
    """Validate ``spec`` against ``limits`` and return its mono float32 samples; SpecError if invalid."""
    sr = limits.samplerate
    nyquist = sr / 2
    if not spec.id:
        raise SpecError('id is empty: name the sound (e.g. "tone_5k") so it can be played by id')
    kind = int(spec.kind)
    if kind not in KIND_NAMES:
        raise SpecError(f'kind {kind} is unknown, allowed ' + ', '.join(f'{v}={k}' for k, v in KIND_NAMES.items()))
    amp = float(spec.amplitude)
    if not math.isfinite(amp) or amp < 0:
        raise SpecError(f'amplitude {amp:g} is out of range, allowed [0, {limits.max_amplitude:g}] of full scale')
    if amp > limits.max_amplitude:
        raise SpecError(f'amplitude {amp:g} is above the ceiling max_amplitude={limits.max_amplitude:g} '
                        f'(allowed [0, {limits.max_amplitude:g}] of full scale); lower the amplitude, or raise '
                        f'the sound node\'s max_amplitude parameter if the speakers and animal allow it')
    dur = float(spec.duration_ms)
    max_ms = limits.max_duration_s * 1000
    channel = int(getattr(spec, 'channel', CHANNEL_ALL))
    if not 0 <= channel <= limits.channels:
        raise SpecError(f'channel {channel} does not exist: the server has {limits.channels} output channel(s) '
                        f'(0 = all, 1-{limits.channels} = one of them)')
    if kind == KIND_WAV:
        _check_range('duration_ms', dur, 0, max_ms, 'ms', why=' (0 = the whole file)')
        x, rate = read_wav(spec.path)
        if rate != sr:
            x = resample(x, rate, sr)
        if dur > 0:
            x = x[:round(dur * sr / 1000)]
        if len(x) == 0:
            raise SpecError(f'path {spec.path!r}: the file has no samples')
        if len(x) > limits.max_duration_s * sr:
            raise SpecError(f'path {spec.path!r}: {len(x) / sr:g} s is longer than max_duration_s='
                            f'{limits.max_duration_s:g} s; set duration_ms to play a part of it')
        peak = float(np.max(np.abs(x)))
        # WAV files are peak-normalised to `amplitude`, so the ceiling holds whatever level the file has.
        x = (x * (amp / peak)).astype(np.float32) if peak > 0 else x.copy()
    else:
        _check_range('duration_ms', dur, 0, max_ms, 'ms', lo_open=True)
        n = round(dur * sr / 1000)
        if n < 1:
            raise SpecError(f'duration_ms {dur:g} is shorter than one sample at {sr} Hz '
                            f'(allowed ({1000 / sr:g}, {max_ms:g}] ms)')
        t = np.arange(n, dtype=np.float64) / sr
        if kind in (KIND_TONE, KIND_FM_SWEEP, KIND_GAMMATONE):
            _check_range('frequency_hz', float(spec.frequency_hz), 0, nyquist, 'Hz', lo_open=True, hi_open=True,
                         why=f' (below Nyquist, half of samplerate {sr} Hz)')
        if kind == KIND_GAP:
            x = np.zeros(n)
        elif kind == KIND_GAMMATONE:
            x = gammatone_noise(float(spec.frequency_hz), n, sr, int(spec.seed))
            x *= amp / max(float(np.max(np.abs(x))), 1e-12)
        elif kind == KIND_TONE:
            x = amp * np.sin(2 * np.pi * float(spec.frequency_hz) * t)
        elif kind == KIND_FM_SWEEP:
            _check_range('end_frequency_hz', float(spec.end_frequency_hz), 0, nyquist, 'Hz', lo_open=True,
                         hi_open=True, why=f' (below Nyquist, half of samplerate {sr} Hz)')
            f0, f1, total = float(spec.frequency_hz), float(spec.end_frequency_hz), n / sr
            # Linear chirp: instantaneous frequency f0 + (f1 - f0) t / T is the derivative of the phase.
            x = amp * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * total)))
        else:
            rng = np.random.default_rng(int(spec.seed))
            x = rng.uniform(-1.0, 1.0, n)
            x *= amp / max(float(np.max(np.abs(x))), 1e-12)  # exact peak = amplitude
        x = x.astype(np.float32)
    ramp = float(spec.ramp_ms)
    half_ms = len(x) / sr * 1000 / 2
    _check_range('ramp_ms', ramp, 0, half_ms, 'ms', why=' (each ramp at most half the duration)')
    return apply_ramps(x, round(ramp * sr / 1000))


@dataclass(frozen=True)
class Loaded:
    """A rendered sound and how it plays: on which channel (CHANNEL_ALL: every one), looping (a continuous
    background), or as a gap (silence that, played over a looping sound, cuts a gap into it)."""

    samples: np.ndarray
    channel: int = CHANNEL_ALL
    loop: bool = False
    gap: bool = False
    ramp: int = 0  # a gap's edges: frames over which the looping sound fades out and back in


class SoundCache:
    """Rendered sounds by id, bounded by ``limits.max_cache_mb``; thread-safe (loads come from ROS callbacks,
    reads from the audio side). A load that would pass the bound is refused, never an older sound evicted: a
    task counts on what it loaded."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self._sounds: dict[str, Loaded] = {}
        self._lock = threading.Lock()

    def load(self, spec: Any) -> np.ndarray:
        """Render and store ``spec`` under ``spec.id`` (replacing any sound of that id); SpecError if bad."""
        x = render(spec, self.limits)
        x.flags.writeable = False  # shared with the audio thread: nobody may change it in place
        gap = int(spec.kind) == KIND_GAP
        loop = bool(getattr(spec, 'loop', False))
        if loop and gap:
            raise SpecError('loop is for a sound to play continuously; a GAP cannot loop (it cuts gaps into one)')
        bound = int(self.limits.max_cache_mb * 2**20)
        with self._lock:
            old = self._sounds.get(spec.id)
            used = self.nbytes() - (old.samples.nbytes if old is not None else 0)
            if used + x.nbytes > bound:
                raise SpecError(f'the sound cache would hold {(used + x.nbytes) / 2**20:.1f} MiB, more than '
                                f'max_cache_mb={self.limits.max_cache_mb:g}: load shorter sounds, reuse ids, or raise '
                                f'the sound node\'s max_cache_mb')
            self._sounds[spec.id] = Loaded(x, int(getattr(spec, 'channel', CHANNEL_ALL)), loop, gap,
                                           round(float(spec.ramp_ms) * self.limits.samplerate / 1000) if gap else 0)
        return x

    def nbytes(self) -> int:
        """Bytes the cached samples take."""
        return sum(s.samples.nbytes for s in self._sounds.values())

    def get(self, sound_id: str) -> np.ndarray:
        """The samples of ``sound_id``; UnknownSound with a message naming the loaded ids otherwise."""
        return self.entry(sound_id).samples

    def entry(self, sound_id: str) -> Loaded:
        """``sound_id`` as loaded; UnknownSound with a message naming the loaded ids otherwise."""
        with self._lock:
            found = self._sounds.get(sound_id)
            ids = sorted(self._sounds)
        if found is None:
            loaded = ', '.join(repr(i) for i in ids) if ids else 'none'
            raise UnknownSound(f'unknown sound id {sound_id!r}: load it first with the sound/load service '
                               f'(loaded: {loaded})')
        return found

    def ids(self) -> list[str]:
        with self._lock:
            return sorted(self._sounds)
