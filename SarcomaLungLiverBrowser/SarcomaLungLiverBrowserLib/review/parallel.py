"""Collection QA beyond one process: worker processes on this machine, or a Dask distributed cluster.

Each case is checked by :func:`check_case_task` in a worker with a headless
scene of its own. A worker receives a :class:`CaseTask` (the collection's key
and folder and the case's record: paths, never image data) and returns the
case's plain findings, so a worker holds one case at a time (a lock makes
that so even on a Dask worker with several threads) and the parent never holds
more than the findings. Results come back in any order; the caller files them
by case position, so reports list them exactly as a serial run does.

Worker processes are started with the ``spawn`` method, never forked: the
parent may hold a VTK/MRML scene (the Slicer application's), and a forked copy
of one is not safe to use.

A worker that dies mid-case (killed, or crashed in a native library) loses
nothing: with processes, the broken pool is replaced and every case that was
in flight is checked again, alone, so a case that kills its worker every time
is told from the cases that only shared the pool with it; after
:data:`MAX_ATTEMPTS` deaths it gets an error finding instead. On Dask, the
scheduler reschedules a task whose worker died (up to its
``distributed.scheduler.allowed-failures``) and ``retries`` repeats a task that
raised; a case that still fails gets the same error finding.

Dask is imported only when a scheduler address is given.
"""
from __future__ import annotations

import atexit
import collections
import concurrent.futures
import logging
import os
import sys
import threading
import time
import uuid
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

from ..processes import spawn_context
from ..findings import ERROR, Finding
from ..registry import CaseInfo

__all__ = [
    "CaseTask",
    "CaseOutcome",
    "MAX_ATTEMPTS",
    "PAUSE_FOLDER_VARIABLE",
    "check_case_task",
    "run_in_processes",
    "run_on_dask",
    "worker_lost_finding",
]

logger = logging.getLogger(__name__)

#: How often a case may take its worker down before it is reported instead of checked.
MAX_ATTEMPTS = 3
#: The dask and distributed version the tests and benchmarks run (requirements-lock.txt, the ``scale`` extra).
DASK_TESTED_VERSION = "2026.8.0"
#: Check name of a case whose worker kept dying.
CHECK_WORKER_LOST = "qa.worker_lost"
#: Test hook: a folder where each worker marks the case it starts (``<index>.<pid>.started``) and waits while
#: ``<index>.hold`` exists there, so a test can kill the worker mid-case. Unset in normal use.
PAUSE_FOLDER_VARIABLE = "SLLB_QA_TEST_PAUSE_FOLDER"

#: (case position, the case's result, notes about the run) as a worker returns it.
CaseOutcome = Tuple[int, Any, List[str]]


@dataclass(frozen=True)
class CaseTask:
    """What a worker needs to check one case: references only.

    :param index: the case's position in the run (results are filed by it).
    :param collection_key: opens the collection in the worker (``open_collection(root, key)``).
    :param collection_root: the collection folder, as the workers see it.
    :param case: the case record discovery made (paths and small facts).
    :param snapshot_path: render the case's PNG snapshot here (None: no snapshot).
    """

    index: int
    collection_key: str
    collection_root: Path
    case: CaseInfo
    snapshot_path: Optional[Path] = None


# ---------------------------------------------------------------------- inside a worker
#: One case at a time per process: a scene is not thread-safe, and memory stays bounded by one case.
_WORKER_LOCK = threading.Lock()
_worker_state: Dict[str, Any] = {}


def _worker_scene() -> Any:
    """This process's headless scene, made on its first case and kept (its import costs seconds)."""
    environment = _worker_state.get("environment")
    if environment is None:
        from ..scene.headless import HeadlessSlicer

        environment = HeadlessSlicer(install_globals=False)
        _worker_state["environment"] = environment
        # Released before interpreter exit: VTK objects freed in garbage-collection order have crashed exits.
        atexit.register(environment.close)
    return environment


def _worker_collection(key: str, root: Path) -> Any:
    """The collection object for ``(key, root)``, opened once per process."""
    collections_by_place = _worker_state.setdefault("collections", {})
    collection = collections_by_place.get((key, str(root)))
    if collection is None:
        from ..registry import open_collection

        collection = open_collection(Path(root), key)
        collections_by_place[(key, str(root))] = collection
    return collection


def _pause_for_test(task: CaseTask) -> None:
    """The test hook of :data:`PAUSE_FOLDER_VARIABLE` (does nothing when it is unset)."""
    folder = os.environ.get(PAUSE_FOLDER_VARIABLE)
    if not folder:
        return
    folder_path = Path(folder)
    (folder_path / f"{task.index}.{os.getpid()}.started").touch()
    hold = folder_path / f"{task.index}.hold"
    while hold.exists():
        time.sleep(0.05)


