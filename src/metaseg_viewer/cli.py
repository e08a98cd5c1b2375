"""``metaseg``: segment files from the shell, list the shipped models.

Thin: parses arguments and calls the core: per input, the reader, :func:`choose_model` (the user's
``--model`` or ``--sequence``, else the sequence the input names) and the predictor, then
:func:`metaseg_viewer.segment.write_outputs`; the registry for ``models``. Each input's line says
which model segmented it and why; a visible sequence mismatch is a warning, never a refusal.
Bad files are reported one line each (what was wrong, what is accepted) and do not stop the
others; no input, however broken, prints a traceback. The exit status is 1 when any input failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from metaseg_viewer.errors import MetaSegError
from metaseg_viewer.mask_formats import MASK_FORMATS
from metaseg_viewer.precision import PRECISIONS
from metaseg_viewer.registry import DEFAULT_MODEL, MODEL_NAMES
from metaseg_viewer.sequences import MODEL_SEQUENCES


def _segment(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from metaseg_viewer.config import InferenceConfig
    from metaseg_viewer.inference import Predictor
    from metaseg_viewer.io import read_scan
    from metaseg_viewer.model_choice import ModelChoiceError, choose_model
    from metaseg_viewer.segment import deidentified_stem, mask_suffix, output_stem, write_outputs
    from metaseg_viewer.sequences import SequenceHint, sequence_hint, sequence_label

    predictors: dict[str, Predictor] = {}  # one per chosen model, loaded on first use

    def predictor_for(model: str) -> Predictor:
        if model not in predictors:
            predictors[model] = Predictor.load(model, device=args.device, precision=args.precision)
        return predictors[model]

    overrides = {"threshold": args.threshold, "tta": args.tta, "min_lesion_size": args.min_lesion_size}
    try:
        InferenceConfig().override(**overrides)  # the user's settings, checked once before any file is read
        if args.model is not None or args.sequence is not None:  # the same model for every file: load it now
            predictor_for(choose_model(SequenceHint(None, ""), args.model, args.sequence).model)
    except (MetaSegError, ModelChoiceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    used: set[str] = set()
    for source in args.inputs:
        stem = deidentified_stem(Path(source).resolve()) if args.deidentify_names else output_stem(source)
        while stem in used:  # a/scan.nii.gz and b/scan.nii.gz must not overwrite each other
            stem += "_2"
        used.add(stem)
        error = ""
        with tqdm(total=1, desc=str(source)[-40:], unit="slice", file=sys.stderr, leave=False) as bar:

            def progress(done: int, total: int) -> None:
                bar.total, bar.n = total, done
                bar.refresh()

            try:
                scan = read_scan(source, color=args.channel)
                mask_suffix(scan, args.format)  # a format this input cannot have is refused before inference
                choice = choose_model(sequence_hint(str(source), scan.metadata), args.model, args.sequence)
                try:
                    predictor = predictor_for(choice.model)
                except MetaSegError as exc:  # the machine, not this input: the other inputs would fail alike
                    print(f"error: {exc}", file=sys.stderr)
                    return 2
                settings = predictor.defaults.override(**overrides)
                prediction = predictor.predict(scan, settings.threshold, settings.tta, settings.min_lesion_size,
                                               progress)
                result = write_outputs(scan, prediction, Path(args.out), stem, args.format)
            except (MetaSegError, ModelChoiceError) as exc:
                error = str(exc) if str(exc).startswith(str(source)) else f"{source}: {exc}"
            except OSError as exc:
                error = f"{source}: cannot write results to {args.out}: {exc}"
            except MemoryError:
                error = f"{source}: not enough memory to segment this input; the other inputs go on"
            except Exception as exc:  # a bug on one input must not stop the others or print a traceback
                error = f"{source}: unexpected error ({type(exc).__name__}: {exc}); please report it"
        if error:
            failed += 1
            print(f"error: {error}", file=sys.stderr)
            continue
        print(f"{source}: model {choice.model} ({sequence_label(choice.sequence)}), why: {choice.reason}")
        for warning in (*choice.warnings, *result.warnings):
            print(f"warning: {source}: {warning}", file=sys.stderr)
        print(f"{source}: {result.n_lesions} lesion(s) -> {result.mask}, {result.overlay}, {result.lesions} "
              f"[{result.description}; {predictor.name} in {predictor.precision}]")
    return 1 if failed else 0


def _models(args: argparse.Namespace) -> int:
    from metaseg_viewer.registry import describe_models, group_by_sequence
    from metaseg_viewer.sequences import sequence_label

    try:
        rows = describe_models()
    except MetaSegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    by_name = {row["name"]: row for row in rows}
    for sequence, names in group_by_sequence(rows).items():  # each family in order, its default first
        print(f"{sequence_label(sequence)} (--sequence {sequence}; default {names[0]})")
        for name in names:
            row = by_name[name]
            val = row["metrics"].get("validation", {})
            figures = ", ".join(f"{k} {v:.3f}" for k, v in val.items() if isinstance(v, float))
            purpose = row["purpose"]
            print(f"  {name:20s} {row['architecture']:40s} sha256 {row['sha256'][:25]}")
            if purpose:
                print(f"  {'':20s} purpose: {purpose['target']}; trained on {purpose['dataset']}")
            print(f"  {'':20s} defaults {row['inference']}")
            print(f"  {'':20s} validation: {figures or 'none recorded'}")
    return 0


def _info(args: argparse.Namespace) -> int:
    """The settings inference will run with here, so a user can tell what a result came from."""
    import torch

    from metaseg_viewer import __version__
    from metaseg_viewer.inference import default_device
    from metaseg_viewer.precision import cpu_has_native_bf16, resolve_precision

    device = args.device or default_device()
    try:
        precision = resolve_precision(args.precision, device)
    except MetaSegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"metaseg-viewer {__version__}, torch {torch.__version__}")
    print(f"device {device}; CPU native bf16 (AMX-BF16 or AVX512-BF16): {'yes' if cpu_has_native_bf16() else 'no'}")
    print(f"precision {args.precision} -> {precision}; torch threads {torch.get_num_threads()}")
    return 0


def _sample(args: argparse.Namespace) -> int:
    """Write a generated FLAIR-like (or T1c-like) slice (PNG) and volume (NIfTI) with their true masks."""
    from pathlib import Path

    from PIL import Image

    from metaseg_viewer.io import write_mask_nifti, write_mask_png, write_nifti
    from metaseg_viewer.samples import make_slice, make_volume
    from metaseg_viewer.scan import Scan

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # A T1c sample says so in its names, so `metaseg segment` chooses the T1c model for it.
    prefix = "sample" if args.sequence == "flair" else f"sample_{args.sequence}"
    flat = make_slice(seed=args.seed, sequence=args.sequence)
    Image.fromarray(flat.image).save(out / f"{prefix}_slice.png")
    write_mask_png(flat.mask, out / f"{prefix}_slice_truth.png")
    volume = make_volume(n_slices=args.slices, seed=args.seed, sequence=args.sequence)
    geometry = Scan(volume.image, spacing=volume.spacing, is_volume=True)
    write_nifti(volume.image, geometry, out / f"{prefix}_volume.nii.gz")
    write_mask_nifti(volume.mask, geometry, out / f"{prefix}_volume_truth.nii.gz")
    print(f"wrote {out}/{prefix}_slice.png, {prefix}_volume.nii.gz and their *_truth masks (synthetic, not anatomy)")
    return 0


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    """The options ``segment`` and ``batch`` share: which model, its settings, the mask format."""
    parser.add_argument("--model", default=None,
                        help=f"one of {list(MODEL_NAMES)} or a .safetensors checkpoint (default: chosen per input, "
                             "see --sequence)")
    parser.add_argument("--sequence", choices=list(MODEL_SEQUENCES), default=None,
                        help="the MRI sequence of the inputs: segment with that sequence's default model (default: "
                             "the sequence each input names in its DICOM description or file name, else "
                             f"{DEFAULT_MODEL}); what was used and why is reported per input")
    parser.add_argument("--format", choices=list(MASK_FORMATS), default="auto",
                        help="mask file: auto = PNG for a 2-D image, NIfTI for a volume; nrrd = 3D Slicer's "
                             ".seg.nrrd; dicom-seg = a DICOM SEG on the source series (DICOM series input only)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="probability threshold (default: the model card's)")
    tta = parser.add_mutually_exclusive_group()
    tta.add_argument("--tta", dest="tta", action="store_true", default=None,
                     help="horizontal-flip test-time augmentation")
    tta.add_argument("--no-tta", dest="tta", action="store_false", help="no test-time augmentation")
    parser.add_argument("--min-lesion-size", type=int, default=None,
                        help="drop components below this many pixels/voxels (default: the card's)")
    parser.add_argument("--channel", choices=["auto", "flair", "gray"], default="auto",
                        help="multi-channel images: auto = FLAIR channel for LGG kaggle_3m TIFFs, luminance otherwise")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: bf16 where the CPU (AMX / AVX512-BF16) or GPU has native bf16, else fp32")


def _positive(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1")
    return value


def _batch(args: argparse.Namespace) -> int:
    from metaseg_viewer.batch import BatchSettings, run_batch

    settings = BatchSettings(model=args.model, sequence=args.sequence, threshold=args.threshold, tta=args.tta,
                             min_lesion_size=args.min_lesion_size, mask_format=args.format,
                             precision=args.precision, channel=args.channel, device=args.device)
    try:
        report = run_batch(args.input, args.out, settings, args.scheduler, args.workers)
    except MetaSegError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted: the studies finished so far are in {args.out}/summary.csv, none is half-written; run "
              "the same command again to continue", file=sys.stderr)
        return 130
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    for record in report.records:
        if record["status"] == "failed":
            print(f"error: {record['study_id']}: {record['error']}", file=sys.stderr)
        elif record.get("warnings"):
            print(f"warning: {record['study_id']}: {record['warnings']}", file=sys.stderr)
    print(f"{len(report.records)} studies: {report.count('segmented')} segmented, {report.count('kept')} kept from "
          f"an earlier run, {report.count('failed')} failed -> {', '.join(str(p) for p in report.tables)}")
    return 1 if report.count("failed") else 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="metaseg", description="Segment lesions on brain MRI with models trained for "
                                     "one MRI sequence each (FLAIR, T1c); `metaseg models` says what each outlines.")
    sub = parser.add_subparsers(dest="command", required=True)
    seg = sub.add_parser("segment", help="segment images or volumes", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    seg.add_argument("inputs", nargs="+", help="PNG/JPEG/TIFF/DICOM files, DICOM series folders, NIfTI volumes")
    seg.add_argument("--out", default="metaseg-out", help="output folder")
    _add_model_options(seg)
    seg.add_argument("--deidentify-names", action="store_true",
                     help="name outputs scan-<hash of the input path> instead of after the input (whose name may "
                          "carry a patient's name)")
    seg.set_defaults(func=_segment)
    batch = sub.add_parser("batch", help="segment a whole archive (folder tree or CSV manifest), resumably, on Dask "
                                         "or in this process", formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    batch.add_argument("input", help="a folder (each DICOM series folder, NIfTI file or image below it is one study; "
                                     "X_mask.* or masks/X.* is X's true mask) or a CSV manifest study_id,path[,truth]")
    batch.add_argument("--out", required=True, help="output folder: studies/<study_id>/ and summary/lesion tables")
    batch.add_argument("--scheduler", default=None,
                       help="local: a Dask LocalCluster, one single-threaded worker per core (default when Dask is "
                            "installed); none: in this process; tcp://host:8786: a running Dask scheduler")
    batch.add_argument("--workers", type=_positive, default=None,
                       help="local worker processes (default: one per core); with an address, wait for this many")
    _add_model_options(batch)
    batch.set_defaults(func=_batch)
    models = sub.add_parser("models", help="list the shipped models, grouped by the MRI sequence they were trained for")
    models.add_argument("--json", action="store_true", help="print JSON")
    models.set_defaults(func=_models)
    info = sub.add_parser("info", help="what this machine runs: device, precision, threads, versions")
    info.add_argument("--device", default=None)
    info.add_argument("--precision", choices=PRECISIONS, default="auto")
    info.set_defaults(func=_info)
    sample = sub.add_parser("sample", help="write a generated FLAIR-like (or T1c-like) slice and volume with true "
                                           "masks",
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    sample.add_argument("--out", default="metaseg-sample", help="output folder")
    sample.add_argument("--slices", type=int, default=24, help="slices of the volume")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--sequence", choices=list(MODEL_SEQUENCES), default="flair",
                        help="the sequence the sample imitates; t1c files are named sample_t1c_*")
    sample.set_defaults(func=_sample)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # tifffile logs what it repairs or skips in odd files (to stderr, with no handler set up); the
    # reader's one-line errors and Scan.warnings already say what matters to the user.
    logging.getLogger("tifffile").setLevel(logging.ERROR)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted: the inputs finished so far have their outputs; none is half-written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
