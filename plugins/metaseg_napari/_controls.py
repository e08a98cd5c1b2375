"""The widget's controls, laid out once: Qt's ``setupUi`` pattern, so that the widget module holds
behaviour only. Every control becomes an attribute of the widget and is connected to its methods."""

from __future__ import annotations

from typing import Any

from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from metaseg_viewer.precision import PRECISIONS
from metaseg_napari._choice import sequence_menu
from metaseg_napari._layers import legend_html
from metaseg_napari._lesion_table import LesionTable


def setup_controls(widget: Any) -> None:
    """Build ``widget``'s groups (segment, result, score and compare, keep the mask) in a scroll
    area, so that the dock never makes the window taller than a laptop screen."""
    # In a scroll area, so that the dock does not make the window taller than a laptop screen;
    # only as wide as the controls need, so that the canvas keeps the rest.
    widget._scroll = scroll = QScrollArea()
    content = QWidget()
    scroll.setWidgetResizable(True)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
    scroll.setWidget(content)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    layout = QVBoxLayout(content)
    run = QGroupBox("Segment")
    form = QFormLayout(run)
    widget.image_combo, widget.sequence_combo, widget.model_combo = QComboBox(), QComboBox(), QComboBox()
    widget.result_combo, widget.truth_combo = QComboBox(), QComboBox()
    for combo in (widget.image_combo, widget.sequence_combo, widget.model_combo, widget.result_combo, widget.truth_combo):
        # long layer names must not widen the dock: the canvas keeps its width
        combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(10)
    widget.image_combo.currentIndexChanged.connect(widget._on_result_changed)
    widget.model_combo.currentIndexChanged.connect(widget._on_result_changed)
    for label, data in sequence_menu():
        widget.sequence_combo.addItem(label, data)
    widget.sequence_combo.setToolTip("The MRI sequence of the image: each model was trained for one. Auto reads it "
                                   "from the layer's file name or DICOM description (flair, t1c, t1ce, post, "
                                   "gad…) and says which it chose and why.")
    widget.sequence_combo.currentIndexChanged.connect(widget._fill_models)
    widget.tta = QCheckBox("Test-time augmentation (flip)")
    widget.tta.setTristate(False)
    widget.tta_default = QCheckBox("use the model card's TTA setting")
    widget.tta_default.setChecked(True)
    widget.tta_default.toggled.connect(lambda on: widget.tta.setEnabled(not on))
    widget.tta.setEnabled(False)
    widget.precision_combo = QComboBox()
    widget.precision_combo.addItems(list(PRECISIONS))
    widget.precision_combo.setToolTip("auto: bf16 where the CPU (AMX / AVX512-BF16) or GPU computes it natively "
                                    "(about 2x faster), fp32 elsewhere")
    form.addRow("Image layer", widget.image_combo)
    models = QHBoxLayout()
    models.addWidget(widget.sequence_combo)
    models.addWidget(widget.model_combo, 1)
    form.addRow("Sequence, model", models)
    form.addRow("Precision", widget.precision_combo)
    form.addRow(widget.tta_default)
    form.addRow(widget.tta)
    buttons = QHBoxLayout()
    widget.slice_button, widget.stack_button = QPushButton("Segment slice"), QPushButton("Segment stack")
    widget.cancel_button = QPushButton("Cancel")
    widget.cancel_button.setEnabled(False)
    widget.slice_button.clicked.connect(lambda: widget.segment(whole_stack=False))
    widget.stack_button.clicked.connect(lambda: widget.segment(whole_stack=True))
    widget.cancel_button.clicked.connect(widget.cancel)
    for b in (widget.slice_button, widget.stack_button, widget.cancel_button):
        buttons.addWidget(b)
    form.addRow(buttons)
    widget.progress = QProgressBar()
    widget.progress.setRange(0, 100)
    widget.progress.setValue(0)
    form.addRow(widget.progress)
    widget.choice_label = QLabel("")
    widget.choice_label.setWordWrap(True)
    form.addRow(widget.choice_label)
    widget.message_label = QLabel("")  # the whole of the last error: a notification shows only its first line
    widget.message_label.setWordWrap(True)
    widget.message_label.setStyleSheet("color: #ff6e6e")
    widget.message_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
    form.addRow(widget.message_label)
    layout.addWidget(run)

    result = QGroupBox("Result")
    form = QFormLayout(result)
    widget.result_combo.currentIndexChanged.connect(widget._on_result_changed)
    form.addRow("Segmentation", widget.result_combo)
    widget.threshold = QSlider(Qt.Horizontal)
    widget.threshold.setRange(1, 99)
    widget.threshold.setValue(50)
    widget.threshold_label = QLabel("0.50")
    widget.threshold.valueChanged.connect(widget._on_threshold)
    row = QHBoxLayout()
    row.addWidget(widget.threshold)
    row.addWidget(widget.threshold_label)
    form.addRow("Threshold", row)
    widget.keep_edits = QCheckBox("keep my manual edits when the threshold moves")
    widget.keep_edits.setChecked(True)
    form.addRow(widget.keep_edits)
    widget.table = LesionTable()
    widget.table.cellClicked.connect(widget.jump_to_lesion)
    form.addRow(widget.table)
    widget.export_lesions_button = QPushButton("Export lesion table (CSV)…")
    widget.export_lesions_button.clicked.connect(lambda: widget.export_lesions())
    form.addRow(widget.export_lesions_button)
    layout.addWidget(result)

    score = QGroupBox("Score and compare")
    form = QFormLayout(score)
    widget.score_button = QPushButton("Score against")
    widget.score_button.clicked.connect(widget.score)
    row = QHBoxLayout()
    row.addWidget(widget.score_button)
    row.addWidget(widget.truth_combo)
    form.addRow(row)
    widget.score_label = QLabel("")
    widget.score_label.setWordWrap(True)
    form.addRow(widget.score_label)
    widget.export_scores_button = QPushButton("Export scores (JSON)…")
    widget.export_scores_button.clicked.connect(lambda: widget.export_scores())
    form.addRow(widget.export_scores_button)
    widget.compare_button = QPushButton("Compare")
    widget.compare_button.clicked.connect(widget.compare)
    form.addRow(widget.compare_button)
    widget.compare_label = QLabel("")
    widget.compare_label.setWordWrap(True)
    form.addRow(widget.compare_label)
    widget.legend = QLabel(legend_html())
    widget.legend.setWordWrap(True)
    widget.legend.setToolTip("Layer colours. A prediction: its model's colour. Compare: each network as an outline "
                           "in its colour, and where only one of them finds lesion. Score against: the errors "
                           "layer (values 1 true positive, 2 false positive, 3 false negative).")
    form.addRow(widget.legend)
    layout.addWidget(score)

    save = QGroupBox("Keep the mask")
    form = QFormLayout(save)
    widget.export_button = QPushButton("Export mask…")
    widget.export_button.clicked.connect(lambda: widget.export())
    form.addRow(widget.export_button)
    widget.autosave = QCheckBox("autosave after every change to")
    widget.autosave_dir = QLineEdit()
    widget.autosave_dir.setPlaceholderText("folder")
    row = QHBoxLayout()
    row.addWidget(widget.autosave)
    row.addWidget(widget.autosave_dir)
    form.addRow(row)
    layout.addWidget(save)
    note = QLabel("Each model reads one sequence (its menu tooltip says what it was trained on). "
                  "Research use only.")
    note.setWordWrap(True)
    layout.addWidget(note)
    layout.addStretch()
