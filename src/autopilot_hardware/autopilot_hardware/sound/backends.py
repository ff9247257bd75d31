"""Audio backends: PortAudio through sounddevice (JACK when jackd runs), and a real-time null device.

Both call :meth:`Mixer.fill` once per block and hand every onset to a sink (a queue put: cheap and
non-blocking, since it runs on the audio thread). Neither imports ROS.
"""

from __future__ import annotations

import threading
import time
import wave
from typing import Any

import numpy as np

from autopilot_hardware.sound.mixer import SOURCE_CALLBACK, SOURCE_DAC, SOURCE_NULL, ClockMap, Mixer, Onset, OnsetSink

BACKENDS = ('sounddevice', 'null')


class DeviceError(RuntimeError):
    """The audio device cannot be opened; the message names it and the fix."""


class NullBackend:
    """A device that outputs nothing but keeps real time: one block every ``blocksize / samplerate`` s.

    Like a real device it mixes one block ahead: the block mixed at time ``T`` "plays" from ``T + block``,
    so an onset is never earlier than the command. ``t0`` is the time frame 0 plays; frame ``f`` plays at
    ``t0 + f / samplerate`` (SOURCE_NULL). When ``wav_path`` is set, every block (silence included) is written to a 16-bit WAV, so the file holds
    what the device would have played, sample-aligned with the onsets (for tests).
    """

    name = 'null'

    def __init__(self, mixer: Mixer, samplerate: int, blocksize: int, channels: int, on_onset: OnsetSink,
                 wav_path: str = '') -> None:
        self.mixer, self.samplerate, self.blocksize, self.channels = mixer, samplerate, blocksize, channels
        self.on_onset = on_onset
        self.late_blocks = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='sound-null', daemon=True)
        self._wav: wave.Wave_write | None = None
        if wav_path:
            try:
                self._wav = wave.open(wav_path, 'wb')
            except OSError as exc:
                raise DeviceError(f'null backend: cannot write null_wav_path {wav_path!r} ({exc}); '
                                  f'set -p null_wav_path:=<writable file> or leave it empty') from None
            self._wav.setnchannels(channels)
            self._wav.setsampwidth(2)
            self._wav.setframerate(samplerate)
        self.t0 = 0.0

    def describe(self) -> str:
        return f'null (no output{", recording to WAV" if self._wav else ""})'

    def start(self) -> None:
        self.t0 = time.monotonic() + self.blocksize / self.samplerate
        self._thread.start()

    def _run(self) -> None:
        buf = np.zeros((self.blocksize, self.channels), np.float32)
        block_s = self.blocksize / self.samplerate
        k = 0
        while not self._stop.is_set():
            delay = self.t0 + (k - 1) * block_s - time.monotonic()  # block k is mixed one block early
            if delay > 0:
                if self._stop.wait(delay):
                    break
            elif delay < -block_s:
                # Fell behind by whole blocks (load): like a device underrun, those blocks are silence
                # (written as such), so the next block's time is not in the past and onsets stay exact.
                missed = int(-delay // block_s)
                self.late_blocks += missed
                self.mixer.skip(missed * self.blocksize)
                if self._wav is not None:
                    self._wav.writeframes(bytes(2 * self.channels * self.blocksize * missed))
                k += missed
            for req, frame in self.mixer.fill(buf):
                self.on_onset(Onset(req, self.t0 + frame / self.samplerate, SOURCE_NULL, frame))
            if self._wav is not None:
                self._wav.writeframes((np.clip(buf, -1, 1) * 32767).astype('<i2').tobytes())
            k += 1

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2)
        if self._wav is not None:
            self._wav.close()
            self._wav = None


def parse_device(device: str) -> int | str | None:
    """sounddevice's device argument from the parameter: '' = default, digits = index, else a name."""
    device = device.strip()
    if not device:
        return None
    return int(device) if device.isdigit() else device


class SoundDeviceBackend:
    """A PortAudio output stream whose callback mixes the queued sounds; onsets from the DAC time."""

    name = 'sounddevice'

    def __init__(self, mixer: Mixer, samplerate: int, blocksize: int, channels: int, on_onset: OnsetSink,
                 device: str = '') -> None:
        self.mixer, self.on_onset = mixer, on_onset
        self.clock = ClockMap()
        self.xruns = 0
        fix = ('plug in / start the audio device (for JACK: start jackd before the node), pick another with '
               '-p device:=<name or index> (list them: python -m sounddevice), or run without sound with '
               '-p backend:=null')
        try:
            import sounddevice as sd
        except OSError as exc:  # the PortAudio library itself is missing
            raise DeviceError(f'sound: PortAudio not found ({exc}); install it (Debian/Ubuntu: apt install '
                              f'libportaudio2) or use -p backend:=null') from None
        dev = parse_device(device)
        label = repr(device) if device else 'default output device'
        try:
            info: Any = sd.query_devices(dev, 'output')
            self.stream = sd.OutputStream(samplerate=samplerate, blocksize=blocksize, device=dev,
                                          channels=channels, dtype='float32', latency='low',
                                          callback=self._callback)
        except (ValueError, sd.PortAudioError) as exc:
            try:
                outputs = [d['name'] for d in sd.query_devices() if d['max_output_channels'] > 0]
            except sd.PortAudioError:
                outputs = []
            seen = ', '.join(repr(o) for o in outputs) if outputs else 'none'
            raise DeviceError(f'sound: audio output {label} not usable ({exc}; PortAudio sees outputs: {seen}); '
                              f'{fix}') from None
        self.device_name = f"{info['name']} ({sd.query_hostapis(info['hostapi'])['name']})"

    def describe(self) -> str:
        return f'sounddevice {self.device_name}, output latency {self.stream.latency * 1000:.1f} ms'

    def _callback(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        mono = time.monotonic()
        if status.output_underflow:
            self.xruns += 1
        started = self.mixer.fill(outdata)
        dac, now = time_info.outputBufferDacTime, time_info.currentTime
        if now > 0:
            self.clock.update(now, mono)
        if not started:
            return
        if dac > 0 and now > 0:
            onset, source = self.clock.to_monotonic(dac), SOURCE_DAC
        else:
            # Some host APIs report no times: the best left is callback time + the stream's output latency.
            onset, source = mono + self.stream.latency, SOURCE_CALLBACK
        for req, frame in started:
            self.on_onset(Onset(req, onset, source, frame))  # every new play starts at the block's first frame

    def start(self) -> None:
        self.stream.start()

    def stop(self) -> None:
        try:
            self.stream.stop()
        finally:
            self.stream.close()


def make_backend(name: str, mixer: Mixer, samplerate: int, blocksize: int, channels: int, on_onset: OnsetSink,
                 device: str = '', wav_path: str = '') -> NullBackend | SoundDeviceBackend:
    """The backend called ``name``; DeviceError if its device cannot be opened."""
    if name == 'null':
        return NullBackend(mixer, samplerate, blocksize, channels, on_onset, wav_path)
    if name == 'sounddevice':
        return SoundDeviceBackend(mixer, samplerate, blocksize, channels, on_onset, device)
    raise DeviceError(f'sound: unknown backend {name!r}; choose one of: {", ".join(BACKENDS)}')
