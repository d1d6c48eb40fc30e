"""A batch's photos localized by the worker processes of a Dask cluster (``loc2 batch --workers N`` or
``--scheduler ADDRESS``, docs/cluster.md), written by the one `gpkg.GeoPackageWriter` of this process.

`ClusterLocalizer` is what `batch.run_batch` is given instead of a `pipeline.Localizer`: it starts a local
cluster of worker processes (one thread each) or connects to a running ``dask.distributed`` scheduler, and
has every worker load the localizer before the first photo, so that a model that cannot be loaded stops
the batch before anything is written. Each worker process keeps its localizer (model and aerial-feature
cache) for all the photos it is given; the aerial raster is opened there by path. A photo travels as its
`batch.PhotoJob` (its prior, its search extent, ...) and the worker runs it through `batch.localize_job`,
as one process does. This process places each photo on a worker with a free thread (so no more photos are
out than the workers have threads), and each `Result` comes back as soon as it is ready to the writer here,
so the GeoPackage is written, resumable and interrupt-safe exactly as in one process. A photo's own failure is its ``failed`` row, made on the
worker by `batch.localize_job`. A worker process that dies (out of memory, a crash in native code, a lost
machine) loses only the photos it was running: each is given to another worker once more, and its second
death makes it a ``failed`` row saying so; the batch goes on with the workers left (a local cluster starts
a new worker in place of a dead one).

Results equal those of one process for the same photos and settings: each photo is localized from its
own inputs and the seed alone, in whatever order and on whichever worker (bit for bit at the same number
of torch threads; workers run one).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter, deque
from concurrent.futures import CancelledError
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from .batch import BatchSummary, PhotoJob, check_extent, localize_job, record
from .errors import Loc2Error, ModelError
from .registry import load_target
from .result import Result

#: the localizer a worker builds unless told otherwise ("module:attribute", called with the settings)
LOCALIZER = "loc2_engine.pipeline:Localizer"
#: scheduler settings of the local cluster: a photo whose worker died comes back at once (KilledWorker),
#: for `_Flights` to retry it, instead of being retried by the scheduler
LOCAL_SCHEDULER = {"distributed.scheduler.allowed-failures": 0}
#: a photo is a failed row when its worker process died under it this many times (it is retried once)
MAX_DEATHS = 2
#: seconds between looks at the workers while photos are running
POLL_S = 1.0
#: seconds to wait for a running scheduler to answer, and then for its first worker
CONNECT_TIMEOUT_S = 20.0
WORKER_WAIT_S = 60.0


def local_cluster(workers: int):
    """A `distributed.LocalCluster` of ``workers`` worker processes on this machine, one thread each (torch
    then runs one thread per process: the nanny sets OMP_NUM_THREADS=1), with `LOCAL_SCHEDULER`'s settings
    and no dashboard.

    The workers keep glibc's own malloc tuning: the MALLOC_TRIM_THRESHOLD_ that Dask's nanny sets by default
    turns off glibc's adaptive mmap threshold, so every large tensor is mapped and unmapped afresh, which
    makes a photo about 1.5 times slower.
    """
    import dask
    from distributed import LocalCluster

    environ = dask.config.get("distributed.nanny.pre-spawn-environ")
    environ = {k: v for k, v in environ.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    with dask.config.set({**LOCAL_SCHEDULER, "distributed.nanny.pre-spawn-environ": environ}):
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)


class IgnoreInterrupt:
    """Worker plugin of the local cluster (`distributed.WorkerPlugin` protocol), set up in every worker
    process, restarted ones too: Ctrl-C in the terminal reaches the workers as well, and is for the writing
    process alone to act on (it drops the photos in flight and closes the workers)."""

    def setup(self, worker) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # runs in the worker's main thread (its event loop)


@dataclass(frozen=True)
class LocalizerSpec:
    """How a worker builds its localizer: ``factory`` ("module:attribute") called with ``settings``
    ((name, value) pairs, sorted). A worker process keeps the localizer of the last spec it was given."""

    settings: Tuple[Tuple[str, object], ...] = ()
    factory: str = LOCALIZER

    @classmethod
    def of(cls, settings: Optional[dict] = None, factory: str = LOCALIZER) -> "LocalizerSpec":
        """The spec of ``factory(**settings)``; a setting naming an existing file or folder (a weight file,
        a depth-anything folder) is made absolute, since workers need not share this process's folder."""
        return cls(tuple(sorted((k, _absolute(v)) for k, v in (settings or {}).items())), factory)

    def localizer(self):
        """This process's localizer of this spec, built on first use (ModelError when it cannot be)."""
        with _CACHE_LOCK:  # worker threads wait for the one loading the model instead of loading it again
            if _CACHE.get("spec") != self:
                _CACHE.clear()  # a long-lived worker serving another batch drops the previous model
                factory = load_target(self.factory, ModelError, f"The localizer {self.factory}")
                _CACHE.update(spec=self, localizer=factory(**dict(self.settings)))
            return _CACHE["localizer"]


