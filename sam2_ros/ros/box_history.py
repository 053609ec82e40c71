"""Each recently tracked frame's mask boxes, so a late detection meets the masks of its frame.

The session reports every result it makes (`observe`): frames tracked live, frames
re-tracked by a stamped prompt (which replace what was recorded of them), and prompts
(which add or change one object on their frame). Bounded like the session's history: the
last `capacity` tracked frames. Used on the worker thread only.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from sam2_ros.ros.frame_buffer import BufferedFrame, format_stamp
from sam2_ros.ros.session import ObjectResultLike
from sam2_ros.ros.visualization import bounding_box


class StaleStampError(LookupError):
    """No tracked frame has the detection's stamp, nor one within a frame period of it."""


@dataclass
class FrameBoxes:
    """One tracked frame's mask boxes: (4,) x0, y0, x1, y1 (exclusive), None = not visible."""

    seq: int
    stamp_ns: int
    width: int
    height: int
    boxes: dict[int, np.ndarray | None] = field(default_factory=dict)


def mask_box(result: ObjectResultLike) -> np.ndarray | None:
    """A result's mask box with exclusive edges, or None when it is not visible or empty."""
    box = bounding_box(result.mask) if result.visible else None
    if box is None:
        return None
    x0, y0, x1, y1 = box
    return np.array([x0, y0, x1 + 1, y1 + 1], np.float64)


def frame_period_ns(stamps: list[int]) -> int | None:
    """The median step between consecutive stamps (received frames), None with fewer than two."""
    steps = np.diff(np.asarray(stamps, np.int64))
    steps = steps[steps > 0]
    return int(np.median(steps)) if steps.size else None


class BoxHistory:
    """Mask boxes of the last `capacity` tracked frames, by arrival order."""

    def __init__(self, *, capacity: int) -> None:
        self._capacity = capacity
        self._frames: OrderedDict[int, FrameBoxes] = OrderedDict()  # by seq, oldest first

    def observe(self, frame: BufferedFrame, results: Mapping[int, ObjectResultLike],
                tracked: bool) -> None:
        """Record results on `frame`: a whole tracked frame (replacing what was recorded of
        it), or prompted objects (`tracked` false: merged into that frame's entry)."""
        boxes = {object_id: mask_box(result) for object_id, result in results.items()}
        entry = self._frames.get(frame.seq)
        if tracked or entry is None:
            self._frames[frame.seq] = FrameBoxes(seq=frame.seq, stamp_ns=frame.stamp_ns,
                                                 width=frame.width, height=frame.height,
                                                 boxes=boxes)
            self._frames = OrderedDict(sorted(self._frames.items())[-self._capacity:])
        else:
            entry.boxes.update(boxes)

    def lookup(self, stamp_ns: int, *, period_ns: int | None) -> FrameBoxes:
        """The tracked frame with this stamp, else the nearest one if within one frame period."""
        if not self._frames:
            raise StaleStampError(f"no tracked frame yet for stamp {format_stamp(stamp_ns)}")
        entries = list(self._frames.values())
        nearest = min(entries, key=lambda e: (abs(e.stamp_ns - stamp_ns), -e.seq))
        gap = abs(nearest.stamp_ns - stamp_ns)
        if gap == 0 or (period_ns is not None and gap <= period_ns):
            return nearest
        raise StaleStampError(
            f"no tracked frame within one frame period ({_ms(period_ns)}) of stamp "
            f"{format_stamp(stamp_ns)}: tracked frames have stamps "
            f"{format_stamp(entries[0].stamp_ns)} .. {format_stamp(entries[-1].stamp_ns)}")

    def last_seen(self) -> dict[int, np.ndarray]:
        """Each object's most recent mask box over the recorded frames."""
        seen: dict[int, np.ndarray] = {}
        for entry in self._frames.values():
            seen.update({o: box for o, box in entry.boxes.items() if box is not None})
        return seen

    def clear(self) -> None:
        self._frames.clear()

    def __len__(self) -> int:
        return len(self._frames)


def _ms(period_ns: int | None) -> str:
    return "unknown" if period_ns is None else f"{period_ns / 1e6:.0f} ms"
