"""How a decoder's failure on corrupt data is reported: as InputError, with one message.

Each format module names the exception types its decoder raises for truncated or corrupt data
(``PILLOW_ERRORS``, ``TIFF_ERRORS``, ``DICOM_ERRORS``, ``NIFTI_ERRORS``) and turns only those
into :func:`corrupt`, so that an error of any other type — a bug in a reader — surfaces as
itself instead of as "corrupt file". :func:`decoding` does that for a block of decoder calls.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from metaseg_viewer.errors import InputError
from metaseg_viewer.io.limits import ACCEPTED_FORMATS

ErrorTypes = tuple[type[Exception], ...]


def corrupt(label: str, fmt: str, reason: object) -> InputError:
    """The InputError for a ``fmt`` file that failed to decode (``reason``: the error, or why)."""
    return InputError(f"{label}: the {fmt} file is truncated or corrupt ({reason}). "
                      f"Accepted: complete {ACCEPTED_FORMATS}.")


@contextmanager
def decoding(label: str, fmt: str, errors: ErrorTypes) -> Iterator[None]:
    """Turn ``errors`` raised inside the block into :func:`corrupt`; InputError passes as is."""
    try:
        yield
    except InputError:
        raise
    except errors as err:
        raise corrupt(label, fmt, err) from err
