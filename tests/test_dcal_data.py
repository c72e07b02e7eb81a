"""DCAL data (issue #14): FGVC and Re-ID datasets read from tiny trees in their published layouts, the P x K
identity sampler, and the Re-ID metric against mAP / CMC worked out by hand."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo  # noqa: F401  (registers the modules)
from zoo.data import (
    CUBDataset,
    FGVCAircraftDataset,
    IdentityBalancedSampler,
    Market1501Dataset,
    MSMT17Dataset,
    StanfordCarsDataset,
    VeRi776Dataset,
)
from zoo.engine import ReIDMetric
from zoo.registry import DATA_SAMPLERS, DATASETS, METRICS


def _image(path: Path, value: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _one_line(err: pytest.ExceptionInfo, *parts: str) -> None:
    msg = str(err.value)
    assert '\n' not in msg, msg
    for part in parts:
        assert part in msg, msg


# ------------------------------------------------------------------------------------------------- CUB


def _cub(root: Path) -> Path:
    for rel in ('001.A/a1.jpg', '001.A/a2.jpg', '002.B/b1.png', '002.B/b2.jpg'):
        _image(root / 'images' / rel)
    _write(root / 'images.txt', '1 001.A/a1.jpg\n2 001.A/a2.jpg\n3 002.B/b1.png\n4 002.B/b2.jpg\n')
    _write(root / 'train_test_split.txt', '1 1\n2 0\n3 1\n4 0\n')
    _write(root / 'image_class_labels.txt', '1 1\n2 1\n3 2\n4 2\n')
    _write(root / 'classes.txt', '1 001.A\n2 002.B\n')
    return root


def test_cub_layout(tmp_path: Path) -> None:
    root = _cub(tmp_path)
    train, test = CUBDataset(str(root), 'train'), CUBDataset(str(root), split='test')
    assert [(Path(p).name, y) for p, y in train.samples] == [('a1.jpg', 0), ('b1.png', 1)]
    assert [(Path(p).name, y) for p, y in test.samples] == [('a2.jpg', 0), ('b2.jpg', 1)]
    assert train.classes == ('001.A', '002.B')
    item = train[1]
    assert item['inputs'].shape == (3, 8, 8) and item['data_samples'] == dict(gt_label=1, sample_idx=1)
    assert DATASETS.get('CUBDataset') is CUBDataset


def test_cub_errors_name_the_file(tmp_path: Path) -> None:
    root = _cub(tmp_path)
    (root / 'image_class_labels.txt').unlink()
    with pytest.raises(FileNotFoundError) as err:
        CUBDataset(str(root))
    _one_line(err, 'image_class_labels.txt')
    _write(root / 'image_class_labels.txt', '1 1\n2 1\n3 2\n4 2\n')
    _write(root / 'train_test_split.txt', '1 1\n2 0\n3\n4 0\n')  # line 3 lost its flag
    with pytest.raises(ValueError) as err:
        CUBDataset(str(root))
    _one_line(err, 'train_test_split.txt:3')
    _write(root / 'train_test_split.txt', '1 1\n2 0\n3 1\n4 0\n')
    _write(root / 'image_class_labels.txt', '1 1\n2 1\n3 7\n4 2\n')  # class 7 of 2
    with pytest.raises(ValueError) as err:
        CUBDataset(str(root))
    _one_line(err, 'image_class_labels.txt:3', 'class id 7')


# ------------------------------------------------------------------------------------------- Stanford Cars


def _annos(rows: list[tuple[str, int]]) -> np.ndarray:
    dtype = [(k, 'O') for k in ('bbox_x1', 'bbox_y1', 'bbox_x2', 'bbox_y2', 'class', 'fname')]
    return np.array([(0, 0, 7, 7, c, f) for f, c in rows], dtype=dtype)


def _cars(root: Path) -> Path:
    from scipy.io import savemat

    (root / 'devkit').mkdir(parents=True)
    savemat(root / 'devkit' / 'cars_meta.mat', {'class_names': np.array(['AM General', 'Acura RL', 'BMW M3'], 'O')})
    savemat(root / 'devkit' / 'cars_train_annos.mat', {'annotations': _annos([('00001.jpg', 3), ('00002.jpg', 1)])})
    savemat(root / 'cars_test_annos_withlabels.mat', {'annotations': _annos([('00001.jpg', 2)])})
    for f in ('00001.jpg', '00002.jpg'):
        _image(root / 'cars_train' / f)
    _image(root / 'cars_test' / '00001.jpg')
    return root


def test_stanford_cars_layout(tmp_path: Path) -> None:
    root = _cars(tmp_path)
    train, test = StanfordCarsDataset(str(root), 'train'), StanfordCarsDataset(str(root), 'test')
    assert [(Path(p).parent.name, Path(p).name, y) for p, y in train.samples] == [
        ('cars_train', '00001.jpg', 2),
        ('cars_train', '00002.jpg', 0),
    ]
    assert [(Path(p).parent.name, y) for p, y in test.samples] == [('cars_test', 1)]  # one annotation: 0-d record
    assert train.classes == ('AM General', 'Acura RL', 'BMW M3')
    assert test[0]['inputs'].shape == (3, 8, 8)


def test_stanford_cars_errors_name_the_file(tmp_path: Path) -> None:
    from scipy.io import savemat

    root = _cars(tmp_path)
    savemat(root / 'devkit' / 'cars_train_annos.mat', {'annotations': _annos([('00001.jpg', 3), ('00002.jpg', 9)])})
    with pytest.raises(ValueError) as err:
        StanfordCarsDataset(str(root))
    _one_line(err, 'cars_train_annos.mat:annotation 2', 'class 9')
    (root / 'cars_test_annos_withlabels.mat').unlink()
    with pytest.raises(FileNotFoundError) as err:
        StanfordCarsDataset(str(root), 'test')
    _one_line(err, 'cars_test_annos_withlabels.mat')


# ------------------------------------------------------------------------------------------- FGVC-Aircraft


def _aircraft(root: Path) -> Path:
    data = root / 'data'
    _write(data / 'variants.txt', '707-320\nCessna 172\nA300B4\n')
    _write(data / 'images_variant_trainval.txt', '0034309 Cessna 172\n0034958 707-320\n')
    _write(data / 'images_variant_test.txt', '1514522 A300B4\n')
    _write(data / 'manufacturers.txt', 'Boeing\nCessna\nAirbus\n')
    _write(data / 'images_manufacturer_trainval.txt', '0034309 Cessna\n0034958 Boeing\n')
    for i in ('0034309', '0034958', '1514522'):
        _image(data / 'images' / f'{i}.jpg')
    return root


def test_fgvc_aircraft_layout(tmp_path: Path) -> None:
    root = _aircraft(tmp_path)
    trainval = FGVCAircraftDataset(str(root), 'trainval')
    assert [(Path(p).name, y) for p, y in trainval.samples] == [('0034309.jpg', 1), ('0034958.jpg', 0)]
    assert trainval.classes == ('707-320', 'Cessna 172', 'A300B4')  # variants.txt order, names with spaces
    assert [y for _, y in FGVCAircraftDataset(str(root / 'data'), 'test').samples] == [2]  # data/ itself
    maker = FGVCAircraftDataset(str(root), 'trainval', annotation_level='manufacturer')
    assert [y for _, y in maker.samples] == [1, 0]


def test_fgvc_aircraft_errors_name_the_file(tmp_path: Path) -> None:
    root = _aircraft(tmp_path)
    with pytest.raises(FileNotFoundError) as err:
        FGVCAircraftDataset(str(root), 'val')
    _one_line(err, 'images_variant_val.txt')
    _write(root / 'data' / 'images_variant_test.txt', '1514522 A300B4\n1514523 Spitfire\n')
    with pytest.raises(ValueError) as err:
        FGVCAircraftDataset(str(root), 'test')
    _one_line(err, 'images_variant_test.txt:2', 'Spitfire')


# -------------------------------------------------------------------------------------------------- Re-ID


def _fields(ds) -> list[tuple[str, int, int, int, str]]:
    """(file name, gt_label, pid, camid, split) of every item, from the dataset's own items."""
    out = []
    for i in range(len(ds)):
        s = ds[i]['data_samples']
        assert s['sample_idx'] == i
        out.append((Path(ds.samples[i][0]).name, s['gt_label'], s['pid'], s['camid'], s['split']))
    return out