def check_case_task(task: CaseTask) -> CaseOutcome:
    """Check one case in this worker's own scene and return its plain result (runs in the worker)."""
    from .qa import run_case_qa

    with _WORKER_LOCK:
        _pause_for_test(task)
        environment = _worker_scene()
        collection = _worker_collection(task.collection_key, task.collection_root)
        notes: List[str] = []
        result = run_case_qa(collection, task.case, scene=environment.scene, snapshot_path=task.snapshot_path,
                             application_logic=environment.application_logic, notes=notes)
        return task.index, result, notes


def library_version() -> str:
    """The version of this library a worker runs (so the parent can refuse workers running other code)."""
    from importlib import metadata

    try:
        return metadata.version("SarcomaLungLiverBrowser")
    except metadata.PackageNotFoundError:
        return "unknown"


def worker_lost_finding(case: CaseInfo, how: str) -> Finding:
    """The error finding of a case that could not be checked because its worker kept dying.

    :param how: how often and how it died, e.g. ``"3 time(s)"``.
    """
    return Finding(ERROR, CHECK_WORKER_LOST,
                   f"{case.case_id} could not be checked: the worker process checking it died {how}; "
                   "a reader crashing in a native library on one of its files is the usual cause",
                   case_id=case.case_id)


# ---------------------------------------------------------------------- worker processes
class _ProcessRun:
    """Bookkeeping of one :func:`run_in_processes` call: what is waiting, in flight, suspected, failed."""

    def __init__(self, tasks: Sequence[CaseTask], workers: int, max_attempts: int) -> None:
        self.tasks = {task.index: task for task in tasks}
        self.waiting: Deque[int] = collections.deque(task.index for task in tasks)
        #: cases that were in flight when a worker died: checked again one at a time
        self.suspects: Deque[int] = collections.deque()
        self.attempts: Dict[int, int] = collections.Counter()
        self.in_flight: Dict[concurrent.futures.Future, int] = {}
        self.workers = workers
        self.max_attempts = max_attempts

    def next_indices(self) -> List[int]:
        """Cases to submit now: a suspect alone once nothing else runs, else waiting cases up to one per worker."""
        if self.suspects:
            return [self.suspects.popleft()] if not self.in_flight else []
        free = self.workers - len(self.in_flight)
        return [self.waiting.popleft() for _ in range(min(free, len(self.waiting)))]

    @property
    def finished(self) -> bool:
        return not (self.waiting or self.suspects or self.in_flight)


def _pool_broke(future: concurrent.futures.Future) -> bool:
    return isinstance(future.exception(), BrokenProcessPool)


def _outcome(future: Any, task: CaseTask) -> CaseOutcome:
    """A finished task's outcome; a task that raised (not a reader: those become findings inside the worker,
    but e.g. a collection folder the worker cannot open) gives the case an error finding naming the error."""
    try:
        return future.result()
    except Exception as error:  # noqa: BLE001 - one case's failure never stops the others
        from .qa import CaseQA, _failure_finding

        return task.index, CaseQA(task.case, [_failure_finding(task.case, error)], {}, loaded=False), []


def _new_pool(workers: int) -> concurrent.futures.ProcessPoolExecutor:
    return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=spawn_context())


