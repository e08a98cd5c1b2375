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
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from metaseg_viewer.batch.studies import Study, find_studies
from metaseg_viewer.batch.study_task import STUDIES, BatchSettings, clear_leftovers, earlier_record, run_study
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
    its input, truth, model and settings is kept, not redone. The tables are written once the
    run has started, also when it is interrupted (Ctrl-C); a scheduler that cannot be reached
    leaves the earlier tables as they were.

    Raises:
        InputError: no studies, a malformed manifest, settings or a scheduler that cannot be used.
    """
    settings = check_settings(settings)
    scheduler = scheduler or ("local" if dask_installed() else "none")
    if scheduler not in SCHEDULERS and "://" not in scheduler:
        raise InputError(f"scheduler {scheduler!r} not understood; accepted: local, none, or the address of a running "
                         "Dask scheduler such as tcp://host:8786")
    if workers is not None and workers < 1:
        raise InputError(f"--workers must be 1 or more, got {workers}")
    out = Path(out).expanduser().resolve()
    studies, notes = find_studies(source, exclude=out)
    out.mkdir(parents=True, exist_ok=True)
    if removed := clear_leftovers(out):
        notes.append(f"removed {removed} unfinished study folder(s) an interrupted run left; those studies are redone")
    records: dict[str, dict[str, Any]] = {}
    from tqdm import tqdm

    tables: list[Path] = []
    started = False

    def finish() -> None:  # registered first, so it runs last: after the cluster has shut down
        if started:
            tables.extend(_finish(out, studies, records))

    with ExitStack() as stack:
        stack.callback(finish)
        client = None if scheduler == "none" else stack.enter_context(_client(scheduler, workers))
        started = True  # from here on the tables are written, also on Ctrl-C
        runs = _in_process(studies, settings, out) if client is None else _on_dask(client, studies, settings, out)
        bar = stack.enter_context(tqdm(total=len(studies), unit="study", file=sys.stderr, disable=not progress,
                                       dynamic_ncols=True))
        for record in runs:
            if record["status"] != "failed":
                record["folder"] = f"{STUDIES}/{record['study_id']}"
            records[record["study_id"]] = record
            bar.update(1)
            statuses = [r["status"] for r in records.values()]
            bar.set_postfix({s: statuses.count(s) for s in ("segmented", "kept", "failed")}, refresh=False)
    return BatchReport([records[s.study_id] for s in studies], tables, notes)


def _finish(out: Path, studies: list[Study], records: dict[str, dict[str, Any]]) -> list[Path]:
    """Remove what killed workers left half-written and write the tables. A study this run did not
    reach (Ctrl-C) keeps its row from an earlier run as ``unchecked``, so an interrupted rerun
    never shortens the summary."""
    clear_leftovers(out)
    rows = [records.get(s.study_id) or earlier_record(out, s.study_id) for s in studies]
    return write_tables(out, [row for row in rows if row is not None])


def check_settings(settings: BatchSettings) -> BatchSettings:
    """Refuse settings no study could run with, before any study is read; a checkpoint given by a
    relative path becomes absolute (workers may run in another folder)."""
    from metaseg_viewer.config import InferenceConfig
    from metaseg_viewer.mask_formats import MASK_FORMATS
    from metaseg_viewer.model_choice import ModelChoiceError, choose_model
    from metaseg_viewer.precision import PRECISIONS
    from metaseg_viewer.registry import MODEL_NAMES, weights_version
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
    if settings.model is not None and settings.model not in MODEL_NAMES:
        return replace(settings, model=str(Path(settings.model).expanduser().resolve()))
    return settings


def _in_process(studies: list[Study], settings: BatchSettings, out: Path) -> Iterator[dict[str, Any]]:
    for study in studies:
        yield run_study(study, settings, str(out))


def _on_dask(client: Any, studies: list[Study], settings: BatchSettings, out: Path) -> Iterator[dict[str, Any]]:
    """Each study's record as Dask finishes it. Two studies per worker thread are in flight,
    counted again as each finishes (workers may join or leave), so the scheduler holds a few
    tasks however large the archive is."""
    from distributed import KilledWorker, as_completed

    run = uuid.uuid4().hex[:8]  # keys unique to this run, on a cluster others may share
    waiting = iter(studies)
    by_key: dict[str, Study] = {}
    finished = as_completed()

    def fill() -> None:
        window = 2 * max(1, sum(client.nthreads().values()))
        while len(by_key) < window and (study := next(waiting, None)) is not None:
            future = client.submit(run_study, study, settings, str(out), key=f"metaseg-{run}-{study.study_id}",
                                   pure=False)
            by_key[future.key] = study
            finished.add(future)

    fill()
    for future in finished:
        study = by_key.pop(future.key)
        try:
            record = future.result()
        except KilledWorker:
            record = _failed(study, "the Dask workers running this study died each time it was tried; it may need "
                                    "more memory than a worker has")
        except Exception as exc:  # e.g. a worker without this package: say what Dask said
            record = _failed(study, f"Dask could not run this study ({type(exc).__name__}: {exc}); are the workers "
                                    "set up with the same metaseg-viewer version?")
        future.release()
        fill()
        yield record


def _failed(study: Study, error: str) -> dict[str, Any]:
    return {"study_id": study.study_id, "input": study.path, "truth": study.truth or "", "status": "failed",
            "error": error}


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
            try:
                client.wait_for_workers(workers, timeout=120)
            except TimeoutError:
                raise InputError(f"the Dask scheduler at {scheduler} did not have {workers} workers within 120 s; "
                                 "start them (dask worker ...) or leave out --workers") from None
        yield client