def test_market1501_protocol(tmp_path: Path) -> None:
    for rel in (
        'bounding_box_train/0002_c1s1_000451_03.jpg',
        'bounding_box_train/0002_c2s1_000001_01.jpg',
        'bounding_box_train/0007_c3s1_000002_01.jpg',
        'bounding_box_train/-1_c1s1_000003_01.jpg',  # junk: never used
        'query/0002_c1s1_000010_00.jpg',
        'bounding_box_test/-1_c2s1_000030_00.jpg',  # junk: dropped from the gallery
        'bounding_box_test/0000_c1s1_000020_00.jpg',  # distractor: kept in the gallery
        'bounding_box_test/0002_c4s1_000040_01.jpg',
    ):
        _image(tmp_path / rel)
    _write(tmp_path / 'bounding_box_train' / 'Thumbs.db', '')  # not an image: ignored
    train = Market1501Dataset(str(tmp_path), 'train')
    assert _fields(train) == [
        ('0002_c1s1_000451_03.jpg', 0, 2, 0, 'train'),
        ('0002_c2s1_000001_01.jpg', 0, 2, 1, 'train'),
        ('0007_c3s1_000002_01.jpg', 1, 7, 2, 'train'),
    ]
    assert train.classes == ('2', '7') and train.pids == [2, 2, 7]
    assert [f[2:] for f in _fields(Market1501Dataset(str(tmp_path), 'gallery'))] == [
        (0, 0, 'gallery'),
        (2, 3, 'gallery'),
    ]
    test = Market1501Dataset(str(tmp_path), 'test')
    assert [(f[1], f[4]) for f in _fields(test)] == [(2, 'query'), (0, 'gallery'), (2, 'gallery')]
    assert test[0]['inputs'].shape == (3, 8, 8)

    _image(tmp_path / 'query' / 'frame_0001.jpg')
    with pytest.raises(ValueError) as err:
        Market1501Dataset(str(tmp_path), 'query')
    _one_line(err, 'frame_0001.jpg')
    with pytest.raises(FileNotFoundError) as err:
        Market1501Dataset(str(tmp_path / 'nowhere'), 'train')
    _one_line(err, 'bounding_box_train')


