"""Worker processes of ``convert-hdf --workers N`` that die with the process that started them.

A ``ProcessPoolExecutor`` on the ``forkserver`` context (workers must not inherit the parent's open
HDF5/NetCDF handles) outlives a parent killed by SIGKILL: each worker waits forever on a queue whose
write end it holds itself, and the fork server waits until its last worker (they all hold its "alive"
pipe) is gone. So every worker, in the pool's initializer:

- asks the kernel for SIGKILL when its own parent, the fork server, dies (``prctl(PR_SET_PDEATHSIG)``);
- starts a watchdog thread on the pool owner's pid (the fork server is only its parent's parent), which
  ends the worker as soon as the owner exits: through a ``pidfd`` (Linux >= 5.3: woken by the kernel, no
  polling, immune to pid reuse), else by checking every second whether the owner or the parent changed.

The workers gone, the fork server sees its "alive" pipe close and exits too.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ctypes
import multiprocessing
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Iterator

PR_SET_PDEATHSIG = 1  # linux/prctl.h
POLL_SECONDS = 1.0


@contextlib.contextmanager
def worker_pool(workers: int) -> Iterator[concurrent.futures.ProcessPoolExecutor]:
    """A pool of ``workers`` processes (forkserver) that die with this process."""
    context = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=context, initializer=die_with_owner, initargs=(os.getpid(),)
    ) as pool:
        yield pool


def die_with_owner(owner_pid: int) -> None:
    """Pool initializer: end this worker when its parent (the fork server) or the pool's owner dies."""
    _parent_death_signal(signal.SIGKILL)
    threading.Thread(target=_watch, args=(owner_pid, os.getppid()), name="owner-watchdog", daemon=True).start()


def _parent_death_signal(signum: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0)


def _watch(owner_pid: int, parent_pid: int) -> None:
    """Return never while the owner lives; end the process (no cleanup: the owner is gone) once it has exited."""
    try:
        owner = os.pidfd_open(owner_pid)
    except ProcessLookupError:
        os._exit(1)  # the owner died before this worker started
    except (AttributeError, OSError):  # no pidfd here: poll
        while _exists(owner_pid) and os.getppid() == parent_pid:
            time.sleep(POLL_SECONDS)
    else:
        select.select([owner], [], [])  # readable once the owner has exited
    os._exit(1)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
