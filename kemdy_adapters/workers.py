"""Independent benchmark runs side by side: a pool of worker processes, each with its share of the CPU threads.

At the shipped encoders' shapes one training process gains nothing from a second thread (on a 2-core Xeon one cell
took 15.3 s with one thread and 17.7 s with two, and two one-thread cells side by side took 14.3 s each), so a
benchmark's cells, which do not depend on each other, finish sooner two at a time (the demo: 309 s instead of
496 s on that machine; the floors and the report still run once). Workers are
started with `spawn` (no forked torch state) and die with the process that started them, so that a killed
benchmark leaves nothing behind that could still write into its folder when it is run again.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from multiprocessing import get_context


def threads_per_worker(processes: int) -> int:
    """This process's torch threads shared out among `processes` workers (at least one each), so that a benchmark
    run with OMP_NUM_THREADS=1 trains with one thread whether its cells run here or side by side."""
    import torch

    return max(1, torch.get_num_threads() // max(1, processes))


@contextmanager
def torch_threads(threads: int | None):
    """This process trains with `threads` torch threads inside the block (None: as it is), and as before after it."""
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def die_with_parent(parent: int) -> None:
    """Ends this process as soon as `parent` ends: at once through the kernel on Linux, within a second elsewhere."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent ended before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()


class WorkerPool:
    """`processes` worker processes, started on first use and kept for every later `run` (a worker pays its imports
    and its data loading once). `initializer(*initargs)` runs once in each worker, after `die_with_parent`.
    Use as a context manager: leaving it ends the workers."""

    def __init__(self, processes: int, initializer: Callable, initargs: tuple):
        self.processes = processes
        # The initializer and its arguments travel pickled, so that unpickling them (which imports torch and
        # transformers, seconds) happens after the worker has tied its life to this process.
        payload = pickle.dumps((initializer, initargs))
        self.executor = ProcessPoolExecutor(max_workers=processes, mp_context=get_context("spawn"),
                                            initializer=_start, initargs=(os.getpid(), payload))

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self.close(failed=exc[0] is not None)

    def close(self, failed: bool = False) -> None:
        """Waits for the workers to finish, or, after a failure, ends them."""
        if failed:
            self.terminate()
        else:
            self.executor.shutdown(wait=True)

    def terminate(self) -> None:
        """Ends the running jobs and drops the others."""
        for process in list((getattr(self.executor, "_processes", None) or {}).values()):
            process.terminate()
        self.executor.shutdown(wait=False, cancel_futures=True)

    def run(self, jobs: Iterable, work: Callable, on_start: Callable, on_done: Callable) -> None:
        """Runs `work(*job)` for every job, at most `processes` at a time, in order: `on_start(job)` is called here
        when a job is handed to a worker, `on_done(job)` when it has finished. The first job that fails ends the
        pool (running jobs are ended, the others dropped) and its exception is raised here."""
        pending, running = deque(jobs), {}
        try:
            while pending or running:
                while pending and len(running) < self.processes:
                    job = pending.popleft()
                    on_start(job)
                    running[self.executor.submit(work, *job)] = job
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    job = running.pop(future)
                    future.result()  # a failed job's exception, raised here
                    on_done(job)
        except BaseException:
            self.terminate()
            raise


def _start(parent: int, payload: bytes) -> None:
    die_with_parent(parent)
    initializer, initargs = pickle.loads(payload)
    initializer(*initargs)