def test_msmt17_lists_and_cameras(tmp_path: Path) -> None:
    train_rel = ['0000/0000_000_01_0303morning_0015_0.jpg', '0000/0000_001_05_0303noon_0020_1.jpg']
    train_rel += ['0003/0003_000_14_0303morning_0100_0.jpg']
    for rel in train_rel + ['0001/0001_000_02_0304morning_0001_0.jpg']:
        _image(tmp_path / 'train' / rel)
    for rel in ('3000/3000_c14_0030.jpg', '3000/3000_c3_0031.jpg'):  # the Market-style re-packed naming
        _image(tmp_path / 'test' / rel)
    _write(tmp_path / 'list_train.txt', f'{train_rel[0]} 0\n{train_rel[1]} 0\n{train_rel[2]} 3\n')
    _write(tmp_path / 'list_val.txt', '0001/0001_000_02_0304morning_0001_0.jpg 1\n')
    _write(tmp_path / 'list_query.txt', '3000/3000_c14_0030.jpg 3000\n')
    _write(tmp_path / 'list_gallery.txt', '3000/3000_c3_0031.jpg 3000\n')
    train = MSMT17Dataset(str(tmp_path), 'train')
    assert [f[1:] for f in _fields(train)] == [(0, 0, 0, 'train'), (0, 0, 4, 'train'), (1, 3, 13, 'train')]
    trainval = MSMT17Dataset(str(tmp_path), 'trainval')
    assert [f[1:3] for f in _fields(trainval)] == [(0, 0), (0, 0), (2, 3), (1, 1)]  # relabelled together
    assert [f[1:] for f in _fields(MSMT17Dataset(str(tmp_path), 'test'))] == [
        (3000, 3000, 13, 'query'),
        (3000, 3000, 2, 'gallery'),
    ]

    _write(tmp_path / 'list_gallery.txt', '3000/3000_c3_0031.jpg 3000\n3000/3000_c3_0032.jpg\n')
    with pytest.raises(ValueError) as err:
        MSMT17Dataset(str(tmp_path), 'gallery')
    _one_line(err, 'list_gallery.txt:2')
    _write(tmp_path / 'list_gallery.txt', '3000/img_3000.jpg 3000\n')
    with pytest.raises(ValueError) as err:
        MSMT17Dataset(str(tmp_path), 'gallery')
    _one_line(err, 'list_gallery.txt:1', 'no camera')
    (tmp_path / 'list_query.txt').unlink()
    with pytest.raises(FileNotFoundError) as err:
        MSMT17Dataset(str(tmp_path), 'query')
    _one_line(err, 'list_query.txt')


