"""Data integrity: high-bit-depth images keep their values, unreadable samples are dropped (never replaced),
metrics count only what was read, and every run ends with a list of what it skipped."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, run_tool
from PIL import Image

import zoo  # noqa: F401
from zoo.data import ImageFolderDataset, SkipCollate, SkippedSample, UnreadableImageError, read_rgb

# ------------------------------------------------------------------------------------------- bit depth


def _ramp16(h: int = 24, w: int = 40, channels: int = 0, seed: int = 0) -> np.ndarray:
    """uint16 image covering the whole 0..65535 range (a ramp plus noise)."""
    rng = np.random.default_rng(seed)
    shape = (h, w, channels) if channels else (h, w)
    ramp = np.linspace(0, 65535, h * w).reshape(h, w)
    if channels:
        ramp = np.stack([np.roll(ramp, 7 * c, axis=1) for c in range(channels)], axis=2)
    noisy = ramp + rng.normal(0, 300, shape)
    noisy.flat[0], noisy.flat[-1] = 0, 65535
    return np.clip(noisy, 0, 65535).astype(np.uint16)


def _to8(a16: np.ndarray) -> np.ndarray:
    return np.rint(a16 / 257.0).astype(np.uint8)


def _assert_within_one_level(got: np.ndarray, want_rgb8: np.ndarray) -> None:
    assert got.dtype == np.uint8 and got.shape == want_rgb8.shape
    diff = np.abs(got.astype(int) - want_rgb8.astype(int))
    assert diff.max() <= 1, f'max difference {diff.max()} levels; {np.mean(got == 255):.1%} of pixels are 255'


def test_16bit_grayscale_png_and_tiff_load_like_their_8bit_version(tmp_path: Path) -> None:
    a16 = _ramp16()
    Image.fromarray(a16).save(tmp_path / 'g16.png')  # PIL writes a real 16-bit grayscale PNG (mode I;16)
    Image.fromarray(a16).save(tmp_path / 'g16.tif')
    Image.fromarray(_to8(a16)).save(tmp_path / 'g8.png')
    assert Image.open(tmp_path / 'g16.png').mode.startswith('I;16')
    want = read_rgb(tmp_path / 'g8.png')
    assert np.array_equal(want, np.repeat(_to8(a16)[..., None], 3, axis=2))
    for name in ('g16.png', 'g16.tif'):
        got = read_rgb(tmp_path / name)
        assert np.mean(got == 255) < 0.01  # PIL's convert('RGB') clips: 99% white before the fix
        _assert_within_one_level(got, want)


def test_16bit_rgb_png_and_tiff_and_alpha_modes(tmp_path: Path) -> None:
    import cv2

    rgb16 = _ramp16(channels=3, seed=1)
    rgba16 = np.concatenate([rgb16, _ramp16(seed=2)[..., None]], axis=2)
    cv2.imwrite(str(tmp_path / 'rgb16.png'), rgb16[..., ::-1])  # OpenCV writes BGR
    cv2.imwrite(str(tmp_path / 'rgb16.tif'), rgb16[..., ::-1])
    cv2.imwrite(str(tmp_path / 'rgba16.png'), rgba16[..., [2, 1, 0, 3]])
    Image.fromarray(_to8(rgb16)).save(tmp_path / 'rgb8.png')
    want = read_rgb(tmp_path / 'rgb8.png')
    for name in ('rgb16.png', 'rgb16.tif', 'rgba16.png'):
        _assert_within_one_level(read_rgb(tmp_path / name), want)
    # 8-bit alpha and palette modes keep the stored colours (alpha dropped, as timm's loader does)
    rgb8 = _to8(rgb16)
    Image.fromarray(np.dstack([rgb8, np.full(rgb8.shape[:2], 7, np.uint8)]), 'RGBA').save(tmp_path / 'rgba.png')
    assert np.array_equal(read_rgb(tmp_path / 'rgba.png'), rgb8)
    gray = rgb8[..., 0]
    Image.fromarray(np.dstack([gray, 255 - gray]), 'LA').save(tmp_path / 'la.png')
    assert np.array_equal(read_rgb(tmp_path / 'la.png'), np.repeat(gray[..., None], 3, axis=2))
    pal = Image.fromarray((np.arange(24 * 40) % 3).reshape(24, 40).astype(np.uint8), 'P')
    pal.putpalette([10, 20, 30, 200, 0, 0, 0, 250, 5])
    pal.save(tmp_path / 'p.png', transparency=0)
    colours = np.array([[10, 20, 30], [200, 0, 0], [0, 250, 5]], np.uint8)
    assert np.array_equal(read_rgb(tmp_path / 'p.png'), colours[np.asarray(pal)])


def test_float_images_are_unit_range_intensities(tmp_path: Path) -> None:
    f = np.linspace(0, 1, 24 * 40, dtype=np.float32).reshape(24, 40)
    Image.fromarray(f).save(tmp_path / 'f.tif')
    want = np.repeat(np.rint(f * 255).astype(np.uint8)[..., None], 3, axis=2)
    _assert_within_one_level(read_rgb(tmp_path / 'f.tif'), want)
    Image.fromarray(f * 255).save(tmp_path / 'f255.tif')  # no defined scale: reported, not guessed
    with pytest.raises(UnreadableImageError, match=r'f255\.tif: float samples in \[0, 255\]'):
        read_rgb(tmp_path / 'f255.tif')


def test_16bit_png_through_the_dataset_pipeline(tmp_path: Path) -> None:
    a16 = _ramp16(32, 32, channels=0, seed=3)
    for cls, name, arr in (('a', 'x.png', a16), ('b', 'x.png', _to8(a16))):
        (tmp_path / 'val' / cls).mkdir(parents=True)
        Image.fromarray(arr).save(tmp_path / 'val' / cls / name)
    ds = ImageFolderDataset(str(tmp_path), 'val', pipeline=[dict(type='Resize', height=16, width=16)])
    x16, x8 = ds[0]['inputs'], ds[1]['inputs']
    assert x16.shape == (3, 16, 16) and float(x16.max()) <= 1.0
    torch.testing.assert_close(x16, x8, atol=1.01 / 255, rtol=0)


# ------------------------------------------------------------------------------- skipping, in-process


def _write_folder(root: Path, split: str, n_per_class: int, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    paths = []
    for c in range(2):
        d = root / split / f'class_{c}'
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n_per_class):  # a random colour per image: an untrained model gets some right
            img = np.clip(rng.normal(rng.uniform(0, 255, 3), 40, size=(20, 20, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f'{i}.png')
            paths.append(d / f'{i}.png')
    return paths


def _corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:40])  # truncated PNG


def test_dataset_sentinel_and_skip_collate(tmp_path: Path) -> None:
    paths = _write_folder(tmp_path, 'val', 2)
    _corrupt(paths[1])
    pipeline = [dict(type='Resize', height=8, width=8)]
    strict = ImageFolderDataset(str(tmp_path), 'val', pipeline)
    with pytest.raises(UnreadableImageError, match=r'ImageFolderDataset\[1\]: .*class_0/1\.png.*SkippedSamplesHook'):
        strict[1]
    ds = ImageFolderDataset(str(tmp_path), 'val', pipeline, skip_unreadable=True)
    items = [ds[i] for i in range(len(ds))]
    assert isinstance(items[1], SkippedSample) and items[1].path == str(paths[1]) and items[1].index == 1
    batch = SkipCollate()(items)
    assert batch['inputs'].shape == (3, 3, 8, 8)  # dropped, not replaced
    assert batch['data_samples']['sample_idx'].tolist() == [0, 2, 3]
    assert batch['data_samples']['gt_label'].tolist() == [0, 1, 1]
    assert [s.path for s in batch.skipped] == [str(paths[1])]
    again = pickle.loads(pickle.dumps(batch))  # what a DataLoader worker sends to the main process
    assert again.skipped == batch.skipped and torch.equal(again['inputs'], batch['inputs'])
    empty = SkipCollate()([items[1]])
    assert len(empty) == 0 and empty.skipped == [items[1]]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1, collate_fn=SkipCollate())
    got = [(len(b['inputs']), [s.index for s in b.skipped]) for b in loader]
    assert got == [(1, [1]), (2, [])]


def test_accuracy_counts_each_read_image_once() -> None:
    """Results keyed by ``sample_idx``: a dropped image lowers the count, a repeated index (the DDP
    sampler's padding) is counted once."""
    from zoo.engine import Accuracy

    metric = Accuracy(topk=(1,))
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = [0, 0, 0, 1]  # hits: 0, 2, 3

    def feed(idx: list[int]) -> None:
        batch = dict(data_samples=dict(gt_label=torch.tensor([labels[i] for i in idx]), sample_idx=torch.tensor(idx)))
        metric.process(batch, [dict(pred_score=scores[i], gt_label=labels[i]) for i in idx])

    feed([0, 2])
    feed([3, 0])  # index 0 again (padding); index 1 was unreadable
    out = metric.evaluate(4)
    assert out['accuracy/top1'] == pytest.approx(100.0)  # 3 of the 3 images read
    assert (metric.num_samples, metric.num_skipped) == (3, 1)
    feed([0, 1, 2, 3])
    assert metric.evaluate(4)['accuracy/top1'] == pytest.approx(75.0) and metric.num_skipped == 0


# ------------------------------------------------------------------------------- the tools


_CONFIG = """
_base_ = ['{root}/configs/_base_/schedules/adamw_cosine.py', '{root}/configs/_base_/default_runtime.py']
model = dict(type='TimmClassifier', model_name='test_mambaout', model_kwargs=dict(num_classes=2))
_pipeline = [dict(type='Resize', height=32, width=32), dict(type='Normalize')]
_loader = dict(batch_size={batch_size}, num_workers={workers}, sampler=dict(type='DefaultSampler', shuffle=False),
               collate_fn=dict(type='default_collate'))
train_dataloader = dict(**_loader, dataset=dict(type='ImageFolderDataset', data_root='{data}', split='train',
                        pipeline=_pipeline))
val_dataloader = dict(**_loader, dataset=dict(type='ImageFolderDataset', data_root='{data}', split='val',
                      pipeline=_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1,))
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1)
param_scheduler = []
default_hooks = dict(logger=dict(interval=1))
custom_hooks = [dict(type='ProgressBarHook')]  # replaces the base list: the tools still add SkippedSamplesHook
"""

_PIPELINE = [dict(type='Resize', height=32, width=32), dict(type='Normalize')]


def _write_config(tmp_path: Path, data: Path, batch_size: int = 4, workers: int = 0) -> Path:
    cfg = tmp_path / f'folder_w{workers}.py'
    cfg.write_text(_CONFIG.format(root=ROOT, data=data, batch_size=batch_size, workers=workers))
    return cfg


def test_test_tool_counts_only_readable_images_and_exits_nonzero(tmp_path: Path) -> None:
    """With DataLoader workers: the skip record is made in a worker and must reach the main process."""
    import timm
    from safetensors.torch import save_file

    from zoo.data.transforms import build_pipeline

    data = tmp_path / 'data'
    paths = _write_folder(data, 'val', 8, seed=1)
    bad = paths[0]  # first image of class_0: the old code counted its neighbour twice
    _corrupt(bad)
    torch.manual_seed(0)
    net = timm.create_model('test_mambaout', num_classes=2).eval()
    weights = tmp_path / 'weights.safetensors'
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights))

    work = tmp_path / 'eval'
    out = run_tool(
        'tools/test.py', str(_write_config(tmp_path, data, workers=2)), str(weights), '--work-dir', str(work)
    )
    text = out.stdout + out.stderr
    assert out.returncode == 1, text[-3000:]
    assert re.search(r'test: folder_w2\.py with weights\.safetensors: accuracy/top1=', out.stdout)  # still printed
    assert 'accuracy over 15 of 16 images; 1 skipped' in text
    top1 = json.loads((work / 'metrics.json').read_text())['accuracy/top1']

    # hand count over the 15 real images with the same weights, loaded the way a user loads them
    user = timm.create_model(
        'test_mambaout', pretrained=True, num_classes=2, pretrained_cfg_overlay=dict(file=str(weights), num_classes=2)
    ).eval()
    transform = build_pipeline(_PIPELINE)
    good = [p for p in paths if p != bad]
    x = torch.stack([transform(np.asarray(Image.open(p).convert('RGB'))) for p in good])
    labels = torch.tensor([int(p.parent.name[-1]) for p in good])
    with torch.no_grad():
        correct = int((user(x).argmax(1) == labels).sum())
    assert top1 == pytest.approx(100.0 * correct / 15, abs=1e-4)
    assert top1 != pytest.approx(100.0 * correct / 16, abs=1e-4)

    # the end-of-run summary names the file and the reason, and so does skipped_samples.json
    assert 'skipped samples: 1 unreadable file(s)' in text
    line = rf'skipped \[test\] {re.escape(str(bad))}: .*(truncated|broken|decode|image file)'
    assert re.search(line, text), text[-3000:]
    records = json.loads((work / 'skipped_samples.json').read_text())
    assert [(r['phase'], r['path'], r['count']) for r in records] == [('test', str(bad), 1)]
    assert 'left out of the metrics' in out.stderr


@pytest.mark.slow
def test_training_goes_on_drops_an_all_bad_batch_and_lists_skipped_files(tmp_path: Path) -> None:
    data = tmp_path / 'data'
    train = _write_folder(data, 'train', 6)
    val = _write_folder(data, 'val', 4, seed=2)
    for p in (train[2], train[3], val[5]):  # train[2:4] form one whole batch of 2
        _corrupt(p)
    work = tmp_path / 'w'
    out = run_tool('tools/train.py', str(_write_config(tmp_path, data, batch_size=2)), '--work-dir', str(work))
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-3000:]
    assert 'finished 1 epochs / 5 iters' in out.stdout  # 6 batches, the all-unreadable one left out
    assert 'accuracy over 7 of 8 images; 1 skipped' in text
    assert 'skipped samples: 3 unreadable file(s)' in text
    for phase, p in (('train', train[2]), ('train', train[3]), ('val', val[5])):
        assert f'skipped [{phase}] {p}: ' in text
    records = json.loads((work / 'skipped_samples.json').read_text())
    assert sorted((r['phase'], Path(r['path']).name, r['count']) for r in records) == [
        ('train', '2.png', 1),
        ('train', '3.png', 1),
        ('val', '1.png', 1),
    ]
