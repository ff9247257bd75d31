"""Waiting inside rclpy coroutines (async callbacks, action execute) without blocking the executor.

rclpy runs an ``async`` callback as a task on the node's executor: ``await`` on an rclpy Future yields to
the other callbacks. These helpers wait on a one-shot timer or on a future with a deadline; nothing here
sleeps a thread or polls a future, so a node keeps serving while one of its callbacks waits.

Two rclpy 7.1 facts decide where such a callback can run. The executor holds the callback's group for as long
as the coroutine runs, awaits included: in the node's default (mutually exclusive) group, the timers and
clients it awaits never run, so an async service belongs in a ``ReentrantCallbackGroup``. And the
EventsExecutor cannot run coroutine service callbacks at all (it sends the coroutine back as the response):
a node with them spins on the SingleThreadedExecutor (``run_nodes(..., executor_kind='single')``).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable
from typing import Any

from rclpy.node import Node
from rclpy.task import Future


def _settle(waiter: Future, value: bool) -> None:
    if not waiter.done():
        waiter.set_result(value)


async def wait_for(node: Node, future: Future, timeout_s: float) -> bool:
    """True once ``future`` is done, False if ``timeout_s`` passes first (the future is left as it is)."""
    if future.done():
        return True
    waiter = Future()
    future.add_done_callback(lambda _: _settle(waiter, True))
    timer = node.create_timer(max(timeout_s, 0.0), lambda: _settle(waiter, False))
    try:
        return bool(await waiter)
    finally:
        node.destroy_timer(timer)


def from_thread(node: Node, future: concurrent.futures.Future[Any]) -> Future:
    """An rclpy Future that completes like ``future`` (completed by another thread, e.g. a writer's queue).

    Its result is copied on the node's executor (a task, which also wakes the executor), so a coroutine awaiting
    it resumes at once and no rclpy object is touched from the other thread.
    """
    out = Future()
    executor = node.executor

    def copy() -> None:
        if out.done():
            return
        if future.cancelled():
            out.cancel()
        elif (exc := future.exception()) is not None:
            out.set_exception(exc)
        else:
            out.set_result(future.result())

    def done(_: concurrent.futures.Future[Any]) -> None:
        if executor is None:
            copy()
        else:
            executor.create_task(copy)

    future.add_done_callback(done)
    return out


async def sleep(node: Node, seconds: float) -> None:
    """Waits ``seconds`` on a one-shot timer."""
    await wait_for(node, Future(), seconds)


async def call(node: Node, client: Any, request: Any, timeout_s: float) -> Any | None:
    """The response of one service call, or None (the request withdrawn) if ``timeout_s`` passes first."""
    future = client.call_async(request)
    if await wait_for(node, future, timeout_s):
        return future.result()
    client.remove_pending_request(future)
    return None


async def wait_until(node: Node, condition: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> bool:
    """True once ``condition()`` holds, checked every ``poll_s`` (for graph changes rclpy tells no event of);
    False when ``timeout_s`` passes first."""
    deadline = time.monotonic() + timeout_s  # wall time: a loaded executor fires the poll timer late
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await sleep(node, poll_s)
    return True


async def wait_for_service(node: Node, client: Any, timeout_s: float, poll_s: float = 0.05) -> bool:
    """True once ``client``'s service is available."""
    return await wait_until(node, client.service_is_ready, timeout_s, poll_s)
