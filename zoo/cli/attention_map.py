"""Attention maps of zoo models on images, one PNG per image: a ViT's class-token rollout, or MEDUSA's body map
and gates.

Each PNG shows the model's input (the image resized so its short side is --img-size, centre-cropped to a
square) and the same image under the class-token row of the attention rollout (Abnar & Zuidema, 2020:
head mean, 0.5·A + 0.5·I per block, chained over all blocks; zoo.layers.rollout) as a heatmap with a
colour bar: how much each patch feeds the final class token. For DCAL models (dcal_*) the rollout and the
GLCA queries are the model's own (forward_branches: rollout, query_idx) and the top-R patches chosen as
GLCA queries are outlined.

Models: timm VisionTransformer models with a class token (deit_*, vit_*, ...), the zoo's dcal_* and
agent_deit_* (the agent map of a block is its two agent softmaxes multiplied: tokens <- agents <- tokens;
agent_deit_base's softmax blocks as usual). MEDUSA models (medusa_*, any model with ``forward_attention``):
the body's sigmoid map and each head's gate A_k (channel mean; the fusion is x + x * A_k) over the input,
one panel each. Other families (CNNs, pyramid / window transformers, Mamba, spiking models) have no attention
map to show and are refused in one line.

Distillation runs: give a ``SingleTeacherDistiller`` config (with ``--checkpoint``, the run's ``epoch_N.pth``)
or the run folder tools/train.py wrote (its config dump and ``last_checkpoint``) instead of a model name. The
PNG then shows one ACAM-KD distillation point (``--point``, default the first ``ACAMKDLoss``): each ASCM
spatial mask ``M^s`` over the input, and the STCA-FF attention row of one teacher position (marked, the
position where the masks' mean is highest) over the student's positions. Inputs are normalised as the
run's data (the student's data preprocessor for mmdet / mmseg students; digits' [-1, 1]; else the student's
timm mean / std).

Images: files and/or folders (every non-hidden file of a folder, not recursive). An unreadable file of
several is reported and skipped, the others are written, and the exit code is 1 when anything was
skipped. A randomly initialised model (no --checkpoint, no pretrained weights) gives a map that says
nothing about the image: pass trained weights for a meaningful picture.

Examples:
  python tools/attention_map.py deit_tiny_patch16_224 photo.jpg --out maps/ --pretrained
  python tools/attention_map.py dcal_deit_tiny_patch16_448 images/ --out maps/ \\
      --checkpoint work_dirs/dcal_cub/model.safetensors
  python tools/attention_map.py dcal_deit_tiny_patch16_448 a.jpg b.png --out maps/ --img-size 224 \\
      --model-kwargs '{"num_classes": 200, "local_query_ratio": 0.3}'
  python tools/attention_map.py agent_deit_tiny photo.jpg --out maps/ --save-maps
  python tools/attention_map.py medusa_resnet50 scan.png --out maps/ --checkpoint model.safetensors
  python tools/attention_map.py work_dirs/acam-kd_mambaout-femto_test-resnet_digits digit.png --out maps/
  python tools/attention_map.py configs/distill/coco/acam-kd_retinanet_r101-r50_fpn_2x_coco.py img.jpg \\
      --checkpoint work_dirs/x/epoch_24.pth --point loss_acam_p4 --img-size 800
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass

import torch
from torch import nn

from zoo.cli.common import UsageError

__all__ = [
    'FIGURE_PX',
    'DistillMaps',
    'RolloutMap',
    'attention_maps',
    'check_supported',
    'distill_maps',
    'draw_distill',
    'draw_medusa',
    'draw_rollout',
    'is_medusa',
    'load_image',
    'main',
    'rollout_maps',
]

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff', '.webp', '.ppm', '.pgm')
_FIG_INCHES, _DPI = (10.0, 4.8), 100
FIGURE_PX = (int(_FIG_INCHES[0] * _DPI), int(_FIG_INCHES[1] * _DPI))  # (width, height) of every PNG


@dataclass
class RolloutMap:
    """The rollout of one image.

    ``scores``: ``(h, w)`` class-token rollout of the patch tokens on the patch grid; ``cls_share``: its
    weight on the class token itself (the rest of the row: patches and other prefix tokens, sums to 1);
    ``query_patches``: DCAL's GLCA query patches, flat row-major grid indices ``(R,)``, else None.
    """

    scores: torch.Tensor
    cls_share: float
    num_blocks: int
    query_patches: torch.Tensor | None = None


@dataclass
class DistillMaps:
    """ACAM-KD's maps at one distillation point, for one image.

    ``masks``: ``(M, h, w)`` ASCM spatial masks ``M^s`` (in [0, 1]) on the teacher's grid;
    ``attention``: ``(h', w')`` the STCA-FF attention row of the teacher position ``query`` (row, col) over
    the student's grid (sums to 1); ``point``: the loss name in the config.
    """

    point: str
    masks: torch.Tensor
    attention: torch.Tensor
    query: tuple[int, int]


def is_medusa(model: nn.Module) -> bool:
    """A model with a body map and gates (``forward_attention``, :mod:`zoo.models.medusa`)."""
    return callable(getattr(model, 'forward_attention', None)) and hasattr(model, 'gate_modules')


def check_supported(model: nn.Module, name: str) -> None:
    """Raise a one-line :class:`UsageError` unless ``model`` is a ViT whose class-token rollout this tool computes,
    or a MEDUSA model."""
    from timm.models.vision_transformer import VisionTransformer

    if is_medusa(model):
        return

    from zoo.layers.cross_attention import check_dcal_block

    agent = hasattr(model, '_embed') and hasattr(model, 'blocks')  # the zoo's Agent-DeiT
    if not isinstance(model, VisionTransformer) and not agent:
        raise UsageError(
            f'{name} ({type(model).__name__}) has no class-token self-attention to roll out: attention-map takes '
            f'timm VisionTransformer models with a class token, the zoo dcal_* / agent_deit_* models and medusa_*'
        )
    if getattr(model, 'cls_token', None) is None:
        raise UsageError(f'{name} has no class token (class_token=False): there is no class-token row to roll out')
    for i, blk in enumerate(model.blocks):
        try:
            check_dcal_block(blk, f'{name} blocks.{i}')
        except TypeError as err:
            raise UsageError(str(err)) from None


def attention_maps(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Head-mean softmax attention of every block during ``model.forward_features(x)``.

    timm's attention runs fused SDPA, which returns no map, so a forward hook on each ``blocks[i].attn``
    recomputes it from the block's attention input with :mod:`zoo.layers.cross_attention` (the maps DCAL's
    own rollout uses; for agent attention the product of its two agent softmaxes).

    Args:
        model: see :func:`check_supported`.
        x: ``(B, 3, H, W)``.

    Returns:
        ``L`` maps ``(B, N, N)`` (rows sum to 1), in block order.
    """
    from zoo.layers.agent_attention import AgentAttention
    from zoo.layers.cross_attention import agent_attention_forward, multi_head_attention, project_qkv

    maps: list[torch.Tensor] = []

    def hook(mod: nn.Module, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
        y = args[0] if args else kwargs['x']
        if isinstance(mod, AgentAttention):
            hw = args[1] if len(args) > 1 else kwargs['hw']
            maps.append(agent_attention_forward(mod, y, hw, need_map=True)[1])
            return
        if kwargs.get('attn_mask') is not None or kwargs.get('is_causal'):
            raise UsageError('attention-map: masked or causal attention is not a plain softmax map to roll out')
        q, k, v = project_qkv(mod, y)
        maps.append(multi_head_attention(mod, q, k, v, need_map=True)[1])

    handles = [blk.attn.register_forward_hook(hook, with_kwargs=True) for blk in model.blocks]
    try:
        with torch.inference_mode():
            model.forward_features(x)
    finally:
        for h in handles:
            h.remove()
    if len(maps) != len(model.blocks):  # e.g. a model whose forward_features skips or repeats blocks
        raise RuntimeError(f'attention-map: {len(maps)} attention maps from {len(model.blocks)} blocks')
    return maps


def _grid(model: nn.Module, x: torch.Tensor, num_patches: int) -> tuple[int, int]:
    ps = model.patch_embed.patch_size
    ph, pw = (ps, ps) if isinstance(ps, int) else ps
    h, w = x.shape[-2] // ph, x.shape[-1] // pw
    if h * w != num_patches:
        raise RuntimeError(f'attention-map: {num_patches} patch tokens do not fill the {h}x{w} patch grid')
    return h, w


def rollout_maps(model: nn.Module, x: torch.Tensor) -> list[RolloutMap]:
    """Class-token rollout of each image of ``x`` ``(B, 3, H, W)`` (eval mode, no gradient).

    A DCAL model with GLCA gives its own ``rollout`` and ``query_idx`` (:meth:`DCALMixin.forward_branches`);
    any other model the rollout of :func:`attention_maps` by :func:`zoo.layers.rollout.rollout_cls_row`.
    """
    from zoo.layers.rollout import rollout_cls_row
    from zoo.models.dcal import DCALMixin

    model.eval()
    P = model.num_prefix_tokens
    query_idx = None
    if isinstance(model, DCALMixin) and model.glca is not None:
        with torch.inference_mode():
            out = model.forward_branches(x, pwca=False)
        scores, query_idx = out['rollout'], out['query_idx']
    else:
        scores = rollout_cls_row(attention_maps(model, x), residual=0.5)
    h, w = _grid(model, x, scores.shape[1] - P)
    res = []
    for b in range(x.shape[0]):
        queries = None if query_idx is None else (query_idx[b, 1:] - P).cpu()  # [0] is the class token
        res.append(
            RolloutMap(scores[b, P:].reshape(h, w).float().cpu(), float(scores[b, 0]), len(model.blocks), queries)
        )
    return res


def load_image(path: str, size: int):
    """``path`` as an RGB PIL image, its short side resized to ``size`` (bicubic) and centre-cropped to
    ``size x size``: exactly the pixels the model sees. Unreadable files raise ``OSError`` / ``ValueError``."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()  # decode now: a truncated file fails here, inside the caller's try
        img = im.convert('RGB')
    w, h = img.size
    s = size / min(w, h)
    img = img.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return img.crop((left, top, left + size, top + size))


def _to_tensor(img, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """PIL RGB image -> normalised ``(1, 3, H, W)`` float tensor."""
    import numpy as np

    t = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return ((t - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)).unsqueeze(0)


def draw_rollout(img, amap: RolloutMap, path: str, title: str = '') -> str:
    """Write the two-panel PNG (``FIGURE_PX`` pixels): the image, and the image under the rollout heatmap
    with a colour bar and the GLCA query patches outlined."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    size = img.size[0]
    h, w = amap.scores.shape
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=_FIG_INCHES, dpi=_DPI)
    ax0.imshow(img)
    ax0.set_title(f'input {size}x{size}', fontsize=9)
    ax1.imshow(img)
    # nearest: one colour per patch, so that the outlines below sit on the cells they name
    heat = ax1.imshow(amap.scores.numpy(), cmap='jet', alpha=0.5, extent=(0, size, size, 0), interpolation='nearest')
    fig.colorbar(heat, ax=ax1, fraction=0.046, pad=0.04).set_label('class-token rollout', fontsize=8)
    what = f'rollout over {amap.num_blocks} blocks (head mean, 0.5·A + 0.5·I); CLS keeps {amap.cls_share:.2g}'
    if amap.query_patches is not None:
        cw, ch = size / w, size / h
        for p in amap.query_patches.tolist():
            ax1.add_patch(Rectangle(((p % w) * cw, (p // w) * ch), cw, ch, fill=False, edgecolor='white', lw=0.9))
        what += f'\nGLCA queries (outlined): top {len(amap.query_patches)} of {h * w} patches'
    ax1.set_title(what, fontsize=8)
    for ax in (ax0, ax1):
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    fig.savefig(path, dpi=_DPI)  # no bbox_inches='tight': every PNG is FIGURE_PX
    plt.close(fig)
    return path


def _save_panel_grid(fig, axes, used: int, title: str, path: str) -> str:
    """Finish a grid of image panels (no ticks, unused axes hidden, optional title) and write it to ``path``."""
    import matplotlib.pyplot as plt  # the caller has selected the Agg backend

    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[used:]:
        ax.axis('off')
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return path


def draw_medusa(img, att: dict, path: str, title: str = '') -> str:
    """Write MEDUSA's PNG (``FIGURE_PX`` pixels): the input, the body map over it and every gate's channel mean
    over it (bilinear to the input size), each with a colour bar. ``att``: one image's
    ``model.forward_attention`` output (``body`` ``(1, 1, h, w)``, ``gates``, ``names``)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    import torch.nn.functional as F

    size = img.size[0]
    panels = [('body map (sigmoid)', att['body'][0])]
    panels += [
        (f'gate after {n}: mean A over {g.shape[1]} ch', g[0].mean(0, keepdim=True))
        for n, g in zip(att['names'], att['gates'])
    ]
    cols = 3
    rows = -(-(len(panels) + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=_FIG_INCHES, dpi=_DPI, squeeze=False)
    axes = axes.ravel()
    axes[0].imshow(img)
    axes[0].set_title(f'input {size}x{size}', fontsize=8)
    for ax, (what, m) in zip(axes[1:], panels):
        m = F.interpolate(m[None].float(), size=(size, size), mode='bilinear', align_corners=False)[0, 0]
        ax.imshow(img)
        heat = ax.imshow(m.cpu().numpy(), cmap='jet', alpha=0.5, extent=(0, size, size, 0))
        fig.colorbar(heat, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
        ax.set_title(what, fontsize=8)
    return _save_panel_grid(fig, axes, len(panels) + 1, title, path)


def distill_maps(
    distiller: nn.Module, inputs: torch.Tensor, point: str | None = None, data_samples: list | None = None
) -> list[DistillMaps]:
    """The spatial masks (``ACAMKDLoss.last_masks``) and one STCA-FF attention row
    (``STCAFusion.attention_rows``) of each image of the preprocessed batch ``inputs`` ``(B, 3, H, W)``, at the
    ``ACAMKDLoss`` named ``point`` (default the first), with the features the loss sees in training
    (``SingleTeacherDistiller.distill_arguments``; mmdet / mmseg models also need ``data_samples`` with the
    image metainfo). The attention row is that of the teacher position where the mean of the spatial masks is
    highest."""
    from zoo.distill.losses.acam_kd import ACAMKDLoss

    acam = {n: m for n, m in distiller.distill_losses.items() if isinstance(m, ACAMKDLoss)}
    if not acam:
        have = ', '.join(f'{n} ({type(m).__name__})' for n, m in distiller.distill_losses.items())
        raise UsageError(f'attention-map: the distiller has no ACAMKDLoss to draw (its losses: {have})')
    name = point or next(iter(acam))
    if name not in acam:
        raise UsageError(f'--point {name!r} is not an ACAMKDLoss of this distiller (it has {", ".join(acam)})')
    loss = acam[name]
    distiller.eval()
    kwargs = distiller.distill_arguments(inputs, data_samples)[name]
    t, s = kwargs['t_feature'].detach(), kwargs['s_feature']
    with torch.no_grad():
        loss(s_feature=s, t_feature=t)  # sets last_masks
    spatial = loss.last_masks[0]  # (B, M, H * W)
    (H, W), (Hs, Ws) = t.shape[-2:], s.shape[-2:]
    res = []
    for b in range(t.shape[0]):
        q = int(spatial[b].mean(0).argmax())
        row = loss.fusion.attention_rows(t[b : b + 1], s[b : b + 1], torch.tensor([q], device=t.device))
        res.append(
            DistillMaps(
                name, spatial[b].reshape(-1, H, W).float().cpu(), row[0, 0].reshape(Hs, Ws).float().cpu(), divmod(q, W)
            )
        )
    return res


def draw_distill(img, maps: DistillMaps, path: str, title: str = '', covered: tuple[int, int] | None = None) -> str:
    """Write the distillation PNG (``FIGURE_PX`` pixels): the input, each spatial mask over it (one 0-1 colour
    scale for all), and the STCA-FF attention row over it with its teacher query cell outlined. ``covered``:
    the ``(height, width)`` in input pixels that the feature grids cover (the padded batch; default the
    image). Cells are drawn as blocks (nearest), one colour each."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    size = img.size[0]
    ch, cw = covered or (size, size)
    extent = (0, cw, ch, 0)
    # masks on one fixed 0-1 scale (a saturated or flat mask shows as such); the attention row on its own scale
    panels = [
        (f'spatial mask {m}: {float(mk.min()):.2f} to {float(mk.max()):.2f}', mk, (0.0, 1.0))
        for m, mk in enumerate(maps.masks)
    ]
    panels.append(('STCA-FF attention of the outlined\nteacher cell over student cells', maps.attention, (None, None)))
    cols = 3 if len(panels) + 1 <= 6 else 4
    rows = -(-(len(panels) + 1) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=_FIG_INCHES, dpi=_DPI, squeeze=False)
    axes = axes.ravel()
    axes[0].imshow(img)
    axes[0].set_title(f'input {size}x{size}', fontsize=8)
    for ax, (what, m, (vmin, vmax)) in zip(axes[1:], panels):
        ax.imshow(img)
        heat = ax.imshow(m.numpy(), cmap='jet', alpha=0.5, extent=extent, interpolation='nearest', vmin=vmin, vmax=vmax)
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)
        fig.colorbar(heat, ax=ax, fraction=0.046, pad=0.04).ax.tick_params(labelsize=6)
        ax.set_title(what, fontsize=8)
    H, W = maps.masks.shape[-2:]
    r, c = maps.query
    axes[len(panels)].add_patch(
        Rectangle((c * cw / W, r * ch / H), cw / W, ch / H, fill=False, edgecolor='white', lw=1.5)
    )
    return _save_panel_grid(fig, axes, len(panels) + 1, title, path)


def is_distill_source(source: str) -> bool:
    """``MODEL`` names a distillation run (a folder) or a config file rather than a model."""
    return source.endswith('.py') or os.path.isdir(source)


def _run_files(source: str, checkpoint: str | None) -> tuple[str, str]:
    """The config and checkpoint of a run folder (tools/train.py's config dump and ``last_checkpoint``), or of
    a config file and ``--checkpoint``."""
    if not os.path.isdir(source):
        if not os.path.isfile(source):
            raise FileNotFoundError(f'config {source} does not exist')
        if not checkpoint:
            raise UsageError(f"{source}: a distillation config needs --checkpoint (the run's epoch_N.pth)")
        return source, checkpoint
    configs = sorted(f for f in os.listdir(source) if f.endswith('.py'))
    if len(configs) != 1:
        raise UsageError(
            f'{source}: expected the one config dump tools/train.py writes into a run folder, found {len(configs)} '
            '.py files (pass the config and --checkpoint instead)'
        )
    if not checkpoint:
        last = os.path.join(source, 'last_checkpoint')
        if not os.path.isfile(last):
            raise UsageError(f'{source}: no last_checkpoint file (the run saved no checkpoint); pass --checkpoint')
        with open(last) as f:
            checkpoint = f.read().strip()
        if not os.path.isfile(checkpoint):  # a moved run folder: the file next to last_checkpoint
            checkpoint = os.path.join(source, os.path.basename(checkpoint))
    return os.path.join(source, configs[0]), checkpoint


def load_distiller(config: str, checkpoint: str, cfg_options: dict | None = None):
    """The ``SingleTeacherDistiller`` of ``config`` with every weight (student, teacher, connectors, the
    losses' STCA-FF and masks) loaded strictly from the run's ``checkpoint``; returns ``(distiller, cfg)``.
    The teacher file and pretrained weights of the config are not read: the checkpoint holds them all."""
    import importlib

    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import zoo.distill  # noqa: F401  (registers the distiller and its losses)
    from zoo.hub import load_checkpoint_file, unwrap_state_dict
    from zoo.registry import MODELS

    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    model_cfg = cfg.model.to_dict() if 'model' in cfg else {}
    if model_cfg.get('type') != 'SingleTeacherDistiller':
        raise UsageError(
            f'{config}: not a distillation config (model.type is {model_cfg.get("type")!r}, '
            'expected SingleTeacherDistiller)'
        )
    for name in cfg.get('custom_imports', {}).get('imports', []):
        importlib.import_module(name)
    model_cfg['teacher_ckpt'] = None
    for part in ('architecture', 'teacher'):
        if 'cfg_path' in model_cfg[part]:
            model_cfg[part]['pretrained'] = False
    state = unwrap_state_dict(load_checkpoint_file(checkpoint))
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope', 'zoo')):
        distiller = MODELS.build(model_cfg)
    try:
        distiller.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise UsageError(f'{checkpoint}: not a checkpoint of {config} ({str(err).splitlines()[0]})') from None
    return distiller.eval(), cfg


def _distill_batch(distiller: nn.Module, cfg, img) -> tuple[torch.Tensor, tuple[int, int], list | None]:
    """The preprocessed ``(1, 3, H, W)`` input of ``img`` (RGB PIL), normalised as the run's data, the
    ``(H, W)`` the feature grids cover, and the data samples an mmdet / mmseg model reads (else None).
    mmdet / mmseg students: their data preprocessor (mean / std on 0-255 pixels, channel order, padding).
    Digits: [-1, 1] as ``DigitsDataset``. Other classifiers: the student's timm mean / std."""
    import numpy as np

    pixels = torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1)  # RGB, 0-255
    pre = distiller.data_preprocessor
    if getattr(pre, '_enable_normalize', False):
        if getattr(pre, '_channel_conversion', False):
            pixels = pixels[[2, 1, 0]]  # the preprocessor expects OpenMMLab's BGR loading
        inputs = pre(dict(inputs=[pixels], data_samples=None), False)['inputs']
        from zoo.mm.synthetic import image_samples

        task = 'seg' if type(distiller.student).__module__.startswith('mmseg') else 'det'
        samples = image_samples(task, (img.size[1], img.size[0]), tuple(inputs.shape[-2:]))
        return inputs, tuple(inputs.shape[-2:]), samples
    dataset = cfg.get('test_dataloader', cfg.get('val_dataloader', {})).get('dataset', {})
    if dataset.get('type') == 'DigitsDataset':
        mean = std = (0.5, 0.5, 0.5)
    else:
        backbone = getattr(distiller.student, 'backbone', distiller.student)
        tcfg = getattr(backbone, 'pretrained_cfg', None) or {}
        mean, std = tcfg.get('mean', (0.485, 0.456, 0.406)), tcfg.get('std', (0.229, 0.224, 0.225))
    inputs = _to_tensor(img, mean, std).to(next(distiller.parameters()).device)
    return inputs, tuple(inputs.shape[-2:]), None


def _distill_img_size(cfg) -> int:
    dataset = cfg.get('test_dataloader', cfg.get('val_dataloader', {})).get('dataset', {})
    return int(dataset.get('img_size') or cfg.get('img_size') or 512)


def _main_distill(args: argparse.Namespace, images: list[str]) -> int:
    from tqdm import tqdm

    config, checkpoint = _run_files(args.model, args.checkpoint)
    distiller, cfg = load_distiller(config, checkpoint, args.cfg_options)
    distiller.to(args.device)
    size = args.img_size or _distill_img_size(cfg)
    run = os.path.basename(os.path.normpath(args.model))
    skipped = []
    for image, out in zip(images, _out_names(images, args.out)):
        try:
            img = load_image(image, size)
        except (OSError, ValueError) as err:
            if len(images) == 1:
                raise OSError(f'{image}: not a readable image ({err})') from None
            tqdm.write(f'attention-map: skipping {image}: not a readable image ({err})', file=sys.stderr)
            skipped.append(image)
            continue
        inputs, covered, samples = _distill_batch(distiller, cfg, img)
        maps = distill_maps(distiller, inputs, args.point, samples)[0]
        title = f'{run} ({os.path.basename(checkpoint)}), {maps.point}: {os.path.basename(image)}'
        draw_distill(img, maps, out, title=title, covered=covered)
        if args.save_maps:
            import numpy as np

            np.savez(
                os.path.splitext(out)[0] + '.npz',
                masks=maps.masks.numpy(),
                attention=maps.attention.numpy(),
                query=np.array(maps.query),
            )
        H, W = maps.masks.shape[-2:]
        tqdm.write(
            f'attention-map: {os.path.basename(image)} -> {out} ({maps.point}: {maps.masks.shape[0]} masks on '
            f'{H}x{W}, mean {float(maps.masks.mean()):.2f}; attention row of teacher cell {maps.query})'
        )
    if len(images) > 1:
        print(
            f'attention-map: {len(images) - len(skipped)} of {len(images)} images written to {args.out}'
            + (f', {len(skipped)} skipped: {", ".join(os.path.basename(s) for s in skipped)}' if skipped else ''),
            file=sys.stderr if skipped else sys.stdout,
            flush=True,
        )
    return 1 if skipped else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        'model',
        help='timm / zoo model name, e.g. deit_tiny_patch16_224, dcal_deit_tiny_patch16_448; or a distillation '
        'config (.py, with --checkpoint) or run folder (ACAM-KD masks and STCA-FF attention)',
    )
    p.add_argument('images', nargs='+', metavar='IMAGE', help='image files and / or folders of images')
    p.add_argument(
        '--out', default='attention_maps', help='output folder, one <image name>.png each (default %(default)s)'
    )
    p.add_argument(
        '--checkpoint',
        help="weights with the timm model's keys: model.safetensors from tools/train.py, tools/convert.py output, "
        'a timm / DeiT .pth (DCAL models also take a plain DeiT / ViT file); num_classes is read from its head',
    )
    p.add_argument('--pretrained', action='store_true', help="the model's pretrained weights (download or cache)")
    p.add_argument('--img-size', type=int, help='square input side (default: the size the model is built for)')
    p.add_argument(
        '--model-kwargs',
        default='{}',
        metavar='JSON',
        help='extra create_model arguments as a JSON object, e.g. \'{"depth": 6, "local_query_ratio": 0.3}\'',
    )
    p.add_argument(
        '--save-maps', action='store_true', help='also write <image name>.npz: the rollout grid, GLCA queries'
    )
    p.add_argument('--device', default='cpu', help="torch device (default 'cpu')")
    p.add_argument('--seed', type=int, default=0, help='torch seed of the initialisation (same picture each run)')
    p.add_argument('--point', help='distillation runs: the ACAMKDLoss to draw, e.g. loss_acam_p4 (default the first)')
    p.add_argument(
        '--cfg-options',
        nargs='+',
        default=None,
        metavar='KEY=VALUE',
        help='distillation runs: override config keys, as in tools/train.py',
    )
    args = p.parse_args(argv)
    if args.cfg_options is not None:
        from mmengine.config import DictAction

        action = DictAction(option_strings=['--cfg-options'], dest='cfg_options')
        parsed = argparse.Namespace()
        action(p, parsed, args.cfg_options)
        args.cfg_options = parsed.cfg_options
    return args


def _model_kwargs(text: str) -> dict:
    try:
        kwargs = json.loads(text)
    except ValueError as err:
        raise UsageError(f'--model-kwargs: {text!r} is not JSON ({err})') from None
    if not isinstance(kwargs, dict):
        raise UsageError(f'--model-kwargs: expected a JSON object, got {text!r}')
    if 'img_size' in kwargs:
        raise UsageError('--model-kwargs: give the input side as --img-size, not img_size')
    return kwargs


def _build(args: argparse.Namespace) -> nn.Module:
    from zoo.cli.common import check_model_names
    from zoo.hub import create_model, load_checkpoint_file, unwrap_state_dict

    check_model_names([args.model], 'MODEL')
    kwargs = _model_kwargs(args.model_kwargs)
    if args.img_size:
        kwargs['img_size'] = args.img_size
    pretrained = args.pretrained
    if args.checkpoint:
        head = unwrap_state_dict(load_checkpoint_file(args.checkpoint)).get(f'{_classifier(args.model)}.weight')
        if head is not None and 'num_classes' not in kwargs:
            kwargs['num_classes'] = head.shape[0]  # load the file's head strictly instead of dropping it
        overlay = dict(file=args.checkpoint)
        if 'num_classes' in kwargs:
            overlay['num_classes'] = kwargs['num_classes']
        kwargs['pretrained_cfg_overlay'] = overlay
        pretrained = True
    try:
        model = create_model(args.model, pretrained=pretrained, **kwargs)
    except TypeError as err:
        raise UsageError(f'{args.model} does not take these arguments ({err})') from None
    check_supported(model, args.model)
    return model.to(args.device).eval()


def _classifier(name: str) -> str:
    """The classifier module of ``name``'s pretrained cfg (``head`` for ViTs, ``fc`` for MEDUSA)."""
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except Exception:  # a name without a default cfg
        cfg = None
    cls = getattr(cfg, 'classifier', None) or 'head'
    return cls if isinstance(cls, str) else cls[0]


def _collect(paths: list[str]) -> list[str]:
    images = []
    for path in paths:
        if not os.path.exists(path):
            raise FileNotFoundError(f'image {path} does not exist')
        if os.path.isdir(path):
            found = sorted(
                os.path.join(path, f)
                for f in os.listdir(path)
                if not f.startswith('.') and os.path.isfile(os.path.join(path, f))
            )
            if not found:
                raise FileNotFoundError(f'folder {path} has no files')
            images.extend(found)
        else:
            images.append(path)
    return images


def _out_names(images: list[str], out_dir: str) -> list[str]:
    """``out_dir/<stem>.png``; a stem seen before gets ``_2``, ``_3``, ... (two folders with a ``1.jpg``)."""
    seen: dict[str, int] = {}
    outs = []
    for img in images:
        stem = os.path.splitext(os.path.basename(img))[0]
        seen[stem] = seen.get(stem, 0) + 1
        outs.append(os.path.join(out_dir, stem + (f'_{seen[stem]}' if seen[stem] > 1 else '') + '.png'))
    return outs


def main(argv: list[str] | None = None) -> int:
    """Returns the exit code: 0, or 1 when a file was skipped."""
    args = parse_args(argv)
    from tqdm import tqdm

    import zoo  # noqa: F401  (registers the zoo's models)

    images = _collect(args.images)
    torch.manual_seed(args.seed)  # weights a file or the hub does not fill (a fresh head, a random model)
    if is_distill_source(args.model):
        return _main_distill(args, images)
    if args.point or args.cfg_options:
        raise UsageError('--point and --cfg-options apply to a distillation config or run folder only')
    model = _build(args)
    medusa = is_medusa(model)
    size = args.img_size or (model.img_size[0] if medusa else model.patch_embed.img_size[0])
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    mean, std = cfg.get('mean', (0.485, 0.456, 0.406)), cfg.get('std', (0.229, 0.224, 0.225))
    if args.checkpoint:
        weights = os.path.basename(args.checkpoint)
    else:  # say so on the picture: a random model's map is noise shaped by the image statistics
        weights = 'pretrained' if args.pretrained else 'random init, no weights: not a learned map'
    skipped = []
    bar = tqdm(
        list(zip(images, _out_names(images, args.out))), desc='attention-map', disable=None if len(images) > 1 else True
    )
    for image, out in bar:
        try:
            img = load_image(image, size)
        except (OSError, ValueError) as err:
            if len(images) == 1:
                raise OSError(f'{image}: not a readable image ({err})') from None
            ext = os.path.splitext(image)[1].lower()
            hint = '' if ext in IMAGE_EXTENSIONS else ' (not an image extension)'
            why = (str(err).strip().splitlines() or [type(err).__name__])[0]
            tqdm.write(f'attention-map: skipping {image}: not a readable image{hint} ({why})', file=sys.stderr)
            skipped.append(image)
            continue
        if medusa:
            with torch.inference_mode():
                att = model.forward_attention(_to_tensor(img, mean, std).to(args.device))
            draw_medusa(img, att, out, title=f'{args.model} ({weights}): {os.path.basename(image)}')
            if args.save_maps:
                import numpy as np

                gates = {f'gate_{n}': g[0].float().cpu().numpy() for n, g in zip(att['names'], att['gates'])}
                np.savez(os.path.splitext(out)[0] + '.npz', body=att['body'][0, 0].float().cpu().numpy(), **gates)
            body = att['body'][0, 0]
            r, c = divmod(int(body.argmax()), body.shape[1])
            tqdm.write(
                f'attention-map: {os.path.basename(image)} -> {out} (body map peak {float(body.max()):.2f} at '
                f'row {r}, col {c} of {body.shape[0]}x{body.shape[1]}; {len(att["gates"])} gates)'
            )
            continue
        amap = rollout_maps(model, _to_tensor(img, mean, std).to(args.device))[0]
        draw_rollout(img, amap, out, title=f'{args.model} ({weights}): {os.path.basename(image)}')
        if args.save_maps:
            import numpy as np

            extra = {} if amap.query_patches is None else dict(query_patches=amap.query_patches.numpy())
            np.savez(os.path.splitext(out)[0] + '.npz', rollout=amap.scores.numpy(), cls_share=amap.cls_share, **extra)
        r, c = divmod(int(amap.scores.argmax()), amap.scores.shape[1])
        queries = '' if amap.query_patches is None else f', {len(amap.query_patches)} GLCA queries outlined'
        tqdm.write(
            f'attention-map: {os.path.basename(image)} -> {out} (rollout peak at patch row {r}, col {c}{queries})'
        )
    if len(images) > 1:
        print(
            f'attention-map: {len(images) - len(skipped)} of {len(images)} images written to {args.out}'
            + (f', {len(skipped)} skipped: {", ".join(os.path.basename(s) for s in skipped)}' if skipped else ''),
            file=sys.stderr if skipped else sys.stdout,
            flush=True,
        )
    return 1 if skipped else 0


def cli() -> None:
    """Console entry point (``zoo-attention-map``, ``python tools/attention_map.py``)."""
    from zoo.cli.common import run_cli

    run_cli(main)


if __name__ == '__main__':
    cli()
