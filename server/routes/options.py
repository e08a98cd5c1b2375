"""Request options, accepted as query parameters or as form fields beside the upload."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, ValidationError, field_validator

from metaseg_viewer.registry import DEFAULT_MODEL, MODEL_NAMES
from metaseg_viewer.sequences import MODEL_SEQUENCES
from server.engine import MaskFormat, Options


class OptionFields(BaseModel):
    model_config = {"extra": "ignore"}

    model: str | None = Field(None, description=f"a model this server loaded, see GET /models (shipped: "
                                                f"{', '.join(MODEL_NAMES)}; default: the server's)",
                              examples=[DEFAULT_MODEL])
    sequence: str | None = Field(None, description=f"the MRI sequence of the upload ({', '.join(MODEL_SEQUENCES)}): "
                                                   "segment with that sequence's default loaded model (see GET "
                                                   "/models/by-sequence). Without model or sequence, the sequence the "
                                                   "upload names (DICOM description, contrast agent tag, file name) "
                                                   "chooses, else the server's default; the answer says which and why",
                                 examples=["t1c"])
    threshold: float | None = Field(None, gt=0, lt=1, description="probability cut-off (default: the model card's)",
                                    examples=[0.5])
    tta: bool | None = Field(None, description="flip test-time augmentation (default: the model card's)")
    min_lesion_size: int | None = Field(None, ge=0, description="drop components smaller than this many pixels "
                                                                "(voxels for volumes; default: the card's)")

    @field_validator("model", "sequence", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        """An empty form field (``sequence=``) means "not given", as an absent one does."""
        return None if value == "" else value

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold_in_range(cls, value: object) -> object:
        """One message for every bad threshold (text, NaN, infinity, out of range); pydantic's
        bounds alone call NaN "not less than 1"."""
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            number = math.nan
        if value is not None and not 0 < number < 1:  # False for NaN too
            raise ValueError(f"threshold must be a number between 0 and 1 (both excluded), got {value}")
        return value


class PredictFields(OptionFields):
    format: MaskFormat = Field(
        "auto", description="auto: PNG mask for a 2-D image, NIfTI (.nii.gz) for a volume; nrrd: 3D Slicer's "
                            ".seg.nrrd; dicom-seg: a DICOM SEG on the source series (DICOM input only); json: a JSON "
                            "document")
    probabilities: bool = Field(False, description="with format=json, also the probability map (8-bit, "
                                                   "metaseg_viewer.encoding.decode_probabilities reads it)")


async def _merged(request: Request, query: BaseModel, kind: type[OptionFields]) -> OptionFields:
    """Query parameters, completed by form fields of the same names (a name given both ways must agree)."""
    form = await request.form()  # the same parse FastAPI does for the upload (cached on the request)
    from_query = query.model_dump(exclude_unset=True)
    from_form = {name: form[name] for name in kind.model_fields if isinstance(form.get(name), str)}
    try:
        form_fields = kind.model_validate(from_form).model_dump(exclude_unset=True)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("form", *e["loc"])} for e in exc.errors()]) from None
    for name in set(from_query) & set(form_fields):
        if from_query[name] != form_fields[name]:
            raise RequestValidationError([{"loc": ("form", name), "type": "value_error",
                                           "msg": f"given as query ({from_query[name]}) and form field "
                                                  f"({form_fields[name]}) with different values"}])
    return kind.model_validate({**form_fields, **from_query})


def _options(request: Request, fields: OptionFields) -> Options:
    """An unknown model or sequence, one whose models are not loaded, or a model and a sequence
    that contradict are a 422 here, before the route reads or queues any upload."""
    options = Options(model=fields.model, sequence=fields.sequence, threshold=fields.threshold, tta=fields.tta,
                      min_lesion_size=fields.min_lesion_size)
    request.app.state.engine.choose(options)
    return options


async def predict_options(request: Request,
                          query: Annotated[PredictFields, Query()]) -> tuple[Options, MaskFormat, bool]:
    fields = await _merged(request, query, PredictFields)
    assert isinstance(fields, PredictFields)
    if fields.probabilities and fields.format != "json":
        raise RequestValidationError([{"loc": ("query", "probabilities"), "type": "value_error",
                                       "msg": "probabilities=true needs format=json"}])
    return _options(request, fields), fields.format, fields.probabilities


async def model_options(request: Request, query: Annotated[OptionFields, Query()]) -> Options:
    return _options(request, await _merged(request, query, OptionFields))