#: the one localizer of this (worker) process and its spec
_CACHE: Dict[str, object] = {}
_CACHE_LOCK = threading.Lock()


def _absolute(value):
    if isinstance(value, str) and (os.sep in value or os.path.splitext(value)[1]) and os.path.exists(value):
        return os.path.abspath(value)
    return value


class ClusterLocalizer:
    """Localizes a batch on a Dask cluster; a context manager (entering starts the cluster or connects to
    it, and loads the localizer on every worker; leaving closes it).

    settings: keyword arguments of ``factory`` (`pipeline.Localizer`'s: model, depth, device, weights,
    backbone, `LocalizerConfig` overrides); workers: local worker processes to start; scheduler: address of
    a running scheduler (``tcp://host:8786``) instead. Raises `Loc2Error` (ModelError, ...) on entering
    when the cluster cannot be started or reached or a worker cannot build the localizer.
    """

    def __init__(self, settings: Optional[dict] = None, *, workers: Optional[int] = None,
                 scheduler: Optional[str] = None, factory: str = LOCALIZER):
        if (workers is None) == (scheduler is None):
            raise ValueError("give either workers (a local cluster) or scheduler (a running one)")
        self.spec = LocalizerSpec.of(settings, factory)
        self.workers = workers
        self.scheduler = scheduler
        self.client = None
        self._cluster = None

    def __enter__(self) -> "ClusterLocalizer":
        try:
            self._connect()
            self._load_everywhere()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the client, and the local cluster's workers and scheduler (idempotent)."""
        for part in (self.client, self._cluster):
            if part is not None:
                part.close()
        self.client = self._cluster = None

    def _connect(self) -> None:
        from distributed import Client

        if self.scheduler is None:
            self._cluster = local_cluster(self.workers)
            self.client = Client(self._cluster)
            self.client.register_worker_plugin(IgnoreInterrupt(), name="loc2-ignore-interrupt")
            return
        try:
            self.client = Client(self.scheduler, timeout=f"{CONNECT_TIMEOUT_S}s")
        except (OSError, ValueError, TypeError) as exc:
            raise Loc2Error(f"Cannot reach the Dask scheduler at {self.scheduler} ({exc}); start it on that "
                            "machine (docs/cluster.md), or check the address (tcp://host:8786).") from None
        try:
            self.client.wait_for_workers(1, timeout=WORKER_WAIT_S)
        except (TimeoutError, OSError):
            raise Loc2Error(f"No Dask worker joined the scheduler at {self.scheduler} within {WORKER_WAIT_S:g} "
                            "s; start workers on the machines that should localize (docs/cluster.md).") from None

    def _load_everywhere(self) -> None:
        """Every worker builds the localizer now: a model it cannot load stops the batch before it starts (a
        worker that joins later builds it for its first photo)."""
        self.client.run(_load, self.spec)

    def check_extent(self, extent, crs) -> None:
        """`batch.check_extent` on a worker, whose localizer has the model (the window size): PriorError when
        the extent cannot be searched."""
        problem = self.client.submit(_extent_problem, self.spec, tuple(extent), crs, pure=False).result()
        if problem is not None:
            raise problem

    def run_batch(self, jobs: Sequence[PhotoJob], aerial, out, *, resume: bool = False,
                  progress: Optional[Callable[[int, int, Result], None]] = None,
                  cancelled: Optional[Callable[[], bool]] = None) -> BatchSummary:
        """`batch.run_batch` on the workers: the same arguments, rows and summary; rows are written in the
        order photos finish. ``aerial``: a raster path (opened on each worker), or None for the jobs' own.
        cancelled() is checked before each photo is submitted; True drops the photos in flight."""
        start = time.perf_counter()
        summary = BatchSummary(total=len(jobs))
        done_ids = set(out.photos()) if resume else set()
        todo = deque(job for job in jobs if job.photo not in done_ids)
        summary.skipped = len(jobs) - len(todo)
        if isinstance(aerial, (str, os.PathLike)):
            aerial = os.path.abspath(aerial)  # opened on the workers, which need not share this folder
        flights = _Flights(self.client, self.spec, aerial, todo)
        try:
            while todo or flights.running:
                if not flights.fill(cancelled):
                    summary.cancelled = True
                    break
                for result in flights.landed():
                    record(result, out, summary, progress)
        except (OSError, CancelledError) as exc:  # the scheduler is gone: the client gave up reconnecting
            raise Loc2Error(f"Lost the Dask scheduler ({type(exc).__name__}); the photos finished so far are in "
                            "the file: rerun with --resume once the scheduler and its workers are back.") from None
        finally:  # Ctrl-C, an output error or a cancel: the photos still in flight are dropped
            if self.client.status == "running":
                for future in flights.running:
                    future.cancel()
        summary.wall_s = time.perf_counter() - start
        return summary


