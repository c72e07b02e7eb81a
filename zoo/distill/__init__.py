"""zoo.distill (see DESIGN.md and docs/distillation.md): one distiller for classification, detection and
segmentation (``SingleTeacherDistiller``), connectors, and the losses (ACAM-KD, FGD = focal-and-global,
MasKD, feature MSE, logit KD), and MasKD's first stage (``MasKDMaskLearner``). ``FGDDistiller`` is
QSD-Transformer's fine-grained distillation."""

from . import connectors, distiller, fgd, losses, maskd_stage1  # noqa: F401  (register the classes)
from .connectors import ConvModuleConnector
from .distiller import SingleTeacherDistiller
from .fgd import FGDDistiller
from .maskd_stage1 import MasKDMaskLearner

__all__ = ['ConvModuleConnector', 'FGDDistiller', 'MasKDMaskLearner', 'SingleTeacherDistiller']
