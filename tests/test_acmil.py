"""ACMIL / WSI pipeline: heads, STKIM, losses, metric, official-checkpoint loading, tiling, feature
extraction (resume, corrupt slides) and the whole chain tile -> extract -> train -> test -> heatmap
on synthetic pyramidal TIFF slides that openslide reads."""

from __future__ import annotations

import glob
import importlib
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip('openslide')
pytest.importorskip('tifffile')

ROOT = Path(__file__).resolve().parents[1]

import zoo.testing.slides as W  # noqa: E402
from zoo.hub import allow_mmengine_types  # noqa: E402
from zoo.mil import (  # noqa: E402
    ABMIL,
    ACMILGA,
    ACMILMHA,
    MaxMIL,
    MeanMIL,
    MILClassifier,
    MILMetric,
    SlideReadError,
    acmil_losses,
    checkpoint_filter_fn,
    diversity_loss,
    stkim_mask,
    tile_slide,
)
from zoo.mil.features import build_extractor, extract_slides, read_features  # noqa: E402

allow_mmengine_types()  # the run checkpoints read below are mmengine's own files

TILING = dict(patch_size=128, magnification=20.0, target_size=32, thumbnail_size=512)
EXTRACTOR = 'test_convnext'  # timm's tiny test net: 64-d, normalised pooled features


pytestmark = pytest.mark.usefixtures('one_thread')  # conftest.py


# ---------------------------------------------------------------- heads


@pytest.mark.parametrize(
    'cls,dims,expected',
    [
        (ACMILGA, (512, 256), 200_593),  # reference: 200.6 k
        (ACMILGA, (384, 128), 84_369),  # 84.4 k
        (ACMILMHA, (512, 256), 1_585_932),  # 1.59 M
        (ACMILMHA, (384, 128), 416_140),  # 0.42 M
    ],
)
def test_parameter_counts_match_reference(cls, dims, expected):
    model = cls(in_dim=dims[0], inner_dim=dims[1], num_classes=2, n_token=5)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_official_key_layout():
    keys = {k: tuple(v.shape) for k, v in ACMILGA(512, 256, 2, n_token=5).state_dict().items()}
    assert keys['dimreduction.fc1.weight'] == (256, 512) and 'dimreduction.fc1.bias' not in keys
    assert keys['attention.attention_V.0.weight'] == (128, 256)
    assert keys['attention.attention_U.0.bias'] == (128,)
    assert keys['attention.attention_weights.weight'] == (5, 128)
    assert keys['classifier.4.fc.weight'] == (2, 256)
    assert keys['Slide_classifier.fc.bias'] == (2,)
    mha = ACMILMHA(512, 256, 2, n_token=5).state_dict()
    for k in (
        'q',
        'sub_attention.3.q_proj.weight',
        'sub_attention.0.layer_norm.bias',
        'bag_attention.v_proj.weight',
        'bag_attention.out_proj.bias',
        'bag_attention.layer_norm.weight',
    ):
        assert k in mha, k


@pytest.mark.parametrize('cls', [ACMILGA, ACMILMHA, ABMIL, MeanMIL, MaxMIL])
def test_device_and_dtype_meta_build_then_load_gives_equal_outputs(cls):
    """timm's convention: ``device='meta'`` allocates nothing; ``to_empty`` and loading a normal build's weights
    give bit-identical outputs; ``dtype=torch.bfloat16`` builds every parameter in bfloat16 and runs."""
    kwargs = dict(in_dim=32, inner_dim=16, num_classes=3)
    torch.manual_seed(0)
    ref = cls(**kwargs).eval()
    meta = cls(**kwargs, device='meta')
    assert all(p.is_meta for p in meta.parameters())
    meta = meta.to_empty(device='cpu').eval()
    meta.load_state_dict(ref.state_dict())
    bag = torch.randn(40, 32)
    for a, b in zip(ref(bag), meta(bag)):
        assert (a is None and b is None) or torch.equal(a, b)
    half = cls(**kwargs, dtype=torch.bfloat16).eval()
    assert {p.dtype for p in half.parameters()} == {torch.bfloat16}
    assert half(bag.bfloat16())[1].dtype == torch.bfloat16


