"""DICOM SEG: a predicted mask as a Segmentation object that PACS viewers and 3D Slicer open on
the source series, and a SEG read back as a true mask (laid on the image by geometry).

Written with highdicom, binary, one segment ``lesion`` coded as SNOMED CT 49755003
"Morphologically Abnormal Structure" (category) / 52988006 "Lesion" (type), anatomic region
12738006 "Brain". Why these: the models outline FLAIR abnormality of lower-grade glioma, which
holds tumour and oedema alike, so "Lesion" says what is outlined without claiming a histology
(a "Neoplasm" code would); both come from the DICOM context groups for segmentation categories
and types (CID 7150 / CID 7151), which viewers map to names and colours.

Frames: one per source slice that holds lesion (all slices with ``include_empty``), each taking
its source instance's geometry (position, orientation, pixel spacing) and referencing it; mask
slice ``z`` belongs to ``scan.dicom.frames[z]``, because the reader keeps stored pixel order.
The SEG copies the patient and study modules of the source, as the standard requires, and
nothing else of it; the algorithm is identified by the model's name and version (the sha256
prefix of its weights), the software by MetaSeg Viewer's version.
"""

from __future__ import annotations

from io import BytesIO
from typing import Literal

import numpy as np
import pydicom
from pydicom.dataset import Dataset

from metaseg_viewer.errors import InputError
from metaseg_viewer.io.align import LPS_TO_RAS, onto_scan
from metaseg_viewer.io.decoding import decoding
from metaseg_viewer.io.dicom import DICOM_ERRORS
from metaseg_viewer.io.limits import ReadLimits, check_dims
from metaseg_viewer.scan import Scan

#: SOP classes of segmentations this reader takes: Segmentation Storage and Label Map Segmentation Storage.
SEG_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")
MANUFACTURER = "MetaSeg Viewer"
SEGMENT_LABEL = "lesion"
AlgorithmType = Literal["automatic", "semiautomatic", "manual"]
#: How the segment was made, as DICOM's Segment Algorithm Type says it.
ALGORITHM_TYPES: tuple[str, ...] = ("automatic", "semiautomatic", "manual")
# Type 2 attributes highdicom copies from the source; an anonymised series may lack them.
_TYPE2 = ("PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID",
          "StudyDate", "StudyTime", "ReferringPhysicianName")
_NEEDED = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID",
           "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")


