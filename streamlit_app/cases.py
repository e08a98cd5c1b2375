"""What the page segments: uploaded files or a built-in sample, each read once by the core."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image

from metaseg_viewer.errors import InputError
from metaseg_viewer.evaluation import read_true_mask
from metaseg_viewer.io import ReadLimits, encode_nifti, read_scan, read_scans
from metaseg_viewer.io.pairing import mask_stem
from metaseg_viewer.samples import make_slice, make_volume
from metaseg_viewer.scan import Scan
from metaseg_viewer.segment import output_stem


@dataclass(frozen=True)
class Case:
    """One image or volume: its scan, the bytes a server would read, and a true mask if known."""

    label: str
    file_name: str
    data: bytes
    scan: Scan
    truth: np.ndarray | None = None  # bool (Z, H, W): the sample's own, or a mask uploaded beside the image
    truth_name: str = ""

    @property
    def key(self) -> str:
        """Identifies the content, so results survive reruns and re-uploads of the same file."""
        return hashlib.sha1(self.data).hexdigest()


def cases_from_uploads(files: list[tuple[str, bytes]], limits: ReadLimits = ReadLimits()) -> tuple[list[Case], list[str]]:
    """Readable uploads as cases (a DICOM series' files as one), and one message per bad file.
    A mask uploaded with its image (named as :func:`metaseg_viewer.io.pairing.mask_stem` pairs them) becomes that case's true mask, not a case."""
    masks = {stem: (name, data) for name, data in files if (stem := mask_stem(name)) is not None}
    images = [(name, data) for name, data in files if mask_stem(name) is None]
    cases: list[Case] = []
    problems: list[str] = []
    by_name = dict(images)
    for label, result in read_scans(images, limits=limits) if images else []:
        if isinstance(result, InputError):
            problems.append(str(result))
            continue
        if label in by_name:
            case = Case(label, label, by_name[label], result)
        else:  # a series of several files: a server gets it as one NIfTI in the same voxel order
            plain = Scan(pixels=result.pixels, spacing=result.spacing, is_volume=True)
            case = Case(label, "series.nii.gz", encode_nifti(result.pixels, plain), result)
        paired = masks.pop(output_stem(label), None)
        if paired is not None:
            try:
                truth = read_true_mask(paired[1], result, name=paired[0])
                case = Case(case.label, case.file_name, case.data, case.scan, truth, paired[0])
            except InputError as exc:
                problems.append(str(exc))
        cases.append(case)
    for stem, (name, _) in masks.items():
        problems.append(f"{name} is named as the mask of an image {stem}.*, but no such image was uploaded with it; "
                        "upload the image and its mask together")
    return cases, problems


#: The built-in samples the page offers: name shown → (kind, sequence) of :func:`sample_case`.
SAMPLES: dict[str, tuple[str, str]] = {"Sample slice": ("slice", "flair"), "Sample volume": ("volume", "flair"),
                                       "Sample T1c slice": ("slice", "t1c")}


def sample_case(kind: str, sequence: str = "flair") -> Case:
    """The core's synthetic FLAIR-like (or T1c-like) slice or volume with its true mask (not
    anatomy). The label names the sequence, so the page's automatic model choice finds it there."""
    tag = "" if sequence == "flair" else f"_{sequence}"
    if kind == "slice":
        sample = make_slice(256, seed=0, sequence=sequence)
        buffer = io.BytesIO()
        Image.fromarray(sample.image).save(buffer, format="PNG")
        data, name, truth = buffer.getvalue(), f"sample{tag}_slice.png", sample.mask[None]
    elif kind == "volume":
        sample = make_volume(24, 256, seed=0, sequence=sequence)
        plain = Scan(pixels=sample.image, spacing=sample.spacing, is_volume=True)
        data, name, truth = encode_nifti(sample.image, plain), f"sample{tag}_volume.nii.gz", sample.mask
    else:
        raise ValueError(f"unknown sample {kind!r}; use 'slice' or 'volume'")
    scan = read_scan(data, name=name)
    label = f"Built-in sample {kind} (synthetic {'FLAIR' if sequence == 'flair' else sequence.capitalize()})"
    return Case(label, name, data, scan, truth.astype(bool), "the sample's synthetic true mask")
