"""One study of a batch run, as a worker does it: keep earlier outputs or segment, write atomically.

:func:`run_study` is the function Dask ships to workers (by reference: workers need this package
installed) and the in-process runner calls. It never raises for a bad study: the returned record
carries the error text. Outputs go to ``OUT/studies/<study_id>/`` — the mask (format as in
``metaseg segment``), overlay, lesion CSV and ``study.json`` (the record) — written into a hidden
temporary folder that is renamed into place when complete, so an interrupted or killed run never
leaves a partial study; :func:`clear_leftovers` removes what such a run left behind.
"""

from __future__ import annotations

import json
import math
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from metaseg_viewer.batch.studies import Study, file_sha256
from metaseg_viewer.errors import MetaSegError

RECORD = "study.json"
STUDIES = "studies"  # OUT/studies/<study_id>/
_TEMPORARY = (".tmp-", ".old-")  # markers in the names of folders being written or replaced


@dataclass(frozen=True)
class BatchSettings:
    """What the user asked for, the same for every study; ``None`` means the model card's
    setting (or, for ``model``, the choice by sequence that ``metaseg segment`` makes)."""

    model: str | None = None
    sequence: str | None = None
    threshold: float | None = None
    tta: bool | None = None
    min_lesion_size: int | None = None
    mask_format: str = "auto"
    precision: str = "auto"
    channel: str = "auto"
    device: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _predictor(model: str, device: str | None, precision: str) -> Any:
    """A loaded model, kept for the life of the worker process: loaded once per worker, not per
    study, and again only when its card changes (new weights or settings under the same name)."""
    from metaseg_viewer.registry import model_defaults, weights_version

    return _loaded(model, device, precision, f"{weights_version(model)} {model_defaults(model)}")


@lru_cache(maxsize=4)
def _loaded(model: str, device: str | None, precision: str, card: str) -> Any:
    from metaseg_viewer.inference import Predictor

    return Predictor.load(model, device=device, precision=precision)


def run_study(study: Study, settings: BatchSettings, out: str) -> dict[str, Any]:
    """The study's record: ``status`` ``kept`` (earlier outputs still match its input, truth,
    model and settings), ``segmented`` or ``failed`` (with ``error``); ``seconds`` this run spent
    on it (for a kept study, the time to check it)."""
    start = time.perf_counter()
    folder = Path(out) / STUDIES / study.study_id
    record: dict[str, Any] = {"study_id": study.study_id, "input": study.path, "truth": study.truth or ""}
    try:
        record["input_sha256"] = file_sha256(study.path)
        record["truth_sha256"] = file_sha256(study.truth) if study.truth else ""
        kept = _kept_record(folder, record, settings)
        if kept is not None:
            record = {**kept, "status": "kept"}
        else:
            record = {**_segment(study, settings, folder, record), "status": "segmented"}
    except FileNotFoundError as exc:
        record.update(status="failed", error=f"{exc.filename}: no such file or folder")
    except MetaSegError as exc:
        record.update(status="failed", error=str(exc))
    except ValueError as exc:  # ModelChoiceError: a model or sequence that does not fit
        record.update(status="failed", error=str(exc))
    except OSError as exc:
        record.update(status="failed", error=f"cannot read the input or write to {folder.parent}: {exc}")
    except MemoryError:
        record.update(status="failed", error="not enough memory to segment this study")
    except Exception as exc:  # a bug on one study must not stop the others
        record.update(status="failed", error=f"unexpected error ({type(exc).__name__}: {exc}); please report it")
    record["seconds"] = round(time.perf_counter() - start, 3)
    return record


def _kept_record(folder: Path, record: dict[str, Any], settings: BatchSettings) -> dict[str, Any] | None:
    """The earlier record of this study when its outputs still hold: the same input and truth
    bytes, the same request (where it ran aside), the model it used still has the same weights
    and card settings, the same file name when the model was chosen by it, and every file there."""
    from metaseg_viewer.registry import model_defaults, weights_version

    try:
        earlier = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        current = model_defaults(earlier["model"]).override(threshold=settings.threshold, tta=settings.tta,
                                                            min_lesion_size=settings.min_lesion_size)
        same = (earlier["input_sha256"] == record["input_sha256"] and earlier["truth_sha256"] == record["truth_sha256"]
                and _request(earlier["request"]) == _request(settings.to_dict())
                and earlier["weights_sha256"] == weights_version(earlier["model"])
                and (earlier["threshold"], earlier["tta"], earlier["min_lesion_size"])
                == (current.threshold, current.tta, current.min_lesion_size)
                and (settings.model is not None or Path(earlier["input"]).name == Path(record["input"]).name)
                and all((folder / name).is_file() for name in earlier["files"].values()))
    except (OSError, ValueError, KeyError, TypeError, MetaSegError):
        return None
    return {**earlier, "input": record["input"], "truth": record["truth"]} if same else None


def _request(request: dict[str, Any]) -> dict[str, Any]:
    """What a request asks for, without where it ran (cpu or cuda give the same result)."""
    return {k: v for k, v in request.items() if k != "device"}


