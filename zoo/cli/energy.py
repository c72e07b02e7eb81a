"""Firing rates, synaptic operations, energy and model size of spiking zoo models
(QSD-Transformer, Meta-SpikeFormer), measured with hooks on a batch of real images.

Energy follows the convention of the Spike-driven Transformer papers (SDT, Yao et al., NeurIPS 2023;
Meta-SpikeFormer, Yao et al., ICLR 2024, arXiv 2404.03663):

    E = E_MAC * FLOPs_conv1 + E_AC * sum_l SOP_l,    SOP_l = fr_l * T_eff * FLOPs_l

with E_MAC = 4.6 pJ (first, real-valued encoding conv) and E_AC = 0.9 pJ (every layer fed by spikes),
45 nm (Horowitz). FLOPs are multiply-accumulates per image per time step (FL_conv = k^2 h w c_in c_out /
groups, FL_linear = i o). Assumptions the papers leave open, made explicit here:

1. fr_l is the firing rate of the neuron feeding layer l: for multi-spike neurons the mean spike count
   per virtual step, mean(k) / D, with T_eff = T * D (so SOP_l = mean(k) * T * FLOPs_l); for LIF
   neurons the mean spike per step with T_eff = T.
2. Real-valued linear ops inside a synaptic chain (RepConv's depthwise 3x3 and second 1x1, SepConv's
   pointwise conv after the depthwise) are charged at the rate of the neuron feeding the chain, because
   they fold into one conv on the spikes at inference (RepConv re-parameterisation). BN, residual adds,
   pooling and the LIF updates are not counted.
3. The two attention matmuls per head, k^T v (N d^2) and q (k^T v) (N d^2), are charged at the rates of
   the k and q neurons respectively.
4. The encoding conv is counted once per image (its input is the same image at every time step).
5. The papers do not say how 4-bit weights change E_AC. ``energy_mj`` uses E_AC = 0.9 pJ as published;
   ``energy_bitscaled_mj`` scales E_AC by wbits / 32 for LSQ layers (a linear-in-bits assumption).
6. Model size counts LSQ weights at their bit width and every other tensor needed at inference
   (biases, BN, LSQ steps, LayerScale) at 32 bits; the unused ActLSQ placeholders are excluded.
   ``size_32bit_equiv_m`` = bytes / 4 / 1e6 is the papers' "Param (M)" reading of model size.
7. The zoo has no trained weights for these models here: without --checkpoint the model is randomly
   initialised and its BN statistics are calibrated on the images first (--calib-batches), so the
   firing rates describe that model, not the published one.

Examples:
  python tools/analysis/energy.py qsd_transformer_15m meta_spikeformer_15m --num-images 32 --img-size 224
  python tools/analysis/energy.py qsd_transformer_55m --checkpoint ckpt.pth --images /data/imagenet/val
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn

E_MAC_PJ = 4.6
E_AC_PJ = 0.9


@dataclass
class EnergyRow:
    model: str
    T: int
    D: int
    wbits: int
    images: int
    img_size: int
    params_m: float
    size_mb: float
    size_32bit_equiv_m: float
    gmacs_dense: float  # per image per time step, as a non-spiking network would do
    first_layer_gmacs: float
    gsops: float
    mean_firing_rate: float
    energy_mj: float
    energy_bitscaled_mj: float


def load_images(folder: str | None, n: int, size: int, mean, std) -> torch.Tensor:
    """``(n, 3, size, size)`` normalised images: scikit-learn's digits (8x8 scans, upsampled) or a folder."""
    import torch.nn.functional as F

    if folder is None:
        from sklearn.datasets import load_digits

        d = load_digits()
        x = torch.from_numpy(d.images[:n]).float().div(16.0).unsqueeze(1)  # (n, 1, 8, 8) in [0, 1]
        x = F.interpolate(x, size=(size, size), mode='bilinear', align_corners=False).expand(-1, 3, -1, -1)
    else:
        from PIL import Image

        exts = ('.png', '.jpg', '.jpeg', '.bmp', '.tif', '.tiff', '.webp')
        files = sorted(os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs if f.lower().endswith(exts))
        if not files:
            raise SystemExit(f'--images: no image files under {folder}')
        imgs = []
        for f in files[:n]:
            im = Image.open(f).convert('RGB').resize((size, size), Image.BICUBIC)
            imgs.append(torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(size, size, 3))
        x = torch.stack(imgs).permute(0, 3, 1, 2).float() / 255.0
    m = torch.tensor(mean).view(1, 3, 1, 1)
    s = torch.tensor(std).view(1, 3, 1, 1)
    return (x - m) / s


