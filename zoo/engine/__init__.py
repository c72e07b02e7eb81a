"""mmengine glue: the timm classifier wrapper, metrics, hooks and safe checkpoint loading."""

from .checkpoint_order import save_checkpoints_before_pruning
from .classifier import TimmClassifier
from .dcal_classifier import DCALClassifier
from .ema import ModelEMAHook
from .fault_injection import FaultInjectionHook
from .hooks import ExportSafetensorsHook, ProgressBarHook, TrainingCurveHook
from .medusa import BodyTrunkAlternationHook, CXRReport
from .metrics import Accuracy
from .optim import CpuAmpOptimWrapper
from .patches import PINNED, apply_patches
from .reid_metric import ReIDMetric
from .resume import ResumableEpochBasedTrainLoop, capture_rng_state, restore_rng_state, use_exact_resume
from .safe_load import allow_mmengine_checkpoints
from .skip_report import SkippedSamplesHook

# Nothing is patched at import: zoo.engine.patches.apply_patches() does it (the zoo's runner calls it).
__all__ = [
    'TimmClassifier',
    'DCALClassifier',
    'Accuracy',
    'CXRReport',
    'BodyTrunkAlternationHook',
    'ReIDMetric',
    'ProgressBarHook',
    'TrainingCurveHook',
    'ExportSafetensorsHook',
    'ModelEMAHook',
    'CpuAmpOptimWrapper',
    'allow_mmengine_checkpoints',
    'apply_patches',
    'PINNED',
    'save_checkpoints_before_pruning',
    'SkippedSamplesHook',
    'FaultInjectionHook',
    'ResumableEpochBasedTrainLoop',
    'capture_rng_state',
    'restore_rng_state',
    'use_exact_resume',
]
