"""Real DICOM series for tests: one patient's real LGG FLAIR slices stacked with plausible geometry.

Files are written by pydicom (tests/factories.py), never by the code under test. File names and
instance numbers run in another order than the slice positions, so a reader or writer that trusts
file order instead of geometry gives the wrong slices.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.uid import generate_uid

from factories import dicom_dataset, save_dicom

PATIENT = "TCGA_CS_4942_19970222"
SLICES = (7, 8, 9, 12, 14, 15)  # slices without lesion and with
#: Identifiers no output, log line or file name may repeat.
PATIENT_NAME, PATIENT_ID, BIRTH_DATE = "Quixote^Dulcinea", "PID-73311-SECRET", "19381129"


@dataclass(frozen=True)
class Series:
    folder: Path
    series_uid: str
    sop_uids: tuple[str, ...]  # by slice position, most inferior (along the normal) first
    positions: np.ndarray  # (n, 3) ImagePositionPatient, same order
    truth: np.ndarray  # (n, H, W) bool, same order, stored pixel order


def oblique_orientation(degrees: float = 20.0) -> tuple[float, ...]:
    """Row and column cosines tilted about two axes (an oblique axial acquisition)."""
    a, b = np.radians(degrees), np.radians(degrees / 2)
    row = np.array([np.cos(a), np.sin(a), 0.0])
    col = np.array([-np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), np.sin(b)])
    return tuple(float(v) for v in (*row, *col))


def write_series(shared_data: Path, folder: Path, *, oblique: bool = False, series_uid: str | None = None,
                 slices: tuple[int, ...] = SLICES) -> Series:
    """Write the slices as single-frame MR files; oblique: tilted plane and 0.8 x 1.1 mm pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    orientation = oblique_orientation() if oblique else (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    spacing = (0.8, 1.1) if oblique else (0.94, 0.94)
    normal = np.cross(orientation[:3], orientation[3:])
    origin = np.array([-120.0, -110.0, -40.0])
    series_uid = series_uid or generate_uid()
    frame_of_reference, study = generate_uid(), generate_uid()
    sops, positions, truth = [], [], []
    n = len(slices)
    names = [*range(1, n, 2), *range(0, n, 2)]  # a file-name order that is not the slice order
    for k, number in enumerate(slices):
        base = shared_data / "lgg_flair" / PATIENT
        pixels = np.asarray(Image.open(base / "images" / f"{PATIENT}_{number}.png")).astype(np.uint16) * 4
        mask = np.asarray(Image.open(base / "masks" / f"{PATIENT}_{number}.png")) > 0
        position = origin + normal * 3.3 * k
        ds = dicom_dataset(pixels, position=tuple(position), orientation=orientation, pixel_spacing=spacing,
                           instance=n - k, series_uid=series_uid, FrameOfReferenceUID=frame_of_reference,
                           PatientName=PATIENT_NAME, PatientID=PATIENT_ID, PatientBirthDate=BIRTH_DATE,
                           PatientSex="F", StudyDate="20010302", StudyTime="101010", AccessionNumber="A1",
                           StudyID="1", SeriesDescription="AX FLAIR", SliceThickness=3.3)
        ds.StudyInstanceUID = study
        save_dicom(ds, folder / f"IM{names[k]:04d}.dcm")
        sops.append(str(ds.SOPInstanceUID))
        positions.append(position)
        truth.append(mask)
    return Series(folder, series_uid, tuple(sops), np.array(positions), np.stack(truth))
