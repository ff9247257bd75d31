"""``sound``: the sound stimulus server node (relative names, so ``/<pilot>/sound/...`` by namespace).

* ``sound/load`` (LoadSound): render a SoundSpec once and cache it by id; refused with the field and
  allowed range when invalid (amplitude over ``max_amplitude``, frequency above Nyquist, ...).
* ``sound/play`` (SoundPlay, QoS EVENTS) and ``sound/play_sound`` (PlaySound): play a cached sound. A sound
  loaded with ``loop`` plays on until cancelled or stopped (a continuous background); a GAP played meanwhile
  silences it for the GAP's duration, from a block's first frame (its onset, stamped as any), with raised-cosine
  edges of the GAP's ramp_ms.
* ``sound/stop`` (std_msgs/Empty, QoS EVENTS): stop every sound now (a 5 ms fade, no click); plays
  still queued get an onset with ok=false. ``sound/cancel`` (SoundCancel): the same for one play_id.
* ``sound/onsets`` (SoundOnset, QoS EVENTS): one per play, stamped with the ROS time the first sample
  leaves the DAC (see :mod:`.mixer` for the clock mapping), or ok=false with the reason.

Plays that overlap are mixed (summed; clipping is counted and logged, never silent). ``sound/play_sound``
blocks the executor until the onset is known (one audio block plus output latency, ~5-15 ms); use the
topic where that matters.

The logic is in :mod:`.render`, :mod:`.mixer` and :mod:`.backends`; this node only wires them to ROS.
Onsets go from the audio thread through a queue to a dispatcher thread that publishes them, so the
audio callback never calls into ROS and a slow subscriber never stalls the audio.
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from typing import Any

from autopilot_msgs.msg import SoundCancel, SoundOnset, SoundPlay
from autopilot_msgs.srv import LoadSound, PlaySound
from rclpy.duration import Duration
from rclpy.node import Node
from std_msgs.msg import Empty

from autopilot_core import guard, intra, qos, stamps
from autopilot_core.executors import run_node
from autopilot_core.params import ParamSpec, check_unknown, declare
from autopilot_hardware.plugins import DeviceInfo
from autopilot_hardware.sound.backends import BACKENDS, make_backend
from autopilot_hardware.sound.mixer import Mixer, Onset, PlayRequest
from autopilot_hardware.sound.render import KIND_NAMES, Limits, SoundCache, SpecError, UnknownSound

PARAMS = (
    ParamSpec('backend', 'sounddevice', 'Audio backend: PortAudio (JACK when jackd runs) or a silent real-time '
              'clock', choices=BACKENDS, read_only=True),
    ParamSpec('device', '', 'sounddevice output device: name substring or index ("": the default device)',
              read_only=True),
    ParamSpec('samplerate', 48000, 'Output sample rate', unit='Hz', min=8000, max=192000, read_only=True),
    ParamSpec('blocksize', 256, 'Frames per audio block (onset granularity and latency)', unit='frames',
              min=16, max=8192, read_only=True),
    ParamSpec('channels', 1, 'Output channels (a sound plays on all of them, or on the one its spec names)', min=1,
              max=32, read_only=True),
    ParamSpec('max_amplitude', 0.5, 'Amplitude ceiling: louder sounds are refused at load, never clipped '
              '(protects ears and speakers)', unit='full scale', min=0.0, max=1.0, read_only=True),
    ParamSpec('max_duration_s', 60.0, 'Longest sound that may be loaded (memory bound)', unit='s',
              min=0.001, max=3600.0, read_only=True),
    ParamSpec('max_cache_mb', 256.0, 'Memory all loaded sounds may take together; a load past it is refused',
              unit='MiB', min=1.0, max=16384.0, read_only=True),
    ParamSpec('null_wav_path', '', 'null backend: write everything it would have played to this WAV file',
              read_only=True),
    ParamSpec('play_timeout_s', 2.0, 'How long sound/play_sound waits for the onset before answering ok=false',
              unit='s', min=0.01, max=60.0),
)

DEVICE = DeviceInfo(
    name='sound', kind='sound', package='autopilot_hardware', executable='sound', backends=BACKENDS,
    description='Sound stimulus server: tones, noise, gammatone noise, FM sweeps, gaps and WAV files with DAC-timed '
                'onsets',
    parameters=PARAMS,
)


class SoundServer(Node):
    def __init__(self, **node_options: Any) -> None:
        """``node_options``: rclpy Node keywords (``context``, ``namespace``, ``parameter_overrides``...)."""
        super().__init__('sound', **node_options)
        p = declare(self, PARAMS)
        check_unknown(self)  # a misspelt params-file key is an error, not silently ignored
        self.cache = SoundCache(Limits(samplerate=p['samplerate'], max_amplitude=p['max_amplitude'],
                                       max_duration_s=p['max_duration_s'], channels=p['channels'],
                                       max_cache_mb=p['max_cache_mb']))
        self.mixer = Mixer(p['channels'])
        self._onsets: queue.Queue[Onset | None] = queue.Queue()
        # Opening the device first: a missing device raises here, before any thread or endpoint exists.
        self.backend = make_backend(p['backend'], self.mixer, p['samplerate'], p['blocksize'], p['channels'],
                                    self._onsets.put, device=p['device'], wav_path=p['null_wav_path'])
        self.onset_pub = intra.create_publisher(self, SoundOnset, 'sound/onsets', qos.EVENTS)  # see gpio/node.py
        # Guarded (autopilot_core.guard): a malformed request or message is refused and counted, never fatal.
        guard.create_service(self, LoadSound, 'sound/load', self.on_load)
        guard.create_service(self, PlaySound, 'sound/play_sound', self.on_play_sound)
        # Both command topics intra (guarded too): a composed pilot's stop never overtakes its plays, nor they it.
        intra.create_subscription(self, SoundPlay, 'sound/play', self.on_play, qos.EVENTS)
        intra.create_subscription(self, Empty, 'sound/stop', self.on_stop, qos.EVENTS)
        intra.create_subscription(self, SoundCancel, 'sound/cancel', self.on_cancel, qos.EVENTS)
        self._dispatcher = threading.Thread(target=self._dispatch, name='sound-onsets', daemon=True)
        self._dispatcher.start()
        self.backend.start()
        self._problems: tuple[int, int] | None = None  # baseline taken at the first check: streams underrun as they start
        self.create_timer(5.0, self._check_health)
        self.get_logger().info(f'sound server ready: {self.backend.describe()}, {p["samplerate"]} Hz, '
                               f'block {p["blocksize"]}, max_amplitude {p["max_amplitude"]}')

    # -- ROS callbacks -------------------------------------------------------------------------------
    def on_load(self, request: LoadSound.Request, response: LoadSound.Response) -> LoadSound.Response:
        spec = request.sound
        try:
            x = self.cache.load(spec)
        except SpecError as exc:
            response.success, response.message = False, f'sound {spec.id!r}: {exc}'
            self.get_logger().warning(response.message)
            return response
        except Exception as exc:  # noqa: BLE001 - e.g. MemoryError: refuse the load, keep the node up
            response.success, response.message = False, f'sound {spec.id!r}: could not be rendered: {exc!r}'
            self.get_logger().error(response.message)
            return response
        sr = self.cache.limits.samplerate
        response.success, response.n_samples, response.duration_ms = True, len(x), len(x) * 1000 / sr
        response.message = f'loaded {spec.id!r}: {KIND_NAMES[spec.kind]}, {len(x)} samples ({len(x) * 1000 / sr:g} ms)'
        self.get_logger().info(response.message)
        return response

    def _submit(self, sound_id: str, play_id: int) -> PlayRequest | SoundOnset:
        """Queue a play, or return the failed onset (also published) when the id is unknown."""
        received = time.monotonic()
        try:
            loaded = self.cache.entry(sound_id)
        except UnknownSound as exc:
            msg = SoundOnset(sound_id=sound_id, play_id=play_id, ok=False, message=str(exc))
            msg.header.stamp = self.get_clock().now().to_msg()
            self.get_logger().warning(msg.message)
            self.onset_pub.publish(msg)
            return msg
        req = PlayRequest(sound_id, play_id, loaded.samples, received, loaded.channel, loaded.loop, loaded.gap,
                          loaded.ramp)
        self.mixer.submit(req)
        return req

    def on_play(self, msg: SoundPlay) -> None:
        self._submit(msg.sound_id, msg.play_id)

    def on_stop(self, _msg: Empty) -> None:
        dropped = self.mixer.stop()
        for req in dropped:
            self._dropped(req, 'stopped (sound/stop) before it started')
        self.get_logger().info(f'stop: sounds fading out, {len(dropped)} queued play(s) dropped')

    def on_cancel(self, msg: SoundCancel) -> None:
        for req in self.mixer.cancel(msg.play_id):
            self._dropped(req, f'cancelled (sound/cancel of play {msg.play_id}) before it started')

    def _dropped(self, req: PlayRequest, why: str) -> None:
        """The onset of a play that will never start: ok=false with ``why``."""
        msg = SoundOnset(sound_id=req.sound_id, play_id=req.play_id, ok=False, message=why)
        msg.header.stamp = self.get_clock().now().to_msg()
        req.onset_msg = msg
        req.done.set()
        self.onset_pub.publish(msg)

    def on_play_sound(self, request: PlaySound.Request, response: PlaySound.Response) -> PlaySound.Response:
        req = self._submit(request.sound_id, request.play_id)
        if isinstance(req, SoundOnset):
            response.onset = req
            return response
        timeout = self.get_parameter('play_timeout_s').value
        # Blocks this callback for one audio block or so (the onset is known when the block is mixed);
        # the dispatcher thread, not the executor, fills req.onset, so this cannot deadlock.
        if req.done.wait(timeout) and req.onset_msg is not None:
            response.onset = req.onset_msg
        else:
            response.onset = SoundOnset(sound_id=request.sound_id, play_id=request.play_id, ok=False,
                                        message=f'no onset within play_timeout_s={timeout:g} s: the audio '
                                                f'stream is not running ({self.backend.describe()})')
        return response

    def _check_health(self) -> None:
        """Warn about underruns and clipping since the last check (counted on the audio side, which cannot log)."""
        # Only real devices' underruns: the null backend's late blocks are silence that keeps its stamps exact.
        now = (getattr(self.backend, 'xruns', 0), self.mixer.clipped_blocks)
        if self._problems is None:
            self._problems = now
            return
        under, clipped = now[0] - self._problems[0], now[1] - self._problems[1]
        if under:
            self.get_logger().warning(f'{under} audio blocks were late (output underrun): onsets near them may be '
                                      f'late; raise blocksize or lower the machine\'s load')
        if clipped:
            self.get_logger().warning(f'{clipped} blocks clipped: overlapping sounds summed past full scale')
        self._problems = now

    # -- onsets ----------------------------------------------------------------------------------------
    def _dispatch(self) -> None:
        sr = self.cache.limits.samplerate
        while True:
            onset = self._onsets.get()
            if onset is None:
                return
            req = onset.request
            # monotonic -> ROS time, both clocks read together now (see mixer's module doc).
            offset = stamps.offset_from_monotonic_ns(lambda: self.get_clock().now().nanoseconds)
            stamp_ns = round(onset.time * 1e9) + offset
            msg = SoundOnset(sound_id=req.sound_id, play_id=req.play_id, duration_ms=len(req.samples) * 1000 / sr,
                             latency_ms=onset.latency_s * 1000, source=onset.source, ok=True)
            stamps.stamp(msg.header.stamp, stamp_ns)
            req.onset_msg = msg
            req.done.set()
            try:
                self.onset_pub.publish(msg)
            except Exception as exc:  # noqa: BLE001 - context shut down under us; nothing to publish to
                self.get_logger().warning(f'onset of {req.sound_id!r} not published: {exc}')

    def close(self) -> None:
        self.backend.stop()
        self._onsets.put(None)
        self._dispatcher.join(timeout=2)
        self.onset_pub.wait_for_all_acked(Duration(seconds=1))


def main(args: list[str] | None = None) -> int:
    return run_node(SoundServer, args)


if __name__ == '__main__':
    sys.exit(main())
