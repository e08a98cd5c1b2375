"""Read brain MRI from the files users hold into one :class:`~metaseg_viewer.scan.Scan`, and
write masks back.

Only re-exports: detection by content in :mod:`.detect`, limits in :mod:`.limits`, colour in
:mod:`.channels`, the format readers in :mod:`.raster`, :mod:`.dicom` and :mod:`.nifti` (the
last two imported only when needed, so importing this package loads no pydicom or nibabel),
dispatch in :mod:`.read`, writers in :mod:`.writers`, accepted file suffixes in :mod:`.suffixes`.
"""

from metaseg_viewer.io.channels import ColorMode, to_single_channel
from metaseg_viewer.io.limits import ACCEPTED_FORMATS, ReadLimits
from metaseg_viewer.io.read import Source, read_scan, read_scans
from metaseg_viewer.io.suffixes import MASK_SUFFIXES, SUFFIXES, strip_suffix, suffix_of
from metaseg_viewer.io.writers import (
    encode_mask_nifti,
    encode_mask_png,
    encode_nifti,
    write_mask_nifti,
    write_mask_png,
    write_nifti,
)

__all__ = [
    "ACCEPTED_FORMATS",
    "MASK_SUFFIXES",
    "SUFFIXES",
    "ColorMode",
    "ReadLimits",
    "Source",
    "encode_mask_nifti",
    "encode_mask_png",
    "encode_nifti",
    "read_scan",
    "read_scans",
    "strip_suffix",
    "suffix_of",
    "to_single_channel",
    "write_mask_nifti",
    "write_mask_png",
    "write_nifti",
]
