"""A bounded, thread-safe ring of recently received frames, looked up by header stamp.

The camera callback appends every frame it converts (also the ones the worker later
drops), so a planner can prompt any recent frame it saw, not only the tracked ones. The
ring is bounded twice: at most `capacity` frames and `max_bytes` bytes of pixels (the newest
frame is always kept), so a high-resolution camera keeps fewer frames, never more memory.

A frame whose stamp is not newer than the last accepted one is refused: it is the same
image arriving on the second input (`image` and `compressed_image_topic` both set) or an
out-of-order one, and tracking it would track that instant twice. Unstamped frames (zero)
are always accepted, and a stamp far older than the last one (`STAMP_RESTART_NS`) is taken
as the camera restarting (a looped bag, a restarted driver) and accepted.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass, field

import numpy as np
from std_msgs.msg import Header

# Stamps going back by more than this start a new stream instead of being refused as stale.
STAMP_RESTART_NS = 1_000_000_000


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


def follows(stamp_ns: int, last_ns: int | None) -> bool:
    """Whether a frame stamped `stamp_ns` may follow the last accepted stamp `last_ns`."""
    return (last_ns is None or stamp_ns == 0 or stamp_ns > last_ns
            or last_ns - stamp_ns > STAMP_RESTART_NS)


class FrameBuffer:
    """The last received frames within `capacity` frames and `max_bytes` bytes of pixels."""

    def __init__(self, *, capacity: int, max_bytes: int) -> None:
        if capacity < 1 or max_bytes < 1:
            raise ValueError(f"frame buffer capacity and max_bytes must be >= 1; given "
                             f"{capacity} and {max_bytes}")
        self._capacity, self._max_bytes = capacity, max_bytes
        self._frames: deque[BufferedFrame] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._next_seq = 0
        self._last_stamp_ns: int | None = None
        self.stale = 0  # frames refused: stamp not newer than the last accepted one

    def accepts(self, header: Header) -> bool:
        """Whether a frame with this header would be buffered now (checked before decoding
        it); a refusal is counted in `stale`."""
        stamp_ns = stamp_to_ns(header.stamp.sec, header.stamp.nanosec)
        with self._lock:
            if follows(stamp_ns, self._last_stamp_ns):
                return True
            self.stale += 1
            return False

    def append(self, header: Header, rgb: np.ndarray, received: float) -> BufferedFrame | None:
        """Buffer a received frame; None (counted in `stale`) when its stamp is not newer."""
        stamp_ns = stamp_to_ns(header.stamp.sec, header.stamp.nanosec)
        with self._lock:
            if not follows(stamp_ns, self._last_stamp_ns):
                self.stale += 1
                return None
            frame = BufferedFrame(seq=self._next_seq, stamp_ns=stamp_ns, header=header,
                                  rgb=rgb, received=received)
            self._next_seq += 1
            self._last_stamp_ns = stamp_ns
            self._frames.append(frame)
            self._bytes += rgb.nbytes
            while len(self._frames) > 1 and (len(self._frames) > self._capacity
                                             or self._bytes > self._max_bytes):
                self._bytes -= self._frames.popleft().rgb.nbytes
        return frame

    def newest(self) -> BufferedFrame | None:
        with self._lock:
            return self._frames[-1] if self._frames else None

    def oldest_seq(self) -> int | None:
        """`seq` of the oldest frame still buffered (None when empty)."""
        with self._lock:
            return self._frames[0].seq if self._frames else None

    def stamps(self) -> list[int]:
        """Stamps of the buffered frames, oldest first."""
        with self._lock:
            return [frame.stamp_ns for frame in self._frames]

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
            f"(raise frame_buffer_length or frame_buffer_bytes to keep more)")

    @property
    def nbytes(self) -> int:
        """Bytes of pixels held."""
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)


def format_stamp(stamp_ns: int) -> str:
    """Seconds with nanoseconds, as messages name a stamp."""
    return f"{stamp_ns // 1_000_000_000}.{stamp_ns % 1_000_000_000:09d}"
