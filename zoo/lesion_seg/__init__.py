"""Binary segmentation (MHS-VM / VM-UNet style): datasets, BCE+Dice loss, the mmengine model
wrapper, DSC/IoU metric and a hook that writes prediction overlays. Everything registers in
``zoo.registry`` (scope ``zoo``), so configs find it by ``type=``."""

from .datasets import ISICSegDataset, SyntheticLesionDataset
from .hooks import SegOverlayHook, save_overlay
from .losses import BceDiceLoss, dice_score
from .metrics import BinarySegMetric
from .models import MHSVMUNetSeg
from .segmentor import BinarySegmentor

__all__ = [
    'ISICSegDataset',
    'SyntheticLesionDataset',
    'BceDiceLoss',
    'dice_score',
    'BinarySegmentor',
    'BinarySegMetric',
    'SegOverlayHook',
    'save_overlay',
    'MHSVMUNetSeg',
]
