"""Fetches the GPIO events a session's recording missed from the pilot's journal (service ``journal_events``).

The recorder reports a gap (``Recorder.on_gap``, :mod:`.gaps`); this thread asks the pilot for the range,
in pages of at most 1000 events, and hands what comes back to ``Recorder.recovered_events``. A pilot that
does not answer (still unreachable after a link loss, restarting) is asked again every ``RETRY_S`` for up to
``GIVE_UP_S``; what never comes stays counted as missing in the session (``events_missing``).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from autopilot_msgs.srv import GetEvents
from rclpy.serialization import serialize_message

RETRY_S = 5.0
GIVE_UP_S = 3600.0
#: Longest wait for one answer.
CALL_TIMEOUT_S = 10.0


@dataclass
class Gap:
    subject: str
    session_id: str
    topic: str
    run_id: int
    first: int
    last: int
    since: float = 0.0  # monotonic time it was first asked for


class EventFetcher:
    """``client_for(topic)`` gives the GetEvents client of the pilot recording ``topic`` (None: no such pilot);
    ``deliver(gap, samples)`` takes ``(recv_ns, CDR bytes)`` of the events that came back."""

    def __init__(self, client_for: Callable[[str], Any], deliver: Callable[[Gap, list[tuple[int, bytes]]], None],
                 log: Callable[[str, str], None]) -> None:
        self._client_for = client_for
        self._deliver = deliver
        self._log = log
        self._queue: queue.Queue[Gap | None] = queue.Queue()
        self._retry: list[Gap] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name='event-fetcher', daemon=True)
        self._thread.start()

    def request(self, subject: str, session_id: str, topic: str, run_id: int, first: int, last: int) -> None:
        self._queue.put(Gap(subject, session_id, topic, run_id, first, last, time.monotonic()))

    def close(self) -> None:
        self._stop.set()
        self._queue.put(None)
        self._thread.join(2.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                gap = self._queue.get(timeout=RETRY_S)
            except queue.Empty:
                gap = None
            if gap is not None:
                self._fetch(gap)
            elif self._retry:
                due, self._retry = self._retry, []
                for g in due:
                    if self._stop.is_set():
                        return
                    if time.monotonic() - g.since < GIVE_UP_S:
                        self._fetch(g)
                    else:
                        self._log('error', f'{g.subject}/{g.session_id}: {g.last - g.first + 1} {g.topic} events '
                                           f'(seq {g.first}..) never came back from the pilot: they stay missing')

    def _fetch(self, gap: Gap) -> None:
        client = self._client_for(gap.topic)
        if client is None:
            self._retry.append(gap)
            return
        first = gap.first
        while not self._stop.is_set():
            res = self._call(client, GetEvents.Request(session_id=gap.session_id, run_id=gap.run_id,
                                                         first_seq=first, last_seq=gap.last))
            if res is None:  # no answer: later
                self._retry.append(Gap(gap.subject, gap.session_id, gap.topic, gap.run_id, first, gap.last, gap.since))
                return
            if not res.success:
                self._log('warn', f'{gap.subject}/{gap.session_id}: the pilot has no events for {gap.topic}: '
                                  f'{res.message}')
                return
            now = time.time_ns()
            events = [e for e in res.events if e.run_id == gap.run_id and first <= e.seq <= gap.last]
            if events:
                self._deliver(gap, [(now, serialize_message(e)) for e in events])
            if not res.more or not events:
                return
            first = events[-1].seq + 1

    def _call(self, client: Any, request: GetEvents.Request) -> GetEvents.Response | None:
        if not client.service_is_ready():
            return None
        done = threading.Event()
        future = client.call_async(request)
        future.add_done_callback(lambda _f: done.set())
        deadline = time.monotonic() + CALL_TIMEOUT_S
        # Short waits: a terminal stopping (its clients' executor stops with it) must not wait out the timeout.
        while not done.wait(0.1):
            if self._stop.is_set() or time.monotonic() > deadline:
                client.remove_pending_request(future)
                return None
        return future.result()
