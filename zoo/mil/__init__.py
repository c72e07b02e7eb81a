"""Whole-slide-image multiple-instance learning: tiling, feature extraction, bag datasets, ACMIL/ABMIL
heads, losses, metrics and attention heatmaps.

Not imported by ``import zoo`` (openslide is the optional ``wsi`` extra); mmengine configs with
``default_scope='zoo'`` import it through the registry's ``locations``. Importing it does not need
openslide: only opening a slide does.
"""

from . import classifier, datasets, features, heatmap, losses, metrics, models, tiling  # noqa: F401
from .classifier import MILClassifier, load_mil_checkpoint
from .datasets import MILBagDataset, read_slide_table
from .losses import acmil_losses, diversity_loss
from .metrics import MILMetric, macro_auc
from .models import ABMIL, ACMILGA, ACMILMHA, MaxMIL, MeanMIL, checkpoint_filter_fn, stkim_mask
from .tiling import SlideReadError, TilingConfig, tile_slide

ACMIL_GA = ACMILGA
ACMIL_MHA = ACMILMHA

__all__ = [
    'ABMIL',
    'ACMILGA',
    'ACMILMHA',
    'ACMIL_GA',
    'ACMIL_MHA',
    'MILBagDataset',
    'MILClassifier',
    'MILMetric',
    'MaxMIL',
    'MeanMIL',
    'SlideReadError',
    'TilingConfig',
    'acmil_losses',
    'checkpoint_filter_fn',
    'diversity_loss',
    'load_mil_checkpoint',
    'macro_auc',
    'read_slide_table',
    'stkim_mask',
    'tile_slide',
]