@pytest.mark.parametrize('n,k,drop', [(50, 10, 0.6), (7, 10, 0.6), (30, 10, 0.0), (30, 4, 1.0)])
def test_stkim_masks_int_k_drop_of_top_k(n, k, drop):
    torch.manual_seed(0)
    logits = torch.randn(5, n)
    masked = stkim_mask(logits, k, drop)
    kk = min(k, n)
    hit = masked <= -1e8
    assert (hit.sum(dim=1) == int(kk * drop)).all()
    top = logits.topk(kk, dim=1).indices
    in_top = torch.zeros_like(hit).scatter_(1, top, True)
    assert not (hit & ~in_top).any(), 'only top-K instances may be masked'
    assert torch.equal(masked[~hit], logits[~hit])


@pytest.mark.parametrize('cls', [ACMILGA, ACMILMHA])
def test_stkim_in_training_only(cls):
    torch.manual_seed(0)
    model = cls(in_dim=32, inner_dim=16, num_classes=2, n_token=3, n_masked_patch=10, mask_drop=0.6)
    x = torch.randn(1, 40, 32)
    model.train()
    _, _, a_train = model(x)
    # every branch (and head) row has exactly int(10 * 0.6) = 6 masked instances
    assert ((a_train <= -1e8).sum(-1) == 6).all()
    model.eval()
    _, _, a_eval = model(x)
    assert not (a_eval <= -1e8).any()
    # masking changes the training output; eval is deterministic
    assert torch.equal(model(x)[1], model(x)[1])


def test_acmil_ga_matches_naive_loop():
    """Our batched head against a loop written from the official ``ACMIL_GA.forward``
    (dazhangyu123/ACMIL architecture/transformer.py)."""
    torch.manual_seed(0)
    m = ACMILGA(in_dim=24, inner_dim=16, num_classes=3, n_token=4, n_masked_patch=0).eval()
    x = torch.randn(30, 24)
    sub, slide, logits = m(x)
    h = torch.relu(x @ m.dimreduction.fc1.weight.T)
    att = m.attention
    gated = torch.tanh(att.attention_V[0](h)) * torch.sigmoid(att.attention_U[0](h))
    a = gated @ att.attention_weights.weight.T
    a = (a + att.attention_weights.bias).T  # (M, N)
    torch.testing.assert_close(logits[0], a)
    p = a.softmax(-1)
    for i in range(4):
        torch.testing.assert_close(sub[i], m.classifier[i].fc(p[i] @ h))
    torch.testing.assert_close(slide[0], m.Slide_classifier.fc(p.mean(0) @ h))


def test_losses_match_naive_formula():
    torch.manual_seed(0)
    sub, slide, logits = torch.randn(5, 2), torch.randn(1, 2), torch.randn(1, 5, 40)
    y = torch.tensor([1])
    out = acmil_losses(sub, slide, logits, y)
    ce = torch.nn.functional.cross_entropy
    assert torch.allclose(out['loss_sub'], ce(sub, torch.ones(5, dtype=torch.long)))
    assert torch.allclose(out['loss_slide'], ce(slide, y))
    p = logits.softmax(-1)
    pairs = [(i, j) for i in range(5) for j in range(i + 1, 5)]
    naive = sum(torch.cosine_similarity(p[:, i], p[:, j], dim=-1).mean() for i, j in pairs) / len(pairs)
    assert torch.allclose(out['loss_div'], naive)
    # identical branches are maximally similar; one-hot maps on distinct instances are orthogonal
    assert torch.allclose(diversity_loss(torch.zeros(1, 3, 10)), torch.tensor(1.0))
    assert diversity_loss(torch.eye(3)[None] * 50).item() < 1e-6
    # ABMIL: one branch, no semantic or diversity term
    assert set(acmil_losses(None, slide, logits[:, :1], y)) == {'loss_slide'}


