"""OpenMMLab glue: the ``ZooBackbone`` adapter (any timm model as an mmdet / mmseg backbone) and
inference helpers. The only package of the zoo that imports mmdet / mmseg (lazily, in
``zoo.mm.inference``); configs load it with
``custom_imports = dict(imports=['zoo.mm'], allow_failed_imports=False)``.
"""

import zoo.engine.optim  # noqa: F401  (registers zoo.CpuAmpOptimWrapper for --amp on CPU)
import zoo.models  # noqa: F401  (registers the zoo's timm models)

from .amp import enable_cpu_bf16_ops
from .backbone import SimplePyramid, ZooBackbone

# mmcv's bfloat16 patch for --amp is applied with the others by zoo.engine.patches.apply_patches().

__all__ = ['ZooBackbone', 'SimplePyramid', 'enable_cpu_bf16_ops']
