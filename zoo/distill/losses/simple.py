"""Plain baselines: feature MSE (FitNets-style hint, Romero et al. 2015) and logit KD (Hinton et al. 2015)
for classification logits ``(B, K)`` and, per pixel, segmentation logits ``(B, K, H, W)``."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from zoo.registry import MODELS

__all__ = ['FeatureMSELoss', 'LogitKDLoss']


@MODELS.register_module()
class FeatureMSELoss(nn.Module):
    """``loss_weight * mean((S - T)^2)`` over every element of the aligned maps."""

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, s_feature: torch.Tensor, t_feature: torch.Tensor) -> torch.Tensor:
        return self.loss_weight * F.mse_loss(s_feature, t_feature.detach())


@MODELS.register_module()
class LogitKDLoss(nn.Module):
    """``loss_weight * tau^2 * KL(softmax(z_T / tau) || softmax(z_S / tau))`` over the class axis (dim 1).

    Classification ``(B, K)``: summed over classes, mean over images. Segmentation ``(B, K, H, W)``: the same
    per pixel, mean over images and pixels (pixel-wise KD). ``tau^2`` keeps the gradient scale of Hinton et al.
    Teacher maps of another size are resized bilinearly to the student's.
    """

    def __init__(self, tau: float = 1.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.tau, self.loss_weight = tau, loss_weight

    def forward(self, s_logits: torch.Tensor, t_logits: torch.Tensor) -> torch.Tensor:
        t_logits = t_logits.detach()
        if s_logits.dim() == 4 and t_logits.shape[-2:] != s_logits.shape[-2:]:
            t_logits = F.interpolate(t_logits, size=s_logits.shape[-2:], mode='bilinear', align_corners=False)
        log_p_s = F.log_softmax(s_logits.float() / self.tau, dim=1)
        log_p_t = F.log_softmax(t_logits.float() / self.tau, dim=1)
        kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(1)  # (B,) or (B, H, W)
        return self.loss_weight * self.tau**2 * kl.mean()
