"""MEDUSA's data, metrics and training route: the COVIDx label-file dataset and its preprocessing, class-balanced
sampling, the COVID-Net report metric (checked by hand), the alternating schedule, the CXR configs, and the
synthetic-scan demo of docs/medusa.md run through tools/train.py and scored on held-out scans."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from docs_blocks import ROOT, assert_ran, find_block, run_block, user_dir
from PIL import Image

import zoo  # noqa: F401
from zoo.data.cxr import ClassBalancedSampler, COVIDxDataset, RSNAPneumoniaDataset, cxr_crop
from zoo.engine.medusa import BodyTrunkAlternationHook, CXRReport, macro_auc

# Measured (seed 0, one thread, shared 2-core machine): held-out accuracy 100 %, body map 27x inside the lesions
# (docs/medusa.md, "Synthetic scans"; the trunk alone: 47-65 % over the same 4 epochs).
MIN_ACC = 90.0
MIN_RATIO = 1.5


def _scan_dir(tmp_path: Path, lines: list[str], size: tuple[int, int] = (50, 40)) -> Path:
    (tmp_path / 'train').mkdir(parents=True)
    for i in range(len(lines)):
        Image.fromarray(np.full(size, 10 * i, np.uint8)).save(tmp_path / 'train' / f'{i}.png')
    (tmp_path / 'train.txt').write_text('\n'.join(lines) + '\n')
    return tmp_path


def test_cxr_crop_drops_the_top_rows_and_takes_the_central_square() -> None:
    img = np.arange(100 * 60, dtype=np.int64).reshape(100, 60).astype(np.uint8)
    out = cxr_crop(img, size=None, top_percent=0.08)  # 92 x 60 left -> central 60 x 60 from row 8 + 16
    np.testing.assert_array_equal(out, img[24:84, :])
    assert cxr_crop(np.zeros((100, 60, 3), np.uint8), size=32).shape == (32, 32, 3)


def test_covidx_label_file(tmp_path: Path) -> None:
    root = _scan_dir(tmp_path, ['p1 0.png positive sirm', 'p2 1.png NEGATIVE rsna', 'p3 2.png positive cohen'])
    ds = COVIDxDataset(str(root), 'train.txt', 'train', num_classes=2, img_size=16)
    assert ds.labels == [1, 0, 1] and ds.classes == ('negative', 'positive')
    item = ds[1]
    assert item['inputs'].shape == (3, 16, 16) and item['data_samples']['gt_label'] == 0
    (root / 'bad.txt').write_text('p1 0.png positive x\np2 1.png COVID-19 y\n')
    with pytest.raises(ValueError, match=r"bad\.txt:2: label 'COVID-19' is not one of \['negative', 'positive'\]"):
        COVIDxDataset(str(root), 'bad.txt', 'train')
    (root / 'short.txt').write_text('p1 0.png\n')
    with pytest.raises(ValueError, match=r'short\.txt:1: expected "patient_id filename label source"'):
        COVIDxDataset(str(root), 'short.txt', 'train')
    with pytest.raises(FileNotFoundError, match=r"annotation file '.*missing\.txt' does not exist"):
        COVIDxDataset(str(root), 'missing.txt', 'train')


def test_rsna_pneumonia_layout(tmp_path: Path) -> None:
    (tmp_path / 'imgs').mkdir()
    for pid in ('a', 'b', 'c'):
        Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / 'imgs' / f'{pid}.png')
    rows = ['patientId,x,y,width,height,Target', 'a,,,,,0', 'b,1,2,3,4,1', 'b,5,6,7,8,1', 'c,,,,,0']
    (tmp_path / 'labels.csv').write_text('\n'.join(rows) + '\n')
    (tmp_path / 'ids.txt').write_text('b\nc\n')
    ds = RSNAPneumoniaDataset(str(tmp_path), 'labels.csv', 'imgs', ids_file='ids.txt', img_size=16)
    assert ds.labels == [1, 0] and len(ds) == 2 and ds[0]['inputs'].shape == (3, 16, 16)


def test_class_balanced_sampler_draws_classes_equally() -> None:
    class Data:
        labels = [0] * 90 + [1] * 10

    sampler = ClassBalancedSampler(Data(), num_samples=4000, seed=0)
    picks = np.array(list(sampler))
    assert len(picks) == len(sampler) == 4000
    frac = (np.array(Data.labels)[picks] == 1).mean()
    assert 0.46 < frac < 0.54, frac
    sampler.set_epoch(1)
    assert list(sampler) != picks.tolist()


def test_cxr_report_by_hand() -> None:
    # 6 images, 3 classes; predictions 0 0 1 | 1 1 | 2 (argmax); labels 0 0 0 | 1 2 | 2
    scores = torch.tensor(
        [[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.7, 0.2], [0.3, 0.4, 0.3], [0.1, 0.2, 0.7]]
    )
    labels = torch.tensor([0, 0, 0, 1, 2, 2])
    metric = CXRReport(classes=('normal', 'pneumonia', 'COVID-19'))
    out = metric.compute_metrics([(i, s, int(lab)) for i, (s, lab) in enumerate(zip(scores, labels))])
    assert out['accuracy'] == pytest.approx(100 * 4 / 6)
    assert out['sensitivity/normal'] == pytest.approx(100 * 2 / 3)  # 2 of 3 normals found
    assert out['ppv/normal'] == pytest.approx(100.0)  # both "normal" predictions right
    assert out['sensitivity/pneumonia'] == pytest.approx(100.0)
    assert out['ppv/pneumonia'] == pytest.approx(100 / 3)  # 3 predicted, 1 right
    assert out['sensitivity/COVID-19'] == pytest.approx(50.0) and out['ppv/COVID-19'] == pytest.approx(100.0)
    # one-vs-rest AUCs by counting pairs: normal 9/9 = 1 (0.8 0.6 0.2 vs 0.1 0.3 0.1: 0.2 > 0.1, 0.1 ... )
    # normal: positives .8 .6 .2, negatives .1 .3 .1 -> pairs won: 3 + 3 + 2 = 8 of 9
    # pneumonia: positive .7, negatives .1 .3 .5 .4 .2 -> 5 of 5
    # COVID-19: positives .3 .7, negatives .1 .1 .3 .2 -> .3: 3 won + 1 tie (0.5), .7: 4 -> 7.5 of 8
    want = (8 / 9 + 1.0 + 7.5 / 8) / 3
    assert out['auc'] == pytest.approx(100 * want)
    assert macro_auc(scores, labels) == pytest.approx(want)
    assert math.isnan(CXRReport().compute_metrics([(0, scores[0], 0)])['ppv/1'])


def test_alternation_hook_phases() -> None:
    hook = BodyTrunkAlternationHook(period=3, warmup_epochs=1)
    assert [hook.phase(e) for e in range(6)] == ['joint', 'body', 'trunk', 'trunk', 'body', 'trunk']
    with pytest.raises(ValueError, match='period >= 2'):
        BodyTrunkAlternationHook(period=1)


def test_alternation_hook_freezes_the_other_part() -> None:
    import timm
    from test_medusa import TINY

    class Runner:
        epoch = 0
        logger = type('L', (), {'info': staticmethod(lambda msg: None)})()

    runner = Runner()
    runner.model = timm.create_model('medusa_resnet50', **TINY)
    hook = BodyTrunkAlternationHook(period=2)
    body = {id(p) for p in runner.model.body_parameters()}
    hook.before_train_epoch(runner)
    assert all(p.requires_grad == (id(p) in body) for p in runner.model.parameters())
    runner.epoch = 1
    hook.before_train_epoch(runner)
    assert all(p.requires_grad == (id(p) not in body) for p in runner.model.parameters())
    hook.after_train(runner)
    assert all(p.requires_grad for p in runner.model.parameters())


@pytest.mark.parametrize('name', sorted(p.stem for p in (ROOT / 'configs/classification/medusa').glob('[!_]*.py')))
def test_medusa_configs_parse_and_their_pipelines_build(name: str) -> None:
    from mmengine.config import Config

    from zoo.data.transforms import build_pipeline

    cfg = Config.fromfile(ROOT / f'configs/classification/medusa/{name}.py')
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        out = build_pipeline(loader.dataset.pipeline)(np.zeros((64, 64, 3), np.uint8))
        assert out.shape == (3, 64, 64)
    assert cfg.model.model_name == 'medusa_resnet50' and cfg.val_evaluator.type == 'CXRReport'


@pytest.mark.slow
def test_synthetic_scans_train_to_held_out_accuracy_with_the_body_on_the_lesion(tmp_path: Path) -> None:
    """docs/medusa.md's demo block (fixture + pre-trained body, tools/train.py), then the exported model scored on
    the held-out scans: accuracy, and the body map inside vs outside the drawn lesions."""
    import timm
    import torch.nn.functional as F
    from mmengine.config import Config

    block = find_block('docs/medusa.md', 'make_fixtures.py scans')
    cwd = user_dir(tmp_path / 'user')
    assert_ran(block, run_block(block, cwd))
    root = cwd / 'data/fixtures/scans'
    cfg = Config.fromfile(ROOT / 'configs/classification/medusa/medusa_tiny_scans.py')
    kwargs = dict(cfg.model.model_kwargs, body_checkpoint=None)
    weights = cwd / 'work_dirs/medusa_tiny_scans/model.safetensors'
    model = timm.create_model(
        'medusa_resnet50', pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)), **kwargs
    ).eval()
    mean, std = torch.tensor(cfg.mean).view(1, 3, 1, 1), torch.tensor(cfg.std).view(1, 3, 1, 1)
    images, masks, labels = [], [], []
    for line in (root / 'test.txt').read_text().splitlines():
        _, fname, label, _ = line.split()
        gray = cxr_crop(np.asarray(Image.open(root / 'test' / fname)), 64)  # the dataset's preprocessing
        images.append(np.repeat(gray[None], 3, 0).astype(np.float32) / 255)
        masks.append(cxr_crop(np.asarray(Image.open(root / 'masks/test' / fname)), 64) > 127)
        labels.append(label == 'positive')
    x = (torch.from_numpy(np.stack(images)) - mean) / std
    with torch.no_grad():
        acc = (model(x).argmax(1) == torch.tensor(labels)).float().mean().item() * 100
        body = F.interpolate(model.forward_attention(x)['body'], size=64, mode='bilinear')[:, 0]
    pos = torch.tensor(labels)
    inside = torch.from_numpy(np.stack(masks))[pos]
    ratio = body[pos][inside].mean() / body[pos][~inside].mean()
    print(f'held-out accuracy {acc:.1f} %, body map inside / outside the lesion {ratio:.1f}')
    assert acc >= MIN_ACC and ratio >= MIN_RATIO, (acc, ratio)
