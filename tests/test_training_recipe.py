"""The pieces of the official classification recipes, through the zoo's configs: timm's create_transform as a
pipeline (RandAugment, random erasing), timm's Mixup / CutMix with SoftTargetCrossEntropy in TimmClassifier, the
model EMA evaluated next to the raw weights, and the fine-tuning route (new head, smaller lr, layer decay) from a
digits-trained checkpoint, end to end as the README shows it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT
from docs_blocks import assert_ran, find_block, run_block, user_dir

from zoo.data.transforms import build_pipeline

CFG_FULLAUG = ROOT / 'configs/classification/mambaout/mambaout_femto_digits_fullaug.py'
RA = dict(
    type='TimmTransform',
    input_size=32,
    is_training=True,
    auto_augment='rand-m9-mstd0.5-inc1',
    re_prob=0.25,
    re_mode='pixel',
    interpolation='bicubic',
    mean=(0.5, 0.5, 0.5),
    std=(0.5, 0.5, 0.5),
)


def test_timm_transform_pipeline_is_reproducible_from_the_torch_seed() -> None:
    image = (np.random.default_rng(0).random((40, 48, 3)) * 255).astype(np.uint8)
    apply = build_pipeline([RA])
    torch.manual_seed(3)
    first = [apply(image) for _ in range(4)]
    torch.manual_seed(3)
    again = [apply(image) for _ in range(4)]
    assert first[0].shape == (3, 32, 32) and first[0].dtype == torch.float32
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not torch.equal(first[0], first[1])  # augmentation on
    val = build_pipeline([dict(type='TimmTransform', input_size=32, crop_pct=0.875, interpolation='bicubic')])
    assert torch.equal(val(image), val(image))


def test_timm_transform_keys_are_checked() -> None:
    with pytest.raises(KeyError, match=r"unknown key\(s\) \['re_probb'\]"):
        build_pipeline([dict(type='TimmTransform', input_size=32, re_probb=0.2)])
    with pytest.raises(KeyError, match='cannot be combined'):
        build_pipeline([dict(type='TimmTransform', input_size=32), dict(type='HorizontalFlip')])


def test_randaugment_posterize_to_zero_bits_works_on_new_pillow() -> None:
    """rand-m9-mstd0.5-inc1 draws magnitude 10, i.e. Posterize to 0 bits, which Pillow >= 11 refuses."""
    from PIL import Image
    from timm.data.auto_augment import NAME_TO_OP

    build_pipeline([RA])  # installs the fix
    image = Image.new('RGB', (8, 8), (200, 100, 50))
    out = NAME_TO_OP['PosterizeIncreasing'](image, 0)
    assert np.asarray(out).max() == 0


def _classifier(**kw):
    from zoo.engine.classifier import TimmClassifier

    return TimmClassifier('test_vit', dict(num_classes=5, img_size=32), label_smoothing=0.1, **kw)


def test_mixup_loss_is_soft_target_cross_entropy(one_thread) -> None:
    torch.manual_seed(0)
    model = _classifier(mixup=dict(mixup_alpha=0.8, cutmix_alpha=1.0))
    model.train()
    x = torch.randn(5, 3, 32, 32)  # odd batch: the last image is kept unmixed
    labels = dict(gt_label=torch.tensor([0, 1, 2, 3, 4]))
    loss = model(x, labels, mode='loss')['loss']
    assert torch.isfinite(loss) and loss.requires_grad
    # the same weights in eval mode use the plain smoothed cross-entropy (no mixing at validation)
    model.eval()
    plain = model(x, labels, mode='loss')['loss']
    expected = torch.nn.functional.cross_entropy(model(x), labels['gt_label'], label_smoothing=0.1)
    assert torch.allclose(plain, expected)


def test_mixup_targets_of_an_odd_batch() -> None:
    from timm.data import Mixup

    from zoo.engine.classifier import mix_batch

    torch.manual_seed(0)
    mixup = Mixup(mixup_alpha=0.8, cutmix_alpha=0.0, label_smoothing=0.1, num_classes=4)
    x, y = torch.randn(3, 3, 8, 8), torch.tensor([0, 1, 3])
    mixed, targets = mix_batch(mixup, x, y)
    assert mixed.shape == x.shape and targets.shape == (3, 4)
    assert torch.allclose(targets.sum(1), torch.ones(3))
    assert torch.equal(mixed[2], x[2]) and torch.allclose(targets[2], torch.tensor([0.025, 0.025, 0.025, 0.925]))


def test_unknown_mixup_key_is_one_line() -> None:
    from zoo.engine.config import ConfigKeyError

    with pytest.raises(ConfigKeyError, match=r"model.mixup: unknown key\(s\) \['cutmix'\]"):
        _classifier(mixup=dict(mixup_alpha=0.8, cutmix=1.0))


def _scalars(work: Path) -> list[dict]:
    found = sorted(work.rglob('scalars.json'))
    assert found, f'no scalars.json under {work}'
    return [json.loads(line) for line in found[-1].read_text().splitlines() if line.strip()]


@pytest.mark.slow
def test_full_augmentation_config_trains_and_evaluates_ema_and_raw(tmp_path: Path) -> None:
    """mambaout_femto_digits_fullaug.py (RandAugment, erasing, Mixup, CutMix, EMA) for one short epoch through
    tools/train.py: both the EMA and the raw model are evaluated and logged."""
    from zoo.cli import train

    metrics = train.main(
        [
            str(CFG_FULLAUG),
            '--work-dir',
            str(tmp_path / 'w'),
            '--cfg-options',
            'train_cfg.max_epochs=1',
            'train_dataloader.batch_size=32',
        ]
    )
    assert {'accuracy/top1', 'raw/accuracy/top1'} <= set(metrics), metrics
    assert 0 <= metrics['raw/accuracy/top1'] <= 100 and 0 <= metrics['accuracy/top1'] <= 100
    val = [r for r in _scalars(tmp_path / 'w') if 'raw/accuracy/top1' in r]
    assert val and 'accuracy/top1' in val[-1]
    # the checkpoint holds the EMA weights: tools/test.py (which loads it before the run) gives the EMA's top-1
    from zoo.cli import test as test_tool

    tested = test_tool.main([str(CFG_FULLAUG), str(tmp_path / 'w/epoch_1.pth'), '--work-dir', str(tmp_path / 't')])
    assert tested['accuracy/top1'] == pytest.approx(metrics['accuracy/top1'], abs=1e-6)


@pytest.mark.slow
def test_readme_finetune_block_runs_end_to_end(tmp_path: Path) -> None:
    """The README's fine-tuning block as written: a digits-trained MambaOut-Femto, then the fine-tune config on
    the digits 5-9 (a new 5-class head, lr 5e-4, layer decay 0.75), which learns the new label set."""
    block = find_block('README.md', 'mambaout_femto_digits_finetune.py')
    cwd = user_dir(tmp_path / 'user')
    proc = run_block(block, cwd)
    assert_ran(block, proc)
    out = proc.stdout + proc.stderr
    assert re.search(r'classifier \(head.fc\), which is new: 5 classes', out), out[-3000:]
    rows = [r for r in _scalars(cwd / 'work_dirs/mambaout_femto_digits_finetune') if 'accuracy/top1' in r]
    # measured: 93.9 / 94.4 / 97.2 % (README); chance is 20 %
    assert rows and rows[-1]['accuracy/top1'] >= 85.0, rows


@pytest.mark.slow
def test_auto_scale_lr_counts_gradient_accumulation(one_thread, tiny_config, tmp_path: Path) -> None:
    """--auto-scale-lr scales by world size x batch x accumulative_counts (MambaOut's 8 x 128 x 4 = 4096): batch 16
    with 4 accumulation steps against a base of 32 doubles the lr."""
    from zoo.cli import train

    extra = (
        '\nauto_scale_lr = dict(base_batch_size=32)\ntrain_dataloader = dict(batch_size=16)\n'
        'optim_wrapper = dict(accumulative_counts=4)\n'
    )
    cfg = tiny_config(epochs=1, extra=extra)
    train.main([cfg, '--work-dir', str(tmp_path / 'w'), '--auto-scale-lr'])
    log = next((tmp_path / 'w').glob('*/*.log')).read_text()
    assert re.search(r'Scaling the original LR by 2\.0', log), [ln for ln in log.splitlines() if 'LR' in ln]
