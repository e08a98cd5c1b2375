"""MRI sequences: what a model was trained for (:class:`ModelPurpose`, in its card) and what an
input says it is (:func:`sequence_hint`, from DICOM tags and file names).

A model trained on one sequence fails quietly on another (the FLAIR models find nothing on a
contrast-enhanced T1), so every app shows which sequence family it used and why. The hint is read
only from what the file states — words in DICOM ``SeriesDescription`` / ``ProtocolName``, the
``ContrastBolusAgent`` tag, the file name — never from the pixels; where the words disagree or say
nothing, the hint says so and the choice stays the user's.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from pathlib import PurePath
from typing import Any

from metaseg_viewer.errors import CheckpointError

#: Sequences a shipped model family exists for: name → label shown to users.
MODEL_SEQUENCES: dict[str, str] = {"flair": "FLAIR", "t1c": "contrast-enhanced T1 (T1c)"}
#: Sequences an input can be recognised as, beyond :data:`MODEL_SEQUENCES` (no model for them).
OTHER_SEQUENCES: dict[str, str] = {"t1": "T1 without a contrast marker", "t2": "T2-weighted"}


def sequence_label(sequence: str | None) -> str:
    if sequence is None:
        return "unknown sequence"
    return MODEL_SEQUENCES.get(sequence) or OTHER_SEQUENCES.get(sequence, sequence)


@dataclass(frozen=True)
class ModelPurpose:
    """What a model is for, written in its card: the sequence it reads, the target it outlines,
    the planes and data set it was trained on, and that data set's licence."""

    sequence: str
    target: str
    planes: tuple[str, ...]
    dataset: str
    licence: str

    def __post_init__(self) -> None:
        if self.sequence not in MODEL_SEQUENCES:
            raise CheckpointError(f"model purpose: sequence must be one of {list(MODEL_SEQUENCES)}, got {self.sequence!r}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "planes": list(self.planes)}

    @classmethod
    def from_dict(cls, data: Any) -> ModelPurpose:
        if not isinstance(data, dict):
            raise CheckpointError("a model card's purpose must be a JSON object")
        fields = ("sequence", "target", "planes", "dataset", "licence")
        unknown = sorted(set(data) - set(fields))
        missing = [f for f in fields if f not in data]
        if unknown or missing:
            raise CheckpointError(f"model card purpose: unknown keys {unknown}, missing keys {missing}; "
                                  f"accepted keys: {list(fields)}")
        planes = data["planes"]
        if not isinstance(planes, list) or not all(isinstance(p, str) for p in planes):
            raise CheckpointError("model card purpose: planes must be a list of names such as 'axial'")
        return cls(sequence=str(data["sequence"]), target=str(data["target"]), planes=tuple(planes),
                   dataset=str(data["dataset"]), licence=str(data["licence"]))


#: Words that name a sequence. Text is lower-cased and split at anything but letters, digits and
#: ``+``; a cue matches whole tokens or a run of neighbouring tokens (``t1 post``, ``ce gd``).
_CUES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("flair", re.compile(r"(?<![a-z0-9])(flair|t2 ?flair|dark ?fluid)(?![a-z0-9])")),
    ("t1c", re.compile(r"(?<![a-z0-9])(t1 ?(c|ce|gd|km|post|c\+|\+c|\+gd|contrast)|t1w? ?ce|t1ce|t1gd|t1post|"
                       r"ce ?gd|ce ?gadolinium|post ?(contrast|gad|gd)?|gad|gado|gadolinium|gd|contrast|mprage ?post|"
                       r"post ?mprage)(?![a-z0-9])")),
    ("t2", re.compile(r"(?<![a-z0-9])(t2|t2w|t2 ?tse|t2 ?fse)(?![a-z0-9])")),
    ("t1", re.compile(r"(?<![a-z0-9])(t1|t1w|mprage|spgr|t1 ?tse|t1 ?se)(?![a-z0-9])")),
)
#: Cues that a stronger one in the same text explains: a FLAIR is T2-weighted ("t2_tirm_dark-fluid",
#: "T2 FLAIR"), and a T1 with a contrast word is a T1c ("T1 SE ... GAD").
_EXPLAINED = {"flair": "t2", "t1c": "t1"}


def _normalise(text: str) -> str:
    return " ".join(t for t in re.split(r"[^a-z0-9+]+", text.lower()) if t)


def _cues_in(text: str) -> dict[str, str]:
    """Sequence → the first words of ``text`` that name it."""
    norm = _normalise(text)
    found = {seq: m.group(0) for seq, pattern in _CUES if (m := pattern.search(norm))}
    for strong, weak in _EXPLAINED.items():
        if strong in found:
            found.pop(weak, None)
    return found


@dataclass(frozen=True)
class SequenceHint:
    """What an input says about its sequence. ``sequence`` is set only when every cue agrees;
    ``reason`` is the sentence the apps show; ``cues`` lists (source, words, sequence)."""

    sequence: str | None
    reason: str
    cues: tuple[tuple[str, str, str], ...] = ()

    @property
    def contradictory(self) -> bool:
        return len({seq for _, _, seq in self.cues}) > 1

    def to_dict(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "reason": self.reason,
                "cues": [{"source": s, "words": w, "sequence": q} for s, w, q in self.cues]}


def sequence_hint(name: str = "", metadata: dict[str, str] | None = None) -> SequenceHint:
    """The sequence a file states through its DICOM tags (``metadata`` as the readers fill it:
    ``series_description``, ``protocol_name``, ``contrast_agent``) and its file ``name``."""
    metadata = metadata or {}
    sources = [("DICOM SeriesDescription", metadata.get("series_description", "")),
               ("DICOM ProtocolName", metadata.get("protocol_name", "")),
               ("file name", _stem(name))]
    cues: list[tuple[str, str, str]] = []
    for source, text in sources:
        for seq, words in _cues_in(text).items():
            cues.append((source, words, seq))
    agent = metadata.get("contrast_agent", "").strip()
    if agent:
        named = {seq for _, _, seq in cues}
        if "flair" not in named:  # a post-contrast FLAIR is still a FLAIR
            cues = [c for c in cues if c[2] != "t1"]
            cues.append(("DICOM ContrastBolusAgent", agent, "t1c"))
    sequences = sorted({seq for _, _, seq in cues})
    said = "; ".join(f"{source} says {words!r}" for source, words, _ in cues)
    if not cues:
        return SequenceHint(None, "the input does not name its sequence (no DICOM description or file-name word such as "
                                  "'flair', 't1c', 't1ce', 'post', 'gad')")
    if len(sequences) > 1:
        return SequenceHint(None, f"the input's hints contradict each other ({said}): "
                                  f"{' vs '.join(sequence_label(s) for s in sequences)}", tuple(cues))
    return SequenceHint(sequences[0], said, tuple(cues))


def _stem(name: str) -> str:
    """The file name without folders and image/volume suffixes (``.nii.gz`` included)."""
    base = PurePath(str(name).replace("\\", "/")).name
    return re.sub(r"(\.(nii|gz|dcm|png|jpe?g|tiff?|zip))+$", "", base, flags=re.IGNORECASE)


__all__ = ["MODEL_SEQUENCES", "OTHER_SEQUENCES", "ModelPurpose", "SequenceHint", "sequence_hint", "sequence_label"]