@pytest.mark.parametrize(
    'head',
    [
        dict(type='ACMIL_GA', in_dim=16, inner_dim=8, num_classes=2, n_token=2, n_masked_patch=3),
        dict(type='ACMIL_MHA', in_dim=16, inner_dim=8, num_classes=2, n_token=2, n_masked_patch=3, num_heads=2),
        dict(type='ABMIL', in_dim=16, inner_dim=8, num_classes=2),
        dict(type='MeanMIL', in_dim=16, inner_dim=8, num_classes=2),
        dict(type='MaxMIL', in_dim=16, inner_dim=8, num_classes=2),
    ],
)
def test_mil_classifier_modes(head):
    torch.manual_seed(0)
    model = MILClassifier(head=head)
    x = torch.randn(1, 12, 16)
    ds = dict(gt_label=torch.tensor([1]), slide=['s0'])
    losses = model(x, ds, mode='loss')
    # ACMIL: slide loss, branch (sub) loss over its 2 tokens, diversity of the 2 attention maps; the
    # single-branch heads only have the slide loss
    acmil = head['type'].startswith('ACMIL')
    assert set(losses) == ({'loss_slide', 'loss_sub', 'loss_div'} if acmil else {'loss_slide'})
    assert all(v.dim() == 0 and torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, no_grad
    # eval (no instance masking): the slide loss is the cross-entropy of the 'tensor' logits and
    # 'predict' scores are their softmax
    model.eval()
    with torch.no_grad():
        logits = model(x, mode='tensor')
        assert logits.shape == (1, 2)
        loss_eval = model(x, ds, mode='loss')['loss_slide']
        pred = model(x, ds, mode='predict')
    torch.testing.assert_close(loss_eval, torch.nn.functional.cross_entropy(logits, torch.tensor([1])))
    assert len(pred) == 1 and pred[0]['slide'] == 's0' and int(pred[0]['gt_label']) == 1
    torch.testing.assert_close(pred[0]['pred_score'], logits[0].softmax(-1))


def test_pooling_baselines():
    torch.manual_seed(0)
    x = torch.randn(9, 16)
    mean, mx = MeanMIL(16, 8, 3).eval(), MaxMIL(16, 8, 3).eval()
    mx.load_state_dict(mean.state_dict())
    inst = mean.head(x)
    torch.testing.assert_close(mean(x)[1][0], inst.mean(0))
    torch.testing.assert_close(mx(x)[1][0], inst.max(0).values)


# ---------------------------------------------------------------- official checkpoints


def _official_state_dict(n_class=2, d_feat=512, d_inner=256, m=5) -> dict:
    """A state dict in the official ACMIL_GA key layout (the module names of ``ACMIL_GA`` in
    dazhangyu123/ACMIL architecture/transformer.py and network.py), built by hand."""
    g = torch.Generator().manual_seed(0)

    def t(*shape):
        return torch.randn(*shape, generator=g)

    sd = {
        'dimreduction.fc1.weight': t(d_inner, d_feat),
        'attention.attention_V.0.weight': t(128, d_inner),
        'attention.attention_V.0.bias': t(128),
        'attention.attention_U.0.weight': t(128, d_inner),
        'attention.attention_U.0.bias': t(128),
        'attention.attention_weights.weight': t(m, 128),
        'attention.attention_weights.bias': t(m),
        'Slide_classifier.fc.weight': t(n_class, d_inner),
        'Slide_classifier.fc.bias': t(n_class),
    }
    for i in range(m):
        sd[f'classifier.{i}.fc.weight'] = t(n_class, d_inner)
        sd[f'classifier.{i}.fc.bias'] = t(n_class)
    return sd


def test_official_checkpoint_loads(tmp_path):
    sd = _official_state_dict()
    ckpt = tmp_path / 'checkpoint-best.pth'
    # official utils.save_model layout (minus its pickled config object): {'model': ..., 'epoch': ...}
    torch.save({'model': sd, 'optimizer': {}, 'epoch': 7}, ckpt)
    loaded = torch.load(ckpt, map_location='cpu', weights_only=True)
    head = ACMILGA(512, 256, 2, n_token=5)
    head.load_state_dict(checkpoint_filter_fn(loaded, head), strict=True)
    assert torch.equal(head.attention.attention_V[0].weight, sd['attention.attention_V.0.weight'])
    # the mmengine wrapper loads the same file by path (weights_only inside), keys get 'head.'
    wrapped = MILClassifier(head=dict(type='ACMIL_GA', in_dim=512, inner_dim=256, num_classes=2), pretrained=str(ckpt))
    assert torch.equal(wrapped.head.classifier[3].fc.bias, sd['classifier.3.fc.bias'])
    # and a MILClassifier state dict loads back into a bare head
    bare = ACMILGA(512, 256, 2, n_token=5)
    bare.load_state_dict(checkpoint_filter_fn({'state_dict': wrapped.state_dict()}, bare), strict=True)
    assert torch.equal(bare.dimreduction.fc1.weight, sd['dimreduction.fc1.weight'])


class _Struct:  # stands for the official pickled config object
    def __init__(self):
        self.lr = 1e-4


def test_pickled_official_checkpoint_gives_clear_error(tmp_path):
    ckpt = tmp_path / 'official.pth'
    torch.save({'model': _official_state_dict(), 'config': _Struct()}, ckpt)
    with pytest.raises(RuntimeError, match=r'official\.pth: not loadable with weights_only=True.*re-save'):
        MILClassifier(head=dict(type='ACMIL_GA'), pretrained=str(ckpt))


# ---------------------------------------------------------------- metric


def test_mil_metric_by_hand():
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.3, 0.6, 0.1], [0.5, 0.2, 0.3]])
    labels = [0, 1, 2, 2, 0]
    metric = MILMetric()
    metric.process({}, [dict(pred_score=s, gt_label=y) for s, y in zip(scores, labels)])
    out = metric.compute_metrics(metric.results)
    # predictions 0, 1, 2, 1, 0: 4 of 5 right
    assert out['accuracy'] == pytest.approx(0.8)
    assert out['f1_micro'] == pytest.approx(0.8)  # = accuracy (what the official code calls F1)
    # per-class F1: class 0: 1.0; class 1: P=1/2 R=1 -> 2/3; class 2: P=1 R=1/2 -> 2/3
    assert out['f1_macro'] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    # one-vs-rest AUCs: class 0: 1.0; class 1: 1.0 (0.7 above all negatives); class 2: 4.5 of 6 pairs
    # class 2 positives {0.7, 0.1} vs negatives {0.0, 0.1, 0.3}: 0.7 beats 3, 0.1 beats 1 and ties 1
    assert out['auc_macro'] == pytest.approx((1 + 1 + (3 + 1.5) / 6) / 3)
    assert out['f1_auc'] == pytest.approx(out['f1_macro'] + out['auc_macro'])


