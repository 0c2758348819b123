"""The default backend: a pool of local worker processes.

Each worker is a fresh interpreter (the ``spawn`` start method: a fork of a process running torch's or Qt's
threads can deadlock). The packed model and data are written once to a private temporary file, which the
pool's initializer reads in each worker: they reach a worker once, not once per job, and starting a worker
does not wait for it to read them (so a Ctrl+C meanwhile is not held up). A job drains :func:`core.sweep.jobs.run_job` and puts its progress
on a queue the sweep reads. Closing sets a stop event every worker checks between the generator's yields
(it then closes the generator, as any cancel does), drops the jobs not started, and waits for the workers
to exit. Workers ignore Ctrl+C: the process that started them decides, and closes them.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import queue as queues
import signal
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor

from core.progress import Cancelled, run
from core.sweep.backend import POLL_S, Backend, JobEvent, unpack
from core.sweep.grid import SweepError, SweepJob
from core.sweep.jobs import SweepResult, fewer_reports, run_job

_worker: dict = {}  # in a worker process: the model, data, progress queue and stop event


def _init_worker(payload: str, progress, stop, threads: int) -> None:
    import torch

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    with open(payload, "rb") as f:
        loaded, data = unpack(f.read())
    _worker.update(loaded=loaded, data=data, progress=progress, stop=stop)


def _run(job: SweepJob) -> SweepResult | None:
    """In a worker: one job; None when the sweep was stopped before it ended."""
    if _worker["stop"].is_set():
        return None
    try:
        return run(fewer_reports(run_job(job, _worker["loaded"], _worker["data"])),
                   on_progress=lambda p: _worker["progress"].put((job.index, p)),
                   should_cancel=_worker["stop"].is_set)
    except Cancelled:
        return None


@contextlib.contextmanager
def handling_ctrl_c(handler):
    """Ctrl+C (SIGINT) handled by ``handler`` meanwhile, then as before. Only the main thread may change it;
    elsewhere (the studio's task threads, which see no Ctrl+C) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def default_workers() -> int:
    """One worker per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class LocalPool(Backend):
    """``workers`` processes (default: one per core), each running torch on ``threads`` threads (default:
    the cores shared out among the workers)."""

    def __init__(self, workers: int | None = None, threads: int | None = None) -> None:
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise SweepError(f"--workers must be a whole number of at least 1; got {workers!r}")
        self.workers = workers or default_workers()
        self.threads = threads or max(1, default_workers() // self.workers)
        self.description = f"{self.workers} local worker process{'es' if self.workers > 1 else ''}"
        self._pool: ProcessPoolExecutor | None = None
        self._futures: dict[Future, int] = {}
        self._queue = self._stop = self._payload = None
        self.stopped = 0  # jobs the last close stopped or dropped before they finished

    def start(self, payload: bytes, jobs: Sequence[SweepJob]) -> None:
        context = multiprocessing.get_context("spawn")
        self._queue, self._stop = context.Queue(), context.Event()
        fd, self._payload = tempfile.mkstemp(prefix="prunescope-sweep-", suffix=".payload")  # this user's only
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
        self._pool = ProcessPoolExecutor(min(self.workers, len(jobs)), mp_context=context,
                                         initializer=_init_worker,
                                         initargs=(self._payload, self._queue, self._stop, self.threads))
        # the pool starts its workers as jobs are submitted: they ignore Ctrl+C from their first instruction (an
        # ignored signal stays ignored in a new interpreter), never dying halfway through an import; this
        # process decides, and closes them
        with handling_ctrl_c(signal.SIG_IGN):
            self._futures = {self._pool.submit(_run, job): job.index for job in jobs}

    def _reports(self, timeout: float) -> list[JobEvent]:
        out = []
        try:
            out.append(JobEvent(*self._queue.get(timeout=timeout)))
            while True:
                out.append(JobEvent(*self._queue.get_nowait()))
        except queues.Empty:
            pass
        return out

    def events(self, timeout: float) -> list[JobEvent]:
        out = self._reports(timeout)
        for future in [f for f in self._futures if f.done()]:
            index = self._futures.pop(future)
            result = future.result()  # a job's error is raised here, with the worker's traceback as its cause
            if result is not None:
                out.append(JobEvent(index, result=result))
        return out

    def close(self) -> None:
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        self._stop.set()  # running jobs stop at their next yield
        # a worker exits only once what it put on the queue is read: read it while they exit
        closing = threading.Thread(target=pool.shutdown, kwargs={"wait": True, "cancel_futures": True},
                                   name="sweep-pool-shutdown")
        closing.start()
        while closing.is_alive():
            self._reports(POLL_S)
        closing.join()
        self.stopped = sum(f.cancelled() or f.exception() is None and f.result() is None for f in self._futures)
        self._futures = {}
        self._queue.close()
        self._queue.join_thread()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._payload)