class Recorder:
    """Hooks: neuron spike counts, synaptic-layer FLOPs, attention matmul FLOPs, in execution order."""

    def __init__(self, model: nn.Module, T: int) -> None:
        from zoo.layers.spiking import MultiSpike, MultiStepLIF, is_spiking_neuron
        from zoo.models.qsd_transformer import SpikeDrivenSelfAttention

        self.T = T
        self.neurons: dict[str, list[float]] = {}  # name -> [sum of mean counts, calls, D]
        self.layers: dict[str, list] = {}  # name -> [flops per image-step, feeding neuron, is_lsq, calls]
        self.last: str | None = None
        self.handles = []
        self._MultiSpike, self._LIF = MultiSpike, MultiStepLIF
        for name, m in model.named_modules():
            if is_spiking_neuron(m):
                self.handles.append(m.register_forward_hook(self._neuron_hook(name)))
            elif isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
                self.handles.append(m.register_forward_hook(self._layer_hook(name)))
            elif isinstance(m, SpikeDrivenSelfAttention):
                self.handles.append(m.register_forward_hook(self._attn_hook(name, m)))

    def _neuron_hook(self, name: str):
        def hook(mod, inp, out):
            counts = out * mod.norm if isinstance(mod, self._MultiSpike) else out
            rec = self.neurons.setdefault(name, [0.0, 0, mod.levels])
            rec[0] += counts.float().mean().item()
            rec[1] += 1
            self.last = name

        return hook

    def _layer_hook(self, name: str):
        def hook(mod, inp, out):
            n = out.shape[0]  # T * B
            if isinstance(mod, nn.Linear):
                flops = out.numel() / n * mod.in_features
            else:
                k = 1
                for s in mod.kernel_size:
                    k *= s
                flops = out.numel() / n * (mod.in_channels // mod.groups) * k
            is_lsq = getattr(mod, 'alpha', None) is not None
            rec = self.layers.setdefault(name, [flops, self.last, is_lsq, 0])
            rec[3] += 1

        return hook

    def _attn_hook(self, name: str, attn: nn.Module):
        def hook(mod, inp, out):
            N, C, H, W = inp[0].shape
            d = C // attn.num_heads
            per = attn.num_heads * H * W * d * d  # one matmul, per image-step
            for tag, neuron in (('kTv', 'k_lif'), ('q_kv', 'q_lif')):
                key = f'{name}.{tag}'
                rec = self.layers.setdefault(key, [per, f'{name}.{neuron}', False, 0])
                rec[3] += 1

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()

    def firing_rates(self) -> dict[str, float]:
        """Per neuron: mean spikes per (virtual) time step, in [0, 1]."""
        return {k: v[0] / v[1] / v[2] for k, v in self.neurons.items()}

    def mean_counts(self) -> dict[str, float]:
        return {k: v[0] / v[1] for k, v in self.neurons.items()}


def model_size_bytes(model: nn.Module) -> float:
    total = 0.0
    for name, p in list(model.named_parameters()) + list(model.named_buffers()):
        if '.act.' in name or name.endswith('init_state') or name.endswith('num_batches_tracked'):
            continue  # placeholders and bookkeeping are not part of the deployed model
        mod = model.get_submodule(name.rsplit('.', 1)[0]) if '.' in name else model
        bits = 32
        if name.endswith('.weight') and getattr(mod, 'alpha', None) is not None and getattr(mod, 'nbits', 0):
            bits = mod.nbits
        total += p.numel() * bits / 8
    return total


def measure(
    name: str, images: torch.Tensor, T: int, batch_size: int, checkpoint: str | None, calib_batches: int, progress
) -> tuple[EnergyRow, dict[str, float]]:
    import timm

    import zoo  # noqa: F401

    kw = dict(T=T)
    if checkpoint:
        kw.update(pretrained=True, pretrained_cfg_overlay=dict(file=checkpoint))
    model = timm.create_model(name, **kw)
    if not checkpoint and calib_batches > 0:
        model.train()  # BN statistics (and LSQ steps) from the images; no gradients
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the calibration batches
        with torch.no_grad():
            for i in range(calib_batches):
                model(images[(i * batch_size) % len(images) :][:batch_size])
    model.eval()
    rec = Recorder(model, T)
    with torch.no_grad():
        for i in range(0, len(images), batch_size):
            model(images[i : i + batch_size])
            progress.update(min(batch_size, len(images) - i))
    rec.remove()

    counts = rec.mean_counts()
    first_macs, sops, sops_q, dense = 0.0, 0.0, 0.0, 0.0
    wbits = int(getattr(model, 'wbits', None) or 32)
    for flops, neuron, is_lsq, _ in rec.layers.values():
        dense += flops
        if neuron is None:
            first_macs += flops  # real-valued input: the encoding layer
            continue
        sop = counts[neuron] * T * flops  # = fr * (T * D) * FLOPs
        sops += sop
        sops_q += sop * (wbits / 32 if is_lsq else 1.0)
    levels = next(iter(rec.neurons.values()))[2]
    e = (E_MAC_PJ * first_macs + E_AC_PJ * sops) * 1e-9  # pJ -> mJ
    eq = (E_MAC_PJ * first_macs + E_AC_PJ * sops_q) * 1e-9
    size = model_size_bytes(model)
    rates = rec.firing_rates()
    row = EnergyRow(
        model=name,
        T=T,
        D=levels,
        wbits=wbits,
        images=len(images),
        img_size=images.shape[-1],
        params_m=round(sum(p.numel() for p in model.parameters()) / 1e6, 3),
        size_mb=round(size / 1e6, 3),
        size_32bit_equiv_m=round(size / 4 / 1e6, 3),
        gmacs_dense=round(dense / 1e9, 3),
        first_layer_gmacs=round(first_macs / 1e9, 4),
        gsops=round(sops / 1e9, 3),
        mean_firing_rate=round(sum(rates.values()) / len(rates), 4),
        energy_mj=round(e, 3),
        energy_bitscaled_mj=round(eq, 3),
    )
    return row, rates


def plot_rates(rates: dict[str, dict[str, float]], path: str) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(rates), 1, figsize=(14, 3.2 * len(rates)), squeeze=False)
    for ax, (name, r) in zip(axes[:, 0], rates.items()):
        ax.bar(range(len(r)), list(r.values()), color='tab:blue')
        ax.set_title(f'{name}: firing rate per neuron layer (mean spikes per virtual step)')
        ax.set_ylabel('firing rate')
        ax.set_xlim(-1, len(r))
        step = max(1, len(r) // 40)
        ax.set_xticks(range(0, len(r), step))
        ax.set_xticklabels(list(r)[::step], rotation=90, fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('models', nargs='+', help='spiking zoo models (qsd_transformer_*, meta_spikeformer_*)')
    p.add_argument('--images', help='folder of images (recursive); default: scikit-learn digits, upsampled')
    p.add_argument('--num-images', type=int, default=16)
    p.add_argument('--img-size', type=int, default=224, help='square input side (multiple of 16)')
    p.add_argument('--T', type=int, default=1, help='time steps')
    p.add_argument('--batch-size', type=int, default=8)
    p.add_argument('--checkpoint', help='weights file (official layout accepted); one model only')
    p.add_argument(
        '--calib-batches',
        type=int,
        default=2,
        help='BN calibration batches for untrained models (ignored with --checkpoint)',
    )
    p.add_argument('--threads', type=int, default=None, help='torch threads')
    p.add_argument('--out', default='benchmarks/qsd_transformer_energy', help='output prefix for .csv and _firing.png')
    args = p.parse_args(argv)
    if args.img_size % 16:
        p.error(f'--img-size must be a multiple of 16, got {args.img_size}')
    if args.checkpoint and len(args.models) > 1:
        p.error('--checkpoint takes a single model')
    if args.threads:
        torch.set_num_threads(args.threads)
    from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
    from tqdm import tqdm

    torch.manual_seed(0)
    images = load_images(args.images, args.num_images, args.img_size, IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD)
    t0 = time.time()
    rows, rates = [], {}
    with tqdm(total=len(images) * len(args.models), desc='energy', unit='img') as bar:
        for name in args.models:
            bar.set_postfix_str(name)
            row, r = measure(name, images, args.T, args.batch_size, args.checkpoint, args.calib_batches, bar)
            rows.append(row)
            rates[name] = r
    os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
    with open(f'{args.out}.csv', 'w', newline='') as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        w.writeheader()
        for r in rows:
            w.writerow(asdict(r))
    plot_rates(rates, f'{args.out}_firing.png')
    cols = [
        'model',
        'T',
        'D',
        'wbits',
        'params_m',
        'size_mb',
        'gmacs_dense',
        'gsops',
        'mean_firing_rate',
        'energy_mj',
        'energy_bitscaled_mj',
    ]
    print('| ' + ' | '.join(cols) + ' |')
    print('|' + '---|' * len(cols))
    for r in rows:
        d = asdict(r)
        print('| ' + ' | '.join(str(d[c]) for c in cols) + ' |')
    best = min(rows, key=lambda r: r.energy_mj)
    print(
        f'energy: {len(rows)} model(s), {len(images)} images at {args.img_size}px, T={args.T}; lowest '
        f'{best.model} {best.energy_mj} mJ; wrote {args.out}.csv and {args.out}_firing.png '
        f'in {time.time() - t0:.0f}s'
    )
    return 0


def cli() -> None:
    """Console entry point (``zoo-energy``, ``python tools/analysis/energy.py``)."""
    raise SystemExit(main())


if __name__ == '__main__':
    cli()