# ---------------------------------------------------------------- tiling and extraction


@pytest.fixture(scope='module')
def small_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp('wsi_small')
    slides = W.make_cohort(root / 'slides', n_pos=1, n_neg=1, seed=3)
    bad = W.write_corrupt_slides(root / 'slides', slides[0].path)
    return root, slides, bad


def test_synthetic_slide_is_a_pyramid_openslide_reads(small_cohort):
    import openslide

    _, slides, _ = small_cohort
    s = openslide.OpenSlide(str(slides[0].path))
    assert s.level_count == 4 and s.dimensions == (2048, 2048)
    assert s.level_downsamples[1] == pytest.approx(2.0)
    assert float(s.properties['openslide.mpp-x']) == pytest.approx(0.5)


def test_tiling_keeps_tissue_only(small_cohort):
    _, slides, _ = small_cohort
    res = tile_slide(slides[0].path, dict(TILING, read_pyramid=False))
    assert res.magnification == 20.0 and res.read_level == 0 and res.read_size == 128
    assert (res.coords % 128 == 0).all()
    # exactly the cells of the 16 x 16 grid whose footprint on the tissue mask is >= min_tissue tissue,
    # counted cell by cell (the tissue ellipse covers a part of the slide)
    ds, min_tissue = res.mask_downsample, TILING.get('min_tissue', 0.25)
    want = {
        (x, y)
        for y in range(0, 2048, 128)
        for x in range(0, 2048, 128)
        if res.mask[round(y / ds) : round((y + 128) / ds), round(x / ds) : round((x + 128) / ds)].mean() >= min_tissue
    }
    assert {tuple(c) for c in res.coords.tolist()} == want and 40 < len(want) < 256
    # corners of the slide are background
    corners = {(0, 0), (1920, 0), (0, 1920), (1920, 1920)}
    assert not corners & {tuple(c) for c in res.coords.tolist()}
    # 128 px at 20x shrunk to 32: level 2 (4x down) still has 32 px per patch, so it is read there
    pyr = tile_slide(slides[0].path, TILING)
    assert pyr.read_level == 2 and pyr.read_size == 32
    np.testing.assert_array_equal(pyr.coords, res.coords)
    # 256 px at 10x = 512 level-0 px, read at 10x (level 1) as 256 px
    res10 = tile_slide(slides[0].path, dict(TILING, patch_size=256, magnification=10.0, read_pyramid=False))
    assert res10.read_level == 1 and res10.read_size == 256 and res10.patch_size_level0 == 512


