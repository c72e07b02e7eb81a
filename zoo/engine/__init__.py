"""mmengine glue: the timm classifier wrapper, metrics, hooks and safe checkpoint loading."""

from .checkpoint_order import save_checkpoints_before_pruning
from .classifier import TimmClassifier
from .fault_injection import FaultInjectionHook
from .hooks import ExportSafetensorsHook, ProgressBarHook, TrainingCurveHook
from .metrics import Accuracy
from .optim import CpuAmpOptimWrapper
from .resume import ResumableEpochBasedTrainLoop, capture_rng_state, restore_rng_state, use_exact_resume
from .safe_load import allow_mmengine_checkpoints
from .skip_report import SkippedSamplesHook

# mmengine's Runner loads with torch's weights_only default: make its own files loadable; and
# rotate checkpoints so that a crash while saving never leaves --resume without a file.
allow_mmengine_checkpoints()
save_checkpoints_before_pruning()

__all__ = ['TimmClassifier', 'Accuracy', 'ProgressBarHook', 'TrainingCurveHook', 'ExportSafetensorsHook',
           'CpuAmpOptimWrapper', 'allow_mmengine_checkpoints',
           'save_checkpoints_before_pruning', 'SkippedSamplesHook', 'FaultInjectionHook',
           'ResumableEpochBasedTrainLoop', 'capture_rng_state', 'restore_rng_state', 'use_exact_resume']
