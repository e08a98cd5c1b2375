"""The blocking work behind the routes: read an upload, weigh it, segment it, encode the answer.

Everything here runs on a reader or inference thread (see :mod:`server.jobs`) and touches no
HTTP objects; the routes only move bytes in and out.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from metaseg_viewer.evaluation import read_true_mask, score_against
from metaseg_viewer.inference import Predictor
from metaseg_viewer.io import read_scan
from metaseg_viewer.errors import InputError, TooLargeError
from metaseg_viewer.model_choice import ModelChoice, ModelChoiceError, choose_model
from metaseg_viewer.registry import describe_card, describe_models, group_by_sequence
from metaseg_viewer.encoding import encode_probabilities, rle_encode
from metaseg_viewer.prediction import Prediction
from metaseg_viewer.scan import Scan
from metaseg_viewer.segment import MEDIA_TYPES, deidentified_stem, lesion_rows, mask_file, mask_suffix, output_stem
from metaseg_viewer.sequences import MODEL_SEQUENCES, SequenceHint, sequence_hint, sequence_label
from server.jobs import check_cancel
from server.kept_uploads import UploadArchive
from server.merged import MergedCall, Prepared, Share
from server.settings import ServerSettings

MaskFormat = Literal["auto", "png", "nifti", "nrrd", "dicom-seg", "json"]


class OptionError(InputError):
    """A request option the server cannot honour (unknown model or sequence, a model and a sequence
    that contradict, format=png for a volume, too many files)."""


@dataclass(frozen=True)
class Options:
    """Per-request settings: the model or sequence the request named (``None``: chosen per upload
    by :meth:`Engine.choose`) and overrides of the card, where ``None`` keeps the card's value."""

    model: str | None = None
    sequence: str | None = None
    threshold: float | None = None
    tta: bool | None = None
    min_lesion_size: int | None = None

    def tta_on(self, predictor: Predictor) -> bool:
        """Whether ``predictor`` runs with flip TTA for this request (its card's setting unless overridden)."""
        return predictor.defaults.override(tta=self.tta).tta


@dataclass(frozen=True)
class Upload:
    """A decoded upload: its name (for messages and output names only), scan, the model chosen
    for it (``choice``, with why, and the loaded ``predictor``), and the mask format it was checked
    for; ``read_ms`` is the decoding time. ``prepared``: its network input, when it is to share a
    merged network call (see :meth:`Engine.read`)."""

    name: str
    scan: Scan
    choice: ModelChoice
    predictor: Predictor
    mask_format: MaskFormat = "json"
    read_ms: float = 0.0
    prepared: Prepared | None = None


@dataclass
class SegmentedUpload:
    """One segmented upload and the timings of each stage (milliseconds)."""

    upload: Upload
    prediction: Prediction
    timings_ms: dict[str, float] = field(default_factory=dict)
    deidentify_names: bool = False  # name the mask file scan-<hash> instead of after the upload

    @property
    def warnings(self) -> list[str]:
        """What the user must know about this result: the reader's warnings (Scan.warnings) and a
        visible mismatch between the model's sequence and the one the upload names."""
        return [*self.upload.scan.warnings, *self.upload.choice.warnings]

    def summary(self, with_mask: bool = True, with_probabilities: bool = False) -> dict[str, Any]:
        """The JSON answer: model (and why it was chosen), size, settings, lesion table, warnings,
        RLE mask, timings (and, when asked, the 8-bit probability map, so a client can re-threshold
        without the server)."""
        scan, pred = self.upload.scan, self.prediction
        rows = lesion_rows(scan, pred.mask, pred.probabilities)
        result = {
            "file": self.upload.name,
            "model": pred.model_name,
            "model_version": pred.model_version,
            "sequence": self.upload.choice.sequence,
            "choice": self.upload.choice.to_dict(),
            "precision": pred.precision,
            "shape": list(scan.shape),
            "is_volume": scan.is_volume,
            "spacing_mm": None if scan.spacing is None else [_plain(float(s)) for s in scan.spacing],
            "input": scan.description,
            "settings": pred.settings.to_dict(),
            "lesion_count": len(rows),
            "lesions": [{k: _plain(v) for k, v in row.items()} for row in rows],
            "warnings": self.warnings,
            "timings_ms": self.timings_ms,
        }
        if with_mask:
            result["mask"] = {"encoding": "rle", **rle_encode(pred.mask)}
        if with_probabilities:
            result["probabilities"] = encode_probabilities(pred.probabilities)
        return result

    def mask_file(self) -> tuple[bytes, str, str]:
        """``(bytes, media type, file name)`` of the mask in the upload's mask format (which
        :meth:`Engine.read` checked against the input); auto: PNG for a 2-D image, NIfTI for a volume."""
        upload = self.upload
        stem = (deidentified_stem(upload.name) if self.deidentify_names else output_stem(upload.name)) or "upload"
        pred = self.prediction
        data, suffix = mask_file(upload.scan, pred.mask, "auto" if upload.mask_format == "json" else upload.mask_format,
                                 (pred.model_name, pred.model_version))
        media_type = MEDIA_TYPES[suffix]
        return data, media_type, stem + suffix


