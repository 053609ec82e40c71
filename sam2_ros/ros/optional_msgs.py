"""Message packages the node can do without (no PyPI wheel), imported when present."""
from __future__ import annotations

import importlib
from types import ModuleType


def import_vision_msgs() -> ModuleType | None:
    """`vision_msgs.msg`, or None where it is not installed (the caller says what is off)."""
    try:
        return importlib.import_module("vision_msgs.msg")
    except ImportError:
        return None
