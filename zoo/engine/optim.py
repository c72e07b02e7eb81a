"""Mixed precision that also works on CPU (mmengine's AmpOptimWrapper asserts CUDA)."""

from __future__ import annotations

from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper

from zoo.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CpuAmpOptimWrapper(OptimWrapper):
    """bfloat16 autocast around the forward pass on CPU; no loss scaling is needed for bf16.

    ``tools/train.py --amp`` selects mmengine's ``AmpOptimWrapper`` on GPU and this one on CPU.
    """

    def __init__(self, dtype: str = 'bfloat16', **kwargs) -> None:
        super().__init__(**kwargs)
        self.cast_dtype = getattr(torch, dtype)

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        with super().optim_context(model), torch.autocast('cpu', dtype=self.cast_dtype):
            yield
