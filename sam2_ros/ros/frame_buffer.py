"""A bounded, thread-safe ring of recently received frames, looked up by header stamp.

The camera callback appends every frame it converts (also the ones the worker later
drops), so a planner can prompt any recent frame it saw, not only the tracked ones.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from std_msgs.msg import Header


@dataclass(frozen=True)
class BufferedFrame:
    """One received camera frame; `seq` orders frames by arrival (stamps may jump back)."""

    seq: int
    stamp_ns: int
    header: Header
    rgb: np.ndarray = field(repr=False)  # (H, W, 3) uint8
    received: float  # time.monotonic() at arrival, for latency

    @property
    def height(self) -> int:
        return self.rgb.shape[0]

    @property
    def width(self) -> int:
        return self.rgb.shape[1]


class FrameNotBufferedError(LookupError):
    """A stamped prompt names a frame that is not (or no longer) in the buffer."""


def stamp_to_ns(sec: int, nanosec: int) -> int:
    return sec * 1_000_000_000 + nanosec


class FrameBuffer:
    """The last `capacity` received frames; older ones fall out."""

    def __init__(self, *, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"frame buffer capacity must be >= 1; given {capacity}")
        self._frames: deque[BufferedFrame] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._next_seq = 0

    def append(self, header: Header, rgb: np.ndarray, received: float) -> BufferedFrame:
        with self._lock:
            frame = BufferedFrame(seq=self._next_seq,
                                  stamp_ns=stamp_to_ns(header.stamp.sec, header.stamp.nanosec),
                                  header=header, rgb=rgb, received=received)
            self._next_seq += 1
            self._frames.append(frame)
        return frame

    def newest(self) -> BufferedFrame | None:
        with self._lock:
            return self._frames[-1] if self._frames else None

    def find(self, stamp_ns: int) -> BufferedFrame:
        """The most recent frame with this stamp, or FrameNotBufferedError saying what is held."""
        with self._lock:
            frames = list(self._frames)
        for frame in reversed(frames):
            if frame.stamp_ns == stamp_ns:
                return frame
        held = (f"{len(frames)} frames with stamps {format_stamp(frames[0].stamp_ns)} .. "
                f"{format_stamp(frames[-1].stamp_ns)}" if frames else "no frames")
        raise FrameNotBufferedError(
            f"no buffered frame has stamp {format_stamp(stamp_ns)}; the buffer holds {held} "
            f"(raise frame_buffer_length to keep more)")

    def after(self, seq: int) -> list[BufferedFrame]:
        """Frames that arrived after `seq`, oldest first."""
        with self._lock:
            return [frame for frame in self._frames if frame.seq > seq]

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)


def format_stamp(stamp_ns: int) -> str:
    """Seconds with nanoseconds, as messages name a stamp."""
    return f"{stamp_ns // 1_000_000_000}.{stamp_ns % 1_000_000_000:09d}"
