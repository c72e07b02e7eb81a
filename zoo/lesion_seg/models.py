"""Segmentation networks available to configs (``model.net=dict(type=...)``)."""

from __future__ import annotations

from zoo.models.mhs_vm import UNET_CONFIGS, MHSVMUNet, load_official_checkpoint
from zoo.registry import MODELS


@MODELS.register_module()
class MHSVMUNetSeg(MHSVMUNet):
    """:class:`zoo.models.mhs_vm.MHSVMUNet` for configs.

    Args:
        variant: ``'mhs_vm_unet_4h'`` or ``'mhs_vm_unet_3h'`` (released settings), or ``None`` to
            give every :class:`MHSVMUNet` argument explicitly.
        checkpoint: optional official (``best_4h.pth``) or zoo checkpoint to load (strict).
        **kwargs: :class:`MHSVMUNet` arguments (override the variant's).
    """

    def __init__(self, variant: str | None = 'mhs_vm_unet_4h', checkpoint: str | None = None, **kwargs) -> None:
        if variant is not None and variant not in UNET_CONFIGS:
            raise ValueError(f'variant: expected one of {sorted(UNET_CONFIGS)} or None, got {variant!r}')
        super().__init__(**{**(UNET_CONFIGS[variant] if variant else {}), **kwargs})
        if checkpoint:
            load_official_checkpoint(self, checkpoint)
