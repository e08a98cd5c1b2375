"""Argument parsing for ``python -m training``; each sub-command calls one library function."""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
from pathlib import Path

from metaseg_viewer.errors import MetaSegError
from metaseg_viewer.precision import PRECISIONS
from metaseg_viewer.registry import DEFAULT_MODEL, MODEL_NAMES, SINGLE_MODELS
from training.config import TrainConfig, TrainingError
from training.data import LayoutError, read_report, read_split
from training.purposes import PURPOSES


def _train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one network on a data folder",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = TrainConfig(data="", out="")
    p.add_argument("--data", required=True, help="folder in the kaggle_3m or images/+masks/ layout")
    p.add_argument("--out", required=True, help="run folder (created; reused with --resume)")
    p.add_argument("--arch", choices=["unetpp", "attention-unet"], default=d.arch)
    p.add_argument("--model-params", type=json.loads, default={}, help='architecture arguments as JSON, e.g. \'{"channels": [16,32,64,128,256]}\'')
    for name in ("epochs", "samples_per_epoch", "batch_size", "crop", "patience", "seed", "val_every"):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(d, name))
    for name in ("lesion_fraction", "full_slice_fraction", "full_slice_lesion_fraction", "lr", "weight_decay", "val_fraction",
                 "warmup_fraction", "val_from", "robust_fraction", "report_fraction"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=getattr(d, name))
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget: the schedule (LR, phases) follows elapsed time and ends when it is spent")
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    p.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                   help="auto: bf16 autocast where the CPU (AMX / AVX512-BF16) or GPU has native bf16, else fp32")
    p.add_argument("--val-shift", default=None, metavar="CONDITION",
                   help="also validate under this robustness condition (e.g. 'skull-stripped') and keep the checkpoint "
                        "with the best mean of both per-volume Dice figures")
    p.add_argument("--init", default=None, help="fine-tune: start from this checkpoint's weights; its validation patients stay the validation split")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")