@pytest.mark.parametrize('seed', [2, 5])
def test_tissue_mask_and_thumbnail_tint_sit_on_the_drawn_tissue(tmp_path, seed):
    """The tissue mask, and its green tint on the tools/wsi_tile.py thumbnail, cover the tissue drawn on
    the slide: their bounding boxes are centred on the tissue's within half a mask cell, and every edge
    lies within one cell of the tissue's. (cv2's closing with the even 4 px kernel once moved the mask
    one cell, 64 level-0 px, down and right: centres 64 px off.)"""
    import dataclasses

    import openslide

    from zoo.mil.tiling import draw_thumbnail

    path = tmp_path / 'slide.tif'
    W.write_pyramid_tiff(path, W.render(2048, [], seed=seed))
    with openslide.OpenSlide(str(path)) as s:  # the drawn tissue, read back at level 0
        level0 = np.asarray(s.read_region((0, 0), 0, s.dimensions).convert('RGB'))
    tissue = (level0 != W.BACKGROUND.astype(np.uint8)).any(-1)

    def box(m: np.ndarray, scale: float) -> np.ndarray:  # (x0, y0, x1, y1) in level-0 pixels
        ys, xs = np.nonzero(m)
        return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]) * scale

    want = box(tissue, 1.0)
    res = tile_slide(path, TILING)
    cell = res.mask_downsample
    assert cell == pytest.approx(64.0)
    # the thumbnail tint: pixels that differ from the plain thumbnail (no grid drawn: no patches)
    tinted = draw_thumbnail(path, dataclasses.replace(res, coords=np.zeros((0, 2), np.int64)), size=512)
    with openslide.OpenSlide(str(path)) as s:
        plain = np.asarray(s.get_thumbnail((512, 512)).convert('RGB'))
    for name, got in (('mask', box(res.mask, cell)), ('thumbnail tint', box((tinted != plain).any(-1), 2048 / 512))):
        centre_err = (got[:2] + got[2:]) / 2 - (want[:2] + want[2:]) / 2
        assert np.abs(centre_err).max() <= cell / 2, (name, got, want)
        assert np.abs(got - want).max() <= cell, (name, got, want)


def test_single_level_slide_gives_the_same_grid(tmp_path):
    img = W.render(2048, [(900.0, 1000.0, 200.0)], seed=5)
    W.write_pyramid_tiff(tmp_path / 'pyramid.tif', img, levels=4)
    W.write_pyramid_tiff(tmp_path / 'flat.tif', img, levels=1)  # mask from openslide's downscaled thumbnail
    a = {tuple(c) for c in tile_slide(tmp_path / 'pyramid.tif', TILING).coords.tolist()}
    b = {tuple(c) for c in tile_slide(tmp_path / 'flat.tif', TILING).coords.tolist()}
    assert len(a & b) / len(a | b) > 0.9


def test_otsu_and_unknown_key(small_cohort):
    _, slides, _ = small_cohort
    assert len(tile_slide(slides[0].path, dict(TILING, method='otsu')).coords) > 40
    with pytest.raises(ValueError, match='unknown key'):
        tile_slide(slides[0].path, dict(TILING, patchsize=3))


