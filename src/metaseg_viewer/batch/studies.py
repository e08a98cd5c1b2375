"""What a batch run segments: the studies of a folder tree or of a CSV manifest, and their checksums.

A study is one input ``segment`` reads: a DICOM series folder, a NIfTI file or an image, with its
true mask when one is known. In a folder tree every DICOM series folder is one study and every
other file with an accepted suffix is one, except masks, which are paired with their image by
the rule of every app (:mod:`metaseg_viewer.io.pairing`). A manifest names them itself:
``study_id,path[,truth]``, paths relative to the manifest's folder.
"""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from metaseg_viewer.errors import InputError
from metaseg_viewer.io.detect import HEAD_BYTES, detect
from metaseg_viewer.io.pairing import mask_stem, true_mask_beside
from metaseg_viewer.io.suffixes import MASK_SUFFIXES, suffix_of

MANIFEST_COLUMNS = ("study_id", "path", "truth")
#: A study id names its output folder ``OUT/studies/<id>`` (flat: one study's folder never holds another's).
_ID = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9._\-]*")


@dataclass(frozen=True)
class Study:
    """One input of a batch run. ``path`` and ``truth`` are absolute (workers may run elsewhere
    on the same shared file system); ``truth`` is ``None`` when no true mask is known."""

    study_id: str
    path: str
    truth: str | None = None


def find_studies(source: str | Path, exclude: Path | None = None) -> tuple[list[Study], list[str]]:
    """The studies of a folder tree or a ``.csv`` manifest, in a stable order, and notes on
    what was passed over (files of other types, masks without their image). ``exclude``: a
    folder not to walk (a run's own output folder inside the archive).

    Raises:
        InputError: ``source`` does not exist, holds no study, or the manifest is malformed.
    """
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() == ".csv":
        return read_manifest(path), []
    if not path.is_dir():
        raise InputError(f"{source}: not a folder or a .csv manifest. Accepted: a folder of studies (DICOM series "
                         "folders, NIfTI files, PNG/JPEG/TIFF images) or a CSV with columns study_id,path[,truth]")
    studies, notes = _walk(path.resolve(), None if exclude is None else Path(exclude).resolve())
    if not studies:
        raise InputError(f"{source}: no studies found. Accepted: DICOM series folders, NIfTI files (.nii, .nii.gz) "
                         "and PNG/JPEG/TIFF images anywhere below it, or a CSV manifest")
    return studies, notes


def _walk(root: Path, exclude: Path | None) -> tuple[list[Study], list[str]]:
    studies: list[Study] = []
    taken: set[str] = set()
    ignored: list[Path] = []
    masks: list[Path] = []

    def add(study_path: Path, truth: Path | None) -> None:
        rel = root.name if study_path == root else study_path.relative_to(root).as_posix()
        study_id = safe_id(rel if study_path.is_dir() else rel[: len(rel) - len(suffix_of(rel))])
        while study_id.casefold() in taken:  # a/x.png and a/X.nii.gz: stable because the walk is sorted
            study_id += "_2"
        taken.add(study_id.casefold())  # one folder each, also where file names ignore case
        studies.append(Study(study_id, str(study_path), None if truth is None else str(truth)))

    for folder in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        if any(part.startswith(".") for part in folder.relative_to(root).parts) or (
                exclude is not None and exclude != root and folder.is_relative_to(exclude)):
            continue
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        if any(_is_dicom(p) for p in files):
            add(folder, None)
            continue
        for file in files:
            if not suffix_of(file.name):  # a NRRD is a mask only (3D Slicer's .seg.nrrd)
                (masks if file.name.lower().endswith(MASK_SUFFIXES) else ignored).append(file)
            elif mask_stem(file.relative_to(root).as_posix()) is not None:
                masks.append(file)
            else:
                add(file, true_mask_beside(file))
    notes = []
    if ignored:
        notes.append(f"passed over {len(ignored)} file(s) of other types (e.g. {ignored[0].name})")
    orphans = sorted(set(masks) - {Path(s.truth) for s in studies if s.truth})
    if orphans:
        notes.append(f"passed over {len(orphans)} mask file(s) without their image (e.g. "
                     f"{orphans[0].relative_to(root).as_posix()})")
    return studies, notes


def _is_dicom(path: Path) -> bool:
    """A DICOM file, told by its suffix or, without an accepted suffix, by its content."""
    if path.name.lower().endswith(".dcm"):
        return True
    if suffix_of(path.name):
        return False
    with path.open("rb") as handle:
        return detect(handle.read(HEAD_BYTES)) in ("dicom", "dicom-raw")


def read_manifest(path: Path) -> list[Study]:
    """The studies of a CSV manifest: a header with ``study_id`` and ``path`` (``truth``
    optional, may be blank), one row per study; relative paths are taken from the manifest's
    folder. A study whose file is missing is kept: segmenting it reports the missing file."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = list(csv.DictReader(handle))
            header = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc}); accepted: a UTF-8 CSV with columns "
                         "study_id,path[,truth]") from None
    missing = [c for c in MANIFEST_COLUMNS[:2] if c not in header]
    if not rows or missing:
        raise InputError(f"{path}: " + ("no rows" if not rows else f"missing column(s) {', '.join(missing)}")
                         + "; accepted: a header study_id,path[,truth] and one row per study")
    studies, seen = [], set()
    for line, row in enumerate(rows, start=2):
        study_id, file = (row.get("study_id") or "").strip(), (row.get("path") or "").strip()
        if not study_id or not file:
            raise InputError(f"{path}, line {line}: study_id and path must not be blank")
        try:
            study_id = safe_id(study_id, strict=True)
        except InputError as exc:
            raise InputError(f"{path}, line {line}: {exc}") from None
        if study_id.casefold() in seen:
            raise InputError(f"{path}, line {line}: study_id {study_id!r} appears twice (letter case aside: each "
                             "study's folder must differ also where file names ignore case); each study once")
        seen.add(study_id.casefold())
        truth = (row.get("truth") or "").strip()
        studies.append(Study(study_id, str(_from(path.parent, file)), str(_from(path.parent, truth)) if truth else None))
    return studies


def _from(folder: Path, name: str) -> Path:
    file = Path(name).expanduser()
    return (file if file.is_absolute() else folder / file).resolve()


def safe_id(text: str, strict: bool = False) -> str:
    """``text`` as a study id, which names the study's output folder ``OUT/studies/<id>``: only
    ``A-Za-z0-9._-``, not starting with ``.``. A path found in a folder tree becomes one name
    (``patient/series`` → ``patient__series``, other characters ``_``); with ``strict`` (a
    manifest's own ids) anything else is refused."""
    clean = text if strict else re.sub(r"[^A-Za-z0-9._\-]", "_", text.replace("\\", "/").replace("/", "__")).lstrip(".")
    if not _ID.fullmatch(clean):
        raise InputError(f"study_id {text!r} is not usable as a folder name; accepted: letters, digits, '.', '_' "
                         "and '-', not starting with '.'")
    return clean


def file_sha256(path: str | Path) -> str:
    """sha256 of a file, or of a folder's files (names and bytes, in name order, not recursive):
    what decides whether a study's earlier outputs still belong to its input."""
    digest = hashlib.sha256()
    target = Path(path)
    files = sorted(p for p in target.iterdir() if p.is_file()) if target.is_dir() else [target]
    for file in files:
        if target.is_dir():
            digest.update(file.name.encode() + b"\0")
        with file.open("rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()
