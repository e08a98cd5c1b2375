"""Server settings: constructor arguments, or ``METASEG_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from metaseg_viewer.io import ReadLimits
from metaseg_viewer.registry import DEFAULT_MODEL, MODEL_NAMES


class ServerSettings(BaseSettings):
    """Everything an operator may set. Environment: ``METASEG_MODELS='["unetpp"]'``,
    ``METASEG_API_KEY=...``, ``METASEG_MAX_UPLOAD_MB=50`` and so on (lists as JSON)."""

    model_config = SettingsConfigDict(env_prefix="METASEG_", extra="forbid")

    models: list[str] = Field(default_factory=lambda: list(MODEL_NAMES),
                              description="models loaded at start-up (shipped names or .safetensors paths)")
    default_model: str | None = Field(None, description="model used when a request names none "
                                                        f"(default: {DEFAULT_MODEL} if loaded, else the first loaded)")
    device: str | None = Field(None, description="cpu, cuda or cuda:N (default: cuda when available)")
    max_upload_mb: float = Field(64.0, gt=0, description="largest request body, in MiB (413 above)")
    max_slice_pixels: int = Field(4096 * 4096, gt=0, description="largest slice, rows x columns")
    max_slices: int = Field(512, gt=0, description="most slices in one volume")
    max_voxels: int = Field(512 * 512 * 256, gt=0, description="most voxels in one volume (memory bound)")
    max_batch_files: int = Field(32, gt=0, description="most files in one /predict/batch request")
    workers: int = Field(1, ge=1, description="inference threads (each runs one request at a time)")
    queue_size: int = Field(32, ge=0, description="requests that may wait for a worker; more get 503")
    torch_threads: int | None = Field(None, ge=1, description="intra-op threads for torch (default: torch's)")
    api_key: SecretStr | None = Field(None, description="when set, every request except /health, /ready and the "
                                                        "API documents needs the header X-API-Key with this value")
    cors_origins: list[str] = Field(default_factory=list, description="origins allowed by CORS (none by default)")
    save_uploads_dir: Path | None = Field(None, description="keep each upload here under a generated name "
                                                            "(off by default: uploads stay in memory)")

    @field_validator("models")
    @classmethod
    def _some_models(cls, models: list[str]) -> list[str]:
        if not models:
            raise ValueError(f"load at least one model; shipped: {list(MODEL_NAMES)}")
        return list(dict.fromkeys(models))

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
