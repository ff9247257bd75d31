"""Mixing queued sounds into output blocks, and mapping the audio clock to the ROS clock.

The audio side (a PortAudio callback or the null backend's thread) calls :meth:`Mixer.fill` once per
block. A sound submitted before a block is filled starts at that block's first frame, so its onset is
the time that frame reaches the DAC: exactly what PortAudio reports as ``outputBufferDacTime``. The
mixer is lock-free on the audio side (``collections.deque`` appends/pops are atomic), so ROS callbacks
never block the audio callback and vice versa.

Clock mapping (:class:`ClockMap`): PortAudio times are on the *stream clock* (``Pa_GetStreamTime``:
JACK's frame clock, ALSA's monotonic clock, ... depending on the host API), not on ours. In every
callback PortAudio gives ``currentTime`` (stream clock, now) next to ``outputBufferDacTime``; sampling
``time.monotonic()`` in the same callback gives one pair (stream, monotonic). Their difference is the
clock offset plus the delay between PortAudio reading its clock and our reading ours, which is never
negative: the lower envelope of recent pairs is therefore the best estimate (a line through the minima
of each half of a 1 s window, so drift between the two clocks is followed). An onset is then
``dac_time + offset`` on the monotonic clock; the node converts monotonic to ROS time when it publishes
(``ros_now - monotonic_now`` sampled together), so a step of the system clock between onset and
publication cannot move the stamp away from ROS time.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

SOURCE_DAC, SOURCE_CALLBACK, SOURCE_NULL = 0, 1, 2


@dataclass
class PlayRequest:
    """One play: which sound, the caller's id, when the command arrived (monotonic s)."""

    sound_id: str
    play_id: int
    samples: np.ndarray
    received: float
    channel: int = 0  # 0: every output channel; k: only channel k (1-based)
    loop: bool = False  # plays again and again until cancelled or stopped (a continuous background)
    gap: bool = False   # silence that cuts a gap into the looping sounds of its channel while it plays
    ramp: int = 0       # a gap's edges, frames (within its length)
    frame: int = -1     # the stream frame it started at (set by the mixer)
    done: threading.Event = field(default_factory=threading.Event)  # set when the onset is known
    onset_msg: Any = None  # set by the node's dispatcher (a SoundOnset) before `done`


@dataclass(frozen=True)
class Onset:
    """When a play's first sample reaches the DAC, on the monotonic clock, and how that is known."""

    request: PlayRequest
    time: float           # time.monotonic() seconds
    source: int           # SOURCE_*
    frame: int            # frame index of the onset in the stream since it started

    @property
    def latency_s(self) -> float:
        return self.time - self.request.received