def seg_bytes(mask: np.ndarray, scan: Scan, model_name: str, model_version: str, *,
              include_empty: bool = False, algorithm_type: AlgorithmType = "automatic") -> bytes:
    """A binary DICOM SEG of the ``(Z, H, W)`` ``mask`` of a scan read from a DICOM series.

    Only slices with lesion get a frame unless ``include_empty``; a mask without lesion still
    gives a valid SEG (highdicom keeps one empty frame). ``algorithm_type``: ``automatic`` for a
    model's mask as it came, ``semiautomatic`` for a model's mask edited by hand (both name the
    model), ``manual`` for a mask drawn by hand (no algorithm is named; ``model_name`` and
    ``model_version`` are ignored). Raises InputError for a scan that did not come from
    single-frame DICOM images with position, orientation and frame of reference.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    from metaseg_viewer import __version__

    sources = _source_images(scan)
    mask = np.asarray(mask)
    if mask.shape != scan.shape:
        raise InputError(f"mask shape {mask.shape} does not match the scan's {scan.shape}")
    if algorithm_type not in ALGORITHM_TYPES:
        raise InputError(f"algorithm type {algorithm_type!r} unknown; accepted: {', '.join(ALGORITHM_TYPES)}")
    manual = algorithm_type == "manual"
    algorithm = None if manual else hd.AlgorithmIdentificationSequence(
        name=model_name, family=codes.cid7162.ArtificialIntelligence, version=model_version or "unknown")
    segment = hd.seg.SegmentDescription(
        segment_number=1, segment_label=SEGMENT_LABEL,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues[algorithm_type.upper()],
        algorithm_identification=algorithm, anatomic_regions=[codes.SCT.Brain])
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=(mask != 0).astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=[segment],
        series_instance_uid=generate_uid(), series_number=9901, sop_instance_uid=generate_uid(), instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MANUFACTURER if manual else f"{MANUFACTURER} {model_name}",
        software_versions=__version__, device_serial_number="none", series_description="MetaSeg lesion",
        omit_empty_frames=not include_empty)
    buffer = BytesIO()
    seg.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _source_images(scan: Scan) -> list[Dataset]:
    """The header of each slice's source instance, in slice order, each with the attributes
    highdicom needs (a shallow copy where a type 2 attribute is filled in empty)."""
    if scan.dicom is None or scan.affine is None:
        raise InputError(f"{scan.source}: DICOM SEG output needs a DICOM series input with slice positions and "
                         "orientation; accepted for other inputs: format nifti, nrrd or png (one slice)")
    headers, frames = scan.dicom.headers, scan.dicom.frames
    if any(number != 1 for _, number in frames):
        raise InputError(f"{scan.source}: DICOM SEG output is written for series of single-frame images; this "
                         "input is a multi-frame DICOM file. Accepted for it: format nifti or nrrd")
    sources = []
    for index, _ in frames:
        header = headers[index]
        missing = [k for k in _NEEDED if k not in header]
        if missing:
            raise InputError(f"{scan.source}: the DICOM images lack {', '.join(missing)}, which a DICOM SEG must "
                             "copy or reference. Accepted for such input: format nifti or nrrd")
        if any(k not in header for k in _TYPE2):
            header = Dataset({tag: header.get_item(tag) for tag in header.keys()})
            for keyword in _TYPE2:
                if keyword not in header:
                    setattr(header, keyword, None)
        sources.append(header)
    return sources


def is_seg(header: object) -> bool:
    """Whether a pydicom dataset is a segmentation (by SOP class, never by name)."""
    return str(getattr(header, "SOPClassUID", "")) in SEG_CLASSES


def read_seg_mask(data: bytes, scan: Scan, label: str, limits: ReadLimits = ReadLimits()) -> np.ndarray:
    """A DICOM SEG as a bool mask of ``scan.shape``, each frame placed by its position and
    orientation (never by frame order). Every segment counts as lesion; a fractional SEG's
    pixels count from half their maximum value.

    A SEG that references another series than ``scan``'s is refused, naming both series.
    """
    with decoding(label, "DICOM SEG", DICOM_ERRORS):
        ds = pydicom.dcmread(BytesIO(data), force=True)
        referenced = sorted({str(item.get("SeriesInstanceUID", "")) for item in ds.get("ReferencedSeriesSequence", [])})
        image_series = scan.metadata.get("series_uid", "") if scan.dicom is not None else ""
        if image_series not in referenced:
            named = f"series {image_series}" if image_series else "not a DICOM series"
            raise InputError(f"{label}: this DICOM SEG segments series {', '.join(referenced) or '(none named)'}, "
                             f"but the image is {named}. Accepted: the SEG made on the image's own series")
        if not all(k in ds for k in ("Rows", "Columns", "PixelData")):
            raise InputError(f"{label}: the DICOM SEG holds no frames (Rows, Columns or PixelData missing). "
                             "Accepted: a complete DICOM SEG")
        rows, columns = int(ds.Rows), int(ds.Columns)
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        check_dims(label, n_frames, rows, columns, limits)
        frames = ds.pixel_array.reshape(n_frames, rows, columns)
        if str(ds.get("SegmentationType", "")) == "FRACTIONAL":
            frames = frames >= max(1, int(ds.get("MaximumFractionalValue", 255))) / 2
        shared = ds.get("SharedFunctionalGroupsSequence", [Dataset()])[0]
        per_frame = ds.get("PerFrameFunctionalGroupsSequence", [])
        out = np.zeros(scan.shape, bool)
        for index in range(n_frames):
            item = per_frame[index] if index < len(per_frame) else Dataset()
            affine = _frame_affine(item, shared, label)
            onto_scan(frames[index][None], affine, scan, label, out)
    return out


def _frame_affine(item: Dataset, shared: Dataset, label: str) -> np.ndarray:
    """The RAS+ affine of one SEG frame's ``(0, row, column)`` indices from its functional groups."""
    def group(sequence: str, keyword: str) -> list[float] | None:
        for source in (item, shared):
            inner = source.get(sequence)
            if inner and keyword in inner[0]:
                return [float(v) for v in inner[0].get(keyword)]
        return None

    position = group("PlanePositionSequence", "ImagePositionPatient")
    orientation = group("PlaneOrientationSequence", "ImageOrientationPatient")
    spacing = group("PixelMeasuresSequence", "PixelSpacing")
    if position is None or orientation is None or spacing is None:
        raise InputError(f"{label}: the DICOM SEG frames carry no position, orientation or pixel spacing, so "
                         "they cannot be laid on the image. Accepted: a SEG with plane position and "
                         "orientation per frame")
    row_cos, col_cos = np.array(orientation[:3]), np.array(orientation[3:])
    affine = np.eye(4)
    affine[:3, 0] = LPS_TO_RAS @ np.cross(row_cos, col_cos)
    affine[:3, 1] = LPS_TO_RAS @ col_cos * spacing[0]
    affine[:3, 2] = LPS_TO_RAS @ row_cos * spacing[1]
    affine[:3, 3] = LPS_TO_RAS @ np.array(position)
    return affine
