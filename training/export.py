"""Turn a training run into a shipped model: tuned inference settings and validation figures
measured with the apps' inference path, written into the model card beside the weights.

Threshold, TTA and minimum size are tuned on the run's validation (selection) patients; where the
run kept report patients apart (``--report-fraction``), the card also carries the figures measured
there with the tuned settings — patients no epoch or setting was chosen on."""

from __future__ import annotations

import json
from pathlib import Path

from metaseg_viewer.checkpoints import ModelCard, load_checkpoint, save_checkpoint
from metaseg_viewer.errors import CheckpointError
from metaseg_viewer.config import InferenceConfig
from metaseg_viewer.inference import Predictor, default_device
from metaseg_viewer.registry import SINGLE_MODELS, EnsembleCard, write_ensemble_card
from metaseg_viewer.sequences import sequence_label
from training.data import LayoutError, find_slices, read_report, read_split
from training.evaluate import predict_folder, score, tune
from training.purposes import PURPOSES


def _validation_slices(data: str, split_file: Path, group: str = "validation"):
    patients = set(read_report(split_file) if group == "report" else read_split(split_file)[1])
    slices = [s for s in find_slices(data) if s.volume in patients]
    if not slices:
        raise LayoutError(f"no slices of the {len(patients)} {group} patients of {split_file} found in {data}")
    return slices, sorted(patients)


def _report(predictor: Predictor, settings: dict, data: str, split_file: Path) -> dict:
    """Figures on the split's report patients at the tuned ``settings`` (empty when it has none)."""
    if not read_report(split_file):
        return {}
    slices, patients = _validation_slices(data, split_file, "report")
    predictions, seconds = predict_folder(predictor, slices, settings["tta"])
    summary, _ = score(predictions, settings["threshold"], settings["min_lesion_size"])
    return {"report": {**summary, "seconds_per_slice": seconds, "patients": len(patients), "precision": predictor.precision,
                       "note": "patients on which no epoch, threshold or size was chosen (not optimistic)"}}


def export_run(run: Path, name: str, to: Path, data: str | None = None, command: str = "",
               purpose: str = "lgg-flair") -> ModelCard:
    """Tune threshold/TTA/min size of ``run``'s best checkpoint on its validation patients and
    write ``<to>/<file>.safetensors`` + card under the registry name ``name``; ``purpose`` (a key
    of :data:`PURPOSES`) says what the model is for."""
    what = PURPOSES[purpose]
    net, card = load_checkpoint(run / "best.safetensors", default_device())
    config = json.loads((run / "config.json").read_text())
    slices, val = _validation_slices(data or config["data"], run / "split.json")
    predictor = Predictor([(net, card)], name, InferenceConfig(), default_device(), precision="auto")
    settings, summary = tune(predictor, slices)
    metrics = {
        "validation": {**summary, "patients": len(val), "precision": predictor.precision,
                       "data": f"{data or config['data']}: validation patients of {run / 'split.json'}"},
        "note": "the best epoch and the inference settings were both chosen on these validation patients, "
                "so these figures are optimistic; the project's held-out test patients judge them again",
        **_report(predictor, settings, data or config["data"], run / "split.json"),
        "measured_with": command,
    }
    training = {**card.training, "run": str(run), "data_licence": what.licence}
    description = (f"{card.model.arch} trained to segment {what.target} on {' / '.join(what.planes)} "
                   f"{sequence_label(what.sequence)} slices ({what.dataset}).")
    final = ModelCard(
        name=name, model=card.model, preprocess=card.preprocess, inference=InferenceConfig(**settings),
        description=description, training=training, metrics=metrics, purpose=what,
    )
    stem = SINGLE_MODELS.get(name, name + ".json").removesuffix(".json")
    return save_checkpoint(net.cpu(), final, to / f"{stem}.safetensors")


def export_ensemble(members: list[str], split_file: Path, data: str, to: Path, name: str = "ensemble",
                    command: str = "") -> EnsembleCard:
    """Tune the ensemble of shipped ``members`` on the validation patients; write its card.
    Every member must have been validated on exactly these patients (none trained on them)."""
    slices, val = _validation_slices(data, split_file)
    unseen = sorted(set(val) | set(read_report(split_file)))
    loaded = [load_checkpoint(to / SINGLE_MODELS[m], default_device()) for m in members]
    for member, (_, card) in zip(members, loaded):
        if sorted(card.training.get("validation_patients", [])) != unseen:
            raise CheckpointError(f"{member} was not validated on the patients of {split_file}: an ensemble "
                             "is tuned only on patients none of its members trained on")
    predictor = Predictor(loaded, name, InferenceConfig(), default_device(), precision="auto")
    settings, summary = tune(predictor, slices)
    card = EnsembleCard(
        name=name,
        members=tuple(to / SINGLE_MODELS[m] for m in members),
        inference=InferenceConfig(**settings),
        description="Mean of the probabilities of " + " and ".join(members) + " (FLAIR abnormality of lower-grade glioma).",
        metrics={"validation": {**summary, "patients": len(val), "precision": predictor.precision},
                 "note": "settings chosen on these validation patients; figures are optimistic",
                 **_report(predictor, settings, data, split_file),
                 "measured_with": command},
    )
    write_ensemble_card(card, to / f"{name}.json")
    return card


__all__ = ["export_ensemble", "export_run"]
