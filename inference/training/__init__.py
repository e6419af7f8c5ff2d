"""Training and leave-one-subject-out evaluation of PainNet: pure torch, no Django.

Two recipes (:data:`~inference.training.config.RECIPES`). ``paper`` is Zhao et al. 2024: a
pretrained backbone plus the FC512/FC128 head with dropout 0.5 and batch norm
(:mod:`inference.painnet`), Adam at 1e-5, rotation 0-15 degrees and horizontal flips
(:func:`inference.preprocess.train_transform`), early stopping on the validation loss, and
leave-one-subject-out cross-validation (LOSOCV). ``default`` is the one that learns a subtle
facial signal from a few hundred frames on 2 CPU cores: the head at 1e-3 and the trainable
backbone layers at 1e-4 (AdamW, weight decay 1e-4), a linear warm-up then a half-cosine decay,
label smoothing 0.1, bedside augmentation (:func:`inference.preprocess.bedside_transform`),
early stopping on the validation subjects' AUC (at least two of them), and flip test-time
averaging (served the same way, :attr:`inference.bundle.LoadedModel.flip_tta`). Additions
to the paper common to both, each for a stated reason:

* **Early stopping on held-out subjects.** The paper early-stops on the test subject; here
  a validation split of the *training* subjects is held out instead, so the test subject
  never influences training (no optimistic bias).
* **Class imbalance** (COPE is 7:3 nonpain:pain): class-weighted cross-entropy, weights
  ``n / (2 n_class)`` from the training split.
* **Face crops made exactly as served** (same decoder, detector, margin and letterbox as
  :class:`inference.pipeline.Pipeline`) and cached on disk, keyed by the file's sha256 plus
  the detector and preprocessing, so a second run skips detection.
* **Fine-tuning depth** (``finetune``), because 2 CPU cores cannot afford the paper's full
  fine-tune on every fold:

  - ``"last"`` (default): the backbone's last block plus the head are trained; the frozen
    part's outputs are computed once per image for the un-augmented view and
    ``augment_views`` augmented views (rotation + flip, seeded), and shared by every
    LOSOCV fold. Close to the paper's transfer learning at a fraction of the cost.
  - ``"head"``: backbone frozen, head trained on cached embeddings of the same views (the
    fastest; what the tests use).
  - ``"all"``: the paper's full fine-tune with on-the-fly augmentation (use a GPU).

Dataset layouts: ``DIR/<subject_id>/<pain|nonpain>/*.jpg|png`` (COPE/MNPAD-derived sets),
or a CSV manifest with columns ``path, subject, label`` (paths relative to the CSV). A
folder may instead hold ``manifest.csv``. A folder written by ``export_training_set`` has
``dataset.json`` with ``"cropped": true``: its images are already the served face crops, so
no detector is run on them.

Where each part lives (this package re-exports the public names, so callers keep writing
``from inference import training as tr``):

* :mod:`~inference.training.datasets`: folder layouts, manifests, ``dataset.json``, summaries.
* :mod:`~inference.training.crops`: face crops made as served, with their on-disk cache.
* :mod:`~inference.training.config`: hyper-parameters, seeding, the validation split of subjects.
* :mod:`~inference.training.finetune`: which part of the backbone trains; the feature bank.
* :mod:`~inference.training.fit`: one fit with early stopping; p(pain) of a trained model.
* :mod:`~inference.training.cross_validation`: LOSOCV and per-subject figures.
* :mod:`~inference.training.serving`: the model to serve (calibration, metrics, bundle).
"""

from inference.training.config import (
    FINETUNE_MODES,
    RECIPES,
    TrainConfig,
    class_weights,
    seed_everything,
    subject_indices,
    validation_split,
)
from inference.training.crops import (
    CROP_RECIPE_VERSION,
    CropSet,
    CropSettings,
    dataset_crop_settings,
    default_cache_dir,
    face_crops,
)
from inference.training.cross_validation import losocv, per_subject_accuracy, subject_figures, subject_summary
from inference.training.datasets import (
    DATASET_MARKER,
    IMAGE_SUFFIXES,
    LABEL_NAMES,
    MANIFEST_NAME,
    DatasetError,
    LabelledImage,
    dataset_info,
    dataset_read,
    dataset_scan,
    dataset_summary,
    manifest_read,
)
from inference.training.finetune import FeatureBank, backbone_split
from inference.training.fit import TrainResult, lr_schedule, predict_p_pain, train_painnet
from inference.training.serving import (
    MIN_AUDIT_LABELS,
    MIN_CALIBRATION_IMAGES,
    SERVED_TEMPERATURE_BOUNDS,
    TrainedModel,
    bundle_write,
    served_temperature,
    train_model,
    validation_roles,
)

__all__ = [
    "CROP_RECIPE_VERSION",
    "DATASET_MARKER",
    "FINETUNE_MODES",
    "IMAGE_SUFFIXES",
    "LABEL_NAMES",
    "MANIFEST_NAME",
    "MIN_AUDIT_LABELS",
    "MIN_CALIBRATION_IMAGES",
    "RECIPES",
    "SERVED_TEMPERATURE_BOUNDS",
    "CropSet",
    "CropSettings",
    "DatasetError",
    "FeatureBank",
    "LabelledImage",
    "TrainConfig",
    "TrainResult",
    "TrainedModel",
    "backbone_split",
    "bundle_write",
    "class_weights",
    "dataset_crop_settings",
    "dataset_info",
    "dataset_read",
    "dataset_scan",
    "dataset_summary",
    "default_cache_dir",
    "face_crops",
    "losocv",
    "lr_schedule",
    "manifest_read",
    "per_subject_accuracy",
    "predict_p_pain",
    "seed_everything",
    "served_temperature",
    "subject_figures",
    "subject_summary",
    "subject_indices",
    "train_model",
    "validation_roles",
    "train_painnet",
    "validation_split",
]
