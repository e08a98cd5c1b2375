"""``POST /predict`` (and the brief's ``/predict/``), ``POST /predict/batch``, ``POST /evaluate``.

Every route does the same three steps: decode its uploads on a reader thread (a bad file fails
here, without waiting for a worker), weigh them against the request budget (413), then run the
networks on an inference thread, cancelled between batches of slices if the client disconnects.
A lone 2-D slice on ``/predict`` shares its network call with other requests': it is prepared
with its decoding and finished on a reader thread, so the inference threads only run networks.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from metaseg_viewer.errors import MetaSegError
from server.engine import Engine, MaskFormat, OptionError, Options, Upload
from server.errors import status_for
from server.jobs import InferenceQueue, Unavailable
from server.merged import Share
from server.routes.options import model_options, predict_options
from server.schemas import ERROR_RESPONSES, BatchItem, BatchResult, EvaluationResult, PredictionResult

router = APIRouter(responses=ERROR_RESPONSES)
log = logging.getLogger("metaseg.server")
DISCONNECT_POLL_S = 0.25

_MASK_RESPONSES = {200: {
    "description": "The mask: PNG (0/255) for a 2-D image, gzipped NIfTI in the input's voxel grid for a volume, "
                   "3D Slicer's .seg.nrrd with format=nrrd, a DICOM SEG with format=dicom-seg; with format=json, a PredictionResult document. X-Warnings counts the warnings that "
                   "format=json would list.",
    "content": {"image/png": {}, "application/gzip": {}, "application/octet-stream": {}, "application/dicom": {},
                "application/json": {"schema": {"$ref": "#/components/schemas/PredictionResult"}}},
}}


def _engine(request: Request) -> Engine:
    return request.app.state.engine


def _queue(request: Request) -> InferenceQueue:
    return request.app.state.queue


def _name(upload: UploadFile, fallback: str) -> str:
    """The upload's base name, for messages and output names only (never a path on disk)."""
    name = (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    return name or fallback


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:120] or "mask"


async def _read(request: Request, file: UploadFile, fallback: str, options: Options, fmt: MaskFormat = "json",
                merge: bool = False) -> Upload:
    """Decode one upload and choose its model on a reader thread; its bytes are dropped as soon as
    it is decoded. ``merge``: see :meth:`Engine.read`."""
    data, name = await file.read(), _name(file, fallback)
    await file.close()
    return await _queue(request).read(lambda: _engine(request).read(data, name, options, fmt, merge))


@asynccontextmanager
async def _cancel_on_disconnect(request: Request) -> AsyncIterator[threading.Event]:
    """An event set once the client disconnects (polled on the event loop); the job checks it
    before it starts and between batches of slices, so abandoned work frees its thread."""
    cancel = threading.Event()

    async def watch() -> None:
        while not await request.is_disconnected():
            await asyncio.sleep(DISCONNECT_POLL_S)
        request.state.log["cancelled"] = "client disconnected"
        cancel.set()

    watcher = asyncio.create_task(watch())
    try:
        yield cancel
    finally:
        watcher.cancel()


async def _predict(request: Request, file: UploadFile,
                   options_and_format: tuple[Options, MaskFormat, bool]) -> Response:
    engine, queue = _engine(request), _queue(request)
    options, fmt, with_probabilities = options_and_format
    upload = await _read(request, file, "upload", options, fmt, merge=True)
    cost = engine.cost([upload], options)

    def job(cancel: threading.Event, share: Share | None = None) -> tuple[dict, tuple[bytes, str, str] | None]:
        seg = engine.segment(upload, options, cancel, share)
        if fmt == "json":
            return seg.summary(with_probabilities=with_probabilities), None
        return seg.summary(with_mask=False), seg.mask_file()

    async with _cancel_on_disconnect(request) as cancel:
        if upload.prepared is None:
            summary, mask = await queue.run(lambda: job(cancel), cost, cancel)
        else:
            share = await queue.run_merged(upload.prepared.call, upload.prepared, cost, cancel)
            request.state.log["batch"] = share.batch_slices
            summary, mask = await queue.read(lambda: job(cancel, share))
    request.state.log.update(model=summary["model"], sequence=summary["sequence"], shape=summary["shape"],
                             lesions=summary["lesion_count"], cost=cost,
                             inference_ms=summary["timings_ms"]["inference"])
    if mask is None:
        return JSONResponse(summary)
    content, media_type, file_name = mask
    return Response(content, media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="{_safe(file_name)}"',
        "X-Model": summary["model"], "X-Model-Version": summary["model_version"], "X-Precision": summary["precision"],
        "X-Sequence": summary["sequence"] or "unknown",
        "X-Lesion-Count": str(summary["lesion_count"]), "X-Inference-Ms": str(summary["timings_ms"]["inference"]),
        "X-Warnings": str(len(summary["warnings"])),
    })


