"""Which model segments an input: the user's model or sequence when given, else the family the
input names (:func:`~metaseg_viewer.sequences.sequence_hint`), else the default — always with the
reason, and a warning when the input and the model visibly disagree. Every app calls
:func:`choose_model`, so the CLI, the server, Streamlit and napari decide alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from metaseg_viewer.registry import DEFAULT_MODEL, FAMILIES, MODEL_NAMES, model_sequence
from metaseg_viewer.sequences import MODEL_SEQUENCES, SequenceHint, sequence_label


class ModelChoiceError(ValueError):
    """A request that names no usable model: an unknown sequence, a sequence with no model loaded,
    or a model and a sequence that contradict each other."""


@dataclass(frozen=True)
class ModelChoice:
    """The model chosen (``model``: a registry name or a checkpoint path), the sequence it was
    trained for, why it was chosen, and what the user must know (a visible mismatch)."""

    model: str
    sequence: str | None
    reason: str
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "sequence": self.sequence, "reason": self.reason, "warnings": list(self.warnings)}


def choose_model(hint: SequenceHint, model: str | None = None, sequence: str | None = None,
                 available: Sequence[str] = MODEL_NAMES, default: str = DEFAULT_MODEL) -> ModelChoice:
    """The model for one input.

    ``model`` (a name or path) wins; else ``sequence`` picks its family's first ``available``
    model; else the sequence the input names does; else ``default``. ``available`` is what this
    app has loaded (the server may load a subset)."""
    if sequence is not None and sequence not in MODEL_SEQUENCES:
        raise ModelChoiceError(f"unknown sequence {sequence!r}; accepted: {', '.join(MODEL_SEQUENCES)}")
    if model is not None:
        trained_for = model_sequence(model)
        if sequence is not None and trained_for is not None and trained_for != sequence:
            raise ModelChoiceError(f"model {model!r} is a {sequence_label(trained_for)} model but sequence {sequence!r} "
                                   "was asked for: give one of the two")
        return ModelChoice(model, trained_for or sequence, "the model you chose",
                           _mismatch(hint, trained_for or sequence, model))
    if sequence is not None:
        chosen = _first_available(sequence, available, default)
        if chosen is None:
            raise ModelChoiceError(f"no {sequence_label(sequence)} model is loaded here; loaded: {', '.join(available)}")
        return ModelChoice(chosen, sequence, f"the sequence you chose ({sequence_label(sequence)})",
                           _mismatch(hint, sequence, chosen))
    fallback = model_sequence(default)
    if hint.sequence in MODEL_SEQUENCES:
        chosen = _first_available(hint.sequence, available, default)
        if chosen is not None:
            return ModelChoice(chosen, hint.sequence, f"{hint.reason}: {sequence_label(hint.sequence)}")
        return ModelChoice(default, fallback, f"the default model: {hint.reason}, but no such model is loaded here",
                           _mismatch(hint, fallback, default))
    if hint.sequence is not None:  # named, but no model family for it (plain T1, T2)
        return ModelChoice(default, fallback, f"the default model ({sequence_label(fallback)})",
                           (f"the input looks like {sequence_label(hint.sequence)} ({hint.reason}); no model here is "
                            f"trained for it, so the {sequence_label(fallback)} model's mask may be wrong; if it is "
                            "contrast-enhanced, choose the t1c sequence",))
    warnings = (f"{hint.reason}; choose the sequence yourself",) if hint.contradictory else ()
    return ModelChoice(default, fallback, f"the default model ({sequence_label(fallback)}): {hint.reason}", warnings)


def _first_available(sequence: str, available: Sequence[str], default: str) -> str | None:
    """The app's ``default`` when it is of ``sequence`` (a server's configured default), else the
    family's first model this app has."""
    family = FAMILIES.get(sequence, ())
    if default in family and default in available:
        return default
    return next((name for name in family if name in available), None)


def _mismatch(hint: SequenceHint, trained_for: str | None, model: str) -> tuple[str, ...]:
    """A warning when the input names a different sequence than the model was trained for."""
    if hint.sequence is None or trained_for is None or hint.sequence == trained_for:
        return ()
    return (f"{model} is a {sequence_label(trained_for)} model but the input looks like "
            f"{sequence_label(hint.sequence)} ({hint.reason}): the mask may be wrong",)


__all__ = ["ModelChoice", "ModelChoiceError", "choose_model"]
