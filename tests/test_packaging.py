"""The napari manifest as shipped: a real file inside the plugin package (npe2 finds it through
the ``napari.manifest`` entry point), and the copy the repository layout keeps at its root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGED = REPO / "plugins" / "metaseg_napari" / "napari.yaml"


def test_root_manifest_is_an_identical_copy_of_the_packaged_one() -> None:
    assert PACKAGED.is_file() and not PACKAGED.is_symlink()  # a symlink breaks on Windows checkouts
    assert (REPO / "napari.yaml").read_bytes() == PACKAGED.read_bytes(), \
        "edit plugins/metaseg_napari/napari.yaml, then copy it to the repository root"


def test_installed_plugin_manifest_validates_with_its_imports() -> None:
    pytest.importorskip("npe2", reason="the napari extra is not installed (pip install -e '.[napari]')")
    npe2 = Path(sys.executable).with_name("npe2")
    done = subprocess.run([str(npe2), "validate", "metaseg-viewer", "--imports"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "valid" in done.stdout, done.stdout + done.stderr
