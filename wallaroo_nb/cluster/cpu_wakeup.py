"""Keep idle CPUs quick to wake while an app runs: ``run(..., low_latency=True)``.

Linux lets a process ask that idle CPUs use only idle states they leave within N µs
(PM QoS, ``/dev/cpu_dma_latency``); the request holds while the file stays open. With
0, an idle CPU polls instead of halting. On a small virtual machine, waking a halted
CPU costs ~35 µs, and a message that crosses two processes on its way to the driver
pays that twice (docs/metrics.md has the numbers). The price: idle CPUs keep busy for
as long as the app runs. Writing the file needs root (or a udev rule granting it).
"""

from __future__ import annotations

import os
import struct
from typing import Optional

PATH = "/dev/cpu_dma_latency"
_VALUE = struct.Struct("i")


def hold(max_wakeup_us: int = 0) -> int:
    """Ask for idle states that wake within ``max_wakeup_us``; the request lasts until
    ``release`` closes the returned file descriptor. Raises naming what is missing."""
    try:
        fd = os.open(PATH, os.O_WRONLY)
    except FileNotFoundError:
        raise OSError(f"low_latency=True asks Linux to keep idle CPUs quick to wake through "
                      f"{PATH}, which this system does not have; run without "
                      "low_latency") from None
    except PermissionError:
        raise PermissionError(f"low_latency=True needs write access to {PATH} (root, or a "
                              "udev rule granting it to your user); run without low_latency "
                              "or as a user who may write it") from None
    os.write(fd, _VALUE.pack(max_wakeup_us))
    return fd


def release(fd: Optional[int]) -> None:
    if fd is not None:
        os.close(fd)


def current() -> Optional[int]:
    """The wake-up latency (µs) Linux now keeps idle CPUs within, or None if unreadable."""
    try:
        with open(PATH, "rb") as f:
            return _VALUE.unpack(f.read(_VALUE.size))[0]
    except OSError:
        return None
