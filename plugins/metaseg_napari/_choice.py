"""Which model the widget runs on an image layer: the core's ``choose_model``, fed with what the
layer says about its sequence (its source file's name, the reader's DICOM tags). No Qt here.
"""

from __future__ import annotations

from metaseg_viewer.config import InferenceConfig
from metaseg_viewer.model_choice import ModelChoice, choose_model
from metaseg_viewer.registry import FAMILIES, MODEL_LABELS, describe_models, model_label
from metaseg_viewer.scan import Scan
from metaseg_viewer.sequences import SequenceHint, sequence_hint, sequence_label

AUTO = "auto"  # the sequence and model menus' entry for "let the layer (or the family) decide"


def sequence_menu() -> list[tuple[str, str]]:
    """(label, data) of the sequence menu: automatic first, then each model family."""
    return [("Auto (from the layer)", AUTO), *((sequence_label(s), s) for s in FAMILIES)]


def model_menu(sequence: str) -> list[tuple[str, str, str]]:
    """(label, data, tooltip) of the model menu for a sequence (``AUTO``: every family, in order)."""
    purposes = {row["name"]: row.get("purpose") or {} for row in describe_models()}
    auto = "Automatic: the layer's family" if sequence == AUTO else f"Automatic: the {sequence_label(sequence)} default"
    entries = [(auto, AUTO, "the default model of the sequence chosen, or of the one the layer names")]
    for family, names in FAMILIES.items():
        if sequence in (AUTO, family):
            entries += [(MODEL_LABELS[n], n, _tooltip(purposes.get(n, {}))) for n in names]
    return entries


def card_settings(model: str) -> InferenceConfig | None:
    """The inference settings on a shipped model's card (``None`` for anything else)."""
    rows = {row["name"]: row for row in describe_models()}
    return InferenceConfig.from_dict(rows[model]["inference"]) if model in rows else None


def _tooltip(purpose: dict) -> str:
    return f"outlines {purpose['target']}; trained on {purpose['dataset']}" if purpose else ""


def layer_hint(layer_name: str, scan: Scan | None, layer_metadata: dict) -> SequenceHint:
    """What a layer says about its sequence: the file it was read from (else its name) and the
    DICOM tags the reader kept in its Scan (or left as strings in the layer's metadata); no
    layer (``""``, ``None``, ``{}``) says nothing."""
    tags = {k: v for k, v in layer_metadata.items() if isinstance(v, str)}
    if scan is None:
        return sequence_hint(layer_name, tags)
    return sequence_hint(scan.source or layer_name, {**tags, **scan.metadata})


def choose(layer_name: str, scan: Scan | None, layer_metadata: dict, sequence: str, model: str) -> ModelChoice:
    """The core's choice for this layer (see :func:`layer_hint`); raises ``ModelChoiceError`` for a
    contradictory request."""
    return choose_model(layer_hint(layer_name, scan, layer_metadata),
                        model=None if model == AUTO else model, sequence=None if sequence == AUTO else sequence)


def choice_text(layer_name: str, choice: ModelChoice) -> str:
    """The status line: which model runs on which layer, the sequence it was trained for, and why."""
    text = (f"{layer_name}: {model_label(choice.model)}, trained for {sequence_label(choice.sequence)}. "
            f"Why: {choice.reason}.")
    return text + "".join(f"\n⚠ {w}" for w in choice.warnings)
