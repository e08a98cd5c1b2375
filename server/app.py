"""The FastAPI application: settings, model loading at start-up, middleware, routers.

``uvicorn server.app:app`` serves it with settings from ``METASEG_*`` environment variables;
``create_app(ServerSettings(...))`` builds one with explicit settings (tests, embedding).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.formparsers import MultiPartParser

from metaseg_viewer.errors import MetaSegError
from server.auth import document_api_key
from server.engine import Engine
from server.errors import UnexpectedErrorMiddleware, install_error_handlers
from server.jobs import InferenceQueue
from server.middleware import AdmissionMiddleware, BodyMiddleware, RequestLogMiddleware
from server.routes import predict, status
from server.settings import InvalidSettings, ServerSettings, load_settings
from server.shutdown import stop_on_signal

log = logging.getLogger("metaseg.server")

DESCRIPTION = """Segments lesions on brain MRI (PNG, JPEG, TIFF, DICOM, NIfTI) with the MetaSeg Viewer
models, each trained for one MRI sequence: **FLAIR abnormality of lower-grade glioma** (a U-Net++,
an Attention U-Net and their ensemble, trained and validated on the LGG FLAIR data set of Buda et
al., TCGA-LGG) and a contrast-enhanced T1 (T1c) model; `GET /models/by-sequence` and `GET /models`
say what each was trained for. The model is the request's `model` or `sequence`, else the one for
the sequence the upload names, else the server's default; every answer says which and why. Not
trained on metastases. Research use only, not a medical device.

With an API key configured, send it as `X-API-Key`. Every answer carries an `X-Request-ID`."""


class StartupError(RuntimeError):
    """Invalid settings or a model that cannot be loaded: the server refuses to start rather than serve half."""


def _log_to_stderr() -> None:
    """Our request log lines (INFO) reach stderr however uvicorn configured logging."""
    logger = logging.getLogger("metaseg.server")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        logger.propagate = False


def create_app(settings: ServerSettings | None = None, engine: Engine | None = None) -> FastAPI:
    """The application; ``engine`` lets a caller load the models first (the CLI does, to fail
    with a one-line message instead of a lifespan traceback)."""
    settings = settings or ServerSettings()
    _log_to_stderr()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.torch_threads:
            import torch

            torch.set_num_threads(settings.torch_threads)
        try:
            app.state.engine = engine or Engine(settings)
        except (MetaSegError, OSError) as exc:
            log.error("cannot start: %s", exc)
            raise StartupError(f"cannot start: {exc}") from None
        app.state.queue = queue = InferenceQueue(settings.workers, settings.queue_size, settings.max_queue_cost,
                                                 settings.max_concurrent_reads, settings.max_batch_slices,
                                                 settings.batch_wait_ms / 1000)
        undo = stop_on_signal(queue, settings.shutdown_grace_s)
        log.info("ready: models %s, %d worker(s), queue %d, cost %d per request and %d at once, "
                 "single slices merged %d per call (wait %g ms)", list(app.state.engine.predictors), settings.workers,
                 settings.queue_size, settings.max_request_cost, settings.max_queue_cost, settings.max_batch_slices,
                 settings.batch_wait_ms)
        yield
        undo()
        queue.shutdown()

    app = FastAPI(title="MetaSeg Viewer inference server", version="0.1.0", description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = settings
    # Keep uploads in memory up to the body limit: Starlette would otherwise spool anything over
    # 1 MiB to a temporary file, and uploads must not touch the disk unless the operator asks.
    MultiPartParser.spool_max_size = max(MultiPartParser.spool_max_size, settings.max_upload_bytes)
    install_error_handlers(app, settings.max_upload_mb)
    app.include_router(status.router)
    app.include_router(predict.router)
    document_api_key(app)
    # Added last = outermost. From the outside in: request ids and logs wrap everything; CORS
    # headers reach every answer (the early 401, 413 and 503 too); bugs become a JSON 500;
    # admission (key, a place in the queue) comes before the body is received.
    app.add_middleware(BodyMiddleware, max_bytes=settings.max_upload_bytes, max_upload_mb=settings.max_upload_mb,
                       timeout_s=settings.body_timeout_s, readers=settings.max_concurrent_reads)
    app.add_middleware(AdmissionMiddleware, queued=predict.router.routes)
    app.add_middleware(UnexpectedErrorMiddleware)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["X-API-Key", "X-Request-ID", "Content-Type"],
                           expose_headers=["X-Request-ID", "X-Model", "X-Model-Version", "X-Sequence", "X-Precision",
                                           "X-Lesion-Count", "X-Inference-Ms", "X-Warnings", "Retry-After",
                                           "Content-Disposition"])
    app.add_middleware(RequestLogMiddleware)
    return app


def __getattr__(name: str) -> FastAPI:
    """``server.app:app`` for uvicorn, built on first access (importing this module has no side effects)."""
    if name == "app":
        try:
            settings = load_settings()
        except InvalidSettings as exc:
            log.error("cannot start: %s", exc)
            raise StartupError(f"cannot start: {exc}") from None
        globals()["app"] = application = create_app(settings)
        return application
    raise AttributeError(name)
