"""mmengine model wrapper for DCAL (Zhu et al., CVPR 2022): FGVC classification and Re-ID retrieval."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from zoo.engine.classifier import TimmClassifier, labels_of
from zoo.registry import MODELS

# Per-sample fields of a Re-ID batch that the retrieval metric needs next to the embedding.
REID_FIELDS = ('pid', 'camid', 'split')


@MODELS.register_module()
class DCALClassifier(TimmClassifier):
    """Train a DCAL model (``zoo.models.dcal``) with its three branches and uncertainty-weighted loss.

    Args:
        model_name: a ``dcal_*`` timm model, or (with ``wrap``) any timm ViT with a class token
            (``vit_small_patch16_224``, the zoo's ``agent_deit_small``, ...).
        model_kwargs: keyword arguments for ``timm.create_model`` (``num_classes``, ``img_size``,
            ``pretrained``, ``local_query_ratio``, ``task``, ... for ``dcal_*`` models).
        wrap: when set, ``zoo.models.dcal.wrap_dcal(model, **wrap)`` turns the plain ViT into a DCAL model
            (``local_query_ratio``, ``task``, ``use_glca``, ...); GLCA starts as a copy of its last block.
        label_smoothing: cross-entropy label smoothing of every branch.
        data_preprocessor: mmengine data preprocessor config.

    Modes (batches as :class:`TimmClassifier`'s, ``inputs`` ``(B, 3, H, W)``):

    * ``'loss'``: ``backbone(inputs, target)``; returns ``loss`` (the weighted sum, the only key that
      contains ``'loss'``: mmengine sums every such key) and, detached for the log, each branch's term
      (``sa_ce``, ``glca_ce``, ``pwca_ce``; Re-ID ``*_ce_tri`` = CE + triplet) and its current weight
      ``w_<branch> = e^{-w_i}``.
    * ``'predict'``: FGVC: per image ``pred_score`` ``(K,)`` = softmax of ``log(p_SA + p_GLCA)``, i.e. the mean
      of the two branches' probabilities (same argmax as the paper's sum), and ``gt_label``. Re-ID
      (``task='reid'``): per image ``embedding`` ``(2C,)`` (SA and GLCA class tokens, not normalised) and the
      ``pid``, ``camid``, ``split`` fields of its data sample.
    * ``'tensor'``: the eval output, ``(B, K)`` fused logits or ``(B, 2C)`` Re-ID embeddings.
    """

    def __init__(
        self,
        model_name: str,
        model_kwargs: dict | None = None,
        wrap: dict | None = None,
        label_smoothing: float = 0.0,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(
            model_name,
            model_kwargs=model_kwargs,
            label_smoothing=label_smoothing,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg,
        )
        from zoo.engine.config import ConfigKeyError
        from zoo.models.dcal import DCALMixin, wrap_dcal

        is_dcal = isinstance(self.backbone, DCALMixin)
        if wrap is not None:
            if is_dcal:
                raise ConfigKeyError(f"model.wrap: '{model_name}' is already a DCAL model; drop model.wrap")
            try:
                wrap_dcal(self.backbone, **wrap)
            except TypeError as err:  # an unknown DCAL argument, or a backbone wrap_dcal cannot take
                raise ConfigKeyError(f"model.wrap for '{model_name}': {err}") from None
        elif not is_dcal:
            raise ConfigKeyError(
                f"model.model_name: '{model_name}' is not a DCAL model; use a dcal_* model or set "
                'model.wrap=dict(...) to apply DCAL to this ViT'
            )
        self.backbone.dcal_loss.label_smoothing = label_smoothing
        self.wrap = dict(wrap) if wrap is not None else None

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Also takes the exported weights (``model.safetensors``: the backbone's own keys, no ``backbone.``
        prefix), so ``tools/test.py CONFIG model.safetensors`` works for ``dcal_*`` and ``wrap=`` models alike
        (a wrapped ViT's file has GLCA keys the plain timm model would reject)."""
        if state_dict and not any(k.startswith('backbone.') for k in state_dict):
            return self.backbone.load_state_dict(state_dict, strict=strict, assign=assign)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @property
    def task(self) -> str:
        """``'fgvc'`` or ``'reid'``, as the DCAL backbone was built."""
        return self.backbone.task

    def forward(self, inputs: torch.Tensor, data_samples: Any = None, mode: str = 'tensor') -> Any:
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict' and self.task == 'reid':
            emb = self.backbone(inputs).float()
            fields = reid_fields(data_samples, len(emb))
            return [dict(embedding=e, **f) for e, f in zip(emb, fields)]
        return super().forward(inputs, data_samples, mode)  # FGVC predict / tensor: the fused logits

    def loss(self, inputs: torch.Tensor, data_samples: Any) -> dict[str, torch.Tensor]:
        """``(B, 3, H, W)`` images and their labels -> ``loss`` plus the detached branch terms and weights."""
        out = self.backbone(inputs, labels_of(data_samples, inputs.device))
        term = 'ce_tri' if self.task == 'reid' and self.backbone.dcal_loss.triplet_margin is not None else 'ce'
        res = dict(loss=out['loss'])
        for key, value in out.items():
            if key.startswith('loss_'):  # renamed: parse_losses would add every key containing 'loss'
                res[f'{key[5:]}_{term}'] = value
            elif key.startswith('weight_'):
                res[f'w_{key[7:]}'] = value
        return res


def reid_fields(data_samples: Any, n: int) -> list[dict[str, Any]]:
    """The ``pid``, ``camid`` and ``split`` of each of ``n`` images, from a collated dict (tensors / lists of
    strings) or a list of per-sample dicts; ``int`` for tensor fields, fields the samples lack are left out."""
    if data_samples is None:
        return [{} for _ in range(n)]
    if isinstance(data_samples, Mapping):
        per_field = {k: data_samples[k] for k in REID_FIELDS if k in data_samples}
        out: list[dict[str, Any]] = [{} for _ in range(n)]
        for k, values in per_field.items():
            for i in range(n):
                out[i][k] = _scalar(values[i])
        return out
    return [{k: _scalar(d[k]) for k in REID_FIELDS if k in d} for d in data_samples]


def _scalar(v: Any) -> Any:
    return int(v) if isinstance(v, torch.Tensor) else v
