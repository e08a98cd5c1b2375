"""Response bodies, as pydantic models so the OpenAPI schema documents them (with examples)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from metaseg_viewer.lesions import LesionScores  # the core's dataclass documents itself in the schema


class RLEMask(BaseModel):
    """Run-length encoded mask (``metaseg_viewer.encoding.rle_decode`` reads it back)."""

    encoding: Literal["rle"] = "rle"
    shape: list[int] = Field(description="(slices, rows, columns)")
    order: Literal["C"] = Field("C", description="flattened slice by slice, row by row")
    counts: list[int] = Field(description="alternating runs of background and lesion, background first")


class EncodedProbabilities(BaseModel):
    """Probability map quantised to k/255 (``metaseg_viewer.encoding.decode_probabilities``)."""

    shape: list[int]
    encoding: Literal["uint8-zlib-base64"] = "uint8-zlib-base64"
    data: str


class InferenceSettings(BaseModel):
    """Post-network settings: the model card's, with the request's overrides applied."""

    threshold: float
    tta: bool
    min_lesion_size: int


class ModelChoiceInfo(BaseModel):
    """Which model segmented the upload and why (``metaseg_viewer.model_choice.ModelChoice``)."""

    model: str
    sequence: str | None = Field(description="the MRI sequence the model was trained for (flair, t1c); null when its "
                                             "card does not say")
    reason: str = Field(description="why this model: the request's model or sequence, the sequence the upload names "
                                    "(which words, from which DICOM tag or the file name), or the server's default")
    warnings: list[str] = Field(description="a visible mismatch between the model's sequence and the upload's (also "
                                            "in the result's warnings)")


class PredictionResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "file": "TCGA_CS_4941_19960909_12.tif", "model": "ensemble", "model_version": "4d1f7c0e3a9b+b2c5e8a1f0d4",
        "sequence": "flair",
        "choice": {"model": "ensemble", "sequence": "flair", "warnings": [],
                   "reason": "the default model (FLAIR): the input does not name its sequence (no DICOM description "
                             "or file-name word such as 'flair', 't1c', 't1ce', 'post', 'gad')"},
        "precision": "bf16",
        "shape": [1, 256, 256], "is_volume": False, "spacing_mm": None,
        "input": "FLAIR channel (1 of 3) of an LGG kaggle_3m TIFF",
        "settings": {"threshold": 0.5, "tta": False, "min_lesion_size": 10},
        "lesion_count": 1,
        "lesions": [{"label": 1, "size_px": 1532, "centroid_row": 101.4, "centroid_col": 160.2, "mean_probability": 0.93}],
        "warnings": [],
        "timings_ms": {"read": 3.1, "inference": 310.5, "total": 320.0},
        "mask": {"encoding": "rle", "shape": [1, 256, 256], "order": "C", "counts": [25933, 12, 243, 15]},
    }]})

    file: str
    model: str
    model_version: str = Field(description="sha256 prefix of each member's weights, joined by +")
    sequence: str | None = Field(description="the MRI sequence the model was trained for (as choice.sequence)")
    choice: ModelChoiceInfo
    precision: str = Field(description="floating-point precision the networks ran in: fp32 or bf16")
    shape: list[int] = Field(description="(slices, rows, columns) of the input as read")
    is_volume: bool
    spacing_mm: list[float | None] | None = Field(
        description="(slice, row, column) spacing when the file gives it; null for one it does not (the slice "
                    "spacing of a lone DICOM slice without thickness)")
    input: str = Field(description="how the pixels were obtained from the file")
    settings: InferenceSettings
    lesion_count: int
    lesions: list[dict[str, float | int | str | None]] = Field(
        description="one row per connected lesion (3-D for volumes): size, centroid, mean probability")
    warnings: list[str] = Field(default_factory=list, description="what the reader or the prediction found that may "
                                                                   "make this result partial or meaningless; empty "
                                                                   "when nothing (batch entries and /evaluate carry "
                                                                   "it in their prediction)")
    timings_ms: dict[str, float] = Field(description="read (decoding), inference (networks), total (both, without "
                                                     "the wait for a worker)")
    mask: RLEMask | None = None
    probabilities: EncodedProbabilities | None = None


class BatchItem(BaseModel):
    file: str
    ok: bool
    status: int = Field(description="the HTTP status this file alone would have got")
    error: str | None = None
    result: PredictionResult | None = None


class BatchResult(BaseModel):
    results: list[BatchItem]


class Scores(BaseModel):
    dice: float
    iou: float
    hd95: float | None = Field(description="95th-percentile Hausdorff distance (hd95_unit); 0 when both masks are "
                                           "empty, null when exactly one is (undefined)")
    hd95_unit: Literal["mm", "px"]
    true_voxels: int
    predicted_voxels: int
    lesions: LesionScores


class EvaluationResult(BaseModel):
    prediction: PredictionResult
    scores: Scores


class ModelInfo(BaseModel):
    name: str
    label: str = Field(description="what the apps show for this model")
    sequence: str | None = Field(description="the MRI sequence it was trained for (flair, t1c); null when its card "
                                             "does not say")
    sequence_default: bool = Field(description="the model a request with only sequence= gets")
    purpose: dict | None = Field(description="what it was trained for, from its card: sequence, target, planes, "
                                             "dataset, licence")
    architecture: str
    description: str
    sha256: str
    version: str
    default: bool
    inference: InferenceSettings
    preprocess: dict = Field(description="the model card's preprocessing (PreprocessConfig), so a client can show "
                                         "the image the network sees")
    metrics: dict


class SequenceModels(BaseModel):
    label: str = Field(description="the sequence's name as the apps show it")
    default: str | None = Field(description="the loaded model a request with only sequence= gets (null: none of "
                                            "the shipped models for it is loaded; its models are checkpoints)")
    models: list[str] = Field(description="the loaded models trained for it, in GET /models order")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Ready(BaseModel):
    ready: bool
    models: list[str]
    busy: int = Field(description="requests admitted now: uploads being received, decoded, waiting or segmented")
    capacity: int = Field(description="requests admitted at once (workers + queue size); more get 503")
    cost: int = Field(description="network passes (slices x passes per slice) running or waiting now")
    max_cost: int = Field(description="network passes admitted at once; a request that would pass it gets 503")
    precision: dict[str, str] = Field(default_factory=dict, description="precision each loaded model runs in")


class ErrorBody(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "detail": "upload.bin: not an image or volume format this reader knows. Accepted: PNG, JPEG or TIFF ...",
        "request_id": "5f0c2a9e6b1d4c3e8f7a6b5c4d3e2f1a"}]})

    detail: str
    request_id: str | None = None
    errors: list[dict] | None = None


ERROR_RESPONSES = {
    400: {"model": ErrorBody, "description": "a body that is not valid multipart/form-data"},
    401: {"model": ErrorBody, "description": "missing or wrong X-API-Key (only when the server has a key)"},
    408: {"model": ErrorBody, "description": "the body did not arrive within the body timeout"},
    413: {"model": ErrorBody, "description": "upload, slice, volume or cost (network passes) over the server's limits"},
    415: {"model": ErrorBody, "description": "content is not an image or volume format the reader knows"},
    422: {"model": ErrorBody, "description": "invalid option, or a file that is recognised but unusable"},
    503: {"model": ErrorBody, "description": "the queue is full (see Retry-After), the server is shutting down, or "
                                             "the request was cancelled"},
}
