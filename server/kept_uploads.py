"""``METASEG_SAVE_UPLOADS_DIR``: accepted uploads kept for the operator, within a quota and an age.

Only uploads the reader accepted are kept (a file that failed to read is not kept), under
generated names; they are patient data (a DICOM file carries names and identifiers). Keeping
one deletes, oldest first, the kept files past the age limit or beyond the size quota. Only
files named the way this module names them are ever deleted.
"""

from __future__ import annotations

import logging
import re
import threading
import time
import uuid
from pathlib import Path

from metaseg_viewer.io.suffixes import suffix_of

log = logging.getLogger("metaseg.server")
_OURS = re.compile(r"[0-9a-f]{32}(\.[a-z0-9.]+)?")


class UploadArchive:
    def __init__(self, folder: Path, max_bytes: int, max_age_s: float) -> None:
        self.folder, self.max_bytes, self.max_age_s = folder, max_bytes, max_age_s
        self._lock = threading.Lock()  # uploads are kept from several reader threads
        folder.mkdir(parents=True, exist_ok=True)
        self.prune()

    def keep(self, data: bytes, file_name: str) -> Path | None:
        """Write ``data`` under a generated name (the upload's suffix kept), then prune; an
        upload larger than the whole quota is not kept (``None``)."""
        if len(data) > self.max_bytes:
            log.warning("upload of %d bytes not kept: larger than the METASEG_SAVE_UPLOADS_MAX_MB quota", len(data))
            return None
        path = self.folder / f"{uuid.uuid4().hex}{suffix_of(file_name) or '.bin'}"
        with self._lock:
            path.write_bytes(data)
            self.prune()
        return path

    def prune(self) -> None:
        """Delete our files older than the age limit, then the oldest until the rest fit the quota."""
        now, files = time.time(), []
        for path in self.folder.iterdir():
            if _OURS.fullmatch(path.name) and path.is_file():
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                files.append((stat.st_mtime, stat.st_size, path))
        total = sum(size for _, size, _ in files)
        for mtime, size, path in sorted(files):
            if now - mtime <= self.max_age_s and total <= self.max_bytes:
                break
            path.unlink(missing_ok=True)
            total -= size
