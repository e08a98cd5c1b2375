"""What a model trained on each known data set is for, and the licence its weights inherit:
``python -m training export --purpose`` writes one of these into the model card."""

from __future__ import annotations

from metaseg_viewer.sequences import ModelPurpose

#: The training data's terms, which the weights inherit (written into every exported card).
DATA_LICENCE = ("LGG segmentation data set of Buda et al. 2019 (TCGA-LGG via TCIA): CC BY-NC-SA 4.0. The weights "
                "are derived from it: cite Buda et al. 2019 and TCIA, no commercial use, share derivatives alike.")
BRISC_LICENCE = ("BRISC 2025 (Fateh et al. 2025, arXiv 2506.14318): CC BY 4.0. Weights started from a FLAIR model "
                 "trained on the LGG data set (CC BY-NC-SA 4.0) also inherit that licence: cite both, no commercial "
                 "use, share derivatives alike.")

#: What a model trained on each known data set is for; ``export --purpose`` writes one into the card.
PURPOSES: dict[str, ModelPurpose] = {
    "lgg-flair": ModelPurpose(
        sequence="flair", target="FLAIR abnormality of lower-grade glioma (not metastases)", planes=("axial",),
        dataset="LGG segmentation data set (Buda et al. 2019; TCGA-LGG), 110 patients", licence=DATA_LICENCE),
    "brisc-t1c": ModelPurpose(
        sequence="t1c", target="enhancing tumour of glioma, meningioma and pituitary tumours (not trained on metastases)",
        planes=("axial", "coronal", "sagittal"),
        dataset="BRISC 2025 segmentation task, train split (3933 T1c slices)", licence=BRISC_LICENCE),
}
