"""The ``agree`` suite: does the fast path (``tools/test.py --bf16`` / ``--compile``) keep the top-1 predictions of
float32 on a trained model? ``<out>.csv`` and ``<out>.png``.

Each entry is a config (default: :data:`CONFIGS`, the four families' digits configs), trained as the user trains it,
``tools/train.py CONFIG --work-dir WORK/<config> --cfg-options train_cfg.max_epochs=EPOCHS`` (the config's schedule
otherwise: its cosine still ends at the config's own max_epochs), unless ``WORK/<config>`` has weights from a run of
as many epochs (its ``last_checkpoint``; a rerun does not retrain). The weights a user would test
(``model.safetensors``, exported from the best checkpoint by configs with ``ExportSafetensorsHook``; else the run's
``best_*.pth`` checkpoint) are then evaluated with ``tools/test.py CONFIG WEIGHTS --out preds.json`` once per
variant (``fp32``: no flag; ``bf16``, ``compile``, ``channels_last`` or '+'-joined: the flags), float32 first, and
each variant's ``pred_label`` is compared with float32's, image by image (the config's test split: 359 digits).
Entries may carry ``--cfg-options``-style overrides after a ``:`` (``CONFIG:key=value,key=value``, as in the ``amp``
suite), for training and testing; their work dir is ``<config>-key=value...``. An entry that fails (missing config,
training or testing error) is reported in one line and the suite goes on.

CSV columns: config, model, epochs, variant, n_images, top1, agree_with_fp32, n_disagree, max_abs_score_diff,
seconds, load_avg, threads. top1: the test's accuracy/top1 (%); agree_with_fp32: the fraction of images whose
pred_label equals float32's (1.0 for fp32 itself); n_disagree: the images where it differs; max_abs_score_diff: max
over images and classes of |pred_score - float32's pred_score| (``--out`` writes ``pred_score``, the softmax
probabilities, not logits, rounded to 6 decimals: 0 means below 5e-7); seconds: the wall time of that
``tools/test.py`` run (with a compiled variant's compiling); load_avg: the 1-minute load average after it; threads:
torch's intra-op threads. The PNG shows the agreement per config and variant against the 0.99 target, and the top-1
of each.
"""

from __future__ import annotations

import glob
import json
import os
import re
import time
from collections.abc import Callable

import torch

from zoo.benchmark.amp import parse_entry
from zoo.benchmark.report import Panel, write_report

__all__ = ['CONFIGS', 'TARGET', 'VARIANTS', 'bench', 'entry_dir', 'variant_flags', 'write']

CONFIGS: tuple[str, ...] = (
    'configs/classification/mambaout/mambaout_femto_digits.py',
    'configs/classification/agent_attention/agent_pvt_tiny_digits.py',
    'configs/classification/qsd_transformer/qsd_transformer_tiny_digits.py',
    'configs/classification/dcal/dcal_tiny_digits.py',
)
VARIANTS: tuple[str, ...] = ('fp32', 'bf16', 'compile', 'bf16+compile')
Tool = Callable[[list[str]], object]  # a tool's main(argv)
TARGET = 0.99  # issue 19: the digits-trained models keep >= 99% top-1 agreement with fp32


def variant_flags(variant: str) -> list[str]:
    """``'bf16+compile'`` -> ``['--bf16', '--compile']``; ``'fp32'`` -> ``[]``."""
    from zoo.benchmark.models import parse_variant

    canonical = parse_variant(variant)
    return [] if canonical == 'fp32' else [f'--{p.replace("_", "-")}' for p in canonical.split('+')]


def _option_args(options: dict) -> list[str]:
    """``{'a.b': 1, 'c': None}`` -> ``['a.b=1', 'c=None']`` (``--cfg-options`` items)."""
    return [f'{k}={"None" if v is None else v if isinstance(v, str) else json.dumps(v)}' for k, v in options.items()]


def entry_dir(work_dir: str, path: str, options: dict) -> str:
    """``WORK/<config name>`` (``-key=value...`` appended for an entry with overrides)."""
    name = os.path.splitext(os.path.basename(path))[0]
    if options:
        name += '-' + re.sub(r'[^\w.=,-]', '_', ','.join(_option_args(options)))
    return os.path.join(work_dir, name)