@pytest.mark.slow
def test_corrupt_slides_are_reported_and_skipped_and_extraction_resumes(small_cohort, tmp_path):
    _, slides, bad = small_cohort
    with pytest.raises(SlideReadError, match='corrupt_junk.svs: openslide cannot read it'):
        tile_slide(bad[0], TILING)
    ex = build_extractor(EXTRACTOR)
    logged = []
    order = [slides[0].path, bad[0], bad[1], slides[1].path]  # good slides before and after the bad ones
    out = extract_slides(order, tmp_path / 'feats', ex, TILING, batch_size=64, show_progress=False, log=logged.append)
    assert [o.status for o in out] == ['done', 'failed', 'failed', 'done']
    assert len(logged) == 5 and 'corrupt_junk.svs' in logged[0] and 'corrupt_truncated.tif' in logged[1]
    # the end-of-run summary: a count, then one line per failed slide with its reason
    assert logged[2] == 'skipped slides: 2 of 4 failed and have no features:'
    assert 'corrupt_junk.svs: openslide cannot read it' in logged[3] and 'corrupt_truncated.tif' in logged[4]
    feat, coords, attrs = read_features(tmp_path / 'feats' / f'{slides[0].path.stem}.h5')
    assert feat.shape == (len(coords), 64) and feat.dtype == np.float16
    assert attrs['extractor'] == EXTRACTOR and '"num_features": 64' in attrs['extractor_cfg']
    np.testing.assert_array_equal(coords, tile_slide(slides[0].path, TILING).coords)
    # features equal a direct forward of the same patches
    import openslide

    s = openslide.OpenSlide(str(slides[0].path))
    x, y = coords[3]
    assert attrs['read_level'] == 2 and attrs['read_size'] == 32  # read from the pyramid, no resize
    img = s.read_region((int(x), int(y)), 2, (32, 32)).convert('RGB')
    direct = ex(torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)[None])
    np.testing.assert_allclose(feat[3].astype(np.float32), direct[0].numpy(), rtol=2e-2, atol=2e-3)
    # resume: finished slides are skipped, a half-written one (.part) is redone
    done = tmp_path / 'feats' / f'{slides[1].path.stem}.h5'
    done.rename(done.with_suffix('.h5.part'))
    again = extract_slides(order, tmp_path / 'feats', ex, TILING, show_progress=False, log=logged.append)
    assert [o.status for o in again] == ['skipped', 'failed', 'failed', 'done']


# ---------------------------------------------------------------- the whole chain


def _tool(name):
    """The module behind ``tools/<name>.py``."""
    return importlib.import_module(f'zoo.cli.{name}')


SMOKE_CONFIG = str(ROOT / 'configs/smoke/acmil/acmil_ga_slides.py')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """The smoke chain of docs/acmil.md on 12 synthetic slides (6 train, 2 val, 4 test, each split half
    tumour): make_slide_fixture -> tools/wsi_tile.py -> tools/wsi_extract.py -> tools/train.py, all
    with configs/smoke/acmil/acmil_ga_slides.py (its data root is $ZOO_FIXTURES/wsi)."""
    root = tmp_path_factory.mktemp('fixtures')
    fx = W.make_slide_fixture(root / 'wsi', seed=1)
    prev = os.environ.get('ZOO_FIXTURES')
    os.environ['ZOO_FIXTURES'] = str(root)
    try:
        tiled = _tool('wsi_tile').main(['--config', SMOKE_CONFIG, '--quiet'])
        assert tiled['done'] == 12 and not tiled['failed']
        extracted = _tool('wsi_extract').main(['--config', SMOKE_CONFIG, '--quiet'])
        assert extracted['done'] == 12
        _tool('train').main([SMOKE_CONFIG, '--work-dir', str(root / 'work')])
        best = glob.glob(str(root / 'work' / 'best_mil_f1_auc_*.pth'))
        assert len(best) == 1, os.listdir(root / 'work')
        yield dict(root=root / 'wsi', slides=fx['slides'], split=fx['split'], config=SMOKE_CONFIG, ckpt=best[0])
    finally:
        if prev is None:
            os.environ.pop('ZOO_FIXTURES', None)
        else:
            os.environ['ZOO_FIXTURES'] = prev


def _evaluate(trained, ckpt: str) -> dict:
    return _tool('test').main([trained['config'], ckpt, '--work-dir', str(trained['root'] / 'eval')])


@pytest.mark.slow
def test_chain_beats_chance(trained):
    metrics = _evaluate(trained, trained['ckpt'])
    print('smoke chain, test split:', metrics)
    # 4 held-out slides (2 tumour, 2 normal): chance is AUC 0.5 / accuracy 0.5
    # (seeds 0-3 of the extractor all gave AUC 1.0 and accuracy 0.75-1.0 at the selected epoch)
    assert metrics['mil/auc_macro'] >= 0.75
    assert metrics['mil/accuracy'] >= 0.75
    assert metrics['mil/f1_macro'] >= 0.7
    assert metrics['mil/f1_micro'] == pytest.approx(metrics['mil/accuracy'])
    # the same weights as an official-layout file ({'model': head state dict}) evaluate identically
    sd = torch.load(trained['ckpt'], map_location='cpu', weights_only=True)['state_dict']
    official = trained['root'] / 'checkpoint-best.pth'
    torch.save({'model': {k.removeprefix('head.'): v for k, v in sd.items()}, 'epoch': 3}, official)
    again = _evaluate(trained, str(official))
    for k in ('mil/auc_macro', 'mil/accuracy', 'mil/f1_macro', 'mil/f1_micro'):
        assert again[k] == pytest.approx(metrics[k]), k


