"""Fingerprint what users get from real slices, to compare two versions of the code.

Run it on two checkouts and diff the JSON: a refactor that changes no behaviour gives identical
files. For each input and shipped model it records the mask's sha256 and size, the lesion table
and the scores against the true mask, at the card's settings and at a moved threshold (0.3, the
re-thresholding path)::

    python tools/snapshot_outputs.py --data ../shared/data --out /tmp/before.json
    python tools/snapshot_outputs.py --data ../shared/data --out /tmp/after.json
    diff /tmp/before.json /tmp/after.json && echo identical

Inputs: four LGG FLAIR slices (two with lesions, one without, one small lesion), one kaggle_3m
3-channel TIFF, and a 12-slice NIfTI volume assembled from one patient's PNG slices.
Only public, stable API is used (read_scan, Predictor, lesion_rows, score_against).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import tempfile
from pathlib import Path

import numpy as np

from metaseg_viewer.evaluation import read_true_mask, score_against
from metaseg_viewer.inference import Predictor
from metaseg_viewer.io import read_scan, write_nifti
from metaseg_viewer.scan import Scan
from metaseg_viewer.segment import lesion_rows

SLICES = ["TCGA_CS_4942_19970222/images/TCGA_CS_4942_19970222_12",
          "TCGA_CS_4942_19970222/images/TCGA_CS_4942_19970222_1",
          "TCGA_CS_4941_19960909/images/TCGA_CS_4941_19960909_14",
          "TCGA_CS_4943_20000902/images/TCGA_CS_4943_20000902_18"]
VOLUME_PATIENT, VOLUME_SLICES = "TCGA_CS_4942_19970222", range(8, 20)


def _plain(value):
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if not math.isfinite(value) else round(value, 6)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _inputs(data: Path, tmp: Path) -> list[tuple[str, Path, Path]]:
    flair = data / "lgg_flair"
    cases = [(s.rsplit("/", 1)[-1], flair / f"{s}.png", flair / f"{s.replace('images', 'masks')}.png")
             for s in SLICES]
    tiff = sorted((data / "lgg_kaggle3m_sample" / "kaggle_3m").glob("*/*_1[0-9].tif"))[0]
    cases.append((tiff.name, tiff, tiff.with_name(tiff.stem + "_mask.tif")))
    images, masks = [], []
    for n in VOLUME_SLICES:
        stem = f"{VOLUME_PATIENT}_{n}.png"
        images.append(read_scan(flair / VOLUME_PATIENT / "images" / stem).pixels[0])
        masks.append(read_scan(flair / VOLUME_PATIENT / "masks" / stem, color="gray").pixels[0])
    plain = Scan(pixels=np.stack(images), spacing=(1.0, 1.0, 1.0), is_volume=True)
    write_nifti(plain.pixels, plain, tmp / "volume.nii.gz")
    write_nifti(np.stack(masks), plain, tmp / "volume_mask.nii.gz")
    cases.append(("volume.nii.gz", tmp / "volume.nii.gz", tmp / "volume_mask.nii.gz"))
    return cases


def snapshot(data: Path, models: list[str]) -> dict:
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        cases = _inputs(data, Path(tmp))
        for model in models:
            predictor = Predictor.load(model, "cpu")
            for label, image, mask in cases:
                scan = read_scan(image)
                truth = read_true_mask(mask, scan.shape)
                for threshold in (None, 0.3):
                    pred = predictor.predict(scan, threshold=threshold)
                    out[f"{model} {label} threshold={threshold or 'card'}"] = _plain({
                        "mask_sha256": hashlib.sha256(np.packbits(pred.mask).tobytes()).hexdigest()[:16],
                        "mask_px": int(pred.mask.sum()),
                        "lesions": lesion_rows(scan, pred.mask, pred.probabilities),
                        "scores": score_against(pred.mask, truth, scan.spacing),
                    })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--models", nargs="+", default=["ensemble", "unetpp", "attention-unet"])
    args = parser.parse_args()
    result = snapshot(args.data, args.models)
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"{len(result)} entries written to {args.out}")


if __name__ == "__main__":
    main()