def earlier_record(out: Path, study_id: str) -> dict[str, Any] | None:
    """A study's record from an earlier run, not checked against its input (``unchecked``), or
    ``None`` when it has none: the row an interrupted run keeps for a study it did not reach."""
    try:
        earlier = json.loads((out / STUDIES / study_id / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {**earlier, "status": "unchecked", "folder": f"{STUDIES}/{study_id}"}


def _segment(study: Study, settings: BatchSettings, folder: Path, identity: dict[str, Any]) -> dict[str, Any]:
    """Read, choose the model, predict, score against the truth, publish the outputs; the record
    written beside them (``identity`` and what was done, as plain JSON values) is returned."""
    from metaseg_viewer.evaluation import read_true_mask, score_against
    from metaseg_viewer.io import read_scan
    from metaseg_viewer.model_choice import choose_model
    from metaseg_viewer.segment import mask_suffix, write_outputs
    from metaseg_viewer.sequences import sequence_hint

    scan = read_scan(study.path, color=settings.channel)  # type: ignore[arg-type]
    mask_suffix(scan, settings.mask_format)  # a format this input cannot have, before inference
    truth = read_true_mask(study.truth, scan) if study.truth else None
    choice = choose_model(sequence_hint(study.path, scan.metadata), settings.model, settings.sequence)
    predictor = _predictor(choice.model, settings.device, settings.precision)
    prediction = predictor.predict(scan, settings.threshold, settings.tta, settings.min_lesion_size)
    voxel_ml = _voxel_ml(scan.spacing) if scan.is_volume else None
    result = {
        **identity,
        "model": choice.model, "model_reason": choice.reason, "weights_sha256": prediction.model_version,
        "threshold": prediction.settings.threshold, "tta": prediction.settings.tta,
        "min_lesion_size": prediction.settings.min_lesion_size, "mask_format": settings.mask_format,
        "precision": prediction.precision, "slices": scan.n_slices,
        "lesion_voxels": int(prediction.mask.sum()),
        "lesion_volume_ml": None if voxel_ml is None else round(float(prediction.mask.sum()) * voxel_ml, 4),
        "dice": None if truth is None else score_against(prediction.mask, truth, scan.spacing)["dice"],
        "warnings": "; ".join((*choice.warnings, *scan.warnings)),
        "request": settings.to_dict(),
    }
    temporary = folder.with_name(f".{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        outputs = write_outputs(scan, prediction, temporary, study.study_id, settings.mask_format)  # type: ignore[arg-type]
        result["files"] = {kind: path.name for kind, path in
                           (("mask", outputs.mask), ("overlay", outputs.overlay), ("lesions", outputs.lesions))}
        result["lesions"] = len(outputs.rows)
        result["lesion_rows"] = [_with_ml(row) for row in outputs.rows]
        text = json.dumps(result, indent=1, default=_plain)
        (temporary / RECORD).write_text(text, encoding="utf-8")
        _publish(temporary, folder)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return json.loads(text)


def _voxel_ml(spacing: tuple[float, float, float] | None) -> float | None:
    """Millilitres per voxel, ``None`` when any spacing is unknown."""
    if spacing is None or not all(math.isfinite(s) and s > 0 for s in spacing):
        return None
    return math.prod(spacing) / 1000.0


def _with_ml(row: dict[str, Any]) -> dict[str, Any]:
    """A lesion row with its volume in mL beside the mm³ (volumes only)."""
    if "volume_mm3" in row:
        mm3 = row["volume_mm3"]
        return {**row, "volume_ml": None if mm3 is None else mm3 / 1000.0}
    return row


def _plain(value: Any) -> Any:
    """numpy scalars in a record as JSON numbers."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _publish(temporary: Path, folder: Path) -> None:
    """Move a complete study folder into place, replacing an earlier one: at every moment the
    final name holds a complete study, or nothing while an earlier one waits under ``.old-``
    (which :func:`clear_leftovers` puts back). Losing a race to another complete copy of the
    same study (Dask ran it twice) is no error."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
        folder.rename(old)
    try:
        temporary.rename(folder)
    except OSError:
        if not (folder / RECORD).is_file():
            raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def clear_leftovers(out: Path) -> int:
    """Tidy ``out/studies`` after an interrupted or killed run: an earlier study folder caught
    mid-replacement goes back under its name; unfinished ones are removed (their studies are
    redone). Returns how many were removed. Only one run may use an ``out`` at a time."""
    studies = out / STUDIES
    if not studies.is_dir():
        return 0
    removed = 0
    for path in sorted(p for p in studies.iterdir() if p.name.startswith(".")):
        name, marker, _ = path.name[1:].rpartition(".old-") if ".old-" in path.name else ("", "", "")
        if marker and not (studies / name).exists():
            path.rename(studies / name)
        elif any(m in path.name for m in _TEMPORARY):
            shutil.rmtree(path, ignore_errors=True)
            removed += 1
    return removed
