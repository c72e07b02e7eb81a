"""Benchmarks of every family, one tool: ``models`` (the default), ``scan`` and ``wsi``. Writes <out>.csv and
<out>.png.

models: throughput, latency, peak memory, parameters and MACs for a list of models (zoo and timm), each
  model at each input side, with each set of --model-kwargs (e.g. the spiking models' time steps T) and in
  each variant of the fast path (--bf16 / --compile / --channels-last, or several: --variants fp32 bf16
  compile). The float32 and bfloat16 matmul peaks are measured in the same run; gflop_s (2 x MACs x img/s)
  is given as share_of_peak of the variant's precision, compile_s is the first (compiling) batch.
  CSV columns: model, model_kwargs, [one per kwargs key], img_size, batch_size, params_m, gmacs, variant,
  dense_gmacs, attn_gmacs, infer_img_s, infer_ms_per_batch, latency_ms, cpu_s_per_img, train_img_s,
  peak_mem_mb, compile_s, gflop_s, peak_fp32_gflop_s, peak_bf16_gflop_s, share_of_peak, load_avg, device,
  threads. latency_ms is NaN for compiled variants (batch 1 would compile again).
  Models are measured interleaved (round-robin over entries for --rounds rounds, median per entry), so
  that ratios between models hold on a noisy machine. Peak memory is the peak resident set size of a
  separate process that builds the model and runs one step, above its size after the imports (CPU), or
  the CUDA peak allocation. --cpu-time also records the process CPU time per image (all threads), which
  stays meaningful when other jobs load the machine. MAC columns (per image, FLOPs / 2): gmacs (torch's
  FLOP counter; on CPU it does not see scaled_dot_product_attention), dense_gmacs (conv and linear
  layers) and attn_gmacs (the products outside them: attention, with CPU SDPA counted from its shapes).
scan: MHS-VM selective-scan kernels (eager / fused) against the sequential reference over lengths and
  thread counts (--what kernel), or VM-UNet throughput and peak RSS per scan backend (--what model).
wsi: whole-slide feature extraction (read + resize + forward + write) against a bare forward.
dcal: DCAL against its plain ViT (params, GMACs, img/s), its training step against SA alone, and the CLS-row
  rollout against the full matrix-product chain; writes benchmarks/dcal_{inference,training,rollout}.csv|png.
medusa: medusa_resnet50 against timm's resnet50 at 480², batch 8 (params, GMACs, img/s) and the body alone at
  256², next to the published 29.2M / 29.1 GMACs; writes benchmarks/medusa.csv|png.
amp: one training step of each family's demo config (digits; MEDUSA's scans) in float32 and with tools/train.py
  --amp (bf16 autocast on CPU), through the config's classifier and optimizer wrapper, at 1 and 2 threads;
  writes benchmarks/amp_training.csv|png.
agree: train each family's digits config (--epochs, default 3; reused if trained) and run tools/test.py on it in
  fp32, --bf16, --compile and both; the share of images whose top-1 prediction equals float32's (target 0.99);
  writes benchmarks/fast_path_agreement.csv|png.
distill: one training step of RetinaNet R50 at 800x1333, batch 1, CPU, without distillation and with the MSE, FGD,
  MasKD and ACAM-KD COCO configs (R101 teacher); and STCA-FF's peak memory on P3, fused SDPA against naive;
  writes benchmarks/distill_{step,memory}.csv|png (needs the mm extra).

Examples:
  python tools/analysis/benchmark.py --models mambaout_femto resnet18 --out benchmarks/cpu_small
  python tools/analysis/benchmark.py --models agent_pvt_tiny pvt_v2_b1 --img-sizes 224 512 1024 --batch-size 1 \\
      --bench infer --out benchmarks/agent_resolution
  python tools/analysis/benchmark.py --models qsd_transformer_15m meta_spikeformer_15m --model-kwargs T=1,4 \\
      --batch-size 1 --bench infer --iters 1 --threads 2 --no-memory --out benchmarks/qsd_transformer_speed
  python tools/analysis/benchmark.py --models mambaout_femto agent_deit_tiny --variants fp32 bf16 compile \\
      --bench infer --out benchmarks/fast_inference
  python tools/analysis/benchmark.py scan --lengths 1024 4096 --threads 1 2 --backends eager fused
  python tools/analysis/benchmark.py wsi --models resnet18 --workers 0 2
  python tools/analysis/benchmark.py dcal --models dcal_deit_tiny_patch16_448 --what inference rollout
  python tools/analysis/benchmark.py medusa --rounds 3
  python tools/analysis/benchmark.py distill --threads 1
  python tools/analysis/benchmark.py amp --threads 1 2 --rounds 5
  python tools/analysis/benchmark.py agree --epochs 3 --threads 1
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time

import torch

from zoo.benchmark import agree, amp, dcal, distill, medusa, scan, wsi
from zoo.benchmark.models import (
    ModelKwargsError,
    Result,
    kwargs_label,
    memory_probe,
    merge_results,
    parse_variant,
    run,
    write_outputs,
)
from zoo.cli.common import UsageError, add_fast_args, check_model_names

SUITES = ('models', 'scan', 'wsi', 'dcal', 'medusa', 'distill', 'amp', 'agree')


def _value(text: str):
    try:
        return json.loads(text)
    except ValueError:  # a bare word: a string
        return text


def parse_model_kwargs(groups: list[list[str]] | None) -> list[dict]:
    """``--model-kwargs`` values to the list of kwargs sets to measure.

    Each occurrence is one JSON object (``'{"T": 4}'``: one set) or ``key=v1,v2 key2=w`` items (the
    product of the values: ``T=1,4`` gives ``{"T": 1}`` and ``{"T": 4}``); occurrences add up.
    Values are JSON where they parse (``4``, ``0.1``, ``true``), else strings. No option: ``[{}]``.
    """
    sets: list[dict] = []
    for items in groups or []:
        if len(items) == 1 and items[0].lstrip().startswith('{'):
            try:
                kw = json.loads(items[0])
            except ValueError as err:
                raise UsageError(f'--model-kwargs: {items[0]!r} is not a JSON object ({err})') from None
            sets.append(kw)
            continue
        keys, values = [], []
        for item in items:
            key, sep, vals = item.partition('=')
            if not sep or not key.isidentifier():
                raise UsageError(f'--model-kwargs: expected key=value[,value...] or a JSON object, got {item!r}')
            keys.append(key)
            values.append([_value(v) for v in vals.split(',')])
        sets.extend(dict(zip(keys, combo)) for combo in itertools.product(*values))
    for kw in sets:
        if not isinstance(kw, dict) or 'img_size' in kw:
            raise UsageError(f'--model-kwargs: {kw!r}: a JSON object without img_size (use --img-sizes)')
    unique = {json.dumps(kw, sort_keys=True): kw for kw in sets}
    return list(unique.values()) or [{}]


def _parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    sub = p.add_subparsers(
        dest='suite',
        metavar='{models,scan,wsi,dcal,medusa,distill,amp,agree}',
        help='what to benchmark (default models: `benchmark.py --models ...`)',
    )
    m = sub.add_parser(
        'models', help='a list of timm / zoo models (the default)', description=__doc__, formatter_class=fmt
    )
    m.add_argument('--models', nargs='+', required=False, help='timm / zoo model names')
    m.add_argument('--img-sizes', '--img-size', nargs='+', type=int, default=[224], help='square input sides')
    m.add_argument(
        '--model-kwargs',
        nargs='+',
        action='append',
        metavar='KW',
        help='extra create_model arguments, each set a measured entry: key=v1,v2 (one entry per '
        'value; several keys: their product) or a JSON object; repeatable, e.g. T=1,4',
    )
    m.add_argument('--batch-size', type=int, default=8)
    m.add_argument(
        '--bench',
        choices=['infer', 'train', 'both'],
        default='both',
        help='what to time (default both: inference and training; the PNG plots each, and memory)',
    )
    m.add_argument('--rounds', type=int, default=5, help='interleaved rounds (median is reported)')
    m.add_argument('--iters', type=int, default=3, help='timed iterations per round')
    m.add_argument(
        '--cpu-time',
        action='store_true',
        help='also report process CPU time per image (cpu_s_per_img, and a PNG panel)',
    )
    m.add_argument('--threads', type=int, help="torch threads (default: torch's)")
    m.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    m.add_argument('--no-memory', action='store_true', help='skip the peak-memory subprocesses')
    m.add_argument('--out', default='benchmarks/benchmark', help='output prefix for .csv and .png')
    m.add_argument(
        '--merge',
        action='store_true',
        help='keep the other rows of an existing <out>.csv: the entries measured now replace theirs (same model, '
        'kwargs, variant and input side), and the PNG is drawn from all rows',
    )
    m.add_argument('--memory-probe', help=argparse.SUPPRESS)
    add_fast_args(m)
    m.add_argument(
        '--variants',
        nargs='+',
        metavar='VARIANT',
        help='measure each entry in several variants of the fast path, interleaved: fp32 (eager float32) or '
        "'+'-joined bf16 / channels_last / compile, e.g. --variants fp32 bf16 compile bf16+compile "
        '(instead of --bf16 / --compile / --channels-last, which give one variant)',
    )
    m.add_argument(
        '--peak-size', type=int, default=1024, help='side of the square matmul that measures the peaks (default 1024)'
    )
    m.set_defaults(func=_main_models, parser=m)

    s = sub.add_parser(
        'scan',
        help='MHS-VM selective-scan kernels, or VM-UNet throughput per scan backend',
        description=scan.__doc__,
        formatter_class=fmt,
    )
    s.add_argument(
        '--what',
        choices=['kernel', 'model', 'train'],
        default='kernel',
        help='kernel: scan speed against the sequential scan (default); model: VM-UNet forward; '
        'train: VM-UNet training step (backends interleaved in one process)',
    )
    s.add_argument('--lengths', type=int, nargs='+', default=[1024, 4096, 16384], help='kernel: scan lengths L')
    s.add_argument(
        '--img-sizes',
        '--sizes',
        type=int,
        nargs='+',
        help='model / train: image sides, divisible by 32 (default: model 256 512, train 256)',
    )
    s.add_argument('--unet', default='mhs_vm_unet_4h', choices=['mhs_vm_unet_4h', 'mhs_vm_unet_3h'])
    s.add_argument('--threads', type=int, nargs='+', help='torch thread counts (default: kernel 1 2, model 2)')
    s.add_argument('--batch', type=int, default=1, help='train: images per training step')
    s.add_argument(
        '--backends',
        nargs='+',
        default=['eager', 'fused'],
        choices=['eager', 'fused'],
        help='selective_scan backends to measure',
    )
    s.add_argument('--rounds', '--repeats', type=int, default=3, help='timed runs per point (median)')
    s.add_argument(
        '--out',
        help='output prefix (default benchmarks/mhs_vm_scan_speed, mhs_vm_throughput or mhs_vm_train_step)',
    )
    s.add_argument('--worker', help=argparse.SUPPRESS)
    s.set_defaults(func=_main_scan, parser=s)

    w = sub.add_parser(
        'wsi', help='WSI feature extraction against a bare forward', description=wsi.__doc__, formatter_class=fmt
    )
    w.add_argument('--slides', help='folder of slides (default: synthetic slides)')
    w.add_argument('--n-slides', type=int, default=3, help='synthetic slides to write (default 3)')
    w.add_argument('--slide-size', type=int, default=6144, help='synthetic level-0 side (default 6144)')
    w.add_argument('--models', nargs='+', default=['resnet18'], help='timm / zoo extractors')
    w.add_argument('--patch-size', type=int, default=512, help='patch side at --magnification (default 512)')
    w.add_argument('--magnification', type=float, default=20.0)
    w.add_argument('--target-size', type=int, default=224, help='model input side (default 224)')
    w.add_argument('--batch-size', type=int, default=64)
    w.add_argument(
        '--read',
        nargs='+',
        choices=['pyramid', 'level0'],
        default=['pyramid'],
        help="patch reading: 'pyramid' (read_pyramid=True, default) and/or 'level0' (at the "
        'requested magnification, as the official code)',
    )
    w.add_argument('--workers', type=int, nargs='+', default=[0, 2], help='DataLoader workers to try')
    w.add_argument('--device', default='auto')
    w.add_argument('--threads', type=int, help="torch threads (default: torch's)")
    w.add_argument(
        '--rounds',
        '--repeats',
        type=int,
        default=3,
        help='alternating bare / extraction runs per setting; medians are reported (default 3)',
    )
    w.add_argument('--out', default='benchmarks/wsi_extract', help='output prefix for .csv and .png')
    w.set_defaults(func=_main_wsi, parser=w)

    d = sub.add_parser(
        'dcal',
        help='DCAL against its plain ViT: inference, training step, rollout',
        description=dcal.__doc__,
        formatter_class=fmt,
    )
    d.add_argument(
        '--what',
        nargs='+',
        choices=['inference', 'attention', 'training', 'rollout'],
        default=['inference', 'attention', 'training', 'rollout'],
        help='parts to run (default all four)',
    )
    d.add_argument('--models', nargs='+', default=list(dcal.DCAL_MODELS), help='DCAL models (default all four)')
    d.add_argument('--img-size', type=int, default=448, help="square input side (default 448, the paper's)")
    d.add_argument('--batch-size', type=int, default=8)
    d.add_argument('--rounds', type=int, default=3, help='interleaved rounds (median is reported)')
    d.add_argument('--iters', type=int, default=1, help='inference: timed forwards per round')
    d.add_argument('--num-classes', type=int, default=200, help='classifier size (default 200: CUB)')
    d.add_argument(
        '--model-kwargs', default='{}', metavar='JSON', help='extra create_model arguments (both models), a JSON object'
    )
    d.add_argument('--train-models', nargs='+', help='training: DCAL models (default: the first of --models)')
    d.add_argument(
        '--train-img-size',
        type=int,
        help='training: input side (default --img-size on CUDA; on CPU at most 224: a DCAL step at 448, batch 8 is '
        '~0.4 TMAC)',
    )
    d.add_argument('--train-batch-size', type=int, help='training: batch (default --batch-size)')
    d.add_argument(
        '--rollout-tokens', type=int, nargs='+', help='rollout: token counts N (default (img-size / 16)^2 + 1)'
    )
    d.add_argument('--rollout-layers', type=int, default=12, help='rollout: layers L (default 12)')
    d.add_argument('--threads', type=int, help="torch threads (default: torch's)")
    d.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    d.add_argument('--out-dir', default='benchmarks', help='folder of dcal_<part>.csv / .png (default benchmarks)')
    d.set_defaults(func=_main_dcal, parser=d)

    m = sub.add_parser(
        'medusa', help='medusa_resnet50 against resnet50, and the body', description=medusa.__doc__, formatter_class=fmt
    )
    m.add_argument('--img-size', type=int, default=480, help="square input side (default 480, the paper's)")
    m.add_argument('--batch-size', type=int, default=8)
    m.add_argument('--rounds', type=int, default=3, help='interleaved rounds (median is reported)')
    m.add_argument(
        '--model-kwargs', default='{}', metavar='JSON', help='extra create_model arguments for medusa_resnet50 (JSON)'
    )
    m.add_argument('--threads', type=int, help="torch threads (default: torch's)")
    m.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    m.add_argument('--out', default='benchmarks/medusa', help='output prefix for .csv and .png')
    m.set_defaults(func=_main_medusa, parser=m)

    k = sub.add_parser(
        'distill',
        help='distillation step time (RetinaNet) and STCA-FF memory',
        description=distill.__doc__,
        formatter_class=fmt,
    )
    k.add_argument(
        '--what', nargs='+', choices=['step', 'memory'], default=['step', 'memory'], help='parts (default both)'
    )
    k.add_argument(
        '--methods', nargs='+', choices=list(distill.STEP_ENTRIES), default=list(distill.STEP_ENTRIES), metavar='M'
    )
    k.add_argument('--hw', type=int, nargs=2, default=(800, 1333), metavar=('H', 'W'), help='step: input size')
    k.add_argument('--rounds', type=int, default=1, help='step: interleaved rounds (median; one warm-up step each)')
    k.add_argument('--threads', type=int, help="torch threads (default: torch's)")
    k.add_argument('--out-dir', default='benchmarks', help='folder of distill_{step,memory}.csv / .png')
    k.set_defaults(func=_main_distill, parser=k)

    a = sub.add_parser(
        'amp',
        help='one training step per demo config, float32 vs --amp (bf16)',
        description=amp.__doc__,
        formatter_class=fmt,
    )
    a.add_argument('--configs', nargs='+', default=list(amp.CONFIGS), metavar='CONFIG[:key=value,...]')
    a.add_argument('--threads', type=int, nargs='+', default=[1, 2], help='torch thread counts (default 1 2)')
    a.add_argument('--rounds', type=int, default=5, help='interleaved rounds (median is reported)')
    a.add_argument('--iters', type=int, default=2, help='timed steps per round')
    a.add_argument('--batch-size', type=int, help="override the configs' train batch size")
    a.add_argument('--out', default='benchmarks/amp_training', help='output prefix for .csv and .png')
    a.set_defaults(func=_main_amp, parser=a)

    g = sub.add_parser(
        'agree',
        help='top-1 agreement of tools/test.py --bf16 / --compile with float32 on trained digits models',
        description=agree.__doc__,
        formatter_class=fmt,
    )
    g.add_argument(
        '--configs',
        nargs='+',
        default=list(agree.CONFIGS),
        metavar='CONFIG[:key=value,...]',
        help='configs to train and test (default: the four digits configs)',
    )
    g.add_argument(
        '--variants',
        nargs='+',
        default=list(agree.VARIANTS),
        metavar='VARIANT',
        help="fp32 or '+'-joined bf16 / compile / channels_last (default fp32 bf16 compile bf16+compile; "
        'fp32, the reference, is always run)',
    )
    g.add_argument('--epochs', type=int, default=3, help='training epochs (train_cfg.max_epochs; default 3)')
    g.add_argument(
        '--work-dir',
        default='work_dirs/fast_path_agreement',
        help='training and test runs go to WORK_DIR/<config> (its trained weights are reused on a rerun)',
    )
    g.add_argument('--threads', type=int, help="torch threads (default: torch's)")
    g.add_argument('--out', default='benchmarks/fast_path_agreement', help='output prefix for .csv and .png')
    g.set_defaults(func=_main_agree, parser=g)
    return p


def _main_agree(args: argparse.Namespace) -> list[dict]:
    from zoo.benchmark.models import parse_variant

    try:
        for v in args.variants:
            parse_variant(v)
    except ValueError as err:
        raise UsageError(f'--variants: {err}') from None
    if args.epochs < 1:
        raise UsageError(f'--epochs: at least 1, got {args.epochs}')
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    from zoo.cli import test as test_tool
    from zoo.cli import train as train_tool
    from zoo.cli.common import REPO_ROOT

    rows = agree.bench(
        tuple(args.configs),
        tuple(args.variants),
        args.epochs,
        args.work_dir,
        train_tool=train_tool.main,
        test_tool=test_tool.main,
        repo_root=str(REPO_ROOT),
    )
    if not rows:
        raise RuntimeError('benchmark agree: every entry failed (see above)')
    paths = agree.write(rows, args.out)
    target = agree.TARGET
    low = [f'{r["config"]} {r["variant"]} {r["agree_with_fp32"]:.4f}' for r in rows if r['agree_with_fp32'] < target]
    verdict = f'below {target}: {", ".join(low)}' if low else f'all at or above {target}'
    print(
        f'benchmark agree: {len(rows)} rows in {time.time() - start:.0f}s, {verdict} -> {paths[0]}, {paths[1]}',
        flush=True,
    )
    return rows


def _main_amp(args: argparse.Namespace) -> list[dict]:
    rows = amp.bench(tuple(args.configs), tuple(args.threads), args.rounds, args.iters, args.batch_size)
    paths = amp.write(rows, args.out)
    print(f'benchmark amp: wrote {paths[0]} and {paths[1]}', flush=True)
    return rows


def _main_distill(args: argparse.Namespace) -> list[dict]:
    import os

    from zoo.cli.common import REPO_ROOT

    if args.threads:
        torch.set_num_threads(args.threads)
    start, rows = time.time(), []
    if 'step' in args.what:
        res = distill.step_rows(args.methods, tuple(args.hw), args.rounds, root=str(REPO_ROOT))
        paths = distill.write_step(res, os.path.join(args.out_dir, 'distill_step'))
        for r in res:
            extra = f' ({r["overhead_x"]}x no KD)' if r['overhead_x'] != '' else ''
            print(f'benchmark distill: {r["method"]}: {r["step_s"]:.2f} s / step{extra}', flush=True)
        print(f'benchmark distill: -> {", ".join(paths)}', flush=True)
        rows += res
    if 'memory' in args.what:
        env_threads = args.threads or torch.get_num_threads()
        os.environ.setdefault('OMP_NUM_THREADS', str(env_threads))
        res = distill.memory_rows()
        paths = distill.write_memory(res, os.path.join(args.out_dir, 'distill_memory'))
        for r in res:
            print(f'benchmark distill: STCA-FF {r["path"]}: {r["peak_mb"]} MB peak, {r["seconds"]} s', flush=True)
        print(f'benchmark distill: -> {", ".join(paths)}', flush=True)
        rows += res
    print(f'benchmark distill: {", ".join(args.what)} in {time.time() - start:.0f}s', flush=True)
    return rows


def _main_medusa(args: argparse.Namespace) -> list[dict]:
    try:
        kwargs = json.loads(args.model_kwargs)
    except ValueError as err:
        raise UsageError(f'--model-kwargs: {args.model_kwargs!r} is not JSON ({err})') from None
    if not isinstance(kwargs, dict):
        raise UsageError(f'--model-kwargs: expected a JSON object, got {args.model_kwargs!r}')
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    rows = medusa.bench(args.img_size, args.batch_size, args.rounds, args.device, kwargs)
    paths = medusa.write(rows, args.out)
    for r in rows:
        paper = f' (paper {r["paper_params_m"]}M, {r["paper_gmacs"]} G)' if r['paper_params_m'] != '' else ''
        print(
            f'benchmark medusa: {r["model"]} at {r["input"]}: {r["params_m"]:.3f}M params, {r["gmacs"]:.2f} GMACs, '
            f'{r["img_s"]:.2f} img/s{paper}',
            flush=True,
        )
    print(f'benchmark medusa: -> {", ".join(paths)} in {time.time() - start:.0f}s', flush=True)
    return rows


def _variants(args: argparse.Namespace) -> list[str]:
    """The variants to measure: --variants, or the one that --bf16 / --compile / --channels-last give."""
    asked = (('bf16', args.bf16), ('channels_last', args.channels_last), ('compile', args.compile))
    flags = [f for f, on in asked if on]
    if args.variants and flags:
        raise UsageError('give --variants or --bf16 / --compile / --channels-last, not both')
    try:
        variants = [parse_variant(v) for v in args.variants or ['+'.join(flags) or 'fp32']]
    except ValueError as err:
        raise UsageError(f'--variants: {err}') from None
    if args.bench != 'infer' and any('compile' in v.split('+') for v in variants):
        raise UsageError('--compile times inference only (compiling the backward takes minutes on CPU): --bench infer')
    return variants


def _main_models(args: argparse.Namespace) -> list[Result]:
    if args.memory_probe:
        memory_probe(json.loads(args.memory_probe))
        return []
    if not args.models:
        args.parser.error('--models is required')
    check_model_names(args.models, '--models')
    kwargs = parse_model_kwargs(args.model_kwargs)
    variants = _variants(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.time()
    try:
        results = run(
            args.models,
            args.img_sizes,
            args.batch_size,
            args.bench,
            args.rounds,
            args.iters,
            args.device,
            memory=not args.no_memory,
            model_kwargs=kwargs,
            cpu_time=args.cpu_time,
            variants=variants,
            peak_n=args.peak_size,
        )
    except ModelKwargsError as err:
        raise UsageError(str(err)) from None
    write_outputs(merge_results(results, args.out + '.csv') if args.merge else results, args.out)
    for r in results:
        name = ' '.join(filter(None, (r.model, kwargs_label(json.loads(r.model_kwargs)), r.variant)))
        print(
            f'{name:28s} {r.img_size:5d}px  {r.params_m:8.2f}M  {r.gmacs:7.2f} GMACs (attn {r.attn_gmacs:.3f})  '
            f'infer {r.infer_img_s:8.2f} img/s ({r.share_of_peak:.1%} of peak)  latency {r.latency_ms:8.2f} ms  '
            + (f'cpu {r.cpu_s_per_img:.4f} s/img  ' if args.cpu_time else '')
            + (f'compile {r.compile_s:.1f} s  ' if r.compile_s == r.compile_s else '')
            + f'train {r.train_img_s:8.2f} img/s  peak {r.peak_mem_mb:8.1f} MB'
        )
    r0 = results[0]
    print(
        f'benchmark: {len(results)} runs on {args.device} in {time.time() - start:.0f}s (matmul peak '
        f'{r0.peak_fp32_gflop_s:.0f} GFLOP/s fp32, {r0.peak_bf16_gflop_s:.0f} bf16) -> {args.out}.csv, {args.out}.png'
    )
    return results


def _main_scan(args: argparse.Namespace) -> list[dict]:
    if args.worker:
        spec = json.loads(args.worker)
        if spec.get('what') == 'train':
            print(json.dumps(dict(rows=scan.train_worker(spec))))
        else:
            print(json.dumps(scan.model_worker(spec)))
        return []
    start = time.time()
    if args.what == 'kernel':
        rows = scan.bench_kernel(args.lengths, args.rounds, args.threads or [1, 2], args.backends)
        csv_path, png_path = scan.write_kernel(rows, args.out or 'benchmarks/mhs_vm_scan_speed')
        summary = ', '.join(f'L={r["L"]} {r["backend"]} {r["threads"]}t: {r["speedup"]:.1f}x' for r in rows)
        print(f'benchmark scan: speed-up over the sequential scan {summary}')
    elif args.what == 'train':
        rows = scan.bench_train(
            args.img_sizes or [256], args.rounds, args.threads or [1], args.backends, args.unet, args.batch
        )
        if not rows:
            raise RuntimeError('benchmark scan: every VM-UNet training measurement failed (see above)')
        csv_path, png_path = scan.write_train(rows, args.out or 'benchmarks/mhs_vm_train_step', args.unet)
        summary = ', '.join(
            f'{r["size"]}² b{r["batch"]} ({r["threads"]}t, {r["backend"]}): {r["step_ms"]:.0f} ms '
            f'({r["speedup_vs_first_backend"]:.2f}x, load {r["loadavg_1min"]:.1f})'
            for r in rows
        )
        print(f'benchmark scan: {args.unet} training step {summary}')
    else:
        rows = scan.bench_model(
            args.img_sizes or [256, 512], args.rounds, args.threads or [2], args.backends, args.unet
        )
        if not rows:
            raise RuntimeError('benchmark scan: every VM-UNet measurement failed (see above)')
        csv_path, png_path = scan.write_model(rows, args.out or 'benchmarks/mhs_vm_throughput', args.unet)
        summary = ', '.join(f'{r["size"]}² ({r["threads"]}t, {r["backend"]}): {r["img_per_s"]:.3g} img/s' for r in rows)
        print(f'benchmark scan: {args.unet} {summary}')
    print(f'benchmark scan: {len(rows)} rows in {time.time() - start:.0f}s -> {csv_path}, {png_path}')
    return rows


def _main_wsi(args: argparse.Namespace) -> list[dict]:
    check_model_names(args.models, '--models')
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device if args.device != 'auto' else ('cuda' if torch.cuda.is_available() else 'cpu')
    rows = wsi.bench_extraction(
        args.models,
        slides_dir=args.slides,
        n_slides=args.n_slides,
        slide_size=args.slide_size,
        patch_size=args.patch_size,
        magnification=args.magnification,
        target_size=args.target_size,
        batch_size=args.batch_size,
        reads=tuple(args.read),
        workers=tuple(args.workers),
        device=device,
        rounds=args.rounds,
    )
    csv_path, png_path = wsi.write_wsi(rows, args.out)
    best = min(rows, key=lambda r: r['overhead_pct'])
    print(
        f'benchmark wsi: {len(rows)} settings on {device}; best: {best["extractor"]} with '
        f'{best["num_workers"]} workers: {best["pipeline_img_s"]} patches/s vs {best["bare_forward_img_s"]} '
        f'bare forward ({best["overhead_pct"]:+.1f}% overhead) -> {csv_path}, {png_path}',
        flush=True,
    )
    return rows


def _main_dcal(args: argparse.Namespace) -> list[dict]:
    import os

    check_model_names(args.models + (args.train_models or []), '--models')
    try:
        kwargs = json.loads(args.model_kwargs)
    except ValueError as err:
        raise UsageError(f'--model-kwargs: {args.model_kwargs!r} is not JSON ({err})') from None
    if not isinstance(kwargs, dict) or 'img_size' in kwargs or 'num_classes' in kwargs:
        raise UsageError('--model-kwargs: a JSON object without img_size / num_classes (use --img-size, --num-classes)')
    for name in args.models + (args.train_models or []):
        if not name.startswith('dcal_'):
            raise UsageError(f'--models: {name} is not a DCAL model (dcal_*); its plain ViT is found from the name')
    if args.threads:
        torch.set_num_threads(args.threads)
    start, rows = time.time(), []
    if 'inference' in args.what:
        res = dcal.bench_inference(
            args.models, args.img_size, args.batch_size, args.rounds, args.iters, args.device, args.num_classes, kwargs
        )
        paths = dcal.write_inference(res, os.path.join(args.out_dir, 'dcal_inference'))
        for r in res:
            print(
                f'benchmark dcal: {r["model"]} vs {r["plain_model"]} at {r["img_size"]}: params {r["params_m"]:.3f}M '
                f'/ {r["plain_params_m"]:.3f}M = {r["params_ratio"]:.3f}x, GMACs {r["gmacs"]:.3f} / '
                f'{r["plain_gmacs"]:.3f} = {r["gmacs_ratio"]:.3f}x, {r["img_s"]:.2f} / {r["plain_img_s"]:.2f} img/s '
                f'= {r["img_s_ratio"]:.2f}x',
                flush=True,
            )
        print(f'benchmark dcal: -> {", ".join(paths)}', flush=True)
        rows += res
    if 'attention' in args.what:
        res = dcal.bench_attention(
            args.models, args.img_size, args.batch_size, max(args.rounds, 3), args.device, kwargs
        )
        paths = dcal.write_attention(res, os.path.join(args.out_dir, 'dcal_attention'))
        for r in res:
            print(
                f'benchmark dcal: {r["model"]} one block, {r["tokens"]} tokens: fused {r["fused_ms"]:.1f} ms, '
                f'eval path {r["eval_path_ms"]:.1f} ms ({r["eval_path_over_fused"]:.2f}x), '
                f'GEMMs alone {r["gemm_floor_ms"]:.1f} ms ({r["gemm_floor_over_fused"]:.2f}x)',
                flush=True,
            )
        print(f'benchmark dcal: -> {", ".join(paths)}', flush=True)
        rows += res
    if 'training' in args.what:
        size = args.train_img_size or (args.img_size if args.device.startswith('cuda') else min(args.img_size, 224))
        res = dcal.bench_training(
            args.train_models or args.models[:1],
            size,
            args.train_batch_size or args.batch_size,
            args.rounds,
            args.device,
            args.num_classes,
            kwargs,
        )
        paths = dcal.write_training(res, os.path.join(args.out_dir, 'dcal_training'))
        for r in res:
            print(
                f'benchmark dcal: {r["model"]} training step at {r["img_size"]}, batch {r["batch_size"]}: '
                f'SA {r["sa_step_s"]:.3f}s, SA + GLCA + PWCA {r["dcal_step_s"]:.3f}s = {r["step_ratio"]:.2f}x '
                f'(paper {r["paper_train_time_ratio"]:.2f}x)',
                flush=True,
            )
        print(f'benchmark dcal: -> {", ".join(paths)}', flush=True)
        rows += res
    if 'rollout' in args.what:
        tokens = args.rollout_tokens or [(args.img_size // 16) ** 2 + 1]
        res = dcal.bench_rollout(tokens, args.rollout_layers, args.rounds)
        paths = dcal.write_rollout(res, os.path.join(args.out_dir, 'dcal_rollout'))
        for r in res:
            print(
                f'benchmark dcal: rollout N={r["tokens"]}, L={r["layers"]}: CLS row {r["cls_row_ms"]:.3f} ms, '
                f'full chain {r["full_chain_ms"]:.1f} ms = {r["speedup"]:.0f}x, max |diff| {r["max_abs_diff"]:.1e}',
                flush=True,
            )
        print(f'benchmark dcal: -> {", ".join(paths)}', flush=True)
        rows += res
    print(f'benchmark dcal: {", ".join(args.what)} on {args.device} in {time.time() - start:.0f}s', flush=True)
    return rows


def main(argv: list[str] | None = None) -> list:
    """Run one suite; ``argv`` without a suite name is the ``models`` suite (``--models ...``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*SUITES, '-h', '--help'):
        argv.insert(0, 'models')
    args = _parser().parse_args(argv)
    return args.func(args)


def cli() -> None:
    """Console entry point (``zoo-benchmark``, ``python tools/analysis/benchmark.py``)."""
    from zoo.cli.common import run_cli

    run_cli(main)


if __name__ == '__main__':
    cli()
