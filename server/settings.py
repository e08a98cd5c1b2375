"""Server settings: constructor arguments, or ``METASEG_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from metaseg_viewer.io import ReadLimits
from metaseg_viewer.registry import DEFAULT_MODEL, MODEL_NAMES


class ServerSettings(BaseSettings):
    """Everything an operator may set. Environment: ``METASEG_MODELS='["unetpp"]'``,
    ``METASEG_API_KEY=...``, ``METASEG_MAX_UPLOAD_MB=50`` and so on (lists as JSON).

    Cost is counted in network passes: slices x ensemble members x (2 with test-time
    augmentation, else 1); it is what a request takes from the inference threads."""

    model_config = SettingsConfigDict(env_prefix="METASEG_", extra="forbid")

    models: list[str] = Field(default_factory=lambda: list(MODEL_NAMES),
                              description="models loaded at start-up (shipped names or .safetensors paths)")
    default_model: str | None = Field(None, description="model used when a request names no model or sequence "
                                                        "and its upload names no sequence of a loaded model "
                                                        f"(default: {DEFAULT_MODEL} if loaded, else the first loaded)")
    device: str | None = Field(None, description="cpu, cuda or cuda:N (default: cuda when available)")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="auto: bf16 where the CPU (AMX / AVX512-BF16) or GPU has native bf16, else fp32")
    max_upload_mb: float = Field(64.0, gt=0, description="largest request body, in MiB (413 above)")
    max_slice_pixels: int = Field(4096 * 4096, gt=0, description="largest slice, rows x columns")
    max_slices: int = Field(512, gt=0, description="most slices in one volume")
    max_voxels: int = Field(512 * 512 * 256, gt=0, description="most voxels in one volume (memory bound)")
    max_batch_files: int = Field(32, gt=0, description="most files in one /predict/batch request")
    max_request_cost: int = Field(1024, gt=0, description="most network passes one request may need (a batch: "
                                                          "all its files); more get 413 before any inference")
    max_queue_cost: int = Field(4096, gt=0, description="network passes admitted to the inference threads at once "
                                                        "(running and waiting); a request that would pass it gets 503")
    workers: int = Field(1, ge=1, description="inference threads (each runs one request, or one merged call of "
                                              "single slices, at a time)")
    max_batch_slices: int = Field(8, ge=1, description="most single-slice requests merged into one network call "
                                                       "(same model and TTA); 1 turns merging off")
    batch_wait_ms: float = Field(5.0, ge=0, le=1000, description="an idle inference thread waits up to this long "
                                                                 "after a single slice arrived for others to merge "
                                                                 "with it, and only while other requests are still "
                                                                 "being received or decoded")
    queue_size: int = Field(32, ge=0, description="requests that may be admitted beyond the workers (their uploads "
                                                  "being received, decoded or waiting); more get 503")
    max_concurrent_reads: int = Field(4, ge=1, description="uploads received from the network at once, and uploads "
                                                           "decoded (or single slices finished after a merged call) "
                                                           "at once; others wait their turn")
    body_timeout_s: float = Field(60.0, gt=0, description="seconds a request body may take to arrive once its turn "
                                                          "to be received came (408 after)")
    shutdown_grace_s: float = Field(10.0, gt=0, description="on SIGTERM/SIGINT, seconds running jobs get to stop at "
                                                            "their next batch of slices before the process exits")
    torch_threads: int | None = Field(None, ge=1, description="intra-op threads for torch (default: torch's)")
    api_key: SecretStr | None = Field(None, description="when set, every request except /health and /ready (and "
                                                        "the API documents with public_docs) needs the header "
                                                        "X-API-Key with this value")
    public_docs: bool = Field(False, description="serve /docs, /redoc and /openapi.json without the API key")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed by CORS (none by default)")
    save_uploads_dir: Path | None = Field(None, description="keep each accepted upload here under a generated name "
                                                            "(off by default: uploads stay in memory); holds "
                                                            "patient data")
    save_uploads_max_mb: float = Field(1024.0, gt=0, description="size quota of save_uploads_dir, in MiB: the "
                                                                 "oldest kept uploads are deleted beyond it")
    save_uploads_max_days: float = Field(7.0, gt=0, description="kept uploads older than this are deleted")
    deidentify_names: bool = Field(False, description="name mask files scan-<hash of the upload's name> instead of "
                                                      "after the upload, whose name may carry a patient's name")

    @field_validator("models")
    @classmethod
    def _some_models(cls, models: list[str]) -> list[str]:
        if not models:
            raise ValueError(f"load at least one model; shipped: {list(MODEL_NAMES)}")
        return list(dict.fromkeys(models))

    @field_validator("api_key")
    @classmethod
    def _key_not_empty(cls, key: SecretStr | None) -> SecretStr | None:
        """An empty key would refuse every client; an unset one means no key."""
        if key is not None and not key.get_secret_value().strip():
            raise ValueError("METASEG_API_KEY is set but empty, which would lock every client out: "
                             "set a key, or unset the variable to run without one")
        return key

    @model_validator(mode="after")
    def _default_is_loaded(self) -> ServerSettings:
        if self.default_model is None:
            self.default_model = DEFAULT_MODEL if DEFAULT_MODEL in self.models else self.models[0]
        if self.default_model not in self.models:
            raise ValueError(f"default_model {self.default_model!r} is not among the loaded models {self.models}")
        return self

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def read_limits(self) -> ReadLimits:
        return ReadLimits(max_bytes=self.max_upload_bytes, max_slice_pixels=self.max_slice_pixels,
                          max_voxels=self.max_voxels, max_slices=self.max_slices)


class InvalidSettings(ValueError):
    """Settings the server cannot start with, worded on one line."""


def load_settings(**given: object) -> ServerSettings:
    """``ServerSettings`` from ``given`` and the environment, or :class:`InvalidSettings` saying what is wrong."""
    try:
        return ServerSettings(**given)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg'].removeprefix('Value error, ')}"
                             for e in exc.errors())
        raise InvalidSettings(f"invalid settings: {problems}") from None
    except SettingsError as exc:  # e.g. METASEG_MODELS that is not a JSON list
        raise InvalidSettings(f"invalid settings in the environment: {exc}") from None