@pytest.mark.slow
def test_heatmaps_attend_to_tumour(trained):
    from zoo.engine.config import load_config
    from zoo.mil.classifier import load_mil_checkpoint
    from zoo.mil.heatmap import attention_maps
    from zoo.registry import MODELS

    root = trained['root']
    out = _tool('wsi_heatmap').main(
        [
            trained['config'],
            trained['ckpt'],
            '--size',
            '256',
            '--quiet',
            '--only',
            *[n for n, s in trained['split'].items() if s == 'test'],
        ]
    )
    assert len(out['written']) == 4 and not out['failed']
    from PIL import Image

    img = Image.open(out['written'][0])
    assert img.size[0] > 600  # thumbnail + 5 branches + bag panels
    # the colour bar at the right edge runs from jet's red (attention 1, top) to its blue (0, bottom)
    rgb = np.asarray(img.convert('RGB')).astype(int)
    h, w = rgb.shape[:2]
    top, bottom = rgb[int(0.15 * h), int(0.924 * w)], rgb[int(0.85 * h), int(0.924 * w)]
    assert top[0] > 150 and top[2] < 100 and bottom[2] > 120 and bottom[0] < 60, (top, bottom)
    cfg = load_config(trained['config'])
    model = MODELS.build(cfg.model)
    model.load_state_dict(checkpoint_filter_fn(load_mil_checkpoint(trained['ckpt']), model))
    ratios = []
    for s in trained['slides']:
        if trained['split'][s.path.stem] != 'test' or not s.label:
            continue
        feat, coords, _ = read_features(root / 'features' / f'{s.path.stem}.h5')
        maps = attention_maps(model, feat)
        assert maps.shape == (6, len(coords)) and np.allclose(maps.sum(1), 1, atol=1e-4)
        tumour = s.in_tumour(coords, 128)
        assert tumour.any() and (~tumour).any()
        bag = maps[-1]
        ratios.append(bag[tumour].mean() / bag[~tumour].mean())
    # mean bag attention on tumour patches vs the rest (seeds 0-3: 1.7x to 7.5x at the selected epoch)
    assert min(ratios) > 1.3 and np.mean(ratios) > 1.5, ratios


@pytest.mark.slow
def test_bf16_extraction_and_evaluation_agree_with_fp32(trained, tmp_path, monkeypatch):
    """The fast path on the smoke chain (issue 19): ``tools/wsi_extract.py --bf16 --channels-last`` gives the
    float32 features within 5% of their largest magnitude, and ``tools/test.py --bf16`` (ACMIL's attention pooling
    kept in float32) gives the same slide predictions' metrics as float32."""
    from zoo.mil.features import read_features

    monkeypatch.setenv('ZOO_FIXTURES', str(trained['root'].parent))
    out = tmp_path / 'features_bf16'
    extracted = _tool('wsi_extract').main(
        ['--config', SMOKE_CONFIG, '--quiet', '--bf16', '--channels-last', '--out', str(out)]
    )
    assert extracted['done'] == 12
    for h5 in sorted((trained['root'] / 'features').glob('*.h5'))[:3]:
        ref, coords, _ = read_features(h5)
        fast, fast_coords, _ = read_features(out / h5.name)
        assert (coords == fast_coords).all()
        rel = float(np.abs(fast.astype(np.float32) - ref).max() / np.abs(ref).max())
        assert rel <= 0.05, f'{h5.name}: bf16 features off by {rel:.4f}'
    fp32 = _evaluate(trained, trained['ckpt'])
    bf16 = _tool('test').main([trained['config'], trained['ckpt'], '--work-dir', str(tmp_path / 'eval'), '--bf16'])
    for k in ('mil/auc_macro', 'mil/accuracy', 'mil/f1_macro'):
        assert bf16[k] == pytest.approx(fp32[k], abs=1e-6), k
