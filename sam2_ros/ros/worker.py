"""One thread that owns the tracker: queued jobs first, then the newest frame of each lane.

Callbacks never block: the camera callback overwrites its lane's one-frame slot (the frame
it replaces is counted as dropped), and service callbacks queue a job and await its future
(see service_jobs). Serialising both on this thread keeps the tracker single-threaded.

A worker made with `handle_item` has one lane (one camera). A node with several cameras
shares one worker through `lane()`: each camera gets its own slot, and the slots are served
in the order they started waiting, so a fast camera replacing its frame keeps its place in
the queue and cannot overtake (starve) a slow one. With `threads` > 1 that many threads
serve the lanes, never two at once on the same lane (a camera's tracker stays
single-threaded; the shared model runs concurrent calls).
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
_MAIN = ""  # the lane of a worker made with `handle_item`


@dataclass
class _Lane:
    handle_item: Callable
    on_error: Callable[[BaseException], None]
    dropped: int = 0  # items replaced in the slot before the worker took them


class Worker(Generic[Item]):
    """Runs each lane's `handle_item` on its newest offered item, and submitted jobs, in one
    thread. `handle_item`/`on_error` make the single lane; without them add lanes."""

    def __init__(self, *, handle_item: Callable[[Item], None] | None = None,
                 on_error: Callable[[BaseException], None] | None = None,
                 name: str = "sam2_worker", threads: int = 1,
                 on_thread_start: Callable[[], None] | None = None) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._name = name
        self._thread_count = threads
        self._on_thread_start = on_thread_start  # run first in each of the threads
        self._lanes: dict[str, _Lane] = {}
        if handle_item is not None:
            self._lanes[_MAIN] = _Lane(handle_item, on_error or (lambda error: None))
        self._jobs: deque[tuple[str, Callable[[], object], Future]] = deque()
        self._pending: dict[str, Item] = {}  # lane -> newest item; order = waiting since
        self._running: set[str] = set()  # lanes with a job or item in progress
        self._wake = threading.Condition()
        self._stopping = False
        self._threads: list[threading.Thread] = []

    @property
    def dropped(self) -> int:
        """Items replaced before the worker took them, over the open lanes."""
        with self._wake:
            return sum(lane.dropped for lane in self._lanes.values())

    def start(self) -> None:
        if self._threads:
            raise RuntimeError(f"worker {self._name} already started")
        self._stopping = False
        self._threads = [threading.Thread(target=self._run, name=f"{self._name}_{index}",
                                          daemon=True) for index in range(self._thread_count)]
        for thread in self._threads:
            thread.start()

    def stop(self, *, timeout: float = 10.0) -> None:
        """Finish the running job, fail the queued ones (skipping those their caller
        cancelled), drop the pending items."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads = []
        with self._wake:
            jobs = list(self._jobs)
            self._jobs.clear()
            self._pending.clear()
        _fail(jobs)

    def lane(self, key: str, *, handle_item: Callable[[Item], None],
             on_error: Callable[[BaseException], None]) -> WorkerLane[Item]:
        """A new lane (one camera) on this worker."""
        with self._wake:
            if key in self._lanes:
                raise ValueError(f"worker {self._name} already has a lane {key!r}")
            self._lanes[key] = lane = _Lane(handle_item, on_error)
        return WorkerLane(self, key, lane)

    def close_lane(self, key: str, *, timeout: float = 10.0) -> None:
        """Drop the lane's pending item, fail its queued jobs, and wait (up to `timeout`
        s) for its running one to finish; the other lanes go on."""
        with self._wake:
            self._lanes.pop(key, None)
            self._pending.pop(key, None)
            jobs = [job for job in self._jobs if job[0] == key]
            for job in jobs:
                self._jobs.remove(job)
            if threading.current_thread() not in self._threads:
                self._wake.wait_for(lambda: key not in self._running, timeout)
        _fail(jobs)

    def offer(self, item: Item, lane: str = _MAIN) -> None:
        """Make `item` the lane's next one, replacing (dropping) any not taken yet; ignored
        on a closed lane (a frame still in flight while a camera stops)."""
        with self._wake:
            state = self._lanes.get(lane)
            if state is None:
                return
            if lane in self._pending:
                state.dropped += 1  # replaced in place: the lane keeps its turn
            self._pending[lane] = item
            self._wake.notify_all()

    def submit(self, job: Callable[[], Result], lane: str = _MAIN) -> Future[Result]:
        """Queue a job ahead of frames; the future holds its return value or exception."""
        future: Future[Result] = Future()
        with self._wake:
            if self._stopping or not self._threads or lane not in self._lanes:
                future.set_exception(RuntimeError("the worker is not running"))
                return future
            self._jobs.append((lane, job, future))
            self._wake.notify_all()
        return future

    def _take(self) -> tuple | None:
        """Under the lock: the first queued job, else the longest waiting item, of a lane
        no other thread is serving; None when there is none."""
        for queued in self._jobs:
            if queued[0] not in self._running:
                self._jobs.remove(queued)
                lane, job, future = queued
                self._running.add(lane)
                return lane, job, future, None, None
        for lane in self._pending:
            if lane not in self._running:
                self._running.add(lane)
                return lane, None, None, self._lanes[lane], self._pending.pop(lane)
        return None

    def _run(self) -> None:
        if self._on_thread_start is not None:
            self._on_thread_start()
        while True:
            with self._wake:
                task = None
                while not self._stopping and (task := self._take()) is None:
                    self._wake.wait()
                if self._stopping:
                    return
            lane, job, future, state, item = task
            try:
                if future is not None:
                    if future.set_running_or_notify_cancel():
                        try:
                            future.set_result(job())
                        except Exception as error:  # the caller turns it into a response
                            future.set_exception(error)
                    continue
                try:
                    state.handle_item(item)
                except Exception as error:  # one bad frame must not stop tracking
                    state.on_error(error)
            finally:
                with self._wake:
                    self._running.discard(lane)
                    self._wake.notify_all()


class WorkerLane(Generic[Item]):
    """One camera's view of a shared worker, with a single-lane Worker's interface."""

    def __init__(self, worker: Worker[Item], key: str, state: _Lane) -> None:
        self._worker, self._key, self._state = worker, key, state

    @property
    def dropped(self) -> int:
        return self._state.dropped

    def start(self) -> None:
        """The shared worker is started by its owner."""

    def stop(self, *, timeout: float = 10.0) -> None:
        self._worker.close_lane(self._key, timeout=timeout)

    def offer(self, item: Item) -> None:
        self._worker.offer(item, self._key)

    def submit(self, job: Callable[[], Result]) -> Future[Result]:
        return self._worker.submit(job, self._key)


def _fail(jobs: list[tuple[str, Callable[[], object], Future]]) -> None:
    for _, _, future in jobs:
        if future.set_running_or_notify_cancel():
            future.set_exception(RuntimeError("the node is shutting down"))