def _trained_epochs(work: str) -> int | None:
    """Epochs of the last training run in ``work`` (its ``last_checkpoint`` names ``epoch_N.pth``), if known."""
    try:
        with open(os.path.join(work, 'last_checkpoint')) as f:
            m = re.search(r'epoch_(\d+)\.pth', f.read())
    except OSError:
        return None
    return int(m.group(1)) if m else None


def _weights(work: str) -> str | None:
    """What ``tools/test.py`` gets from a training run in ``work``: the exported ``model.safetensors`` (configs with
    ``ExportSafetensorsHook``: the best checkpoint's weights), else that run's best checkpoint ``best_*.pth``, else
    its last one; None when there is none."""
    exported = os.path.join(work, 'model.safetensors')
    if os.path.isfile(exported):
        return exported
    best = sorted(glob.glob(os.path.join(glob.escape(work), 'best_*.pth')), key=os.path.getmtime)
    if best:
        return best[-1]
    try:
        with open(os.path.join(work, 'last_checkpoint')) as f:
            last = f.read().strip()
    except OSError:
        return None
    return last if os.path.isfile(last) else None


def _train(path: str, options: dict, epochs: int, work: str, train_tool: Tool) -> tuple[str, int, float]:
    """``(weights, epochs, seconds)``: :func:`_weights` of ``work``, trained now unless a run of ``epochs`` made it."""
    weights, found = _weights(work), _trained_epochs(work)
    if weights is not None and found in (None, epochs):
        return weights, found or epochs, 0.0
    start = time.time()
    opts = [f'train_cfg.max_epochs={epochs}', *_option_args(options)]
    train_tool([path, '--work-dir', work, '--cfg-options', *opts])
    weights = _weights(work)
    if weights is None:
        raise RuntimeError(f'training wrote no model.safetensors or checkpoint in {work}')
    return weights, epochs, time.time() - start


def _test(
    path: str, options: dict, weights: str, work: str, variant: str, test_tool: Tool
) -> tuple[dict, list[dict], float]:
    """``tools/test.py`` in ``variant``: (metrics, the ``--out`` records, seconds)."""
    import torch._dynamo

    torch._dynamo.reset()  # each compiled variant compiles afresh, as in its own process
    out = os.path.join(work, f'preds_{variant}.json')
    argv = [path, weights, '--work-dir', os.path.join(work, f'test_{variant}'), '--out', out]
    if options:
        argv += ['--cfg-options', *_option_args(options)]
    start = time.time()
    metrics = test_tool(argv + variant_flags(variant))
    seconds = time.time() - start
    with open(out) as f:
        return metrics, json.load(f), seconds


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f'{type(err).__name__}: {text[0] if text else ""}'.rstrip(': ')


