"""Run a batch: every study of an archive, in-process or on Dask, resumable, one row per study.

The scheduling is Dask's (``dask.distributed``): ``local`` starts a ``LocalCluster`` of one
single-threaded worker process per core, an address (``tcp://host:8786``) uses a cluster the
user already runs, ``none`` runs in this process without Dask. Studies are submitted as workers
free up (twice as many in flight as there are workers), so memory does not grow with the size of
the archive; each worker loads a model once (:mod:`.study_task`). A worker that dies mid-study
is Dask's to handle: the study is run again on another worker. Workers read inputs and write
outputs by path, so on a real cluster both must be on a file system every worker sees.
"""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

from metaseg_viewer.batch.studies import Study, find_studies
from metaseg_viewer.batch.study_task import STUDIES, BatchSettings, clear_leftovers, run_study
from metaseg_viewer.batch.summary import write_tables
from metaseg_viewer.errors import InputError

SCHEDULERS = ("local", "none")  # or the address of a running scheduler, e.g. tcp://host:8786


@dataclass
class BatchReport:
    """What a run did: one record per study (in study order; see :mod:`.summary` for the
    columns), the tables written, and notes on what was passed over or cleaned up."""

    records: list[dict[str, Any]]
    tables: list[Path]
    notes: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(record["status"] == status for record in self.records)


def dask_installed() -> bool:
    try:
        import distributed  # noqa: F401
    except ImportError:
        return False
    return True


def run_batch(source: str | Path, out: str | Path, settings: BatchSettings = BatchSettings(),
              scheduler: str | None = None, workers: int | None = None, progress: bool = True) -> BatchReport:
    """Segment every study of ``source`` (a folder tree or a CSV manifest) into ``out``.

    ``scheduler``: ``local`` (default when ``distributed`` is installed), ``none`` (in-process,
    the default otherwise) or a scheduler address; ``workers``: local worker processes (default:
    one per core), or for an address how many workers to wait for. A study whose outputs match
    its input, truth, model and settings is kept, not redone. The tables are written even when
    the run is interrupted (Ctrl-C), with the studies finished so far.

    Raises:
        InputError: no studies, a malformed manifest, settings or a scheduler that cannot be used.
    """
    check_settings(settings)
    scheduler = scheduler or ("local" if dask_installed() else "none")
    if scheduler not in SCHEDULERS and "://" not in scheduler:
        raise InputError(f"scheduler {scheduler!r} not understood; accepted: local, none, or the address of a running "
                         "Dask scheduler such as tcp://host:8786")
    studies, notes = find_studies(source)
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    if removed := clear_leftovers(out):
        notes.append(f"removed {removed} unfinished study folder(s) an interrupted run left; those studies are redone")
    records: dict[str, dict[str, Any]] = {}
    from tqdm import tqdm

    bar = tqdm(total=len(studies), unit="study", file=sys.stderr, disable=not progress, dynamic_ncols=True)
    runs = _in_process(studies, settings, out) if scheduler == "none" else _on_dask(studies, settings, out,
                                                                                      scheduler, workers)
    try:
        for record in runs:
            if record["status"] != "failed":
                record["folder"] = f"{STUDIES}/{record['study_id']}"
            records[record["study_id"]] = record  # a study Dask ran twice (a lost worker) counts once
            bar.update(1)
            statuses = [r["status"] for r in records.values()]
            bar.set_postfix({s: statuses.count(s) for s in ("segmented", "kept", "failed")}, refresh=False)
    finally:
        bar.close()
        runs.close()  # a local cluster is shut down here, also on Ctrl-C
        clear_leftovers(out)  # what a killed worker was writing; its study was redone or is not done
        ordered = [records[s.study_id] for s in studies if s.study_id in records]
        tables = write_tables(out, ordered)
    return BatchReport(ordered, tables, notes)


def check_settings(settings: BatchSettings) -> None:
    """Refuse settings no study could run with, before any study is read."""
    from metaseg_viewer.config import InferenceConfig
    from metaseg_viewer.mask_formats import MASK_FORMATS
    from metaseg_viewer.model_choice import ModelChoiceError, choose_model
    from metaseg_viewer.precision import PRECISIONS
    from metaseg_viewer.registry import weights_version
    from metaseg_viewer.sequences import SequenceHint

    if settings.mask_format not in MASK_FORMATS:
        raise InputError(f"mask format {settings.mask_format!r} unknown; accepted: {', '.join(MASK_FORMATS)}")
    if settings.precision not in PRECISIONS:
        raise InputError(f"precision {settings.precision!r} unknown; accepted: {', '.join(PRECISIONS)}")
    InferenceConfig().override(threshold=settings.threshold, tta=settings.tta,
                               min_lesion_size=settings.min_lesion_size)
    try:
        choice = choose_model(SequenceHint(None, ""), settings.model, settings.sequence)
    except ModelChoiceError as exc:
        raise InputError(str(exc)) from None
    if settings.model is not None or settings.sequence is not None:
        weights_version(choice.model)  # an unknown model or a missing card, said now


def _in_process(studies: list[Study], settings: BatchSettings, out: Path) -> Iterator[dict[str, Any]]:
    for study in studies:
        yield run_study(study, settings, str(out))


def _on_dask(studies: list[Study], settings: BatchSettings, out: Path, scheduler: str,
             workers: int | None) -> Iterator[dict[str, Any]]:
    """Each study's record as Dask finishes it; at most two studies per worker are submitted at
    a time, so the scheduler holds a few tasks however large the archive is."""
    from distributed import as_completed

    run = uuid.uuid4().hex[:8]  # keys unique to this run, on a cluster others may share
    with _client(scheduler, workers) as client:
        in_flight = 2 * max(1, len(client.scheduler_info()["workers"]))
        waiting = iter(studies)
        by_key: dict[str, Study] = {}

        def submit(study: Study) -> Any:
            future = client.submit(run_study, study, settings, str(out), key=f"metaseg-{run}-{study.study_id}",
                                   pure=False)
            by_key[future.key] = study
            return future

        finished = as_completed([submit(study) for study in islice(waiting, in_flight)])
        for future in finished:
            study = by_key.pop(future.key)
            try:
                record = future.result()
            except Exception as exc:  # KilledWorker: the study took down every worker it was given
                record = {"study_id": study.study_id, "input": study.path, "truth": study.truth or "",
                          "status": "failed", "error": f"the Dask workers running this study died ({exc}); "
                                                       "it may need more memory than a worker has"}
            future.release()
            if (following := next(waiting, None)) is not None:
                finished.add(submit(following))
            yield record


@contextmanager
def _client(scheduler: str, workers: int | None) -> Iterator[Any]:
    """A Dask client on a new local cluster, or on the scheduler at an address."""
    if not dask_installed():
        raise InputError(f"--scheduler {scheduler} needs Dask: pip install 'metaseg-viewer[batch]' "
                         "(or use --scheduler none to run in this process)")
    import logging

    from distributed import Client, LocalCluster

    if scheduler == "local":
        n = workers or os.cpu_count() or 1
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {exc}; start one (dask scheduler) or use "
                         "--scheduler local") from None
    with client:
        if workers:
            client.wait_for_workers(workers, timeout=120)
        yield client
