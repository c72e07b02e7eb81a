"""zoo.distill (see DESIGN.md and docs/distillation.md): one distiller for classification, detection and
segmentation (``SingleTeacherDistiller``), connectors, and the losses (ACAM-KD, FGD = focal-and-global,
MasKD, feature MSE, logit KD). ``FGDDistiller`` is QSD-Transformer's fine-grained distillation."""

from . import connectors, distiller, fgd, losses  # noqa: F401  (register the classes)
from .connectors import ConvModuleConnector
from .distiller import SingleTeacherDistiller
from .fgd import FGDDistiller

__all__ = ['ConvModuleConnector', 'FGDDistiller', 'SingleTeacherDistiller']
