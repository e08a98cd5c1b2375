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
from metaseg_viewer.inference import Prediction, Predictor
from metaseg_viewer.io import encode_mask_nifti, encode_mask_png, read_scan
from metaseg_viewer.errors import InputError
from metaseg_viewer.registry import describe_models
from metaseg_viewer.encoding import encode_probabilities, rle_encode
from metaseg_viewer.scan import Scan
from metaseg_viewer.segment import lesion_rows, mask_file, output_stem
from server.settings import ServerSettings

MaskFormat = Literal["auto", "png", "nifti", "json"]
#: Upload names are kept only as these suffixes (never as given) when uploads are saved.
_KEPT_SUFFIXES = (".nii.gz", ".nii", ".dcm", ".png", ".jpg", ".jpeg", ".tif", ".tiff")


class OptionError(InputError):
    """A request option the server cannot honour (unknown model, out-of-range threshold)."""


@dataclass(frozen=True)
class Options:
    """Per-request settings; ``None`` means the model card's validated value."""

    model: str | None = None
    threshold: float | None = None
    tta: bool | None = None
    min_lesion_size: int | None = None


@dataclass
class Segmentation:
    """One segmented upload and the timings of each stage, in milliseconds."""

    file_name: str
    scan: Scan
    prediction: Prediction
    timings_ms: dict[str, float] = field(default_factory=dict)

    def summary(self, with_mask: bool = True, with_probabilities: bool = False) -> dict[str, Any]:
        """The JSON answer: model, size, settings, lesion table, RLE mask, timings (and, when
        asked, the 8-bit probability map, so a client can re-threshold without the server)."""
        scan, pred = self.scan, self.prediction
        result = {
            "file": self.file_name,
            "model": pred.model_name,
            "model_version": pred.model_version,
            "shape": list(scan.shape),
            "is_volume": scan.is_volume,
            "spacing_mm": None if scan.spacing is None else [_plain(float(s)) for s in scan.spacing],
            "input": scan.description,
            "settings": pred.settings.to_dict(),
            "lesion_count": 0,
            "lesions": [],
            "timings_ms": self.timings_ms,
        }
        rows = lesion_rows(scan, pred.mask, pred.probabilities)
        result["lesions"] = [{k: _plain(v) for k, v in row.items()} for row in rows]
        result["lesion_count"] = len(rows)
        if with_mask:
            result["mask"] = {"encoding": "rle", **rle_encode(pred.mask)}
        if with_probabilities:
            result["probabilities"] = encode_probabilities(pred.probabilities)
        return result

    def mask_file(self, fmt: MaskFormat) -> tuple[bytes, str, str]:
        """``(bytes, media type, file name)`` of the mask: PNG for a 2-D image, NIfTI for a volume."""
        stem = output_stem(self.file_name) or "upload"
        if fmt == "auto":
            data, suffix = mask_file(self.scan, self.prediction.mask)
        elif fmt == "png":
            if self.scan.n_slices != 1:
                raise OptionError(f"format=png holds one slice, but this input has {self.scan.n_slices}; "
                                  "accepted for volumes and stacks: nifti or json")
            data, suffix = encode_mask_png(self.prediction.mask[0]), "_mask.png"
        else:
            data, suffix = encode_mask_nifti(self.prediction.mask, self.scan), "_mask.nii.gz"
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
        name = name or self.settings.default_model
        if name not in self.predictors:
            raise OptionError(f"unknown model {name!r}; this server has loaded: {', '.join(self.predictors)}")
        return self.predictors[name]

    def models(self) -> list[dict[str, Any]]:
        """What /models lists: each loaded model's card summary, which one is the default."""
        shipped = {row["name"]: row for row in describe_models()}
        rows = []
        for name, predictor in self.predictors.items():
            row = shipped.get(name) or {
                "name": name, "architecture": predictor.members[0][1].model.arch,
                "description": predictor.members[0][1].description, "sha256": predictor.members[0][1].sha256,
                "inference": predictor.defaults.to_dict(), "metrics": predictor.members[0][1].metrics}
            rows.append({**row, "version": predictor.version, "default": name == self.settings.default_model})
        return rows

    def segment(self, data: bytes, file_name: str, options: Options, one_slice: bool = False) -> Segmentation:
        """Read and segment; ``one_slice`` refuses a volume before any inference (format=png)."""
        predictor = self.predictor(options.model)  # unknown model: refuse before reading anything
        start = time.perf_counter()
        scan = self._read(data, file_name)
        if one_slice and scan.n_slices != 1:
            raise OptionError(f"format=png holds one slice, but this input has {scan.n_slices}; "
                              "accepted for volumes and stacks: format=nifti, json or auto")
        return self._predict(predictor, scan, file_name, options, start)

    def evaluate(self, data: bytes, file_name: str, mask: bytes, mask_name: str, options: Options) -> dict[str, Any]:
        """Segment an image and score it against its true mask (read first: a bad mask fails fast)."""
        predictor = self.predictor(options.model)
        start = time.perf_counter()
        scan = self._read(data, file_name)
        truth = read_true_mask(mask, scan.shape, name=mask_name, limits=self.limits)
        seg = self._predict(predictor, scan, file_name, options, start)
        return {"prediction": seg.summary(), "scores": score_against(seg.prediction.mask, truth, scan.spacing)}

    def _read(self, data: bytes, file_name: str) -> Scan:
        self._keep(data, file_name)
        return read_scan(data, name=file_name, limits=self.limits)

    def _predict(self, predictor: Predictor, scan: Scan, file_name: str, options: Options, start: float) -> Segmentation:
        read_ms = (time.perf_counter() - start) * 1000
        prediction = predictor.predict(scan, threshold=options.threshold, tta=options.tta,
                                       min_lesion_size=options.min_lesion_size)
        timings = {"read": round(read_ms, 1), "inference": round(prediction.seconds * 1000, 1),
                   "total": round((time.perf_counter() - start) * 1000, 1)}
        return Segmentation(file_name, scan, prediction, timings)

    def _keep(self, data: bytes, file_name: str) -> None:
        """Save an upload only when the operator asked, under a generated name in their folder."""
        folder = self.settings.save_uploads_dir
        if folder is None:
            return
        suffix = next((s for s in _KEPT_SUFFIXES if file_name.lower().endswith(s)), ".bin")
        (folder / f"{uuid.uuid4().hex}{suffix}").write_bytes(data)


def _plain(value: Any) -> Any:
    """NumPy scalars and NaN/inf made JSON-safe (→ None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
