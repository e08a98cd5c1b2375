"""Name a file's format from its first bytes, never from its name.

Uploads and downloads lose or change extensions, so every reader dispatches on :func:`detect`
of the first :data:`HEAD_BYTES` bytes.
"""

from __future__ import annotations

import struct
import zlib

#: How many leading bytes :func:`detect` needs (NIfTI-2 headers are 540 bytes; gzip needs more).
HEAD_BYTES = 4096


def detect(head: bytes) -> str | None:
    """Name the format from a file's first bytes; ``None`` when it is none we know.

    Names: ``png``, ``jpeg``, ``tiff``, ``dicom`` (with preamble), ``dicom-raw`` (a guess that
    the DICOM reader confirms), ``nifti``, ``nifti-gz``, ``nifti-pair``, ``gzip``, ``zip``, ``nrrd``.
    """
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head[128:132] == b"DICM":
        return "dicom"
    nifti = _nifti_kind(head)
    if nifti:
        return nifti
    if head.startswith(b"\x1f\x8b"):
        try:
            inner = zlib.decompressobj(zlib.MAX_WBITS | 16).decompress(head, 600)
        except zlib.error:
            inner = b""
        return "nifti-gz" if _nifti_kind(inner) == "nifti" else "gzip"
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head.startswith(b"NRRD000"):
        return "nrrd"
    # A DICOM file without preamble starts with a group 0x0002 or 0x0008 tag (little or big
    # endian), which no text file does; the DICOM reader then also demands pixel data.
    if len(head) >= 8 and (head[:2] in (b"\x02\x00", b"\x08\x00") or head[:2] == b"\x00\x08"):
        return "dicom-raw"
    return None


def _nifti_kind(head: bytes) -> str | None:
    if len(head) < 12:
        return None
    for order in "<>":
        size = struct.unpack(order + "i", head[:4])[0]
        if size == 348 and len(head) < 348:
            return "nifti"  # a truncated header; the reader says so
        if size == 348:
            magic = head[344:348]
            if magic == b"n+1\x00":
                return "nifti"
            if magic == b"ni1\x00":
                return "nifti-pair"
        if size == 540 and head[4:12] == b"n+2\x00\r\n\x1a\n":
            return "nifti"
        if size == 540 and head[4:8] == b"ni2\x00":
            return "nifti-pair"
    return None
