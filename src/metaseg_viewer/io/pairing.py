"""Which file is the true mask of which image, by name: the one rule of every app.

Three namings are understood: ``X_mask.*`` beside ``X.*`` (the LGG kaggle_3m layout),
``X_truth.*`` beside ``X.*`` (what ``metaseg sample`` writes) and ``masks/X.*`` beside
``images/X.*`` (the training layout). The Streamlit page pairs
uploads with :func:`mask_stem`, the napari reader and ``metaseg batch`` find a mask on disk with
:func:`true_mask_beside`.
"""

from __future__ import annotations

from pathlib import Path

from metaseg_viewer.io.suffixes import MASK_SUFFIXES, SUFFIXES, strip_suffix

MASK_TAGS = ("_mask", "_truth")  # X_mask.* and X_truth.* are the true mask of X.*


def mask_stem(name: str) -> str | None:
    """The image stem a mask named ``name`` belongs to, or ``None`` when ``name`` is an image:
    ``a/X_mask.tif`` and ``X_truth.png`` → ``X``; ``masks/X.png`` → ``X`` (the folder must be
    part of ``name``)."""
    parts = name.replace("\\", "/").split("/")
    stem = strip_suffix(parts[-1])
    for tag in MASK_TAGS:
        if stem.lower().endswith(tag):
            return stem[: -len(tag)]
    return stem if len(parts) > 1 and parts[-2].lower() == "masks" else None


def true_mask_beside(path: Path) -> Path | None:
    """The mask file on disk that belongs to image ``path`` in any of the namings above, if there is one."""
    if path.is_dir():
        return None
    stem = strip_suffix(path.name)
    suffixes = dict.fromkeys((path.name[len(stem):], *SUFFIXES, ".seg.nrrd", *MASK_SUFFIXES))  # its own first
    candidates = [path.with_name(f"{stem}{tag}{suffix}") for tag in MASK_TAGS for suffix in suffixes]
    if path.parent.name.lower() == "images":
        masks = path.parent.parent / "masks"
        candidates += [masks / path.name] + [masks / f"{stem}{s}" for s in SUFFIXES]
    return next((c for c in candidates if c.is_file()), None)
