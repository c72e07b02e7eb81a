"""Building blocks shared by zoo model families (one concept per file, no model assembly)."""

from zoo.layers.cross_attention import GLCABlock, block_forward, glca_forward, multi_head_attention
from zoo.layers.rollout import fuse_heads, rollout_cls_row, select_local_queries

__all__ = [
    'GLCABlock',
    'block_forward',
    'fuse_heads',
    'glca_forward',
    'multi_head_attention',
    'rollout_cls_row',
    'select_local_queries',
]
