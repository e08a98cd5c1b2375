"""Studies per minute of ``metaseg batch``: in-process against a Dask LocalCluster of 1 and 2 workers.

The same studies in every configuration, each into a fresh output folder (nothing kept from an
earlier run), timed end to end as a user waits for it: cluster start, model loading on every
worker, reading, segmenting, writing and the summary. Also printed: the median time a study
took on its worker (one thread there, every core in-process), and the wall time not spent in
studies (cluster start, scheduling, the tables; a worker's model load is part of its first study). Each study is ``--slices`` consecutive
real FLAIR slices of one LGG patient (``../shared/data/lgg_flair``) saved as a NIfTI volume.

    python benchmarks/bench_batch.py [--studies 40] [--slices 8] [--model ensemble]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from metaseg_viewer.batch import BatchSettings, run_batch
from metaseg_viewer.io import read_scan, write_nifti
from metaseg_viewer.scan import Scan

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "lgg_flair"


def write_studies(folder: Path, studies: int, slices: int) -> None:
    """One NIfTI volume per patient: ``slices`` slices around the middle of the patient's stack."""
    folder.mkdir(parents=True, exist_ok=True)
    patients = sorted(p for p in DATA.iterdir() if p.is_dir())
    if len(patients) < studies:
        raise SystemExit(f"{DATA} holds {len(patients)} patients; ask for at most that many studies")
    for patient in patients[:studies]:
        names = sorted((patient / "images").iterdir(), key=lambda p: int(p.stem.rsplit("_", 1)[1]))
        middle = len(names) // 2
        chosen = names[max(0, middle - slices // 2): max(0, middle - slices // 2) + slices]
        image = np.stack([np.asarray(Image.open(p)) for p in chosen])
        write_nifti(image, Scan(image, spacing=(2.5, 0.94, 0.94), is_volume=True), folder / f"{patient.name}.nii.gz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=40)
    parser.add_argument("--slices", type=int, default=8)
    parser.add_argument("--model", default="ensemble")
    args = parser.parse_args()
    settings = BatchSettings(model=args.model)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "studies"
        write_studies(source, args.studies, args.slices)
        print(f"{args.studies} studies x {args.slices} real LGG FLAIR slices (256x256), model {args.model}")
        results, masks = [], {}
        for label, scheduler, workers in (("in-process", "none", None), ("local, 1 worker", "local", 1),
                                          ("local, 2 workers", "local", 2)):
            out = Path(tmp) / label.replace(" ", "").replace(",", "_")
            start = time.perf_counter()
            report = run_batch(source, out, settings, scheduler=scheduler, workers=workers, progress=False)
            seconds = time.perf_counter() - start
            failed = report.count("failed")
            masks[label] = {r["study_id"]: read_scan(out / r["folder"] / r["files"]["mask"]).pixels
                            for r in report.records if r["status"] == "segmented"}
            results.append((label, seconds, failed))
            precision = report.records[0].get("precision", "?")
            per_study = [r["seconds"] for r in report.records]
            outside = seconds - sum(per_study) / (workers or 1)  # cluster start, scheduling, tables
            print(f"  {label:18s} {seconds:7.1f} s  {60 * args.studies / seconds:6.1f} studies/min  "
                  f"median {np.median(per_study):5.2f} s per study on its worker  ~{outside:5.1f} s outside the "
                  f"studies  failed {failed}  precision {precision}", flush=True)
        base = results[0][1]
        print("speed-up over in-process: " + ", ".join(f"{label} {base / s:.2f}x" for label, s, _ in results[1:]))
        reference = masks["in-process"]
        for label, _, _ in results[1:]:
            same = sum(np.array_equal(reference[k], masks[label].get(k)) for k in reference)
            print(f"masks equal to the in-process run's ({label}): {same}/{len(reference)}")


if __name__ == "__main__":
    main()
