"""mmengine model that trains and evaluates a MIL head on bags of patch features."""

from __future__ import annotations

from typing import Any

import torch
from mmengine.model import BaseModel

from zoo.registry import MODELS

from .losses import acmil_losses
from .models import checkpoint_filter_fn


def load_mil_checkpoint(path: str) -> dict[str, torch.Tensor]:
    """Read a checkpoint with ``torch.load(weights_only=True)`` (or safetensors) and return its tensors.

    Official ACMIL checkpoints pickle their config object, which ``weights_only=True`` refuses;
    the error then says how to re-save only the tensors of a file you trust.
    """
    if str(path).endswith('.safetensors'):
        from safetensors.torch import load_file

        return load_file(path)
    from zoo.hub import allow_mmengine_types

    allow_mmengine_types()  # mmengine's own checkpoints hold a few data-only non-tensor types
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except FileNotFoundError:
        raise FileNotFoundError(f'{path}: checkpoint not found') from None
    except Exception as err:  # pickle.UnpicklingError from the weights-only unpickler
        raise RuntimeError(
            f'{path}: not loadable with weights_only=True ({type(err).__name__}). Official ACMIL checkpoints '
            'pickle their config; if you trust the file, re-save its tensors once: python -c "import torch; '
            f"torch.save(torch.load('{path}', weights_only=False)['model'], 'acmil_model.pth')\""
        ) from None


@MODELS.register_module()
class MILClassifier(BaseModel):
    """Wraps a MIL head (``ACMIL_GA``, ``ACMIL_MHA``, ``ABMIL``, ``MeanMIL``, ``MaxMIL``) for mmengine.

    Args:
        head: config of the head, e.g. ``dict(type='ACMIL_GA', in_dim=512, inner_dim=256, num_classes=2)``.
        loss_weights: multipliers of the ACMIL terms ``slide``, ``sub``, ``div`` (all 1 officially).
        pretrained: optional checkpoint of the head (official ACMIL layout, or ours), loaded strictly
            through :func:`zoo.mil.models.checkpoint_filter_fn`.

    Batches (batch size 1, ``default_collate``): ``inputs`` ``(1, N, D)`` (or a list of ``(N, D)``
    bags with ``pseudo_collate``), ``data_samples=dict(gt_label=Tensor[B], slide=[names])``.
    ``mode='loss'`` returns ``loss_slide``, ``loss_sub``, ``loss_div`` (mmengine sums them);
    ``'predict'`` returns one dict per bag with ``pred_score`` (softmax), ``gt_label`` and ``slide``;
    ``'tensor'`` returns the slide logits ``(B, C)``.
    """

    def __init__(
        self,
        head: dict,
        loss_weights: dict | None = None,
        pretrained: str | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        self.head = MODELS.build(head)
        self.mil_head = head['type']
        self.loss_weights = dict(loss_weights or {})
        # official / bare-head state dicts (no 'head.' prefix) load into the wrapper as they are
        self._register_load_state_dict_pre_hook(self._add_head_prefix)
        if pretrained:
            self.load_state_dict(checkpoint_filter_fn(load_mil_checkpoint(pretrained), self), strict=True)

    def _add_head_prefix(self, state_dict, prefix, *args) -> None:
        own = [k for k in state_dict if k.startswith(prefix)]
        if own and not any(k.startswith(f'{prefix}head.') for k in own):
            head_keys = set(self.head.state_dict())
            for k in own:
                if k[len(prefix) :].removeprefix('module.') in head_keys:
                    state_dict[f'{prefix}head.{k[len(prefix) :].removeprefix("module.")}'] = state_dict.pop(k)

    @staticmethod
    def _bags(inputs: Any) -> list[torch.Tensor]:
        if isinstance(inputs, torch.Tensor):
            if inputs.dim() == 2:
                return [inputs]
            return list(inputs)  # (B, N, D): B equal-sized bags
        return list(inputs)

    def forward(self, inputs: Any, data_samples: Any = None, mode: str = 'tensor') -> Any:
        bags = [b.float() for b in self._bags(inputs)]
        outs = [self.head(b) for b in bags]
        if mode == 'tensor':
            return torch.cat([o[1] for o in outs])
        labels, names = _targets(data_samples, len(bags), bags[0].device)
        if mode == 'loss':
            total: dict[str, torch.Tensor] = {}
            for (sub, slide, attn), y in zip(outs, labels):
                for k, v in acmil_losses(sub, slide, attn, y, self.loss_weights).items():
                    total[k] = total.get(k, 0) + v / len(bags)
            return total
        if mode == 'predict':
            return [
                dict(pred_score=o[1][0].float().softmax(-1), gt_label=y, slide=n)
                for o, y, n in zip(outs, labels, names)
            ]
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")

    @torch.no_grad()
    def attention(self, bag: torch.Tensor) -> torch.Tensor | None:
        """Softmaxed attention of each branch, eval mode, no masking: ``(N, D)`` -> ``(M, N)``.

        Multi-head maps are averaged over heads. ``None`` for heads without attention.
        """
        was_training = self.training
        self.eval()
        _, _, logits = self.head(bag.float())
        self.train(was_training)
        if logits is None:
            return None
        return logits.softmax(dim=-1).mean(dim=0)


def _targets(data_samples: Any, n: int, device: torch.device) -> tuple[torch.Tensor, list]:
    if data_samples is None:
        raise ValueError("MILClassifier needs data_samples with 'gt_label' in 'loss'/'predict' mode")
    if isinstance(data_samples, dict):
        labels = torch.as_tensor(data_samples['gt_label'])
        names = data_samples.get('slide', [None] * n)
        names = [names] if isinstance(names, str) else list(names)
    else:  # list of per-bag dicts (pseudo_collate)
        labels = torch.as_tensor([int(d['gt_label']) for d in data_samples])
        names = [d.get('slide') for d in data_samples]
    return labels.to(device).long().view(-1), names