class _Flights:
    """The photos being localized: each placed by this process on a worker with a free thread, so that a
    worker's death is charged to the photos it was running and to no other (the scheduler would charge a
    photo merely waiting there too). A photo whose worker died goes back to the front of ``todo`` until its
    `MAX_DEATHS`-th death, which makes it a failed Result."""

    def __init__(self, client, spec: LocalizerSpec, aerial, todo: "deque[PhotoJob]"):
        self.client, self.spec, self.aerial, self.todo = client, spec, aerial, todo
        self.running: Dict[object, Tuple[PhotoJob, str]] = {}  # future -> (job, worker address)
        self.deaths: Counter = Counter()  # photo -> deaths of its workers
        self._alone_since: Optional[float] = None  # when the cluster was last seen without workers

    def fill(self, cancelled: Optional[Callable[[], bool]]) -> bool:
        """Give every free worker thread a photo of ``todo``; False when cancelled() says to stop."""
        busy = Counter(address for _, address in self.running.values())
        for address, threads in self._workers().items():
            while self.todo and busy[address] < threads:
                if cancelled is not None and cancelled():
                    return False
                job = self.todo.popleft()
                future = self.client.submit(_localize, job, self.aerial, self.spec, pure=False,
                                            workers=[address], allow_other_workers=False)
                self.running[future] = (job, address)
                busy[address] += 1
        return True

    def landed(self) -> List[Result]:
        """The Results of the photos that finished, waiting at most `POLL_S` for one; a photo whose worker
        died goes back to ``todo`` or, at its last death, is a failed Result."""
        from distributed import wait

        if self.running:
            try:
                wait(list(self.running), timeout=POLL_S, return_when="FIRST_COMPLETED")
            except TimeoutError:
                pass
        else:
            time.sleep(POLL_S)  # no worker has a free thread: wait for one to (re)join
        alive = self._workers()
        results = []
        for future, (job, address) in list(self.running.items()):
            died = _killed(future) or (address not in alive and not future.done())
            if not (died or future.done()):
                continue
            del self.running[future]
            if not died:
                results.append(future.result())  # re-raises what is no photo's failure (ModelError, ...)
                continue
            future.cancel()
            self.deaths[job.photo] += 1
            if self.deaths[job.photo] < MAX_DEATHS:
                self.todo.appendleft(job)
            else:
                results.append(Result.failure(job.photo, Loc2Error(_death_sentence(job, self.deaths[job.photo]))))
        return results

    def _workers(self) -> Dict[str, int]:
        """{address: threads} of the workers now in the cluster; Loc2Error after `WORKER_WAIT_S` without."""
        workers = self.client.nthreads()
        if workers:
            self._alone_since = None
        elif self._alone_since is None:
            self._alone_since = time.perf_counter()
        elif time.perf_counter() - self._alone_since > WORKER_WAIT_S:
            raise Loc2Error(f"The Dask cluster has had no worker for {WORKER_WAIT_S:g} s; the photos finished "
                            "so far are in the file: start workers and rerun with --resume.")
        return workers


def _load(spec: LocalizerSpec) -> None:
    """On a worker: build its localizer."""
    spec.localizer()


def _extent_problem(spec: LocalizerSpec, extent, crs) -> Optional[Loc2Error]:
    """Task: `batch.check_extent` with this worker's localizer; its error is returned, not raised (a raising
    task is logged by the worker as a failed computation)."""
    try:
        check_extent(spec.localizer(), extent, crs)
    except Loc2Error as exc:
        return exc
    return None


def _localize(job: PhotoJob, aerial, spec: LocalizerSpec) -> Result:
    """Task: one photo on this worker's localizer, its aerial window left here (the writer needs only the
    frame)."""
    result = localize_job(job, aerial, spec.localizer())
    result.window = None
    return result


def _killed(future) -> bool:
    """Whether the scheduler gave up ``future`` because its worker died (KilledWorker)."""
    from distributed.scheduler import KilledWorker

    return future.status == "error" and isinstance(future.exception(), KilledWorker)


def _death_sentence(job: PhotoJob, deaths: int) -> str:
    times = "twice" if deaths == 2 else f"{deaths} times"
    return (f"The Dask worker process localizing {os.path.basename(job.photo)} died {times} while at it "
            "(killed: out of memory, a crash in native code, or a lost machine); the photo was not tried again. "
            "Localize it alone to see why.")
