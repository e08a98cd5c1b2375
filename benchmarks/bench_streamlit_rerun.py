"""Print how long the Streamlit page takes to rerun when only the display changes (not a test).

Usage: python benchmarks/bench_streamlit_rerun.py [--rounds 12]

Drives ``streamlit_app/app.py`` with ``streamlit.testing.v1.AppTest`` (the script's own run, as
the server does it, without the browser's drawing) on real LGG FLAIR data from ``../shared/data``:
one 256x256 slice (``TCGA_CS_4941_19960909_14.tif`` with its mask) and that patient's slices as a
volume. After the first run (the network, once), each round changes one display setting — overlay
opacity, colour, outline, the panels shown, the large view, the zoom, and for the volume the slice
— and times the rerun. Prints the median and the slowest rerun per setting, in seconds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from streamlit.testing.v1 import AppTest

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
PATIENT = "TCGA_CS_4941_19960909"
SLICE = DATA / "lgg_kaggle3m_sample" / "kaggle_3m" / PATIENT / f"{PATIENT}_14"

Change = Callable[[AppTest, int], object]
CHANGES: dict[str, Change] = {
    "overlay opacity": lambda at, i: at.slider(key="opacity").set_value(0.2 + 0.1 * (i % 5)),
    "overlay colour": lambda at, i: at.color_picker(key="color").set_value(["#00FF00", "#FF3030"][i % 2]),
    "outline on/off": lambda at, i: at.checkbox(key="outline").set_value(i % 2 == 0),
    "panels shown": lambda at, i: at.pills(key="panels").set_value(
        ["probability", "segmentation"] if i % 2 else ["input", "enhanced", "probability", "segmentation", "errors"]),
    "large view": lambda at, i: at.selectbox(key="large").set_value("segmentation" if i % 2 else "side by side"),
    "zoom": lambda at, i: at.select_slider(key="zoom").set_value([1, 2, 4, 8][i % 4]),
}


def volume_files(folder: Path) -> list[tuple[str, bytes, str]]:
    """The patient's FLAIR slices as one NIfTI volume, with its mask (spacing assumed 3 x 1 x 1 mm)."""
    from metaseg_viewer.io import read_scan, write_nifti
    from metaseg_viewer.scan import Scan

    patient = DATA / "lgg_flair" / PATIENT
    images = sorted((patient / "images").glob("*.png"), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
    pixels = np.stack([read_scan(p).pixels[0] for p in images])
    truth = np.stack([read_scan(patient / "masks" / p.name).pixels[0] > 0 for p in images]).astype(np.uint8)
    geometry = Scan(pixels=pixels, spacing=(3.0, 1.0, 1.0), is_volume=True)
    files = []
    for name, array in ((f"{PATIENT}_flair.nii.gz", pixels), (f"{PATIENT}_flair_mask.nii.gz", truth)):
        write_nifti(array, geometry, folder / name)
        files.append((name, (folder / name).read_bytes(), "application/gzip"))
    return files


def time_reruns(files: list[tuple[str, bytes, str]], changes: dict[str, Change], rounds: int) -> dict[str, list[float]]:
    at = AppTest.from_file(str(REPO / "streamlit_app" / "app.py"), default_timeout=900)
    at.run()
    at.file_uploader(key="uploads").set_value(files).run()  # the network runs here, once
    if at.exception or at.error:
        sys.exit(f"the page failed: {[e.value for e in at.exception] or [e.value for e in at.error]}")
    seconds: dict[str, list[float]] = {}
    for name, change in changes.items():
        for i in range(rounds):
            change(at, i)
            start = time.perf_counter()
            at.run()
            seconds.setdefault(name, []).append(time.perf_counter() - start)
            assert not at.exception, at.exception
        change(at, 0)  # back to the first setting before the next kind of change
        at.run()
    return seconds


def report(title: str, seconds: dict[str, list[float]]) -> None:
    print(f"\n{title}\n{'display change':<18} {'median s':>9} {'max s':>7}")
    for name, values in seconds.items():
        print(f"{name:<18} {statistics.median(values):>9.3f} {max(values):>7.3f}")
    every = [s for values in seconds.values() for s in values]
    print(f"{'all':<18} {statistics.median(every):>9.3f} {max(every):>7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="reruns per kind of display change")
    args = parser.parse_args()
    if not SLICE.with_suffix(".tif").is_file():
        sys.exit(f"{SLICE}.tif not found: this benchmark needs ../shared/data")
    image, mask = SLICE.with_suffix(".tif"), SLICE.parent / f"{SLICE.name}_mask.tif"
    files = [(p.name, p.read_bytes(), "image/tiff") for p in (image, mask)]
    report(f"One 256x256 slice ({image.name}), {args.rounds} reruns each", time_reruns(files, CHANGES, args.rounds))
    def slice_change(at: AppTest, i: int) -> object:
        return next(s for s in at.slider if s.label == "Slice").set_value(i % 23)

    with tempfile.TemporaryDirectory() as folder:
        volume = volume_files(Path(folder))
    report(f"{PATIENT} as a 23-slice volume of 256x256 slices, {args.rounds} reruns each",
           time_reruns(volume, {"slice": slice_change, **CHANGES}, args.rounds))


if __name__ == "__main__":
    main()