def bench(
    entries: tuple[str, ...] = CONFIGS,
    variants: tuple[str, ...] = VARIANTS,
    epochs: int = 3,
    work_dir: str = 'work_dirs/fast_path_agreement',
    *,
    train_tool: Tool,
    test_tool: Tool,
    repo_root: str = '.',
) -> list[dict]:
    """One row per entry and variant (see the module docstring); float32 is measured first, whether asked or not.
    ``train_tool`` / ``test_tool``: the ``main(argv)`` of ``tools/train.py`` / ``tools/test.py`` (handed in by the
    CLI, which owns the tools); ``repo_root``: where repository-relative config paths are also looked up."""
    from zoo.benchmark.models import parse_variant
    from zoo.engine.config import load_config

    variants = tuple(dict.fromkeys(['fp32', *(parse_variant(v) for v in variants)]))
    rows = []
    for entry in entries:
        path, options = parse_entry(entry)
        name = os.path.basename(path)
        if not os.path.isfile(path) and os.path.isfile(os.path.join(repo_root, path)):  # a repository config
            path = os.path.join(repo_root, path)
        if not os.path.isfile(path):
            print(f'benchmark agree: {entry}: skipped (no such config)', flush=True)
            continue
        work = entry_dir(work_dir, path, options)
        try:
            model = load_config(path, options).model.get('model_name', '')
            weights, trained, train_s = _train(path, options, epochs, work, train_tool)
        except (Exception, SystemExit) as err:  # noqa: BLE001  (one line per bad entry, then the next one)
            print(f'benchmark agree: {entry}: skipped, training failed ({_one_line(err)})', flush=True)
            continue
        how = f'trained {trained} epochs in {train_s:.0f}s' if train_s else f'reusing {trained}-epoch weights'
        print(f'benchmark agree: {name}: {how} -> {weights}', flush=True)
        ref = None
        for variant in variants:
            try:
                metrics, records, seconds = _test(path, options, weights, work, variant, test_tool)
            except (Exception, SystemExit) as err:  # noqa: BLE001
                print(f'benchmark agree: {name} {variant}: failed ({_one_line(err)})', flush=True)
                if ref is None:
                    print(f'benchmark agree: {name}: no float32 reference; skipping its other variants', flush=True)
                    break
                continue
            if ref is None:
                ref = records
            if len(records) != len(ref):
                print(f'benchmark agree: {name} {variant}: {len(records)} predictions, fp32 {len(ref)}', flush=True)
                continue
            n_disagree = sum(a['pred_label'] != b['pred_label'] for a, b in zip(records, ref))
            scores = [(a.get('pred_score'), b.get('pred_score')) for a, b in zip(records, ref)]
            diff = (
                max(abs(x - y) for a, b in scores for x, y in zip(a, b))
                if scores and all(a is not None and b is not None for a, b in scores)
                else float('nan')
            )
            rows.append(
                dict(
                    config=name,
                    model=model,
                    epochs=trained,
                    variant=variant,
                    n_images=len(records),
                    top1=round(float(metrics.get('accuracy/top1', float('nan'))), 2),
                    agree_with_fp32=round(1 - n_disagree / len(records), 4),
                    n_disagree=n_disagree,
                    max_abs_score_diff=round(diff, 6),
                    seconds=round(seconds, 1),
                    load_avg=round(os.getloadavg()[0], 2),
                    threads=torch.get_num_threads(),
                )
            )
            r = rows[-1]
            print(
                f'benchmark agree: {name} {variant}: top-1 {r["top1"]}%, agrees with fp32 on '
                f'{len(records) - n_disagree}/{len(records)} ({r["agree_with_fp32"]:.4f}), max |score diff| '
                f'{diff:.2g}, {seconds:.0f}s (load {r["load_avg"]})',
                flush=True,
            )
    return rows


def write(rows: list[dict], out: str = 'benchmarks/fast_path_agreement') -> tuple[str, str]:
    """``<out>.csv`` and ``<out>.png``: agreement with float32 per config (one bar series per variant, fp32 the
    reference at 1) with the 0.99 line, and top-1 per config and variant."""
    configs = list(dict.fromkeys(r['config'].removesuffix('.py') for r in rows))
    variants = list(dict.fromkeys(r['variant'] for r in rows))

    def cell(cfg: str, variant: str, key: str) -> float:
        got = [r[key] for r in rows if r['config'].removesuffix('.py') == cfg and r['variant'] == variant]
        return got[0] if got else float('nan')

    agree = [cell(c, v, 'agree_with_fp32') for v in variants for c in configs]
    low = min([a for a in agree if a == a] + [TARGET])
    agreement = Panel(
        ylabel='top-1 agreement with float32',
        series={v: [cell(c, v, 'agree_with_fp32') for c in configs] for v in variants},
        groups=configs,
        title=f'same top-1 as float32 (target {TARGET})',
        notes={v: [f'{cell(c, v, "agree_with_fp32"):.3f}' for c in configs] for v in variants},
        hlines={TARGET: f'{TARGET} target'},
        ylim=(max(0.0, low - 0.02), 1.005),
    )
    top1 = Panel(
        ylabel='top-1 (%)',
        series={v: [cell(c, v, 'top1') for c in configs] for v in variants},
        groups=configs,
        title='top-1 on the test split',
    )
    epochs = sorted({r['epochs'] for r in rows})
    title = f'tools/test.py fast path vs float32 on trained models ({"/".join(map(str, epochs))} epochs)'
    return write_report(rows, [agreement, top1], out, title=title)
