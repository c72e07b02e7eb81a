"""bfloat16 autocast on CPU (``tools/train.py --amp``) for mmdet / mmseg models.

mmcv's compiled CPU kernels (NMS, RoIAlign, ...) take float32 only, while the heads feeding them
produce bfloat16 under CPU autocast. The wrappers below upcast bfloat16 tensor arguments to float32
before calling those ops and cast floating results back (both casts are differentiable);
float32 calls are unchanged.
"""

from __future__ import annotations

import torch

_patched = False


def _back(x):
    return x.to(torch.bfloat16) if torch.is_tensor(x) and x.is_floating_point() else x


def _upcasting(apply):
    def wrapped(*args):
        if not any(torch.is_tensor(a) and a.dtype == torch.bfloat16 for a in args):
            return apply(*args)
        out = apply(*[a.float() if torch.is_tensor(a) and a.dtype == torch.bfloat16 else a for a in args])
        # Hand results back in the caller's dtype (mmdet writes them into bfloat16 buffers).
        return tuple(_back(o) for o in out) if isinstance(out, tuple) else _back(out)

    return wrapped


def enable_cpu_bf16_ops() -> None:
    """Make mmcv's float32-only CPU ops accept bfloat16 inputs (idempotent)."""
    global _patched
    if _patched:
        return
    import importlib

    # mmcv.ops re-exports functions named like its modules, so fetch the modules themselves.
    nms_mod = importlib.import_module('mmcv.ops.nms')
    roi_align_mod = importlib.import_module('mmcv.ops.roi_align')
    for fn in (nms_mod.NMSop, roi_align_mod.RoIAlignFunction):
        fn.apply = _upcasting(fn.apply)
    roi_align_mod.roi_align = roi_align_mod.RoIAlignFunction.apply  # the module-level alias RoIAlign calls
    _patched = True
