"""The blocking work behind the routes: read an upload, segment it, encode the answer.

Everything here runs on an inference thread (see :mod:`server.jobs`) and touches no HTTP
objects; the routes only move bytes in and out.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Literal

from metaseg_viewer.evaluation import read_true_mask, score_against
from metaseg_viewer.inference import Predictor
from metaseg_viewer.io import read_scan
from metaseg_viewer.io.suffixes import suffix_of
from metaseg_viewer.errors import InputError
from metaseg_viewer.registry import describe_card, describe_models
from metaseg_viewer.encoding import encode_probabilities, rle_encode
from metaseg_viewer.prediction import Prediction
from metaseg_viewer.scan import Scan
from metaseg_viewer.segment import lesion_rows, mask_file, mask_suffix, output_stem
from server.settings import ServerSettings

MaskFormat = Literal["auto", "png", "nifti", "json"]


class OptionError(InputError):
    """A request option the server cannot honour (unknown model, format=png for a volume, too many files)."""


@dataclass(frozen=True)
class Options:
    """Per-request settings: the loaded model the request named (resolved once, by
    :meth:`Engine.predictor`) and overrides of its card, where ``None`` keeps the card's value."""

    predictor: Predictor
    threshold: float | None = None
    tta: bool | None = None
    min_lesion_size: int | None = None


@dataclass
class SegmentedUpload:
    """One segmented upload, the mask format it was checked for, and the timings of each stage
    (milliseconds)."""

    file_name: str
    scan: Scan
    prediction: Prediction
    mask_format: MaskFormat = "auto"
    timings_ms: dict[str, float] = field(default_factory=dict)

    def summary(self, with_mask: bool = True, with_probabilities: bool = False) -> dict[str, Any]:
        """The JSON answer: model, size, settings, lesion table, RLE mask, timings (and, when
        asked, the 8-bit probability map, so a client can re-threshold without the server)."""
        scan, pred = self.scan, self.prediction
        rows = lesion_rows(scan, pred.mask, pred.probabilities)
        result = {
            "file": self.file_name,
            "model": pred.model_name,
            "model_version": pred.model_version,
            "shape": list(scan.shape),
            "is_volume": scan.is_volume,
            "spacing_mm": None if scan.spacing is None else [_plain(float(s)) for s in scan.spacing],
            "input": scan.description,
            "settings": pred.settings.to_dict(),
            "lesion_count": len(rows),
            "lesions": [{k: _plain(v) for k, v in row.items()} for row in rows],
            "timings_ms": self.timings_ms,
        }
        if with_mask:
            result["mask"] = {"encoding": "rle", **rle_encode(pred.mask)}
        if with_probabilities:
            result["probabilities"] = encode_probabilities(pred.probabilities)
        return result

    def mask_file(self) -> tuple[bytes, str, str]:
        """``(bytes, media type, file name)`` of the mask in :attr:`mask_format` (which
        :meth:`Engine.segment` checked against the input); auto: PNG for a 2-D image, NIfTI for a volume."""
        stem = output_stem(self.file_name) or "upload"
        data, suffix = mask_file(self.scan, self.prediction.mask, "auto" if self.mask_format == "json" else self.mask_format)
        media_type = "image/png" if suffix.endswith(".png") else "application/gzip"
        return data, media_type, stem + suffix


class Engine:
    """The loaded models plus the limits every upload is read under."""

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.limits = settings.read_limits()
        # Loading is the slow, failure-prone part of start-up: do it once, here, and fail fast.
        self.predictors: dict[str, Predictor] = {name: Predictor.load(name, settings.device) for name in settings.models}
        if settings.save_uploads_dir is not None:
            settings.save_uploads_dir.mkdir(parents=True, exist_ok=True)

    def predictor(self, name: str | None) -> Predictor:
        """The loaded model a request names (``None``: the default); the one place an unknown name is refused."""
        name = name or self.settings.default_model
        if name not in self.predictors:
            raise OptionError(f"unknown model {name!r}; this server has loaded: {', '.join(self.predictors)}")
        return self.predictors[name]

    def models(self) -> list[dict[str, Any]]:
        """What /models lists: each loaded model's card summary, which one is the default."""
        shipped = {row["name"]: row for row in describe_models()}
        rows = []
        for name, predictor in self.predictors.items():
            row = shipped.get(name) or describe_card(name, predictor.members[0][1])
            rows.append({**row, "version": predictor.version, "default": name == self.settings.default_model})
        return rows

    def segment(self, data: bytes, file_name: str, options: Options,
                mask_format: MaskFormat = "auto") -> SegmentedUpload:
        """Read and segment; a ``mask_format`` the input cannot have is refused before any inference."""
        start = time.perf_counter()
        scan = self._read(data, file_name)
        if mask_format != "json":
            try:
                mask_suffix(scan, mask_format)  # the core's rule, before any inference
            except InputError as exc:
                raise OptionError(f"format={mask_format}: {exc} (format=nifti), or format=json or auto") from None
        return self._predict(scan, file_name, options, start, mask_format)

    def evaluate(self, data: bytes, file_name: str, mask: bytes, mask_name: str, options: Options) -> dict[str, Any]:
        """Segment an image and score it against its true mask (read first: a bad mask fails fast)."""
        start = time.perf_counter()
        scan = self._read(data, file_name)
        truth = read_true_mask(mask, scan.shape, name=mask_name, limits=self.limits)
        seg = self._predict(scan, file_name, options, start)
        return {"prediction": seg.summary(), "scores": score_against(seg.prediction.mask, truth, scan.spacing)}

    def _read(self, data: bytes, file_name: str) -> Scan:
        self._keep(data, file_name)
        return read_scan(data, name=file_name, limits=self.limits)

    def _predict(self, scan: Scan, file_name: str, options: Options, start: float,
                 mask_format: MaskFormat = "auto") -> SegmentedUpload:
        read_ms = (time.perf_counter() - start) * 1000
        prediction = options.predictor.predict(scan, threshold=options.threshold, tta=options.tta,
                                               min_lesion_size=options.min_lesion_size)
        timings = {"read": round(read_ms, 1), "inference": round(prediction.seconds * 1000, 1),
                   "total": round((time.perf_counter() - start) * 1000, 1)}
        return SegmentedUpload(file_name, scan, prediction, mask_format, timings)

    def _keep(self, data: bytes, file_name: str) -> None:
        """Save an upload only when the operator asked, under a generated name in their folder."""
        folder = self.settings.save_uploads_dir
        if folder is None:
            return
        (folder / f"{uuid.uuid4().hex}{suffix_of(file_name) or '.bin'}").write_bytes(data)


def _plain(value: Any) -> Any:
    """NumPy scalars and NaN/inf made JSON-safe (→ None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
