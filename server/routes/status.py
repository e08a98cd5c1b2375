"""``GET /health`` (liveness), ``GET /ready`` (models loaded), ``GET /models`` and ``GET /models/by-sequence``."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from server.schemas import ERROR_RESPONSES, Health, ModelInfo, Ready, SequenceModels

router = APIRouter()


@router.get("/health", response_model=Health, summary="Liveness: the process answers")
async def health() -> Health:
    """Answers at once, even while every worker is segmenting (no model or queue involved)."""
    return Health()


@router.get("/ready", response_model=Ready, responses={503: {"model": Ready}},
            summary="Readiness: models loaded, not shutting down")
async def ready(request: Request) -> JSONResponse:
    engine = getattr(request.app.state, "engine", None)
    queue = getattr(request.app.state, "queue", None)
    ready = engine is not None and not (queue and queue.closing)  # not ready while shutting down
    body = Ready(ready=ready, models=list(engine.predictors) if engine else [],
                 busy=queue.admitted if queue else 0, capacity=queue.capacity if queue else 0,
                 cost=queue.cost if queue else 0, max_cost=queue.max_cost if queue else 0,
                 precision={name: p.precision for name, p in engine.predictors.items()} if engine else {})
    return JSONResponse(body.model_dump(), status_code=200 if ready else 503)


@router.get("/models", response_model=list[ModelInfo],
            responses={401: ERROR_RESPONSES[401]}, summary="Loaded models and their validation figures")
async def models(request: Request) -> list[ModelInfo]:
    """Names, the MRI sequence each was trained for and its purpose, architectures, checksums and
    the model cards' metrics (their validation patients)."""
    return [ModelInfo.model_validate(row) for row in request.app.state.engine.models()]


@router.get("/models/by-sequence", response_model=dict[str, SequenceModels],
            responses={401: ERROR_RESPONSES[401]},
            summary="Loaded models grouped by the MRI sequence they were trained for")
async def models_by_sequence(request: Request) -> dict[str, SequenceModels]:
    """Per sequence (``flair``, ``t1c``; ``unknown`` for checkpoints whose card does not say): the
    loaded models trained for it and the one a request with only ``sequence=`` gets."""
    return {sequence: SequenceModels.model_validate(group)
            for sequence, group in request.app.state.engine.sequences().items()}