def run_in_processes(tasks: Sequence[CaseTask], workers: int, *, max_attempts: int = MAX_ATTEMPTS,
                     should_stop: Optional[Callable[[], bool]] = None) -> Iterator[CaseOutcome]:
    """Check ``tasks`` in ``workers`` spawned processes; yields each outcome as soon as it is known.

    A case the workers could not check ``max_attempts`` times yields a result
    holding :func:`worker_lost_finding`. ``should_stop`` is asked while waiting;
    when it returns True, no new case starts, the running ones finish (their
    outcomes are still yielded) and the generator ends.
    """
    from .qa import CaseQA

    run = _ProcessRun(tasks, max(1, int(workers)), max_attempts)
    pool = _new_pool(run.workers)
    stopping = False
    try:
        while not run.finished:
            if not stopping:
                for index in run.next_indices():
                    try:
                        future = pool.submit(check_case_task, run.tasks[index])
                    except BrokenProcessPool:  # a worker died while idle; its in-flight peers are settled below
                        pool.shutdown(wait=True, cancel_futures=True)
                        pool = _new_pool(run.workers)
                        future = pool.submit(check_case_task, run.tasks[index])
                    run.in_flight[future] = index
            if not run.in_flight:
                break  # stopping, and nothing runs any more
            done, _ = concurrent.futures.wait(list(run.in_flight), timeout=0.5,
                                              return_when=concurrent.futures.FIRST_COMPLETED)
            if not stopping and should_stop is not None and should_stop():
                stopping = True
                run.waiting.clear()
                run.suspects.clear()
            lost: List[int] = []
            settled = [(run.in_flight.pop(future), future) for future in done]
            if any(_pool_broke(future) for _, future in settled):
                # Every other future of a broken pool fails too (or has finished): settle them all, lose none.
                concurrent.futures.wait(list(run.in_flight))
                settled.extend((index, future) for future, index in run.in_flight.items())
                run.in_flight.clear()
            for index, future in settled:
                if _pool_broke(future):
                    lost.append(index)
                else:
                    yield _outcome(future, run.tasks[index])
            if not lost:
                continue
            pool.shutdown(wait=True, cancel_futures=True)
            pool = _new_pool(run.workers)
            for index in sorted(lost):
                run.attempts[index] += 1
                logger.warning("a worker died while checking %s (attempt %d of %d)", run.tasks[index].case.case_id,
                               run.attempts[index], max_attempts)
                if run.attempts[index] >= max_attempts:
                    case = run.tasks[index].case
                    yield index, CaseQA(case, [worker_lost_finding(case, f"{run.attempts[index]} time(s)")],
                                        {}, loaded=False), []
                elif not stopping:
                    run.suspects.append(index)
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------- Dask
def _dask_client(scheduler: Any) -> Tuple[Any, bool]:
    """(client, whether we made it) for a scheduler address or an existing ``distributed.Client``."""
    try:
        from distributed import Client
    except ImportError as error:
        # Not installed for the user: the client's dask must be the version the cluster runs, which only they know.
        raise RuntimeError(f"QA on a Dask cluster needs the packages dask and distributed, of the versions the "
                           f"cluster runs: {sys.executable} -m pip install 'dask[distributed]==VERSION' "
                           f"(tested with {DASK_TESTED_VERSION}) ({error})") from error
    if isinstance(scheduler, Client):
        return scheduler, False
    try:
        return Client(str(scheduler), set_as_default=False), True
    except (OSError, ValueError, TypeError) as error:  # unreachable, refused, or not an address at all
        raise RuntimeError(f"cannot use the Dask scheduler at {scheduler}: {error}") from error


def _check_workers(client: Any, address: str) -> None:
    """Refuse a cluster whose workers cannot import this library, or run another version of it."""
    try:
        versions = client.run(library_version)
    except Exception as error:  # noqa: BLE001 - a worker failing to unpickle the function: the library is missing
        raise RuntimeError(f"the Dask workers of {address} cannot run the QA ({type(error).__name__}: {error}); "
                           "install SarcomaLungLiverBrowser on every worker") from error
    if not versions:
        raise RuntimeError(f"the Dask cluster at {address} has no workers")
    mine = library_version()
    other = {worker: version for worker, version in versions.items() if version != mine}
    if other:
        shown = ", ".join(f"{worker}: {version}" for worker, version in sorted(other.items()))
        raise RuntimeError(f"Dask workers of {address} run another version of SarcomaLungLiverBrowser ({shown}; "
                           f"this one is {mine}); their findings would differ")


def _killed_worker(future: Any) -> bool:
    from distributed.scheduler import KilledWorker

    return isinstance(future.exception(), KilledWorker)


def run_on_dask(tasks: Sequence[CaseTask], scheduler: Any, *, retries: int = MAX_ATTEMPTS - 1,
                should_stop: Optional[Callable[[], bool]] = None) -> Iterator[CaseOutcome]:
    """Check ``tasks`` on the Dask cluster at ``scheduler`` (an address or a ``distributed.Client``).

    Yields each outcome as soon as it is known; a case whose task still fails
    after ``retries`` (or whose workers kept dying) yields a result holding
    :func:`worker_lost_finding`. When ``should_stop`` returns True, the tasks
    not yet finished are cancelled and the generator ends.
    """
    from .qa import CaseQA

    client, own_client = _dask_client(scheduler)
    from distributed import as_completed  # importable: _dask_client checked

    address = str(scheduler) if own_client else str(client.scheduler.address)
    run_token = uuid.uuid4().hex[:12]
    futures: List[Any] = []
    try:
        _check_workers(client, address)
        futures = [client.submit(check_case_task, task, key=f"sllb-qa-{run_token}-{task.index}", pure=False,
                                 retries=retries) for task in tasks]
        by_key = {future.key: task for future, task in zip(futures, tasks)}
        completed = as_completed(futures, loop=client.loop, with_results=False)
        while True:
            try:
                batch = completed.next_batch(block=False) or [next(completed)]
            except StopIteration:
                break
            for future in batch:
                task = by_key[future.key]
                if future.status == "error" and _killed_worker(future):
                    logger.warning("Dask workers kept dying while checking %s", task.case.case_id)
                    yield task.index, CaseQA(task.case, [worker_lost_finding(
                        task.case, f"on every worker Dask tried ({future.exception()})")], {}, loaded=False), []
                else:
                    yield _outcome(future, task)
            if should_stop is not None and should_stop():
                break
    finally:
        pending = [future for future in futures if not future.done()]
        if pending:
            client.cancel(pending)
        if own_client:
            client.close()
