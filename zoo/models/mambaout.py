"""MambaOut (Yu & Wang, CVPR 2025, arXiv 2405.07992): Gated-CNN blocks with a 7x7 depthwise conv.

timm already implements MambaOut (``timm/models/mambaout.py``, since timm 1.0.10) with a
``checkpoint_filter_fn`` that maps the official GitHub-release state dicts onto timm keys, so the
zoo carries timm's models instead of registering a copy (a second registration would silently
shadow timm's). What the zoo adds: the paper's reference table (below), configs, and the per-stage
LayerNorm of the maintainer's dense recipe (``zoo.mm`` adapter, ``out_norm=True``).

Official checkpoints (plain state dicts, Apache-2.0):
``https://github.com/yuweihao/MambaOut/releases/download/model/mambaout_{variant}.pth``.
The zoo registers them as timm tags, ``timm.create_model('mambaout_tiny.official', pretrained=True)``
(timm's own ``.in1k`` weights on the Hugging Face Hub stay the default), and a downloaded file loads unchanged
with ``timm.create_model('mambaout_tiny', pretrained=True, pretrained_cfg_overlay=dict(file=PATH))``.
"""

from __future__ import annotations

from timm.models import get_pretrained_cfg

from zoo.hub import add_pretrained_tags

OFFICIAL_URL = 'https://github.com/yuweihao/MambaOut/releases/download/model/{}.pth'

CARRIED_TIMM_MODELS: tuple[str, ...] = (
    'mambaout_femto',
    'mambaout_kobe',
    'mambaout_tiny',
    'mambaout_small',
    'mambaout_base',
)

# params: counted by instantiating the official model definition (yuweihao/MambaOut models/mambaout.py);
# MACs and ImageNet-1k top-1 at 224: the official README model table (the column is MACs, not FLOPs);
# weights: the official GitHub release assets mambaout_<variant>.pth.
PAPER_FACTS: dict[str, dict] = {
    'mambaout_femto': dict(params_m=7.30, gmacs=1.2, top1=78.9),
    'mambaout_kobe': dict(params_m=9.14, gmacs=1.5, top1=80.0),
    'mambaout_tiny': dict(params_m=26.55, gmacs=4.5, top1=82.7),
    'mambaout_small': dict(params_m=48.49, gmacs=9.0, top1=84.1),
    'mambaout_base': dict(params_m=84.81, gmacs=15.8, top1=84.2),
}


def _official_cfg(arch: str) -> dict:
    """timm's ``.in1k`` cfg (same preprocessing and head) with the official release as the source."""
    cfg = get_pretrained_cfg(f'{arch}.in1k').to_dict()
    for key in ('hf_hub_id', 'architecture', 'tag'):
        cfg.pop(key, None)
    return dict(
        cfg,
        url=OFFICIAL_URL.format(arch),
        paper_ids='arXiv:2405.07992',
        paper_name='MambaOut: Do We Really Need Mamba for Vision?',
        origin_url='https://github.com/yuweihao/MambaOut',
    )


add_pretrained_tags({f'{arch}.official': _official_cfg(arch) for arch in CARRIED_TIMM_MODELS}, paper=PAPER_FACTS)
