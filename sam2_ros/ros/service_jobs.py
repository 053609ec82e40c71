"""Worker jobs awaited by `async def` service callbacks: no executor thread waits on them.

rclpy runs an async service callback as a task; awaiting an rclpy Future suspends that task
and frees its thread, so calls waiting on a busy worker (a stamped prompt replaying frames)
never starve the camera or the diagnostics timer, whatever the executor's thread count.
The job's outcome crosses from the worker thread to the executor through
`Executor.create_task` (thread-safe, and it wakes the executor); a steady one-shot timer
answers at the timeout. Whichever comes first settles the answer (under a lock: the two
may run on two executor threads at once); the other finds it settled. rclpy (Humble, Jazzy)
polls every waiting task each time the executor wakes, so settling wakes it (else the reply
waited for the next camera frame or timer: 4.7 s with no camera and a 5 s diagnostics
period). Idle, a waiting call costs nothing (3 s of waiting: 0.01 s of CPU); each wake costs
a little per waiting call (100 calls waiting under a 30 Hz camera: ~0.6 CPU-s per second).
"""
from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import TypeVar

from rclpy.callback_groups import CallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.task import Future

from sam2_ros.ros.worker import Worker

Result = TypeVar("Result")


async def run_on_worker(node: Node, worker: Worker, job: Callable[[], Result], *,
                        timeout: float, callback_group: CallbackGroup | None = None) -> Result:
    """Queue `job` on the worker and await its result; TimeoutError after `timeout` s (the
    job is cancelled if it has not started, otherwise it still completes)."""
    executor = node.executor
    if executor is None:
        raise RuntimeError("the node is not added to an executor")
    answer: Future = Future(executor=executor)
    settling = threading.Lock()
    queued = worker.submit(job)

    def settle(result: object = None, error: BaseException | None = None) -> None:
        with settling:
            if answer.done():
                return
            if error is None:
                answer.set_result(result)
            else:
                answer.set_exception(error)
        executor.wake()  # resume the waiting callback now

    def deliver(done: concurrent.futures.Future) -> None:  # on an executor thread
        if not done.cancelled():
            error = done.exception()
            settle(None if error is not None else done.result(), error)

    def expire() -> None:  # on an executor thread, once
        timer.cancel()
        if queued.done() and not queued.cancelled():
            deliver(queued)  # finished just now: answer with its outcome
        elif queued.cancel():
            settle(error=TimeoutError(
                f"the worker did not start the request within {timeout:g} s "
                f"(service_timeout); it was cancelled"))
        else:
            settle(error=TimeoutError(
                f"the request is still running after {timeout:g} s (service_timeout); "
                f"it will still be applied"))

    # A steady clock: simulated time may stand still (a paused bag) while the caller waits.
    timer = node.create_timer(timeout, expire, callback_group=callback_group,
                              clock=Clock(clock_type=ClockType.STEADY_TIME))
    queued.add_done_callback(lambda done: executor.create_task(deliver, done))
    try:
        return await answer
    finally:
        node.destroy_timer(timer)
