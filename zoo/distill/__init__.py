"""zoo.distill (see DESIGN.md)."""

from . import fgd  # noqa: E402,F401  (registers FGDDistiller: QSD-Transformer fine-grained distillation)