def test_veri776_layout(tmp_path: Path) -> None:
    for rel in (
        'image_train/0001_c001_00016450_0.jpg',
        'image_train/0001_c002_00016460_0.jpg',
        'image_train/0005_c003_00016470_1.jpg',
        'image_query/0002_c004_00001000_0.jpg',
        'image_test/0002_c005_00002000_0.jpg',
        'image_test/0003_c004_00003000_0.jpg',
    ):
        _image(tmp_path / rel)
    assert [f[1:] for f in _fields(VeRi776Dataset(str(tmp_path), 'train'))] == [
        (0, 1, 0, 'train'),
        (0, 1, 1, 'train'),
        (1, 5, 2, 'train'),
    ]
    assert [f[1:] for f in _fields(VeRi776Dataset(str(tmp_path), 'test'))] == [
        (2, 2, 3, 'query'),
        (2, 2, 4, 'gallery'),
        (3, 3, 3, 'gallery'),
    ]
    with pytest.raises(ValueError) as err:
        VeRi776Dataset(str(tmp_path), 'val')
    _one_line(err, "'val'")


# ------------------------------------------------------------------------------------------------ sampler


class _Pids:
    """A dataset stand-in: only ``pids`` (what the sampler reads) and a length."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids

    def __len__(self) -> int:
        return len(self.pids)


def _batches(sampler: IdentityBalancedSampler) -> list[list[int]]:
    idx = list(sampler)
    assert len(idx) == len(sampler) and len(idx) % sampler.batch_size == 0
    return [idx[i : i + sampler.batch_size] for i in range(0, len(idx), sampler.batch_size)]


def test_sampler_every_batch_is_p_ids_times_k() -> None:
    # 7 identities with 1..9 images: fewer than K are filled up with replacement.
    counts = [1, 2, 4, 5, 8, 9, 3]
    pids = [10 + p for p, n in enumerate(counts) for _ in range(n)]
    ds = _Pids(pids)
    sampler = DATA_SAMPLERS.build(
        dict(type='IdentityBalancedSampler', batch_size=12, num_instances=4), default_args=dict(dataset=ds, seed=0)
    )
    assert isinstance(sampler, IdentityBalancedSampler)
    assert len(sampler) == len(pids) // 12 * 12  # 32 images -> 2 batches of 12
    for epoch in range(4):
        sampler.set_epoch(epoch)
        for batch in _batches(sampler):
            per_id = Counter(pids[i] for i in batch)
            assert len(per_id) == 3 and set(per_id.values()) == {4}, per_id  # P = 3 ids x K = 4 images
    assert _batches(IdentityBalancedSampler(ds, 12, 4, shuffle=False))[0] == [0, 0, 0, 0, 1, 2, 1, 2, 3, 4, 5, 6]


def test_sampler_is_deterministic_under_a_seed() -> None:
    ds = _Pids([p for p in range(10) for _ in range(6)])
    a, b, c = (IdentityBalancedSampler(ds, 8, 4, seed=s) for s in (3, 3, 4))
    assert list(a) == list(b) and list(a) != list(c)
    a.set_epoch(1)
    assert list(a) != list(b)  # a new order every epoch...
    b.set_epoch(1)
    assert list(a) == list(b)  # ...the same on every run


def test_sampler_errors() -> None:
    ds = _Pids([0, 0, 1, 1])
    with pytest.raises(ValueError, match='batch_size \\(6\\) must be P \\* num_instances \\(4\\)'):
        IdentityBalancedSampler(ds, batch_size=6, num_instances=4, seed=0)
    with pytest.raises(ValueError, match='2 identities'):
        IdentityBalancedSampler(ds, batch_size=12, num_instances=4, seed=0)
    with pytest.raises(TypeError, match='no `pids`'):
        IdentityBalancedSampler(list(range(8)), batch_size=8, num_instances=4, seed=0)


def test_sampler_gives_ranks_disjoint_shares(monkeypatch: pytest.MonkeyPatch) -> None:
    import mmengine.dist

    # 8 identities x 4 images, P = 2, K = 4, 2 ranks: 2 batches per rank use each image exactly once.
    ds = _Pids([p for p in range(8) for _ in range(4)])
    shares = []
    for rank in (0, 1):
        monkeypatch.setattr(mmengine.dist, 'get_dist_info', lambda rank=rank: (rank, 2))
        sampler = IdentityBalancedSampler(ds, batch_size=8, num_instances=4, seed=5)
        assert len(sampler) == 16
        batches = _batches(sampler)
        assert all(sorted(Counter(ds.pids[i] for i in b).values()) == [4, 4] for b in batches)
        shares.append(set(list(sampler)))
    assert not shares[0] & shares[1] and shares[0] | shares[1] == set(range(32))


# ------------------------------------------------------------------------------------------------- metric
#
# Embeddings are 1-D points, so distances are |x - y|. Gallery:
#   g0 pid 1 cam 0 at 0.5    g1 pid 2 cam 0 at 1    g2 pid 1 cam 1 at 2    g3 pid 3 cam 1 at 3    g4 pid 1 cam 2 at 4
# q1 pid 1 cam 0 at 0: order g0 g1 g2 g3 g4; g0 (same pid, same camera) is removed -> g1 g2 g3 g4
#     true matches g2, g4 at filtered ranks 2 and 4: AP = (1/2 + 2/4) / 2 = 1/2; first match at rank 2
# q2 pid 2 cam 1 at 10: distances g4 6, g3 7, g2 8, g1 9, g0 9.5; its match g1 (camera 0) stays, rank 4:
#     AP = 1/4; first match at rank 4
# q3 pid 9 cam 0 at 5: no gallery item of pid 9 -> no valid match, skipped and counted
# mAP = (1/2 + 1/4) / 2 = 37.5 %;  rank1 = 0 %, rank2 = rank3 = 50 % (q1 only), rank5 = 100 %
#
# Same points with g0 on camera 3 (no longer q1's camera): q1 ranks g0 g1 g2 g3 g4, matches at 1, 3, 5:
#     AP = (1/1 + 2/3 + 3/5) / 3 = 34/45; mAP = (34/45 + 1/4) / 2 = 181/360 = 50.2777... %; rank1 = 50 %

_GALLERY = [(0.5, 1, 0), (1.0, 2, 0), (2.0, 1, 1), (3.0, 3, 1), (4.0, 1, 2)]
_QUERY = [(0.0, 1, 0), (10.0, 2, 1), (5.0, 9, 0)]


def _run_metric(gallery=_GALLERY, query=_QUERY, repeat_last: bool = False, **kwargs) -> tuple[dict, ReIDMetric]:
    """Feed query + gallery through ``process`` as a loader would: pid / camid / split / sample_idx in the
    collated ``data_samples``, only ``embedding`` in the predictions (two batches)."""
    metric = METRICS.build(dict(type='ReIDMetric', **kwargs))
    rows = [(x, p, c, 'query') for x, p, c in query] + [(x, p, c, 'gallery') for x, p, c in gallery]
    batches = [list(enumerate(rows))[:4], list(enumerate(rows))[4:]]
    if repeat_last:  # DDP padding: the last sample comes again
        batches.append([batches[-1][-1]])
    for batch in batches:
        data_batch = dict(
            data_samples=dict(
                pid=torch.tensor([r[1] for _, r in batch]),
                camid=torch.tensor([r[2] for _, r in batch]),
                split=[r[3] for _, r in batch],
                sample_idx=torch.tensor([i for i, _ in batch]),
            )
        )
        metric.process(data_batch, [dict(embedding=torch.tensor([r[0]])) for _, r in batch])
    return metric.evaluate(len(rows)), metric


def test_reid_metric_matches_the_hand_computed_protocol() -> None:
    out, metric = _run_metric(topk=(1, 2, 3, 5, 10))
    assert out == pytest.approx(
        {
            'reid/mAP': 37.5,
            'reid/rank1': 0.0,
            'reid/rank2': 50.0,
            'reid/rank3': 50.0,
            'reid/rank5': 100.0,
            'reid/rank10': 100.0,
        }  # fmt: skip
    )
    assert metric.num_invalid_queries == 1 and metric.num_samples == 8 and metric.num_skipped == 0
    # the padding duplicate of a gallery image is counted once: same numbers
    again, metric = _run_metric(repeat_last=True)
    assert again == pytest.approx({'reid/mAP': 37.5, 'reid/rank1': 0.0, 'reid/rank5': 100.0, 'reid/rank10': 100.0})
    assert metric.num_samples == 8


def test_reid_metric_removes_same_id_same_camera_gallery_items() -> None:
    moved = [(0.5, 1, 3)] + _GALLERY[1:]  # g0 now seen by another camera than q1's
    out, _ = _run_metric(gallery=moved, topk=(1,))
    assert out == pytest.approx({'reid/mAP': 181 / 360 * 100, 'reid/rank1': 50.0})
    filtered, _ = _run_metric(topk=(1,))
    assert filtered['reid/mAP'] == pytest.approx(37.5)  # the filter is what makes the difference
    # a query whose only match shares its camera has no valid match at all
    _, metric = _run_metric(query=[(0.0, 1, 0), (3.0, 3, 1)])
    assert metric.num_invalid_queries == 1


def test_reid_metric_reads_fields_from_predictions_and_cosine() -> None:
    metric = ReIDMetric(metric='cosine', topk=(1,))
    # q at angle 0; gallery: same id at 10 degrees (other camera), other id at 5 degrees -> match at rank 2
    preds = [
        dict(embedding=torch.tensor([1.0, 0.0]), pid=1, camid=0, split='query'),
        dict(embedding=torch.tensor([np.cos(0.17), np.sin(0.17)]).float(), pid=1, camid=1, split='gallery'),
        dict(embedding=torch.tensor([np.cos(0.09), np.sin(0.09)]).float(), pid=2, camid=1, split='gallery'),
    ]
    metric.process({}, preds)
    assert metric.evaluate(3) == pytest.approx({'reid/mAP': 50.0, 'reid/rank1': 0.0})
    with pytest.raises(KeyError, match="no 'embedding'"):
        ReIDMetric().process({}, [dict(pred_score=torch.zeros(3), pid=1, camid=0, split='query')])


def _reference_rank(dist: np.ndarray, q_pid, q_cam, g_pid, g_cam) -> tuple[list[float], list[int]]:
    """The protocol written as a per-query loop (torchreid's ``eval_market1501``): AP and first-match rank."""
    aps, firsts = [], []
    for q in range(dist.shape[0]):
        order = np.argsort(dist[q], kind='stable')
        keep = ~((g_pid[order] == q_pid[q]) & (g_cam[order] == q_cam[q])) & (g_pid[order] != -1)
        match = (g_pid[order] == q_pid[q])[keep]
        if not match.any():
            continue
        hits = np.cumsum(match)
        aps.append(float(np.sum(hits / np.arange(1, len(match) + 1) * match) / match.sum()))
        firsts.append(int(np.argmax(match)) + 1)
    return aps, firsts


def test_reid_metric_equals_a_per_query_loop() -> None:
    rng = np.random.default_rng(0)
    qf, gf = rng.normal(size=(30, 4)), rng.normal(size=(60, 4))
    q_pid, g_pid = rng.integers(0, 12, 30), rng.integers(-1, 8, 60)  # pids 8..11: no match
    q_cam, g_cam = rng.integers(0, 3, 30), rng.integers(0, 3, 60)
    metric = ReIDMetric(topk=(1, 5), chunk_size=7)  # chunks of 7 queries: the chunking must not matter
    rows = [(f, p, c, 'query') for f, p, c in zip(qf, q_pid, q_cam)]
    rows += [(f, p, c, 'gallery') for f, p, c in zip(gf, g_pid, g_cam)]
    preds = [dict(embedding=torch.tensor(f), pid=int(p), camid=int(c), split=s) for f, p, c, s in rows]
    metric.process({}, preds)
    out = metric.evaluate(len(rows))
    aps, firsts = _reference_rank(np.linalg.norm(qf[:, None] - gf[None], axis=2), q_pid, q_cam, g_pid, g_cam)
    assert 0 < len(aps) < 30 and metric.num_invalid_queries == 30 - len(aps)
    assert out['reid/mAP'] == pytest.approx(100 * np.mean(aps), abs=1e-4)
    for k in (1, 5):
        assert out[f'reid/rank{k}'] == pytest.approx(100 * np.mean(np.array(firsts) <= k))