class Mixer:
    """Queued plays mixed into blocks of ``channels`` columns; overlapping plays add."""

    def __init__(self, channels: int = 1) -> None:
        self.channels = channels
        self._pending: collections.deque[PlayRequest] = collections.deque()
        self._voices: list[list] = []   # [request, position, fade_start] of sounds playing (audio side only)
        self.frames = 0                 # frames produced since the stream started
        self.clipped_blocks = 0
        self.fade_frames = 240          # stop() fades out over this many frames (5 ms at 48 kHz): no click
        self._stops_asked = 0           # bumped by stop() (ROS side), followed by fill() (audio side)
        self._stops_done = 0
        self._cancels: collections.deque[int] = collections.deque()  # play ids cancel() asked to fade (ROS side)
        self._gaps: list[PlayRequest] = []  # gaps cutting into looping sounds (audio side only)

    def submit(self, request: PlayRequest) -> None:
        """Queue ``request``: it starts at the first frame of the next block filled (thread-safe)."""
        self._pending.append(request)

    def stop(self) -> list[PlayRequest]:
        """Stop every sound: playing ones fade out within the next block(s), queued ones never start.

        Returns the queued plays taken back (thread-safe: each pending play is popped by exactly one side).
        """
        dropped = []
        while True:
            try:
                dropped.append(self._pending.popleft())
            except IndexError:
                break
        self._stops_asked += 1  # fill() fades every voice, looping ones too
        return dropped

    def cancel(self, play_id: int) -> list[PlayRequest]:
        """Stop the play(s) with ``play_id``: fading out within the next block(s) if playing; returned (never to
        start) if still queued. Other sounds play on (thread-safe, as :meth:`stop`)."""
        dropped: list[PlayRequest] = []
        kept: list[PlayRequest] = []
        while True:
            try:
                req = self._pending.popleft()
            except IndexError:
                break
            (dropped if req.play_id == play_id else kept).append(req)
        for req in reversed(kept):  # back in their order, before anything submitted meanwhile
            self._pending.appendleft(req)
        self._cancels.append(play_id)
        return dropped

    @property
    def active(self) -> int:
        return len(self._voices) + len(self._pending) + len(self._gaps)

    def _gap_gain(self, start: int, n: int, channels: int) -> np.ndarray:
        """Per frame and channel of this block, the gain the gaps leave the looping sounds: 0 inside a gap, a
        raised-cosine fade over its ``ramp`` frames at each edge (within the gap's length), 1 elsewhere. Gaps
        that have ended are forgotten."""
        gain = np.ones((n, channels), np.float32)
        frames = start + np.arange(n)
        keep = []
        for g in self._gaps:
            g0 = g.frame
            g1 = g0 + len(g.samples)
            if g1 <= start:
                continue
            keep.append(g)
            env = np.where((frames >= g0) & (frames < g1), 0.0, 1.0)
            r = min(g.ramp, len(g.samples) // 2)
            if r:
                down = (frames >= g0) & (frames < g0 + r)
                env[down] = 0.5 * (1 + np.cos(np.pi * (frames[down] - g0) / r))
                up = (frames >= g1 - r) & (frames < g1)
                env[up] = 0.5 * (1 - np.cos(np.pi * (frames[up] - (g1 - r)) / r))
            cols = slice(None) if g.channel == 0 else slice(g.channel - 1, g.channel)
            gain[:, cols] *= env[:, None].astype(np.float32)
        self._gaps = keep
        return gain

    def skip(self, frames: int) -> None:
        """Advance the stream by ``frames`` of silence (an underrun): playing sounds resume after it."""
        self.frames += frames

    def fill(self, out: np.ndarray) -> list[tuple[PlayRequest, int]]:
        """Write the next block into ``out`` (frames x channels, float32); return the plays that started
        in it with their onset frame. Runs on the audio side: no allocation beyond small slices."""
        out.fill(0)
        n = out.shape[0]
        start = self.frames
        if self._stops_done != self._stops_asked:
            self._stops_done = self._stops_asked
            for voice in self._voices:
                if voice[2] is None:
                    voice[2] = voice[1]
            self._gaps = []
        while self._cancels:
            play_id = self._cancels.popleft()
            for voice in self._voices:
                if voice[0].play_id == play_id and voice[2] is None:
                    voice[2] = voice[1]
            self._gaps = [g for g in self._gaps if g.play_id != play_id]
        started = []
        while self._pending:
            req = self._pending.popleft()
            req.frame = start
            if req.gap:
                self._gaps.append(req)
            else:
                self._voices.append([req, 0, None])
            started.append((req, start))
        gain = self._gap_gain(start, n, out.shape[1]) if self._gaps else None
        keep = []
        for voice in self._voices:
            req, pos, fade_start = voice
            length = len(req.samples)
            if req.loop:  # a looping sound only ends by a fade (cancel, stop)
                end = pos + n if fade_start is None else fade_start + self.fade_frames
            else:
                end = length if fade_start is None else min(length, fade_start + self.fade_frames)
            k = max(0, min(n, end - pos))
            # Every channel, or the one the sound was loaded for (a column past the stream's plays nowhere).
            cols = out if req.channel == 0 else out[:, req.channel - 1:req.channel]
            x = req.samples[np.arange(pos, pos + k) % length] if req.loop else req.samples[pos:pos + k]
            if fade_start is not None and k:
                x = x * (1.0 - (np.arange(pos, pos + k) - fade_start + 1) / self.fade_frames).astype(np.float32)
            if req.loop and gain is not None:
                cols[:k] += x[:, None] * (gain if req.channel == 0 else gain[:, req.channel - 1:req.channel])[:k]
            else:
                cols[:k] += x[:, None]
            voice[1] = pos + k
            if voice[1] < end or (req.loop and fade_start is None):
                keep.append(voice)
        self._voices = keep
        if len(started) + len(keep) > 1 and float(np.max(np.abs(out))) > 1.0:
            # Overlapping sounds can sum past full scale; clip rather than wrap, and count it.
            np.clip(out, -1.0, 1.0, out=out)
            self.clipped_blocks += 1
        self.frames += n
        return started


class ClockMap:
    """Monotonic-minus-stream clock offset from (stream, monotonic) pairs; see the module doc.

    Each pair over-estimates the offset by the (never negative) delay between the two clock reads, so
    the lower envelope is the truth. Audio clocks also drift against the system clock (a sound card's
    crystal by ~50 ppm; JACK's dummy driver by ~0.2 %, measured here), so the envelope is a line: the
    minimum of each half of the window gives two points on it, and the offset is that line at the latest
    pair. ``update`` is O(1) (it runs in the audio callback every block); ``offset`` is O(window) and
    only runs when a sound starts.
    """

    MAX_SLOPE = 0.01  # a clock drifting more than 1 % is noise in the estimate, not a clock

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        self._pairs: collections.deque[tuple[float, float]] = collections.deque()  # (monotonic, offset)

    def update(self, stream_now: float, mono_now: float) -> None:
        """Add one (stream clock, monotonic) pair read together."""
        q = self._pairs
        q.append((mono_now, mono_now - stream_now))
        while q[0][0] < mono_now - self.window_s:
            q.popleft()

    def offset(self) -> float:
        """The current offset estimate (monotonic = stream + offset); RuntimeError before any update."""
        pairs = list(self._pairs)
        if not pairs:
            raise RuntimeError('ClockMap.offset before any update')
        t_end = pairs[-1][0]
        mid = (pairs[0][0] + t_end) / 2
        older = [p for p in pairs if p[0] < mid]
        newer = [p for p in pairs if p[0] >= mid]
        t2, m2 = min(newer, key=lambda p: p[1])
        if len(older) < 4 or len(newer) < 4:
            return min(m for _, m in pairs)
        t1, m1 = min(older, key=lambda p: p[1])
        slope = (m2 - m1) / (t2 - t1) if t2 > t1 else 0.0
        slope = max(-self.MAX_SLOPE, min(self.MAX_SLOPE, slope))
        return m2 + slope * (t_end - t2)

    def to_monotonic(self, stream_time: float) -> float:
        return stream_time + self.offset()


OnsetSink = Callable[[Onset], None]