@router.post("/predict", responses=_MASK_RESPONSES, response_class=Response, summary="Segment one image or volume")
async def predict(request: Request, file: Annotated[UploadFile, File(description="PNG, JPEG, TIFF, DICOM or NIfTI")],
                  options: Annotated[tuple[Options, MaskFormat, bool], Depends(predict_options)]) -> Response:
    """Segment one upload with the model trained for its MRI sequence.

    Options (`model`, `sequence`, `threshold`, `tta`, `min_lesion_size`, `format`) may be query
    parameters or form fields. The file type is detected from its content, not its name. Without
    `model` or `sequence`, the sequence the upload names (DICOM SeriesDescription, ProtocolName,
    ContrastBolusAgent; words such as flair, t1c, t1ce, post, gad in its file name) chooses the
    model, else the server's default; `format=json` answers say which (`choice`: model, sequence,
    reason, warnings), mask answers in `X-Model` and `X-Sequence`. A model whose sequence differs
    from the one the upload names is used all the same, with a warning.
    """
    return await _predict(request, file, options)


@router.post("/predict/", include_in_schema=False)
async def predict_with_slash(request: Request, file: Annotated[UploadFile, File()],
                             options: Annotated[tuple[Options, MaskFormat, bool],
                                                Depends(predict_options)]) -> Response:
    """The address of the original brief (``http://127.0.0.1:8000/predict/``), kept for its clients."""
    return await _predict(request, file, options)


def _failed(name: str, exc: Exception) -> BatchItem:
    """A batch entry for a file that failed alone; a bug on one file must not fail the others."""
    if isinstance(exc, MetaSegError):
        return BatchItem(file=name, ok=False, status=status_for(exc), error=str(exc))
    log.error("unhandled error on batch file %s", name, exc_info=exc)
    return BatchItem(file=name, ok=False, status=500, error="internal error on this file")


@router.post("/predict/batch", response_model=BatchResult, summary="Segment several files")
async def predict_batch(request: Request,
                        files: Annotated[list[UploadFile], File(description="several images or volumes")],
                        options: Annotated[Options, Depends(model_options)]) -> BatchResult:
    """One JSON result per file, in order. A bad file gets an error entry (with the status it
    would have had alone); the other files are still segmented. The request budget counts the
    slices of all files."""
    engine = _engine(request)
    limit = engine.settings.max_batch_files
    if len(files) > limit:
        raise OptionError(f"{len(files)} files in one batch; accepted: at most {limit} (METASEG_MAX_BATCH_FILES)")
    entries: list[Upload | BatchItem] = []
    for index, file in enumerate(files):
        try:
            entries.append(await _read(request, file, f"file{index}", options))
        except Exception as exc:
            entries.append(_failed(_name(file, f"file{index}"), exc))
    cost = engine.cost([e for e in entries if isinstance(e, Upload)], options)

    def job(cancel: threading.Event) -> list[BatchItem]:
        items = []
        for entry in entries:
            if isinstance(entry, BatchItem):
                items.append(entry)
                continue
            try:
                result = PredictionResult.model_validate(engine.segment(entry, options, cancel).summary())
                items.append(BatchItem(file=entry.name, ok=True, status=200, result=result))
            except Unavailable:  # cancelled: the whole batch stops
                raise
            except Exception as exc:
                items.append(_failed(entry.name, exc))
        return items

    async with _cancel_on_disconnect(request) as cancel:
        items = await _queue(request).run(lambda: job(cancel), cost, cancel)
    request.state.log.update(files=len(items), failed=sum(not i.ok for i in items), cost=cost)
    return BatchResult(results=items)


@router.post("/evaluate", response_model=EvaluationResult, summary="Segment an image and score it against its mask")
async def evaluate(request: Request,
                   file: Annotated[UploadFile, File(description="the image or volume")],
                   mask: Annotated[UploadFile, File(description="its true mask (nonzero = lesion), same size")],
                   options: Annotated[Options, Depends(model_options)]) -> EvaluationResult:
    """Prediction plus Dice, IoU, HD95 and lesion-wise sensitivity, precision, F1 and Dice."""
    engine, queue = _engine(request), _queue(request)
    upload = await _read(request, file, "upload", options)
    truth_bytes, truth_name = await mask.read(), _name(mask, "mask")
    truth = await queue.read(lambda: engine.read_truth(truth_bytes, truth_name, upload.scan))
    cost = engine.cost([upload], options)
    async with _cancel_on_disconnect(request) as cancel:
        result = await queue.run(lambda: engine.evaluate(upload, truth, options, cancel), cost, cancel)
    request.state.log.update(model=result["prediction"]["model"], dice=round(result["scores"]["dice"], 4), cost=cost)
    return EvaluationResult.model_validate(result)
