"""Every hostile input of :mod:`hostile_corpus` through the doors that take files: the core
reader, the CLI (a real subprocess), the Streamlit page (AppTest) and the napari reader.

Refused cases must give one clear message naming the file; warned cases must be segmented with
the warning visible; no door may crash, print a traceback or stop at a bad file. The server's
doors are in test_hostile_api.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hostile_corpus import CASES, Case, write_corpus

from metaseg_viewer.errors import InputError
from metaseg_viewer.io import read_scan

LIGHT = [c for c in CASES if not c.heavy]
REFUSED = [c for c in LIGHT if c.expect == "refuse"]
WARNED = [c for c in LIGHT if c.expect == "warn"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    write_corpus(folder)
    return folder


@pytest.mark.parametrize("case", LIGHT, ids=lambda c: c.name)
def test_core_reader_refuses_warns_or_reads_as_the_case_says(corpus: Path, case: Case) -> None:
    path = corpus / case.name
    if case.expect == "refuse":
        with pytest.raises(InputError) as caught:
            read_scan(path)
        message = str(caught.value)
        assert message.startswith(str(path)) and case.says in message.lower()
        assert "\n" not in message
        return
    scan = read_scan(path)
    assert scan.pixels.size > 0
    if case.expect == "warn":
        assert any(case.says in w.lower() for w in scan.warnings), scan.warnings
    else:
        assert scan.warnings == ()


def test_the_same_lgg_bytes_give_the_same_channel_under_any_name(corpus: Path) -> None:
    data = (corpus / "lgg_layout_renamed.tif").read_bytes()
    as_lgg = read_scan(data, name="TCGA_CS_4941_19960909_12.tif")
    renamed = read_scan(data, name="upload.tif")
    assert np.array_equal(as_lgg.pixels, renamed.pixels)
    assert "FLAIR channel (1)" in renamed.description and "layout" in renamed.description
    assert "luminance" in read_scan(data, name="upload.tif", color="gray").description


def test_real_lgg_tiff_is_flair_under_any_name(shared_data: Path) -> None:
    image = next((shared_data / "lgg_kaggle3m_sample" / "kaggle_3m").glob("*/*_12.tif"))
    data = image.read_bytes()
    named, anonymous = read_scan(data, name=image.name), read_scan(data, name="scan.tif")
    assert np.array_equal(named.pixels, anonymous.pixels)
    from tifffile import imread

    assert np.array_equal(anonymous.pixels[0], imread(image)[..., 1])


@pytest.fixture(scope="module")
def cli_run(corpus: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[int, str, str, Path]:
    """One ``metaseg segment`` process over the whole corpus (a tiny model keeps it quick)."""
    out = tmp_path_factory.mktemp("cli_out")
    files = sorted(str(p) for p in corpus.iterdir())
    done = subprocess.run([sys.executable, "-m", "metaseg_viewer.cli", "segment", *files, "--model",
                           str(tiny_checkpoint), "--out", str(out)], capture_output=True, text=True, timeout=600)
    return done.returncode, done.stdout, done.stderr, out


def test_cli_never_prints_a_traceback_and_fails_with_status_1(cli_run: tuple[int, str, str, Path]) -> None:
    code, stdout, stderr, _ = cli_run
    assert code == 1
    assert "Traceback" not in stdout + stderr
    assert "Warning" not in stderr  # no library warnings (RuntimeWarning, tifffile, libpng) leak


@pytest.mark.parametrize("case", LIGHT, ids=lambda c: c.name)
def test_cli_reports_each_file_on_its_own(cli_run: tuple[int, str, str, Path], corpus: Path, case: Case) -> None:
    _, stdout, stderr, out = cli_run
    path = str(corpus / case.name)
    errors = [line for line in stderr.splitlines() if line.startswith(f"error: {path}:")]
    warnings = [line for line in stderr.splitlines() if line.startswith(f"warning: {path}:")]
    done = [line for line in stdout.splitlines() if line.startswith(f"{path}:") and "lesion(s) ->" in line]
    stem = case.name.split(".")[0]
    if case.expect == "refuse":
        assert len(errors) == 1 and case.says in errors[0].lower() and not done
        assert not list(out.glob(f"{stem}_*"))
        return
    assert not errors and len(done) == 1
    assert list(out.glob(f"{stem}_mask.*")) and (out / f"{stem}_lesions.csv").is_file()
    if case.expect == "warn":
        assert any(case.says in w.lower() for w in warnings), warnings
    else:
        assert not warnings


def test_cli_deidentified_names_do_not_repeat_the_input_name(tmp_path: Path, tiny_checkpoint: Path) -> None:
    from factories import png_bytes

    source = tmp_path / "DOE_JOHN_19700101.png"
    source.write_bytes(png_bytes(np.full((32, 32), 100, np.uint8)))
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, "-m", "metaseg_viewer.cli", "segment", str(source), "--model",
                           str(tiny_checkpoint), "--out", str(out), "--deidentify-names"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 3 and all(n.startswith("scan-") and "DOE" not in n for n in names)


streamlit = pytest.importorskip("streamlit", reason="the web extra is not installed")
APP = str(Path(__file__).resolve().parents[1] / "streamlit_app" / "app.py")


def test_streamlit_refuses_every_bad_upload_with_its_own_message(corpus: Path) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    files = [(c.name, (corpus / c.name).read_bytes(), "application/octet-stream") for c in REFUSED]
    at.file_uploader(key="uploads").set_value(files).run()
    assert not at.exception
    shown = [e.value for e in at.error]
    for case in REFUSED:
        matching = [m for m in shown if m.startswith(case.name) and case.says in m.lower()]
        assert len(matching) == 1, (case.name, shown)


@pytest.mark.parametrize("case", WARNED, ids=lambda c: c.name)
def test_streamlit_shows_the_warning_beside_the_result(corpus: Path, case: Case) -> None:
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=600)
    at.run()
    at.file_uploader(key="uploads").set_value((case.name, (corpus / case.name).read_bytes(), "image/png")).run()
    assert not at.exception and not at.error
    assert any(case.says in w.value.lower() for w in at.warning), [w.value for w in at.warning]
    assert any("lesion" in m.value for m in at.markdown)  # the result is there too


napari = pytest.importorskip("napari", reason="the napari extra is not installed")


@pytest.mark.parametrize("case", LIGHT, ids=lambda c: c.name)
def test_napari_reader_gives_layers_or_a_clear_error(corpus: Path, case: Case, monkeypatch: pytest.MonkeyPatch) -> None:
    from metaseg_napari import _reader

    shown: list[str] = []
    monkeypatch.setattr(_reader, "show_warning", shown.append)
    path = str(corpus / case.name)
    reader = _reader.get_reader(path)
    if reader is None:  # not claimed: napari says no reader fits, which is clear
        assert case.expect == "refuse"
        return
    if case.expect == "refuse":
        with pytest.raises(InputError) as caught:
            reader(path)
        assert case.says in str(caught.value).lower()
        return
    layers = reader(path)
    assert layers and layers[0][0].size > 0
    if case.expect == "warn":
        assert any(case.says in w.lower() for w in shown), shown
    else:
        assert not shown


def test_a_small_file_that_decodes_to_too_many_bytes_is_refused_before_decoding(corpus: Path) -> None:
    """0.5 MB of gzip, 520 MiB of float64: the voxel count passes, the decoded bytes do not."""
    from metaseg_viewer.io import ReadLimits

    path = corpus / "float64_bomb.nii.gz"
    assert path.stat().st_size < 1 << 20
    with pytest.raises(InputError, match=r"520 MiB .*ReadLimits.max_decoded_bytes"):
        read_scan(path)
    with pytest.raises(InputError, match="max_voxels"):  # a server's tighter voxel limit says so first
        read_scan(path, limits=ReadLimits(max_voxels=512 * 512 * 256))
