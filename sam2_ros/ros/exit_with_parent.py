"""`python -m sam2_ros.ros.exit_with_parent PARENT_PID CMD [ARGS...]`: run CMD so that it gets
SIGINT when its parent process (PARENT_PID) dies.

sam2.launch.py starts the node through this. `ros2 launch` stops its processes on Ctrl-C, but
on SIGTERM (`kill`, `docker stop`) or SIGKILL it exits at once and would leave the node running
under PID 1. Linux delivers a chosen signal to a process when its parent dies (prctl
PR_SET_PDEATHSIG, kept across exec); the node then shuts down as on Ctrl-C. A parent that
died before the request took effect is no longer PARENT_PID: then CMD is not run. Elsewhere
this only runs CMD.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def signal_on_parent_death(signum: int) -> bool:
    """Ask the kernel to send `signum` to this process when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signum) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    return True


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: python -m sam2_ros.ros.exit_with_parent PARENT_PID CMD [ARGS...]",
              file=sys.stderr)
        return 2
    parent, command = int(argv[0]), argv[1:]
    if signal_on_parent_death(signal.SIGINT) and os.getppid() != parent:
        print(f"exit_with_parent: parent {parent} is gone; not starting {command[0]}",
              file=sys.stderr)
        return 1
    os.execvp(command[0], command)  # does not return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
