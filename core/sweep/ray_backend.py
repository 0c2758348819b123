"""The Ray backend (the optional extra ``[ray]``): each job a Ray task on a cluster.

The packed model and data are put in Ray's object store once (``ray.put``); every task gets a reference to
that one object, and each worker process unpacks it once and keeps it for the next task it runs. A task is
a streaming generator (``num_returns="streaming"``) running :func:`core.sweep.jobs.run_job`, the same core
generator as everywhere: it yields the job's progress, thinned, then its :class:`SweepResult`. Closing
cancels every task not yet finished (``ray.cancel``: one queued never starts, one running is interrupted)
and waits for them to end; a cluster this backend started (``local``) is shut down, a connection it made
to another is closed, and a connection the process already had is left as it was.

Addresses: ``auto`` (the cluster ``ray start --head`` started on this machine, or ``RAY_ADDRESS``),
``local`` (a new cluster of this machine's cores, for this sweep only), ``HOST:PORT`` or ``ray://HOST:PORT``.
Workers must be able to import Prunescope (the same version); on this machine they are.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
from collections import deque
from collections.abc import Sequence

from core.errors import PrunescopeError, one_line
from core.sweep.backend import Backend, JobEvent, unpack
from core.sweep.grid import SweepError, SweepJob
from core.sweep.jobs import SweepResult, fewer_reports, run_job

RAY_MISSING = ("--ray needs Ray, an optional extra: pip install -e \".[ray]\" (ray==2.60.0); or leave --ray "
               "out to run on local worker processes")
CONNECT_TIMEOUT_S = 5.0
"""How long a HOST:PORT may take to accept a connection before it counts as unreachable (Ray itself would
wait minutes)."""
CLOSE_TIMEOUT_S = 60.0
"""How long closing waits for cancelled tasks to end."""

_payload: dict = {}  # in a worker process: the object store reference it unpacked last, and what it holds


def _unpacked(ref):
    import ray

    key = ref.hex()
    if _payload.get("key") != key:
        _payload.clear()
        _payload.update(key=key, value=unpack(ray.get(ref)))
    return _payload["value"]


def _remote_job(refs, job: SweepJob):
    """The task: ``refs`` holds the payload's reference, in a list so that Ray passes the reference, not a
    fresh copy of its value per task."""
    import torch

    torch.set_num_threads(1)  # one CPU per task, as the task asks of the scheduler
    loaded, data = _unpacked(refs[0])
    result = yield from fewer_reports(run_job(job, loaded, data))
    yield result


def ray_available() -> bool:
    """Whether the ``[ray]`` extra is installed (found, not imported: importing Ray takes a second)."""
    try:
        return importlib.util.find_spec("ray") is not None
    except (ImportError, ValueError):  # hidden (sys.modules["ray"] = None), or half installed
        return False


def _host_port(address: str) -> tuple[str, int]:
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SweepError(one_line(f"--ray {address}: not an address; give auto, local, HOST:PORT or "
                                  "ray://HOST:PORT"))
    return host, int(port)


def _check_reachable(address: str, asked: str | None = None) -> None:
    host, port = _host_port(address)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        where = f"{asked}: the cluster it finds, {address}," if asked else f"{address}:"
        raise SweepError(one_line(f"--ray {where} does not answer ({exc.strerror or exc}); start one with "
                                  "`ray start --head`, or use --ray local")) from None


LATEST_CLUSTER = "/tmp/ray/ray_current_cluster"
"""Where Ray records the cluster ``ray start`` started last (``ray.init``'s documentation): what ``auto`` connects
to when ``RAY_ADDRESS`` is not set."""


def auto_address() -> str | None:
    """The address ``ray.init(address="auto")`` would connect to, as its documentation resolves it:
    ``RAY_ADDRESS``, else the latest cluster started; None when there is none. Checked before connecting,
    because Ray waits minutes for a cluster that was killed rather than stopped."""
    address = os.environ.get("RAY_ADDRESS", "").strip()
    if address:
        return address
    try:
        with open(LATEST_CLUSTER, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


class RayBackend(Backend):
    """Jobs as Ray tasks on the cluster at ``address``; at most ``workers`` of them submitted at once
    (default: all, and the cluster runs as many as it has CPUs)."""

    def __init__(self, address: str = "auto", workers: int | None = None) -> None:
        address = str(address).strip()
        if address not in ("auto", "local"):
            _host_port(address)
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise SweepError(f"--workers must be a whole number of at least 1; got {workers!r}")
        self.address, self.workers = address, workers
        self.description = f"Ray ({address})"
        self._owned = self._connected = False
        self._tasks: dict = {}  # ObjectRefGenerator -> job index
        self._queued: deque[SweepJob] = deque()
        self._remote = self._ref = None
        self.stopped = 0  # tasks the last close cancelled before they finished

    def connect(self) -> None:
        if self._connected:
            return
        if not ray_available():
            raise SweepError(RAY_MISSING)
        import ray

        if ray.is_initialized():  # this process is connected already (a test's cluster): use it as it is
            self._owned = False
        else:
            if self.address not in ("auto", "local"):
                _check_reachable(self.address)
            elif self.address == "auto" and (found := auto_address()) and not found.startswith("ray://"):
                _check_reachable(found, "auto")
            # local: a new cluster, even where another was started (address None would join that one)
            options = {"num_cpus": self.workers, "include_dashboard": False} if self.address == "local" else {}
            try:
                ray.init(address=self.address, logging_level=logging.WARNING, **options)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise SweepError(one_line(f"--ray {self.address}: cannot connect ({str(exc).splitlines()[0]}); "
                                          "start a cluster with `ray start --head`, or use --ray local")) from None
            self._owned = True
        self._connected = True
        cpus = int(ray.cluster_resources().get("CPU", 0))
        self.description = f"Ray ({self.address}, {cpus} CPU{'s' if cpus != 1 else ''})"

    def start(self, payload: bytes, jobs: Sequence[SweepJob]) -> None:
        import ray

        self.connect()
        self._ref = ray.put(payload)  # once: every task reads this one object
        self._remote = ray.remote(num_returns="streaming", num_cpus=1, max_retries=0)(_remote_job)
        self._queued = deque(jobs)
        for _ in range(min(self.workers or len(jobs), len(jobs))):
            self._submit()

    def _submit(self) -> None:
        if self._queued:
            job = self._queued.popleft()
            self._tasks[self._remote.remote([self._ref], job)] = job.index

    def events(self, timeout: float) -> list[JobEvent]:
        import ray

        if not self._tasks:
            return []
        ready, _ = ray.wait(list(self._tasks), num_returns=1, timeout=timeout)
        out = []
        for task in ready:
            index = self._tasks[task]
            try:
                item = ray.get(next(task))
            except StopIteration:
                del self._tasks[task]
                self._submit()
                continue
            except ray.exceptions.RayTaskError as exc:  # the job's own error, not Ray's wrapping of it
                if isinstance(exc.cause, PrunescopeError):
                    raise exc.cause from None
                raise
            out.append(JobEvent(index, result=item) if isinstance(item, SweepResult) else JobEvent(index, item))
        return out

    def close(self) -> None:
        if not self._connected:
            return
        import ray

        tasks, self._tasks, self._queued = list(self._tasks), {}, deque()
        for task in tasks:
            ray.cancel(task)
        ends = [task.completed() for task in tasks]
        if ends:  # wait until none of them runs
            ray.wait(ends, num_returns=len(ends), timeout=CLOSE_TIMEOUT_S)
        self.stopped = 0
        for end in ends:
            try:
                ray.get(end, timeout=0)
            except ray.exceptions.TaskCancelledError:
                self.stopped += 1
            except ray.exceptions.RayError:  # it failed, or has not ended: not the sweep's business any more
                pass
        self._ref = None
        if self._owned:
            ray.shutdown()
        self._connected = self._owned = False
