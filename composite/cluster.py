"""Where the work runs: in this process, on a Dask LocalCluster, or on an existing Dask cluster.

All three run the same task functions on the same inputs, so they produce identical outputs. A task
is ``fn(shared, item)``: ``shared`` (the job description, the same for every task) is sent once to
each worker (``Client.scatter(..., broadcast=True)``), ``item`` is one window or scene. Results come
back as tasks finish, in any order, with a tqdm progress bar.

With ``mode: address`` the workers must see the same file system paths as this process (inputs,
mask cache and work folder), as on a shared cluster file system.
"""

from __future__ import annotations

import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

log = logging.getLogger(__name__)

CLUSTER_MODES: tuple[str, ...] = ("local", "localcluster", "address")


@dataclass(frozen=True)
class ClusterSettings:
    """``mode``: ``local`` (this process), ``localcluster`` (a ``dask.distributed.LocalCluster``
    with ``n_workers`` x ``threads_per_worker``; ``processes: false`` runs the workers as threads)
    or ``address`` (connect to the scheduler at ``address``, e.g. ``tcp://10.0.0.5:8786``)."""

    mode: str = "local"
    n_workers: int = 2
    threads_per_worker: int = 1
    processes: bool = True
    memory_limit: str | None = "auto"
    address: str | None = None
    dashboard_address: str | None = None

    def __post_init__(self) -> None:
        if self.mode not in CLUSTER_MODES:
            raise ValueError(f"cluster.mode={self.mode!r}; use one of {list(CLUSTER_MODES)}.")
        if self.mode == "address" and not self.address:
            raise ValueError(
                "cluster.mode=address needs cluster.address=tcp://<scheduler host>:<port>."
            )
        if self.mode == "localcluster" and (self.n_workers < 1 or self.threads_per_worker < 1):
            raise ValueError(
                f"cluster.n_workers={self.n_workers} and cluster.threads_per_worker="
                f"{self.threads_per_worker} must both be >= 1."
            )


class Executor(ABC):
    """Runs ``fn(shared, item)`` for many items and yields the results as they finish."""

    #: Tasks run in this process (so they may show their own progress bars).
    in_process: bool = False

    @abstractmethod
    def map(
        self,
        fn: Callable[[Any, Any], Any],
        shared: Any,
        items: Sequence[Any],
        *,
        desc: str,
        progress: bool = True,
    ) -> Iterator[Any]:
        """Results of ``fn(shared, item)`` for every item, in completion order.

        Stopping the iteration early cancels what has not run yet.
        """

    def describe(self) -> dict[str, Any]:
        """JSON-ready description (for the run JSON)."""
        return {"mode": "local"}


class LocalExecutor(Executor):
    """Runs every task in this process, one after the other."""

    in_process = True

    def map(self, fn, shared, items, *, desc, progress=True):
        for item in tqdm(items, desc=desc, disable=not progress):
            yield fn(shared, item)


class DaskExecutor(Executor):
    """Runs tasks on a ``dask.distributed`` client's workers."""

    def __init__(self, client, mode: str) -> None:
        self.client = client
        self.mode = mode

    def map(self, fn, shared, items, *, desc, progress=True):
        from distributed import as_completed

        if not items:
            return
        shared_future = self.client.scatter(shared, broadcast=True, hash=False)
        futures = [self.client.submit(fn, shared_future, item, pure=False) for item in items]
        try:
            with tqdm(total=len(futures), desc=desc, disable=not progress) as bar:
                for future in as_completed(futures):
                    result = future.result()
                    bar.update()
                    yield result
        finally:
            self.client.cancel(futures)
            self.client.cancel(shared_future)

    def describe(self) -> dict[str, Any]:
        workers = self.client.scheduler_info().get("workers", {})
        return {
            "mode": self.mode,
            "scheduler": self.client.scheduler.address,
            "workers": len(workers),
            "threads": sum(info.get("nthreads", 0) for info in workers.values()),
        }


@contextlib.contextmanager
def open_executor(settings: ClusterSettings) -> Iterator[Executor]:
    """The executor for ``settings``; a LocalCluster is started here and closed on exit."""
    if settings.mode == "local":
        yield LocalExecutor()
        return
    from distributed import Client, LocalCluster

    if settings.mode == "address":
        log.info("Connecting to the Dask scheduler at %s", settings.address)
        with Client(settings.address) as client:
            yield DaskExecutor(client, "address")
        return
    log.info(
        "Starting a Dask LocalCluster: %d workers x %d threads (%s)",
        settings.n_workers,
        settings.threads_per_worker,
        "processes" if settings.processes else "threads",
    )
    with (
        LocalCluster(
            n_workers=settings.n_workers,
            threads_per_worker=settings.threads_per_worker,
            processes=settings.processes,
            memory_limit=settings.memory_limit,
            dashboard_address=settings.dashboard_address,
        ) as cluster,
        Client(cluster) as client,
    ):
        if settings.dashboard_address:
            log.info("Dask dashboard: %s", client.dashboard_link)
        yield DaskExecutor(client, "localcluster")
