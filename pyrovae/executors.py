"""Where a parallel map runs: in this process, a local pool of spawned processes, or a Dask cluster.

Every parallel map of the package (``api.train_reps``'s process path, the experiments'
``map_tasks``) goes through :meth:`Executor.run`, so the same grid runs unchanged on one core, on
the local cores or on a Dask distributed cluster (``distributed.Client``; dask-jobqueue starts such
a cluster on Slurm or PBS). ``fn`` must be importable at module level (workers import it by name).
Each task runs with ``threads`` torch threads in its worker and reports its own wall time.

Dask is an optional extra: ``pip install 'pyrovae[cluster]'``.
"""

from __future__ import annotations

import importlib.util
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, Callable, Iterator, Sequence

from pyrovae.errors import ConfigError
from pyrovae.validation import MAX_UNITS, integer_at_least

__all__ = ["Finished", "Executor", "InProcess", "LocalProcesses", "DaskCluster", "make_executor", "parse_cluster"]


@dataclass(frozen=True)
class Finished:
    """Task ``index`` returned ``result`` after ``seconds`` of wall time in its worker."""

    index: int
    result: Any
    seconds: float


def _timed(fn: Callable[..., Any], task: dict, threads: int | None) -> tuple[Any, float]:
    """``fn(**task)`` and its wall time, in a worker: torch set to ``threads`` first (None: as it is)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    start = time.perf_counter()
    result = fn(**task)
    return result, time.perf_counter() - start


class Executor:
    """Runs ``fn(**task)`` for each task and yields :class:`Finished` as each one ends (in no
    particular order). A failed task raises its own exception here and cancels the tasks not yet
    started. Use as a context manager (or call :meth:`close`) to release workers it started."""

    #: a short description for logs and provenance
    description = ""

    def run(self, fn: Callable[..., Any], tasks: Sequence[dict]) -> Iterator[Finished]:
        raise NotImplementedError

    def close(self) -> None:
        """Release what this executor started (nothing, unless it says otherwise)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InProcess(Executor):
    """One task after another in this process, torch set to ``threads`` first (None: left as they are;
    the command line's executors pass the workers' count, so --jobs 1 and --jobs N give the same numbers)."""

    description = "in process"

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    def run(self, fn, tasks):
        for i, task in enumerate(tasks):
            result, seconds = _timed(fn, dict(task), self.threads)
            yield Finished(i, result, seconds)


class LocalProcesses(Executor):
    """``jobs`` spawned processes on this machine, ``threads`` torch threads each (a pool per
    :meth:`run`). One task runs in this process instead: a pool would only add its start-up."""

    def __init__(self, jobs: int, threads: int = 1) -> None:
        self.jobs = integer_at_least("--jobs", jobs, 1, MAX_UNITS)
        self.threads = integer_at_least("--threads", threads, 1, MAX_UNITS)
        self.description = f"{self.jobs} local processes"

    def run(self, fn, tasks):
        if len(tasks) <= 1:
            yield from InProcess(self.threads).run(fn, tasks)
            return
        pool = ProcessPoolExecutor(max_workers=min(self.jobs, len(tasks)), mp_context=get_context("spawn"))
        try:
            futures = {pool.submit(_timed, fn, dict(task), self.threads): i for i, task in enumerate(tasks)}
            for future in as_completed(futures):
                result, seconds = future.result()
                yield Finished(futures[future], result, seconds)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


class DaskCluster(Executor):
    """Tasks on a Dask distributed cluster: the scheduler at ``address`` (``tcp://HOST:PORT``), or a
    ``LocalCluster`` of ``workers`` processes with one thread each, started on first use and closed
    by :meth:`close`. Workers must import this package and, for tasks that write run directories,
    see the same file system as this process."""

    def __init__(self, address: str | None = None, workers: int | None = None, threads: int = 1) -> None:
        if (address is None) == (workers is None):
            raise ConfigError("a Dask executor needs either a scheduler address or a number of local workers")
        _require_dask()
        self.address = address
        self.workers = None if workers is None else integer_at_least("--cluster local:N", workers, 1, MAX_UNITS)
        self.threads = integer_at_least("--threads", threads, 1, MAX_UNITS)
        self.description = f"Dask scheduler {address}" if address else f"Dask LocalCluster of {workers} workers"
        self._client = None
        self._cluster = None

    @property
    def client(self):
        """The ``distributed.Client`` (connected, or its ``LocalCluster`` started, on first use)."""
        if self._client is None:
            from distributed import Client, LocalCluster

            try:
                if self.address is not None:
                    self._client = Client(self.address, timeout="30s")
                else:
                    self._cluster = LocalCluster(n_workers=self.workers, threads_per_worker=1, processes=True,
                                                 dashboard_address=None)
                    self._client = Client(self._cluster)
            except OSError as exc:
                raise ConfigError(f"cannot reach the Dask scheduler {self.address}: {exc}") from None
        return self._client

    def __enter__(self) -> "DaskCluster":
        self.client  # connect (or start the LocalCluster) now: an unreachable scheduler fails before any work
        return self

    def run(self, fn, tasks):
        from distributed import as_completed as dask_completed

        client = self.client
        futures = [client.submit(_timed, fn, dict(task), self.threads, pure=False) for task in tasks]
        index = {future.key: i for i, future in enumerate(futures)}
        try:
            for future in dask_completed(futures):
                result, seconds = future.result()
                yield Finished(index[future.key], result, seconds)
        finally:
            client.cancel([f for f in futures if not f.done()])

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None


def _require_dask() -> None:
    if importlib.util.find_spec("distributed") is None:
        raise ConfigError("the Dask back end needs dask and distributed: pip install 'pyrovae[cluster]'")


def parse_cluster(spec: str) -> int:
    """The number of workers of ``--cluster local:N``."""
    kind, _, count = str(spec).partition(":")
    if kind != "local" or not count.strip().isdigit():
        raise ConfigError(f"--cluster must be local:N (N local Dask worker processes), got {spec!r}")
    return integer_at_least("--cluster local:N", int(count), 1, MAX_UNITS)


def make_executor(jobs: int = 1, scheduler: str | None = None, cluster: str | None = None,
                  threads: int = 1) -> Executor:
    """The executor the command line asks for: ``scheduler`` (a Dask scheduler address), ``cluster``
    (``local:N``: a Dask ``LocalCluster``), or ``jobs`` local processes (this process when 1)."""
    jobs = integer_at_least("--jobs", jobs, 1, MAX_UNITS)
    if scheduler is not None and cluster is not None:
        raise ConfigError("give either --scheduler or --cluster, not both")
    if (scheduler is not None or cluster is not None) and jobs > 1:
        raise ConfigError("--jobs counts local processes; with --scheduler or --cluster the Dask workers do the work")
    if scheduler is not None:
        if not str(scheduler).strip():
            raise ConfigError("--scheduler needs an address such as tcp://HOST:8786")
        return DaskCluster(address=str(scheduler).strip(), threads=threads)
    if cluster is not None:
        return DaskCluster(workers=parse_cluster(cluster), threads=threads)
    return LocalProcesses(jobs, threads) if jobs > 1 else InProcess(threads)
