"""Journal-then-publish of finished trials, on a thread of its own.

A durable SQLite commit is an fsync: ~0.5 ms on this machine's disk, 10-50 ms on a Raspberry Pi's SD card.
Done inside the executor callback that ended the trial, it would hold up the next GPIO edge and output
command by that long (bench/closed_loop.py measured 2.2 ms at trial ends, 12.7 ms max, with the gpio node
in the same process). Here the callback only queues the serialized trial; this thread journals it and
then publishes it, strictly in order, so a trial is still never published before it is durable. The GPIO
events of a session are journalled here too, in batches (:meth:`TrialWriter.submit_events`), serialized on
this thread: the closed loop only appends the message to a list.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from rclpy.serialization import serialize_message

from autopilot_core import stamps
from autopilot_pilot.journal import Journal, JournalError


class TrialWriter:
    """Appends ``(session_id, number, payload, meta)`` to the journal, then calls ``publish(payload)``.

    ``on_error(text, fatal)`` is called from the writer thread: fatal when a trial cannot be journalled (it
    is then not published: it could never be resent), not fatal when a journalled trial could not be
    published (the resend will). :meth:`flush` waits until everything queued is done.
    """

    def __init__(self, journal: Journal, publish: Callable[[bytes], None], on_error: Callable[[str, bool], None]) -> None:
        self.journal = journal
        self.publish = publish
        self.on_error = on_error
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread = threading.Thread(target=self._run, name='trial-writer', daemon=True)
        self._thread.start()

    def submit(self, session_id: str, number: int, payload: bytes, meta: dict[str, Any], stamp_ns: int) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(('trial', session_id, number, payload, meta, stamp_ns))

    def submit_events(self, session_id: str, events: list[Any]) -> None:
        """Journal GpioEvent messages of a session (not published: the terminal asks for them if it needs them).
        The messages must not change afterwards (as for any message once published)."""
        with self._idle:
            self._pending += 1
        self._queue.put(('events', session_id, events))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every submitted trial is journalled and published (or failed); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def close(self, timeout: float = 10.0) -> None:
        self.flush(timeout)
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if item[0] == 'events':
                self._journal_events(item[1], item[2])
                continue
            _, session_id, number, payload, meta, stamp_ns = item
            try:
                self.journal.append(session_id, number, payload, meta, stamp_ns=stamp_ns)
            except JournalError as exc:
                self._report(f'trial {number} could not be journalled: {exc}', True)
            else:
                try:
                    self.publish(payload)
                except Exception as exc:  # noqa: BLE001 - journalled: the resend will publish it
                    self._report(f'trial {number} journalled but not published ({exc}); it will be resent', False)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _journal_events(self, session_id: str, events: list[Any]) -> None:
        try:
            self.journal.add_events(session_id, [(m.run_id, m.seq, stamps.to_ns(m.header.stamp), serialize_message(m))
                                                 for m in events])
        except JournalError as exc:  # the events are in the terminal's recording unless the link was down too
            self._report(f'{len(events)} GPIO events could not be journalled: {exc}', False)
        finally:
            with self._idle:
                self._pending -= 1
                self._idle.notify_all()

    def _report(self, text: str, fatal: bool) -> None:
        try:
            self.on_error(text, fatal)
        except Exception:  # noqa: BLE001, S110 - the reporter failing must not stop the writer
            pass