def _other_parsers(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("evaluate", help="score a model on every slice of a data folder",
                        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ev.add_argument("--model", default=DEFAULT_MODEL, help=f"one of {', '.join(MODEL_NAMES)} or a .safetensors checkpoint")
    ev.add_argument("--data", required=True, help="folder in the kaggle_3m or images/+masks/ layout")
    ev.add_argument("--split", type=Path, default=None, help="split.json of a run: evaluate only its patients of --group")
    ev.add_argument("--group", choices=["validation", "report"], default="validation",
                    help="with --split: the validation (selection) patients, or the report patients no choice saw")
    ev.add_argument("--robustness", action="store_true",
                    help="score under each shift of training.augment.ROBUSTNESS_CONDITIONS instead, one table")
    ev.add_argument("--conditions", nargs="+", default=None, metavar="NAME",
                    help="with --robustness: only these conditions (default: all)")
    ev.add_argument("--json", type=Path, default=None, help="write the summary here (plus _volumes.csv and _sheet.png beside it)")
    ev.add_argument("--breakdown", default=None, metavar="REGEX",
                    help="also report per-volume Dice per value of each named group of REGEX in the volume names, "
                         "e.g. '_(?P<tumour>gl|me|pi)_(?P<plane>ax|co|sa)' for BRISC")
    ev.add_argument("--threshold", type=float, default=None, help="default: the model card's")
    ev.add_argument("--min-lesion-size", type=int, default=None, help="default: the model card's")
    tta = ev.add_mutually_exclusive_group()
    tta.add_argument("--tta", dest="tta", action="store_true", default=None)
    tta.add_argument("--no-tta", dest="tta", action="store_false")
    ev.add_argument("--device", default=None)
    ev.add_argument("--precision", choices=PRECISIONS, default="auto",
                    help="auto: bf16 where the CPU/GPU has native bf16, else fp32 (the apps' default)")
    ev.add_argument("--against-fp32", action="store_true",
                    help="also run in fp32 and print both figures, their differences and the masks' agreement")
    ex = sub.add_parser("export", help="tune a run's best checkpoint on its validation patients and ship it")
    ex.add_argument("--run", type=Path, required=True)
    ex.add_argument("--name", required=True, choices=list(SINGLE_MODELS))
    ex.add_argument("--to", type=Path, default=Path("src/metaseg_viewer/weights"))
    ex.add_argument("--data", default=None, help="default: the run's data folder")
    ex.add_argument("--purpose", default="lgg-flair", choices=sorted(PURPOSES),
                    help="what the model is for (sequence, target, data set, licence), written into its card")
    en = sub.add_parser("export-ensemble", help="tune the ensemble of shipped models and write its card")
    en.add_argument("--split", type=Path, required=True, help="split.json shared by the members' runs")
    en.add_argument("--data", required=True)
    en.add_argument("--members", nargs="+", default=list(SINGLE_MODELS))
    en.add_argument("--to", type=Path, default=Path("src/metaseg_viewer/weights"))


def _evaluate(args: argparse.Namespace) -> int:
    from metaseg_viewer.inference import Predictor
    from training.data import find_slices
    from training.evaluate import predict_folder, score, write_per_volume_csv, write_sheet

    predictor = Predictor.load(args.model, device=args.device, precision=args.precision)
    settings = predictor.defaults.override(threshold=args.threshold, tta=args.tta, min_lesion_size=args.min_lesion_size)
    slices = find_slices(args.data)
    if args.split:
        keep = set(read_report(args.split) if args.group == "report" else read_split(args.split)[1])
        if not keep:
            raise LayoutError(f"{args.split} lists no {args.group} patients")
        slices = [s for s in slices if s.volume in keep]
    if args.robustness:
        from training.robustness import format_table, robustness_table, write_table_csv

        rows = robustness_table(predictor, slices, settings, tuple(args.conditions) if args.conditions else None)
        print(f"model {predictor.name} ({predictor.version}) in {predictor.precision}, settings {settings.to_dict()}, "
              f"{rows[0]['n_volumes']} volumes, {rows[0]['n_slices']} slices")
        print(format_table(rows))
        if args.json:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            write_table_csv(rows, args.json.with_name(args.json.stem + "_robustness.csv"))
        return 0
    predictions, seconds = predict_folder(predictor, slices, settings.tta)
    summary, rows = score(predictions, settings.threshold, settings.min_lesion_size)
    summary["seconds_per_slice"] = seconds
    if args.against_fp32:
        _print_against_fp32(args, predictor, slices, settings, predictions, summary)
    print(f"model {predictor.name} ({predictor.version}) in {predictor.precision}, settings {settings.to_dict()}")
    for key, value in summary.items():
        shown = f"{value:.4f}" if isinstance(value, float) else "undefined (no volume has both a prediction and a " \
            "true lesion)" if value is None else value
        print(f"  {key:24s} {shown}")
    if args.breakdown:
        from training.evaluate import breakdown

        summary["breakdown"] = breakdown(rows, args.breakdown)
        for group, values in summary["breakdown"].items():
            for value, figures in values.items():
                print(f"  {group} {value:12s} volumes {figures['volumes']:4d}  Dice mean {figures['dice_mean']:.4f} "
                      f"median {figures['dice_median']:.4f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in summary.items()}
        args.json.write_text(json.dumps({**clean, "model": predictor.name, "precision": predictor.precision,
                                         "settings": settings.to_dict()},
                                        indent=2, allow_nan=False) + "\n")
        write_per_volume_csv(rows, args.json.with_name(args.json.stem + "_volumes.csv"))
        write_sheet(predictions, settings.threshold, settings.min_lesion_size, args.json.with_name(args.json.stem + "_sheet.png"))
    return 0


def _print_against_fp32(args: argparse.Namespace, predictor, slices, settings, predictions, summary: dict) -> None:
    """The same evaluation in fp32, side by side: each figure, its difference, the masks' agreement."""
    from metaseg_viewer.inference import Predictor
    from training.evaluate import mask_agreement, predict_folder, score

    reference = Predictor.load(args.model, device=args.device, precision="fp32")
    ref_predictions, ref_seconds = predict_folder(reference, slices, settings.tta)
    ref_summary, _ = score(ref_predictions, settings.threshold, settings.min_lesion_size)
    print(f"{'figure':24s} {'fp32':>8s} {predictor.precision:>8s} {'diff':>8s}")
    for key in ("per_volume_dice_mean", "per_volume_dice_median", "pooled_dice", "lesion_sensitivity",
                "lesion_precision"):
        print(f"{key:24s} {ref_summary[key]:8.4f} {summary[key]:8.4f} {summary[key] - ref_summary[key]:+8.4f}")
    print(f"{'seconds_per_slice':24s} {ref_seconds:8.3f} {summary['seconds_per_slice']:8.3f}")
    agreement = mask_agreement(predictions, ref_predictions, settings.threshold, settings.min_lesion_size)
    print(f"masks {predictor.precision} vs fp32: pooled Dice {agreement:.4f}")
    summary["against_fp32"] = {"fp32": {k: v for k, v in ref_summary.items() if isinstance(v, (int, float))},
                               "mask_agreement_dice": agreement}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _other_parsers(sub)
    args = parser.parse_args(argv)
    command = "python -m training " + shlex.join(sys.argv[1:] if argv is None else argv)
    try:
        return _run(args, command)
    except (MetaSegError, LayoutError, TrainingError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, command: str) -> int:
    if args.command == "evaluate":
        return _evaluate(args)
    if args.command == "export":
        from training.export import export_run

        card = export_run(args.run, args.name, args.to, args.data, command, args.purpose)
        print(json.dumps(card.to_dict()["metrics"], indent=2))
        return 0
    if args.command == "export-ensemble":
        from training.export import export_ensemble

        ensemble = export_ensemble(args.members, args.split, args.data, args.to, command=command)
        print(json.dumps(ensemble.to_dict(args.to), indent=2))
        return 0
    if args.command == "train":
        from training.loop import train

        fields = {k: v for k, v in vars(args).items() if k not in ("command", "resume")}
        out = Path(args.out)
        if args.resume and (out / "config.json").exists():
            # The saved run defines the schedule; only where to run may change (when given).
            saved = json.loads((out / "config.json").read_text())
            saved.update({k: v for k, v in fields.items() if k in ("device", "threads") and v is not None})
            saved["out"] = args.out
            fields = saved
        train(TrainConfig(**fields), resume=args.resume, command=command)
    return 0