class Engine:
    """The loaded models plus the limits every upload is read under.

    A request goes through two blocking stages, each on its own threads (:mod:`server.jobs`):
    :meth:`read` decodes (and, once accepted, keeps) an upload; :meth:`cost` weighs the decoded
    scans against the request budget; :meth:`segment` or :meth:`evaluate` runs the networks and
    stops at the next batch of slices once ``cancel`` is set. A lone 2-D slice may instead share
    a network call with other requests' (:mod:`server.merged`): :meth:`read` prepares it for
    the call, :meth:`segment` finishes its share.
    """

    def __init__(self, settings: ServerSettings) -> None:
        self.settings = settings
        self.limits = settings.read_limits()
        # Loading is the slow, failure-prone part of start-up: do it once, here, and fail fast.
        self.predictors: dict[str, Predictor] = {
            name: Predictor.load(name, settings.device, precision=settings.precision) for name in settings.models}
        folder = settings.save_uploads_dir
        self.archive = None if folder is None else UploadArchive(
            folder, int(settings.save_uploads_max_mb * 1024 * 1024), settings.save_uploads_max_days * 86400)

    def predictor(self, name: str | None) -> Predictor:
        """The loaded model a request names (``None``: the default); the one place an unknown name is refused."""
        name = name or self.settings.default_model
        if name not in self.predictors:
            raise OptionError(f"unknown model {name!r}; this server has loaded: {', '.join(self.predictors)}")
        return self.predictors[name]

    def choose(self, options: Options, file_name: str = "", scan: Scan | None = None) -> tuple[ModelChoice, Predictor]:
        """The model that segments an upload, and why: the request's ``model`` or ``sequence``, else
        the sequence the upload names (file name, DICOM tags), else the server's default — the core's
        :func:`choose_model` among the loaded models. Without ``scan``, it checks the request's
        options before any upload is read (the routes call it so, for an early 422)."""
        if options.model is not None:
            self.predictor(options.model)  # only a loaded name reaches the registry (never a client's path)
        hint = SequenceHint(None, "") if scan is None else sequence_hint(file_name, scan.metadata)
        try:
            choice = choose_model(hint, options.model, options.sequence, available=list(self.predictors),
                                  default=self.settings.default_model)
        except ModelChoiceError as exc:
            raise OptionError(str(exc)) from None
        return choice, self.predictor(choice.model)

    def models(self) -> list[dict[str, Any]]:
        """What /models lists: each loaded model's card summary (with the sequence it was trained
        for and its purpose), which one is the default, and whether it is the one a request that
        names only its sequence gets (``sequence_default``)."""
        shipped = {row["name"]: row for row in describe_models()}
        rows = []
        for name, predictor in self.predictors.items():
            row = shipped.get(name) or describe_card(name, predictor.members[0][1])
            rows.append({**row, "version": predictor.version, "default": name == self.settings.default_model})
        defaults = self._sequence_defaults()
        return [{**row, "sequence_default": defaults.get(row["sequence"]) == row["name"]} for row in rows]

    def sequences(self) -> dict[str, dict[str, Any]]:
        """What /models/by-sequence lists: per sequence, its label, the loaded models trained for it
        and the one ``sequence=`` picks (``None`` where no shipped model of it is loaded)."""
        rows = self.models()
        defaults = self._sequence_defaults()
        return {sequence: {"label": sequence_label(None if sequence == "unknown" else sequence),
                           "default": defaults.get(sequence), "models": names}
                for sequence, names in group_by_sequence(rows).items()}

    def _sequence_defaults(self) -> dict[str, str]:
        """Sequence → the loaded model that ``sequence=`` picks (:meth:`choose`, so both agree)."""
        defaults = {}
        for sequence in MODEL_SEQUENCES:
            try:
                defaults[sequence] = self.choose(Options(sequence=sequence))[0].model
            except OptionError:  # no shipped model of this sequence is loaded here
                pass
        return defaults

    def read(self, data: bytes, file_name: str, options: Options, mask_format: MaskFormat = "json",
             merge: bool = False) -> Upload:
        """Decode an upload and choose its model (:meth:`choose`); a ``mask_format`` the input cannot
        have is refused here, before any queueing. Only an accepted upload is kept
        (``save_uploads_dir``). With ``merge`` (a request that may share a network call), a lone
        2-D slice is also prepared for the call (while merging is on: ``max_batch_slices`` over 1),
        in the same thread hand-off."""
        start = time.perf_counter()
        scan = read_scan(data, name=file_name, limits=self.limits)
        choice, predictor = self.choose(options, file_name, scan)
        if mask_format != "json":
            try:
                mask_suffix(scan, mask_format)  # the core's rule
            except InputError as exc:
                raise OptionError(f"format={mask_format}: {exc}, or format=json") from None
        if self.archive is not None:
            self.archive.keep(data, file_name)
        read_ms = round((time.perf_counter() - start) * 1000, 1)
        prepared = None
        if merge and not scan.is_volume and scan.n_slices == 1 and self.settings.max_batch_slices > 1:
            prepared = MergedCall(predictor, options.tta_on(predictor)).prepare(scan.pixels)
        return Upload(file_name, scan, choice, predictor, mask_format, read_ms, prepared)

    def read_truth(self, mask: bytes, mask_name: str, scan: Scan) -> np.ndarray:
        """The true mask of ``scan`` for /evaluate: a mask of the scan's size, or a DICOM SEG or
        NRRD laid on it by geometry (:func:`read_true_mask`)."""
        return read_true_mask(mask, scan, name=mask_name, limits=self.limits)

    def cost(self, uploads: Sequence[Upload], options: Options) -> int:
        """Network passes the request needs: slices x members x (2 with TTA), for each upload's
        model; over the budget (``max_request_cost``) it is refused (413) before any inference."""
        needs: dict[tuple[str, int, bool], int] = {}  # (model, members, tta) -> slices
        for upload in uploads:
            key = (upload.predictor.name, len(upload.predictor.members), options.tta_on(upload.predictor))
            needs[key] = needs.get(key, 0) + upload.scan.n_slices
        total = sum(slices * members * (2 if tta else 1) for (_, members, tta), slices in needs.items())
        budget = self.settings.max_request_cost
        if total > budget:
            parts = " + ".join(f"{slices} slices x {members * (2 if tta else 1)} per slice: {members} model(s) of "
                               f"{name!r}, test-time augmentation {'on' if tta else 'off'}"
                               for (name, members, tta), slices in needs.items())
            raise TooLargeError(
                f"this request needs {total} network passes ({parts}); this server accepts at most {budget} per "
                "request (METASEG_MAX_REQUEST_COST). Accepted: fewer slices, tta=false or a single model")
        return total

    def segment(self, upload: Upload, options: Options, cancel: threading.Event | None = None,
                share: Share | None = None) -> SegmentedUpload:
        """Segment a read upload; stops with ``Cancelled`` at the next batch of slices once
        ``cancel`` is set. With ``share``, the upload's part of a merged call (``upload.prepared``
        went through the networks), only its own steps remain. ``total`` counts reading and
        segmenting, not waiting in line."""
        start = time.perf_counter()
        check_cancel(cancel)
        if share is None:
            prediction = upload.predictor.predict(upload.scan, threshold=options.threshold, tta=options.tta,
                                                   min_lesion_size=options.min_lesion_size,
                                                   progress=lambda done, total: check_cancel(cancel))
        else:
            prediction = share.prediction(upload.scan, options.threshold, options.min_lesion_size)
        elapsed = time.perf_counter() - start + (0.0 if share is None else share.seconds)
        timings = {"read": upload.read_ms, "inference": round(prediction.seconds * 1000, 1),
                   "total": round(upload.read_ms + elapsed * 1000, 1)}
        return SegmentedUpload(upload, prediction, timings, self.settings.deidentify_names)

    def evaluate(self, upload: Upload, truth: np.ndarray, options: Options,
                 cancel: threading.Event | None = None) -> dict[str, Any]:
        """Segment a read upload and score it against its true mask (see :meth:`read_truth`)."""
        seg = self.segment(upload, options, cancel)
        scores = score_against(seg.prediction.mask, truth, upload.scan.spacing)
        return {"prediction": seg.summary(), "scores": scores}


def _plain(value: Any) -> Any:
    """NumPy scalars and NaN/inf made JSON-safe (→ None)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
