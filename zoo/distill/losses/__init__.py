"""Distillation losses, registered in the zoo's MODELS registry (MMRazor's vocabulary: ``distill_losses``)."""

from .acam_kd import (
    ACAMKDLoss,
    ASCMasks,
    STCAFusion,
    dice_diversity,
    mask_contrast,
    mask_decorrelation,
    mask_spatial_spread,
    masked_feature_losses,
)
from .focal_global import FocalGlobalLoss, focal_attention, foreground_masks
from .maskd import MasKDLoss, load_stage1, mask_weight_head, teacher_masks
from .qsd_fine_grained import QSDFineGrainedLoss
from .simple import FeatureMSELoss, LogitKDLoss

__all__ = [
    'ACAMKDLoss',
    'ASCMasks',
    'FeatureMSELoss',
    'FocalGlobalLoss',
    'LogitKDLoss',
    'MasKDLoss',
    'QSDFineGrainedLoss',
    'STCAFusion',
    'dice_diversity',
    'focal_attention',
    'foreground_masks',
    'load_stage1',
    'mask_contrast',
    'mask_decorrelation',
    'mask_spatial_spread',
    'mask_weight_head',
    'masked_feature_losses',
    'teacher_masks',
]
