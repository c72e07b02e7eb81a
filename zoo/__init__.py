"""attention-zoo: attention-augmented vision backbones for timm and OpenMMLab.

Importing ``zoo`` registers every zoo model with timm, so ``timm.create_model(name)`` works.
"""

__version__ = "0.1.0"

from . import models  # noqa: E402,F401  (registers the models with timm)
