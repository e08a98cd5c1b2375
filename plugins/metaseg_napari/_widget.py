"""The docked segmentation widget: segment, re-threshold, edit, inspect lesions, score, compare, save.

The model is chosen by the MRI sequence (``_choice``): the user's sequence or model, else the one
the layer names; the status line says which model ran and why, and a visible mismatch is warned
about.

Long work (model loading, inference) runs in a napari worker thread; the worker never touches Qt
and reports progress through a queued Qt signal. Results are labels layers the user edits with
napari's own brush, eraser and fill; the widget never overwrites an edit unless asked. Layer
colours come from one table (``_layers.COLOURS``), which the widget's legend shows. The controls
are laid out in ``_controls`` and the lesion table is ``_lesion_table``; this module holds what
they do.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
from napari.layers import Image, Labels
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QObject, Qt, QTimer, Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QWidget

from metaseg_viewer.evaluation import compare_models, hd95_text, score_against
from metaseg_viewer.model_choice import ModelChoice, ModelChoiceError
from metaseg_viewer.prediction import Prediction
from metaseg_viewer.registry import family_networks, model_label
from metaseg_viewer.scan import Scan
from metaseg_viewer.segment import lesion_csv, lesion_rows
from metaseg_viewer.sequences import sequence_label
from metaseg_napari._choice import AUTO, card_settings, choice_text, choose, model_menu
from metaseg_napari._controls import setup_controls
from metaseg_napari._layers import (DISAGREEMENT, ERRORS, RESULT_KEY, SCAN_KEY, as_stack, labels_colormap,
                                    layer_name, like_layer, model_colour_name, scan_of_layer)
from metaseg_napari._results import Cancelled, LayerResult, run_model
from metaseg_napari._writer import write_labels

#: Put before a score whose mask has changed since (edit, threshold, other model or result).
STALE = "Out of date: the mask changed since this score; press Score against again.\n"


class _Progress(QObject):
    """Carries progress from the worker thread to the GUI thread (queued connection)."""

    changed = Signal(int, int)
    loading = Signal(str)  # a model's name, before it loads


class SegmentationWidget(QWidget):
    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._worker = None
        self._cancel = threading.Event()
        self._updating = False
        self._progress = _Progress()
        self._progress.changed.connect(self._on_progress)
        self._progress.loading.connect(self._on_loading)
        self._scores: dict | None = None  # the last score shown, for export
        self._view_reset = False
        self._refresh_timer = QTimer(self, singleShot=True, interval=300)
        self._refresh_timer.timeout.connect(self._after_edit)
        setup_controls(self)
        self._fill_models()
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_layer_choices)
        self._refresh_layer_choices()

    # --- layout --------------------------------------------------------------------------------
    def _fill_models(self, *_: object) -> None:
        """The model menu for the chosen sequence (all families for Auto), keeping the current model
        where it is still offered; the Compare button names the family's networks."""
        sequence, current = self.sequence_combo.currentData(), self.model_combo.currentData()
        self.model_combo.clear()
        for i, (label, data, tooltip) in enumerate(model_menu(sequence)):
            self.model_combo.addItem(label, data)
            self.model_combo.setItemData(i, tooltip, Qt.ToolTipRole)
        if current is not None and self.model_combo.findData(current) >= 0:
            self.model_combo.setCurrentIndex(self.model_combo.findData(current))
        networks = family_networks(sequence)[:2]
        if sequence == AUTO:
            self.compare_button.setText("Compare the networks of the layer's family")
        elif len(networks) < 2:
            self.compare_button.setText(f"Compare (one {sequence_label(sequence)} network: nothing to compare)")
        else:
            self.compare_button.setText("Compare " + " and ".join(model_label(m) for m in networks))

    # --- layer choices -------------------------------------------------------------------------
    def _refresh_layer_choices(self, *_: object) -> None:
        def fill(combo: QComboBox, layers: list) -> None:
            current = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItems([layer.name for layer in layers])
            if current in [layer.name for layer in layers]:
                combo.setCurrentText(current)
            combo.blockSignals(False)

        fill(self.image_combo, [l for l in self.viewer.layers if isinstance(l, Image)])
        results = [l for l in self.viewer.layers if isinstance(l, Labels) and RESULT_KEY in l.metadata]
        fill(self.result_combo, results)
        fill(self.truth_combo, [l for l in self.viewer.layers if isinstance(l, Labels)])
        self._on_result_changed()

    def current_result(self) -> Labels | None:
        name = self.result_combo.currentText()
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def _on_result_changed(self, *_: object) -> None:
        """The slider and table of the current result; before the first result the slider shows
        the threshold of the model that Segment would run (its card's)."""
        layer = self.current_result()
        if layer is None:
            self.table.setRowCount(0)
            settings = card_settings(self._model_to_run())
            if settings is not None:
                self._show_threshold(settings.threshold)
            return
        self._show_threshold(layer.metadata[RESULT_KEY].threshold)
        self.refresh_table()

    def _show_threshold(self, threshold: float) -> None:
        self.threshold.blockSignals(True)
        self.threshold.setValue(int(round(threshold * 100)))
        self.threshold.blockSignals(False)
        self.threshold_label.setText(f"{threshold:.2f}")

    def _model_to_run(self) -> str:
        """The model Segment would run on the chosen image layer now (the default without one)."""
        name = self.image_combo.currentText()
        image = self.viewer.layers[name] if name in self.viewer.layers else None
        sequence, model = self.sequence_combo.currentData() or AUTO, self.model_combo.currentData() or AUTO
        try:
            if isinstance(image, Image):
                return choose(image.name, scan_of_layer(image), image.metadata, sequence, model).model
            return choose("", None, {}, sequence, model).model
        except ValueError:  # a contradictory choice or an unusable layer: Segment will say why
            return model

    def showEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        """Docking narrows the canvas after napari fitted the image to it: fit again, once. The
        controls' width is known only now, under napari's style sheet."""
        super().showEvent(event)
        scroll = self._scroll
        bar = scroll.verticalScrollBar().sizeHint().width()
        scroll.setMinimumWidth(scroll.widget().minimumSizeHint().width() + bar)
        if not self._view_reset:
            self._view_reset = True
            QTimer.singleShot(0, self.viewer.reset_view)

    # --- segmentation --------------------------------------------------------------------------
    def segment(self, whole_stack: bool = True) -> None:
        """Run the chosen model on the chosen image layer (current slice or whole stack) in a worker."""
        chosen = self._chosen_image()
        if chosen is None:
            return
        image, scan = chosen
        choice = self._choose(image, scan)
        if choice is None:
            return
        z = int(self.viewer.dims.current_step[0]) if scan.n_slices > 1 and not whole_stack else None
        target = scan if z is None else Scan(pixels=scan.pixels[z : z + 1], spacing=scan.spacing,
                                             is_volume=scan.is_volume, source=scan.source)
        model = choice.model
        tta = None if self.tta_default.isChecked() else self.tta.isChecked()
        precision = self.precision_combo.currentText()
        self._start(lambda: run_model(model, target, tta, self._progress.changed.emit, self._cancel, precision,
                                      self._progress.loading.emit),
                    lambda prediction: self._add_result(image, scan, model, z, prediction))

    def _chosen_image(self):
        """The chosen image layer and its Scan, or None after telling the user what is wrong."""
        name = self.image_combo.currentText()
        if name not in self.viewer.layers or not isinstance(self.viewer.layers[name], Image):
            self._error("Choose an image layer (open an image, or File > Open Sample > MetaSeg).")
            return None
        try:
            return self.viewer.layers[name], scan_of_layer(self.viewer.layers[name])
        except ValueError as exc:
            self._error(str(exc))
            return None

    def _choose(self, image: Image, scan: Scan) -> ModelChoice | None:
        """The model for this layer, said in the status line with why; warnings as notifications."""
        try:
            choice = choose(image.name, scan, image.metadata, self.sequence_combo.currentData(),
                            self.model_combo.currentData())
        except ModelChoiceError as exc:
            self._error(str(exc))
            return None
        self.choice_label.setText(choice_text(image.name, choice))
        for warning in choice.warnings:
            show_warning(f"{image.name}: {warning}")
        return choice

    def _start(self, job, on_done) -> None:
        if self._worker is not None:
            show_info("A segmentation is already running; cancel it or wait.")
            return
        self._cancel.clear()
        self.progress.setValue(0)
        self.progress.setFormat("%p%")
        self.message_label.setText("")
        self._set_busy(True)

        def cancellable():
            try:
                return job()
            except Cancelled:
                return None

        def done(result) -> None:
            if result is None:
                show_info("Segmentation cancelled; nothing was added.")
            else:
                on_done(result)

        # Connecting "errored" at creation keeps superqt from re-raising errors in the GUI thread;
        # _on_error shows them as a notification instead.
        worker = create_worker(cancellable, _connect={"returned": done, "errored": self._on_error,
                                                      "finished": self._on_finished}, _start_thread=False)
        self._worker = worker
        worker.start()

    def cancel(self) -> None:
        self._cancel.set()

    def is_busy(self) -> bool:
        return self._worker is not None

    def _set_busy(self, busy: bool) -> None:
        for button in (self.slice_button, self.stack_button, self.compare_button):
            button.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _on_loading(self, model: str) -> None:
        self.progress.setFormat(f"loading model {model_label(model)}…")

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setFormat("%p%")
        self.progress.setValue(int(100 * done / max(total, 1)))

    def _on_error(self, exc: Exception) -> None:
        self._error(f"Segmentation failed: {exc}")
        self.progress.setFormat("failed: see the message below")

    def _error(self, text: str) -> None:
        """A notification, and the whole text in the widget: napari's notification shows only the
        first line, cut to its width, and hides itself after a few seconds."""
        show_error(text)
        self.message_label.setText(text)

    def _on_finished(self) -> None:
        self._worker = None
        self._set_busy(False)

    def _add_result(self, image: Image, scan: Scan, model: str, z: int | None, prediction: Prediction) -> Labels:
        """Show a prediction of the whole ``scan``, or of its slice ``z`` (merged into an existing result)."""
        labels_name, probability_name = layer_name("pred", model, image.name), layer_name("prob", model, image.name)
        first_result = not any(RESULT_KEY in layer.metadata for layer in self.viewer.layers)
        existing = self.viewer.layers[labels_name] if labels_name in self.viewer.layers else None
        if existing is not None and z is not None and RESULT_KEY in existing.metadata:
            seg: LayerResult = existing.metadata[RESULT_KEY]
            labels = seg.update_slice(z, prediction.probabilities[0], as_stack(existing.data))
            self._set_labels(existing, labels)
            self.viewer.layers[probability_name].data = like_layer(seg.probabilities, image.ndim)
            self.refresh_table()
            self._autosave()
            return existing
        if z is not None:  # one slice of a stack: the rest stays empty until segmented
            full = np.zeros(scan.shape, np.float32)
            full[z] = prediction.probabilities[0]
            prediction = Prediction.from_probabilities(full, prediction.settings, scan.is_volume,
                                                       model_name=prediction.model_name,
                                                       model_version=prediction.model_version)
        seg = LayerResult(image.name, model, scan, prediction)
        scale, translate = image.scale, image.translate
        if probability_name in self.viewer.layers:
            self.viewer.layers.remove(probability_name)
        self.viewer.add_image(like_layer(seg.probabilities, image.ndim), name=probability_name,
                              colormap="inferno", blending="additive", opacity=0.5, contrast_limits=(0, 1),
                              scale=scale, translate=translate, visible=False)
        if existing is not None:
            self.viewer.layers.remove(existing)
        labels = self.viewer.add_labels(like_layer(seg.labels(), image.ndim), name=labels_name, scale=scale,
                                        translate=translate, opacity=0.5, metadata={RESULT_KEY: seg, SCAN_KEY: scan},
                                        colormap=labels_colormap(model_colour_name(model)))
        labels.events.paint.connect(lambda *_: self._refresh_timer.start())
        labels.events.data.connect(lambda *_: None if self._updating else self._refresh_timer.start())
        self.result_combo.setCurrentText(labels_name)
        self._on_result_changed()
        if first_result:
            self.viewer.reset_view()
        self._autosave()
        show_info(f"{image.name}: {model_label(model)} in {prediction.precision}, {prediction.seconds:.1f} s")
        for warning in scan.warnings:  # the result may be partial or meaningless: say so beside it
            show_warning(f"{image.name}: {warning}")
        return labels

    def _set_labels(self, layer: Labels, stack: np.ndarray) -> None:
        self._updating = True
        try:
            layer.data = like_layer(stack, layer.ndim)
        finally:
            self._updating = False

    # --- threshold, lesions, edits -------------------------------------------------------------
    def _on_threshold(self, value: int) -> None:
        self.threshold_label.setText(f"{value / 100:.2f}")
        layer = self.current_result()
        if layer is None:
            return
        seg: LayerResult = layer.metadata[RESULT_KEY]
        labels = seg.rethreshold(value / 100, as_stack(layer.data), keep_edits=self.keep_edits.isChecked())
        self._set_labels(layer, labels)
        self.refresh_table()
        self._autosave()

    def _after_edit(self) -> None:
        self.refresh_table()
        self._autosave()

    def lesion_rows(self) -> list[dict]:
        layer = self.current_result()
        if layer is None:
            return []
        seg: LayerResult = layer.metadata[RESULT_KEY]
        return lesion_rows(seg.scan, as_stack(layer.data) != 0, seg.probabilities)

    def refresh_table(self) -> None:
        """The lesion table of the current result; a score shown above it is marked out of date
        (this runs after every edit, threshold move and new or other result)."""
        self.table.show_lesions(self.lesion_rows())
        text = self.score_label.text()
        if text and not text.startswith(STALE):
            self.score_label.setText(STALE + text)

    def jump_to_lesion(self, row: int, _column: int = 0) -> None:
        """Show the lesion of table row ``row``: its slice, centred in the view."""
        layer, where = self.current_result(), self.table.location(row)
        if layer is None or where is None:
            return
        z, r, c = where
        if layer.ndim == 3:
            step = list(self.viewer.dims.current_step)
            step[0] = int(round(z))
            self.viewer.dims.current_step = tuple(step)
            world = np.asarray(layer.data_to_world((z, r, c)))
        else:
            world = np.asarray(layer.data_to_world((r, c)))
        self.viewer.camera.center = tuple(world[-2:])

    # --- scoring and comparing -----------------------------------------------------------------
    def score(self) -> dict | None:
        """Scores of the current result against the chosen truth, and an errors layer of where
        they differ (1 true positive, 2 false positive, 3 false negative)."""
        layer, truth_name = self.current_result(), self.truth_combo.currentText()
        if self._refresh_timer.isActive():  # an edit still waiting: take it in first, not after the score
            self._refresh_timer.stop()
            self._after_edit()
        self.score_label.setText("")  # a failed score leaves no figures of an earlier mask behind
        self._scores = None
        if layer is None or truth_name not in self.viewer.layers:
            self._error("Segment an image first, then choose the labels layer holding the true mask.")
            return None
        truth = as_stack(self.viewer.layers[truth_name].data) != 0
        pred = as_stack(layer.data) != 0
        if truth.shape != pred.shape:
            self._error(f"{truth_name} is {truth.shape[1:]} x {truth.shape[0]} slices but the segmentation is "
                        f"{pred.shape[1:]} x {pred.shape[0]}; choose a mask of the same image")
            return None
        seg: LayerResult = layer.metadata[RESULT_KEY]
        scores = score_against(pred, truth, seg.scan.spacing)
        errors = np.select([pred & truth, pred & ~truth, ~pred & truth], [1, 2, 3], 0).astype(np.uint8)
        self._put_labels(layer_name("errors", seg.model, seg.image), errors, layer, ERRORS)
        les = scores["lesions"]
        self.score_label.setText(
            f"Dice {scores['dice']:.3f} · IoU {scores['iou']:.3f} · HD95 {hd95_text(scores)}\n"
            f"lesions found {les['tp_ref']} of {les['n_ref']} · false positives {les['fp_pred']} · "
            f"lesion-wise F1 {les['f1']:.3f}")
        self._scores = {"segmentation": layer.name, "model": seg.model, "threshold": seg.threshold,
                        "truth": truth_name, **scores}
        return scores

    def _put_labels(self, name: str, stack: np.ndarray, like: Labels, colours: tuple[str, ...]) -> Labels:
        """A labels layer ``name`` (replacing one of that name) on ``like``'s grid, value k in the
        colour of ``colours[k - 1]``."""
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        return self.viewer.add_labels(like_layer(stack, like.ndim), name=name, scale=like.scale,
                                      translate=like.translate, opacity=0.7, colormap=labels_colormap(*colours))

    def compare(self) -> None:
        """The first two networks of the chosen model's sequence family on the chosen image: a
        labels layer each and one of where they disagree. After an ensemble of those networks ran
        on the whole image, its members' probabilities are used and no network runs."""
        chosen = self._chosen_image()
        if chosen is None:
            return
        image, scan = chosen
        choice = self._choose(image, scan)
        if choice is None:
            return
        networks = family_networks(choice.sequence or "")[:2]
        if len(networks) < 2:
            have = ", ".join(model_label(n) for n in networks) or "none"
            self._error(f"Compare runs two networks of one sequence family; {sequence_label(choice.sequence)} has "
                        f"{have} here, so there is nothing to compare.")
            return
        kept = self._ensemble_members(image.name, networks)
        if kept is not None:
            self._add_comparison(image, scan, networks, kept, "; from the ensemble's members (no network ran)")
            return
        precision = self.precision_combo.currentText()

        def job():
            return [run_model(m, scan, None, self._progress.changed.emit, self._cancel, precision,
                              self._progress.loading.emit) for m in networks]

        self._start(job, lambda outs: self._add_comparison(image, scan, networks, outs))

    def _ensemble_members(self, image: str, networks: tuple[str, ...]) -> list[Prediction] | None:
        """The ``networks``' own predictions from an ensemble result of layer ``image`` that kept
        their probabilities (each at its card's settings, with the TTA the ensemble ran with)."""
        for layer in self.viewer.layers:
            seg = layer.metadata.get(RESULT_KEY)
            if not isinstance(seg, LayerResult) or seg.image != image:
                continue
            ensemble = seg.prediction
            if all(n in ensemble.member_probabilities for n in networks):
                return [Prediction.from_probabilities(
                    ensemble.member_probabilities[n], card_settings(n).override(tta=ensemble.settings.tta),
                    ensemble.volume, model_name=n, precision=ensemble.precision) for n in networks]
        return None

    def _add_comparison(self, image: Image, scan: Scan, networks: tuple[str, ...], predictions: list[Prediction],
                        source: str = "") -> None:
        """Each network's result layer at its card's settings, as an outline so that the two stay
        apart, and where the two disagree."""
        layers = [self._add_result(image, scan, model, None, prediction)
                  for model, prediction in zip(networks, predictions)]
        for layer in layers:
            layer.contour = 2
        masks = [p.mask for p in predictions]
        disagreement = np.where(masks[0] & ~masks[1], 1, np.where(~masks[0] & masks[1], 2, 0)).astype(np.uint8)
        self._put_labels(layer_name("disagree", " vs ".join(networks), image.name), disagreement, layers[0],
                         DISAGREEMENT)
        stats = compare_models(masks[0], masks[1])
        first, second = (model_label(m) for m in networks)
        self.compare_label.setText(
            f"Dice between the models {stats['dice_between']:.3f}; {first} only (orange) {stats['first_only']} px, "
            f"{second} only (blue) {stats['second_only']} px, both {stats['both']} px{source}")

    # --- keeping the mask, the table and the scores --------------------------------------------
    def _save_path(self, title: str, suggested: str, filters: str) -> str | None:
        path, _ = QFileDialog.getSaveFileName(self, title, suggested, filters)
        return path or None

    def _write_text(self, path: str, text: str) -> str | None:
        try:
            Path(path).write_text(text, encoding="utf-8")
        except OSError as exc:
            self._error(f"Could not save {path}: {exc}")
            return None
        show_info(f"Saved {path}")
        return path

    def export(self, path: str | None = None) -> str | None:
        layer = self.current_result()
        if layer is None:
            self._error("Nothing to export yet: segment an image first.")
            return None
        suggested = f"{layer.name}.png" if layer.ndim == 2 else f"{layer.name}.nii.gz"
        path = path or self._save_path("Export mask", suggested, "Masks (*.png *.nii *.nii.gz)")
        if path is None:
            return None
        try:
            write_labels(path, layer.data, {"metadata": layer.metadata, "scale": tuple(layer.scale)})
        except (ValueError, OSError) as exc:
            self._error(f"Could not save {path}: {exc}")
            return None
        show_info(f"Saved {path}")
        return path

    def export_lesions(self, path: str | None = None) -> str | None:
        """The current result's lesion table as CSV (the core's columns; slices from 0, as napari's slider)."""
        layer = self.current_result()
        if layer is None:
            self._error("No lesion table yet: segment an image first.")
            return None
        path = path or self._save_path("Export lesion table", f"{_safe(layer.name)}_lesions.csv", "CSV (*.csv)")
        return None if path is None else self._write_text(path, lesion_csv(self.lesion_rows()))

    def export_scores(self, path: str | None = None) -> str | None:
        """The last score as JSON: which segmentation, model, threshold and truth, and every figure."""
        if self._scores is None or self.score_label.text().startswith(STALE):
            self._error("No current score to export: press Score against first (again after a change).")
            return None
        path = path or self._save_path("Export scores", f"{_safe(self._scores['segmentation'])}_scores.json",
                                       "JSON (*.json)")
        return None if path is None else self._write_text(path, json.dumps(self._scores, indent=2) + "\n")

    def _autosave(self) -> None:
        folder = self.autosave_dir.text().strip()
        layer = self.current_result()
        if not (self.autosave.isChecked() and folder and layer is not None):
            return
        Path(folder).mkdir(parents=True, exist_ok=True)
        suffix = ".png" if layer.ndim == 2 else ".nii.gz"
        try:
            write_labels(str(Path(folder) / f"{_safe(layer.name)}{suffix}"), layer.data,
                         {"metadata": layer.metadata, "scale": tuple(layer.scale)})
        except (ValueError, OSError) as exc:
            self._error(f"Autosave to {folder} failed: {exc}")


def _safe(name: str) -> str:
    """A layer name as a file name."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
