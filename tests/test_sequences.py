"""Sequence-aware models: what a card says a model is for, what an input says it is (DICOM tags
read from real files, file names), and which model the core chooses from the two."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from factories import dicom_dataset, save_dicom
from metaseg_viewer.checkpoints import ModelCard, read_card
from metaseg_viewer.errors import CheckpointError
from metaseg_viewer.io import read_scan
from metaseg_viewer.model_choice import ModelChoiceError, choose_model
from metaseg_viewer.registry import (DEFAULT_MODEL, FAMILIES, MODEL_NAMES, describe_models, family_default,
                                     family_networks, group_by_sequence, model_sequence)
from metaseg_viewer.samples import make_slice
from metaseg_viewer.sequences import ModelPurpose, sequence_hint


@pytest.mark.parametrize(("name", "expected"), [
    ("TCGA_CS_4942_19970222_12.tif", None),
    ("sub-01_FLAIR.nii.gz", "flair"),
    ("case7_t2_flair.nii", "flair"),  # "t2" inside "t2 flair" is the FLAIR, not a T2
    ("BraTS2021_00001_t1ce.nii.gz", "t1c"),
    ("sub-01_ce-gd_T1w.nii.gz", "t1c"),  # BIDS contrast entity
    ("patient3_T1+C.dcm", "t1c"),
    ("ax_t1_post_gad.png", "t1c"),
    ("brisc2025_train_00001_gl_ax_t1.jpg", "t1"),  # T1 with no contrast word: no model family
    ("case_t2.nii.gz", "t2"),
    ("scan_posterior_fossa.png", None),  # "post" only as a whole word
])
def test_file_names(name: str, expected: str | None) -> None:
    hint = sequence_hint(name)
    assert hint.sequence == expected
    assert not hint.contradictory
    if expected is None:
        assert "does not name its sequence" in hint.reason
    else:
        assert "file name says" in hint.reason


def test_contradictory_file_name_chooses_nothing_and_says_why() -> None:
    hint = sequence_hint("x_flair_t1c.nii.gz")
    assert hint.sequence is None and hint.contradictory
    assert "'flair'" in hint.reason and "'t1c'" in hint.reason
    choice = choose_model(hint)
    assert choice.model == DEFAULT_MODEL
    assert choice.warnings and "choose the sequence yourself" in choice.warnings[0]


def _dicom(tmp_path: Path, name: str, **tags: str) -> Path:
    pixels = make_slice(size=64, seed=1).image.astype(np.uint16)
    return save_dicom(dicom_dataset(pixels, **tags), tmp_path / name)


def test_dicom_tags_read_from_real_files(tmp_path: Path) -> None:
    post = read_scan(_dicom(tmp_path, "img0001.dcm", SeriesDescription="AX T1 POST GAD"))
    assert post.metadata["series_description"] == "AX T1 POST GAD"
    hint = sequence_hint("img0001.dcm", post.metadata)
    assert hint.sequence == "t1c" and "DICOM SeriesDescription" in hint.reason

    agent = read_scan(_dicom(tmp_path, "a.dcm", SeriesDescription="AX T1 SE", ContrastBolusAgent="Gadobutrol"))
    hint = sequence_hint("a.dcm", agent.metadata)
    assert hint.sequence == "t1c" and "ContrastBolusAgent" in hint.reason

    protocol = read_scan(_dicom(tmp_path, "b.dcm", ProtocolName="t2_tirm_tra_dark-fluid"))
    assert sequence_hint("b.dcm", protocol.metadata).sequence == "flair"

    # Contrast given, but the series is a FLAIR: a post-contrast FLAIR is still a FLAIR.
    flair_post = read_scan(_dicom(tmp_path, "c.dcm", SeriesDescription="AX FLAIR", ContrastBolusAgent="Gadavist"))
    assert sequence_hint("c.dcm", flair_post.metadata).sequence == "flair"

    # The tags and the file name disagree: no automatic choice, and the user is told.
    clash = read_scan(_dicom(tmp_path, "study_flair.dcm", SeriesDescription="AX T1 POST"))
    hint = sequence_hint("study_flair.dcm", clash.metadata)
    assert hint.sequence is None and hint.contradictory
    assert "DICOM SeriesDescription" in hint.reason and "file name" in hint.reason


def test_choice_follows_the_input_the_user_and_warns_on_a_visible_mismatch() -> None:
    t1c_file = sequence_hint("pat_t1ce.nii.gz")
    auto = choose_model(t1c_file)
    assert auto.model == family_default("t1c") and auto.sequence == "t1c"
    assert "t1ce" in auto.reason and not auto.warnings

    forced = choose_model(t1c_file, model="ensemble")  # a FLAIR model on a T1c file: warned, not refused
    assert forced.model == "ensemble" and forced.sequence == "flair"
    assert "FLAIR model" in forced.warnings[0] and "T1c" in forced.warnings[0]

    by_sequence = choose_model(sequence_hint("x.png"), sequence="t1c")
    assert by_sequence.model == "t1c-attention-unet" and "you chose" in by_sequence.reason

    silent = choose_model(sequence_hint("x.png"))
    assert silent.model == DEFAULT_MODEL and "does not name its sequence" in silent.reason

    plain_t1 = choose_model(sequence_hint("brisc_gl_ax_t1.jpg"))
    assert plain_t1.model == DEFAULT_MODEL and "no model here is trained for it" in plain_t1.warnings[0]

    with pytest.raises(ModelChoiceError, match="unknown sequence 't2'"):
        choose_model(t1c_file, sequence="t2")
    with pytest.raises(ModelChoiceError, match="give one of the two"):
        choose_model(t1c_file, model="unetpp", sequence="t1c")
    with pytest.raises(ModelChoiceError, match="no contrast-enhanced T1 .* loaded"):
        choose_model(t1c_file, sequence="t1c", available=("unetpp",), default="unetpp")
    fallback = choose_model(t1c_file, available=("unetpp",), default="unetpp")  # a server without T1c models
    assert fallback.model == "unetpp" and fallback.warnings


def test_shipped_cards_say_what_they_are_for_and_match_the_families() -> None:
    rows = {row["name"]: row for row in describe_models()}
    assert list(rows) == list(MODEL_NAMES)
    for sequence, names in FAMILIES.items():
        for name in names:
            assert rows[name]["sequence"] == sequence == model_sequence(name), name
            purpose = rows[name]["purpose"]
            assert purpose["target"] and purpose["dataset"] and purpose["licence"] and purpose["planes"]
    assert rows["ensemble"]["purpose"]["licence"].startswith("LGG") and "CC BY-NC-SA 4.0" in rows["unetpp"]["purpose"]["licence"]
    assert "CC BY 4.0" in rows["t1c-attention-unet"]["purpose"]["licence"]
    assert group_by_sequence(list(rows.values())) == {seq: list(names) for seq, names in FAMILIES.items()}
    assert family_networks("flair") == ("unetpp", "attention-unet")


def test_purpose_round_trips_through_a_card_and_bad_ones_are_refused(tmp_path: Path, tiny_checkpoint: Path) -> None:
    card = read_card(tiny_checkpoint)
    assert card.purpose is None and card.sequence is None and model_sequence(tiny_checkpoint) is None
    purpose = ModelPurpose("t1c", "enhancing tumour", ("axial", "coronal"), "BRISC 2025", "CC BY 4.0")
    again = ModelCard.from_dict(json.loads(json.dumps(ModelCard(**{**card.__dict__, "purpose": purpose}).to_dict())))
    assert again.purpose == purpose and again.sequence == "t1c"
    bad = {**card.to_dict(), "purpose": {**purpose.to_dict(), "sequence": "dwi"}}
    with pytest.raises(CheckpointError, match="sequence must be one of"):
        ModelCard.from_dict(bad)
    with pytest.raises(CheckpointError, match="unknown keys \\['colour'\\]"):
        ModelCard.from_dict({**card.to_dict(), "purpose": {**purpose.to_dict(), "colour": 1}})


def test_t1c_sample_has_an_enhancing_rim_around_a_dark_core() -> None:
    flair, t1c = make_slice(seed=0), make_slice(seed=0, sequence="t1c")
    assert np.array_equal(flair.mask, t1c.mask)  # same head and lesions, another look
    import cv2

    largest = cv2.connectedComponentsWithStats(t1c.mask.astype(np.uint8))
    label = 1 + int(np.argmax(largest[2][1:, cv2.CC_STAT_AREA]))
    lesion = largest[1] == label
    depth = cv2.distanceTransform(lesion.astype(np.uint8), cv2.DIST_L2, 5)
    rim, core = t1c.image[(depth > 1) & (depth <= 3)], t1c.image[depth > 6]
    assert rim.mean() > 150 > 80 > core.mean()  # enhancing rim, necrotic core
    assert flair.image[depth > 6].mean() > 150  # the FLAIR look is bright throughout
    with pytest.raises(ValueError, match="sample sequence must be one of"):
        make_slice(sequence="dwi")
