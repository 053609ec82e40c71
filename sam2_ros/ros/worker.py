"""One thread that owns the tracker: queued jobs first, then the newest frame.

Callbacks never block: the camera callback overwrites a one-frame slot (the frame it
replaces is counted as dropped), and service callbacks queue a job and await its future
(see service_jobs). Serialising both on this thread keeps the tracker single-threaded.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Worker(Generic[Item]):
    """Runs `handle_item` on the newest offered item and submitted jobs, in one thread."""

    def __init__(self, *, handle_item: Callable[[Item], None],
                 on_error: Callable[[BaseException], None], name: str = "sam2_worker") -> None:
        self._handle_item = handle_item
        self._on_error = on_error
        self._name = name
        self._jobs: deque[tuple[Callable[[], object], Future]] = deque()
        self._pending: Item | None = None
        self._wake = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.dropped = 0  # items replaced in the slot before the worker took them

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError(f"worker {self._name} already started")
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    def stop(self, *, timeout: float = 10.0) -> None:
        """Finish the running job, fail the queued ones (skipping those their caller
        cancelled), drop the pending item."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        with self._wake:
            jobs, self._pending = list(self._jobs), None
            self._jobs.clear()
        for _, future in jobs:
            if future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError("the node is shutting down"))

    def offer(self, item: Item) -> None:
        """Make `item` the next one handled, replacing (dropping) any not taken yet."""
        with self._wake:
            if self._pending is not None:
                self.dropped += 1
            self._pending = item
            self._wake.notify()

    def submit(self, job: Callable[[], Result]) -> Future[Result]:
        """Queue a job ahead of frames; the future holds its return value or exception."""
        future: Future[Result] = Future()
        with self._wake:
            if self._stopping or self._thread is None:
                future.set_exception(RuntimeError("the worker is not running"))
                return future
            self._jobs.append((job, future))
            self._wake.notify()
        return future

    def _run(self) -> None:
        while True:
            with self._wake:
                self._wake.wait_for(
                    lambda: self._stopping or self._jobs or self._pending is not None)
                if self._stopping:
                    return
                if self._jobs:
                    job, future = self._jobs.popleft()
                    item = None
                else:
                    job, future = None, None
                    item, self._pending = self._pending, None
            if future is not None:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(job())
                    except Exception as error:  # the caller turns it into a response
                        future.set_exception(error)
                continue
            try:
                self._handle_item(item)
            except Exception as error:  # one bad frame must not stop tracking
                self._on_error(error)
