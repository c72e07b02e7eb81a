"""attention-zoo: attention-augmented vision backbones for timm and OpenMMLab.

Importing ``zoo`` registers every zoo model with timm, so ``timm.create_model(name)`` works.
"""

__version__ = '0.1.0'

import warnings as _warnings

# setuptools < 81 (pinned: mmengine 0.10.7 needs pkg_resources) warns on every import of
# pkg_resources, and mmengine re-imports it (importlib.reload) on each package lookup of a config.
# Only that exact message is silenced.
_warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API', category=UserWarning)

from . import models  # noqa: E402,F401  (registers the models with timm)
