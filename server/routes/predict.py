"""``POST /predict`` (and the brief's ``/predict/``), ``POST /predict/batch``, ``POST /evaluate``."""

from __future__ import annotations

import logging
import re
from typing import Annotated

from fastapi import APIRouter, Depends, File, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from metaseg_viewer.errors import MetaSegError
from server.engine import Engine, MaskFormat, Options, OptionError
from server.errors import status_for
from server.routes.options import model_options, predict_options
from server.schemas import ERROR_RESPONSES, BatchItem, BatchResult, EvaluationResult, PredictionResult

router = APIRouter(responses=ERROR_RESPONSES)
log = logging.getLogger("metaseg.server")

_MASK_RESPONSES = {200: {
    "description": "The mask: PNG (0/255) for a 2-D image, gzipped NIfTI in the input's voxel grid for a volume; "
                   "with format=json, a PredictionResult document.",
    "content": {"image/png": {}, "application/gzip": {},
                "application/json": {"schema": {"$ref": "#/components/schemas/PredictionResult"}}},
}}


def _engine(request: Request) -> Engine:
    return request.app.state.engine


def _name(upload: UploadFile, fallback: str) -> str:
    """The upload's base name, for messages and output names only (never a path on disk)."""
    name = (upload.filename or "").replace("\\", "/").rsplit("/", 1)[-1]
    return name or fallback


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:120] or "mask"


async def _predict(request: Request, file: UploadFile,
                   options_and_format: tuple[Options, MaskFormat, bool]) -> Response:
    engine = _engine(request)
    options, fmt, with_probabilities = options_and_format
    data, name = await file.read(), _name(file, "upload")

    def job() -> tuple[dict, tuple[bytes, str, str] | None]:
        seg = engine.segment(data, name, options, fmt)
        if fmt == "json":
            return seg.summary(with_probabilities=with_probabilities), None
        return seg.summary(with_mask=False), seg.mask_file()

    summary, mask = await request.app.state.queue.run(job)
    request.state.log.update(model=summary["model"], shape=summary["shape"], lesions=summary["lesion_count"],
                             inference_ms=summary["timings_ms"]["inference"])
    if mask is None:
        return JSONResponse(summary)
    content, media_type, file_name = mask
    return Response(content, media_type=media_type, headers={
        "Content-Disposition": f'attachment; filename="{_safe(file_name)}"',
        "X-Model": summary["model"], "X-Model-Version": summary["model_version"],
        "X-Lesion-Count": str(summary["lesion_count"]), "X-Inference-Ms": str(summary["timings_ms"]["inference"]),
    })


@router.post("/predict", responses=_MASK_RESPONSES, response_class=Response, summary="Segment one image or volume")
async def predict(request: Request, file: Annotated[UploadFile, File(description="PNG, JPEG, TIFF, DICOM or NIfTI")],
                  options: Annotated[tuple[Options, MaskFormat, bool], Depends(predict_options)]) -> Response:
    """Segment FLAIR abnormality (lower-grade glioma) in one upload.

    Options (`model`, `threshold`, `tta`, `min_lesion_size`, `format`) may be query parameters or
    form fields. The file type is detected from its content, not its name.
    """
    return await _predict(request, file, options)


@router.post("/predict/", include_in_schema=False)
async def predict_with_slash(request: Request, file: Annotated[UploadFile, File()],
                             options: Annotated[tuple[Options, MaskFormat, bool],
                                                Depends(predict_options)]) -> Response:
    """The address of the original brief (``http://127.0.0.1:8000/predict/``), kept for its clients."""
    return await _predict(request, file, options)


@router.post("/predict/batch", response_model=BatchResult, summary="Segment several files")
async def predict_batch(request: Request,
                        files: Annotated[list[UploadFile], File(description="several images or volumes")],
                        options: Annotated[Options, Depends(model_options)]) -> BatchResult:
    """One JSON result per file, in order. A bad file gets an error entry (with the status it
    would have had alone); the other files are still segmented."""
    engine = _engine(request)
    limit = engine.settings.max_batch_files
    if len(files) > limit:
        raise OptionError(f"{len(files)} files in one batch; accepted: at most {limit} (METASEG_MAX_BATCH_FILES)")
    uploads = [(await f.read(), _name(f, f"file{i}")) for i, f in enumerate(files)]

    def job() -> list[BatchItem]:
        items = []
        for data, name in uploads:
            try:
                result = PredictionResult.model_validate(engine.segment(data, name, options).summary())
                items.append(BatchItem(file=name, ok=True, status=200, result=result))
            except MetaSegError as exc:
                items.append(BatchItem(file=name, ok=False, status=status_for(exc), error=str(exc)))
            except Exception:  # a bug on one file must not fail the others
                log.exception("unhandled error on batch file %s", name)
                items.append(BatchItem(file=name, ok=False, status=500, error="internal error on this file"))
        return items

    items = await request.app.state.queue.run(job)
    request.state.log.update(files=len(items), failed=sum(not i.ok for i in items))
    return BatchResult(results=items)


@router.post("/evaluate", response_model=EvaluationResult, summary="Segment an image and score it against its mask")
async def evaluate(request: Request,
                   file: Annotated[UploadFile, File(description="the image or volume")],
                   mask: Annotated[UploadFile, File(description="its true mask (nonzero = lesion), same size")],
                   options: Annotated[Options, Depends(model_options)]) -> EvaluationResult:
    """Prediction plus Dice, IoU, HD95 and lesion-wise sensitivity, precision, F1 and Dice."""
    engine = _engine(request)
    data, name = await file.read(), _name(file, "upload")
    truth, truth_name = await mask.read(), _name(mask, "mask")
    result = await request.app.state.queue.run(lambda: engine.evaluate(data, name, truth, truth_name, options))
    request.state.log.update(model=result["prediction"]["model"], dice=round(result["scores"]["dice"], 4))
    return EvaluationResult.model_validate(result)
