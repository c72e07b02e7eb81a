"""The DCAL tools: tools/attention_map.py (class-token rollout PNGs, DCAL's GLCA queries outlined) and the
``dcal`` benchmark suite (tools/analysis/benchmark.py dcal), on tiny models."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_tool
from PIL import Image, ImageDraw

# a tiny DCAL DeiT: 2 blocks of width 48 at 96x96 (6x6 patches, R = round(0.1 * 36) = 4 GLCA queries)
TINY_DCAL = ['dcal_deit_tiny_patch16_448', '--img-size', '96']
TINY_KW = {'depth': 2, 'embed_dim': 48, 'num_heads': 2, 'num_classes': 10}


def _picture(path: Path, rotate: int = 0) -> Path:
    im = Image.new('RGB', (120, 90), (30, 90, 160))
    d = ImageDraw.Draw(im)
    d.ellipse((30, 20, 80, 70), fill=(240, 200, 40))
    d.rectangle((85, 10, 110, 40), fill=(200, 30, 30))
    im.rotate(rotate, expand=True).save(path)
    return path


def _check_png(path: Path) -> None:
    from zoo.cli.attention_map import FIGURE_PX

    assert path.is_file(), path
    with Image.open(path) as im:
        assert im.size == FIGURE_PX, im.size
        panel = np.asarray(im.convert('RGB'))[:, im.size[0] // 2 :].astype(float)  # the heatmap panel
    assert panel.std() > 10  # a picture, not a blank figure


def _heatmap(npz: Path) -> tuple[np.ndarray, np.ndarray | None]:
    """The ``--save-maps`` file: the ``(h, w)`` rollout grid and the GLCA query patches (DCAL only)."""
    with np.load(npz) as f:
        return f['rollout'], (f['query_patches'] if 'query_patches' in f else None)


@pytest.mark.slow
def test_attention_map_dcal_folder_with_a_corrupt_file(tmp_path: Path) -> None:
    images = tmp_path / 'images'
    images.mkdir()
    _picture(images / 'a.jpg')
    _picture(images / 'b.png', rotate=90)
    (images / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    out = tmp_path / 'maps'
    proc = run_tool(
        'tools/attention_map.py',
        *TINY_DCAL,
        str(images),
        '--out',
        str(out),
        '--model-kwargs',
        json.dumps(TINY_KW),
        '--save-maps',
        env={'OMP_NUM_THREADS': '1'},
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr
    skip = [ln for ln in proc.stderr.splitlines() if 'broken.jpg' in ln and 'skipping' in ln]
    assert len(skip) == 1, proc.stderr  # the corrupt file: one line
    assert '2 of 3 images written' in proc.stderr and '1 skipped: broken.jpg' in proc.stderr
    for stem in ('a', 'b'):
        _check_png(out / f'{stem}.png')
        rollout, queries = _heatmap(out / f'{stem}.npz')
        assert rollout.shape == (6, 6) and rollout.std() > 0  # not a constant map
        assert queries is not None and len(queries) == 4 and len(set(queries.tolist())) == 4
        assert set(queries.tolist()) <= set(range(36))
        # the outlined queries are the top-R patches of the rollout shown
        assert set(queries.tolist()) == set(np.argsort(rollout.ravel())[-4:].tolist())
    assert not (out / 'broken.png').exists()


@pytest.mark.slow
def test_attention_map_plain_vit_single_image(tmp_path: Path) -> None:
    img = _picture(tmp_path / 'photo.jpg')
    out = tmp_path / 'maps'
    kw = json.dumps({'depth': 2, 'embed_dim': 48, 'num_heads': 2})
    args = ['deit_tiny_patch16_224', str(img), '--out', str(out), '--img-size', '64', '--model-kwargs', kw]
    proc = run_tool('tools/attention_map.py', *args, '--save-maps', env={'OMP_NUM_THREADS': '1'})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert 'photo.jpg -> ' in proc.stdout
    _check_png(out / 'photo.png')
    rollout, queries = _heatmap(out / 'photo.npz')
    assert rollout.shape == (4, 4) and rollout.std() > 0 and queries is None


def test_attention_map_refuses_families_without_a_class_token_map(tmp_path: Path, one_thread) -> None:
    from zoo.cli.attention_map import main
    from zoo.cli.common import UsageError

    img = str(_picture(tmp_path / 'a.png'))
    with pytest.raises(UsageError, match='no class-token self-attention'):
        main(['resnet18', img, '--out', str(tmp_path)])
    no_cls = json.dumps({'depth': 1, 'class_token': False, 'global_pool': 'avg'})
    with pytest.raises(UsageError, match='no class token'):
        main(['vit_tiny_patch16_224', img, '--img-size', '32', '--model-kwargs', no_cls, '--out', str(tmp_path)])
    with pytest.raises(UsageError, match='not JSON'):
        main(['deit_tiny_patch16_224', img, '--model-kwargs', '{depth: 1}', '--out', str(tmp_path)])
    with pytest.raises(FileNotFoundError, match='does not exist'):
        main(['deit_tiny_patch16_224', str(tmp_path / 'missing.jpg'), '--out', str(tmp_path)])


def test_hook_maps_equal_dcal_own_rollout(one_thread) -> None:
    """The hooks on timm's attention give the maps DCAL's own rollout uses: same rollout, same queries."""
    import timm

    import zoo  # noqa: F401
    from zoo.cli.attention_map import attention_maps, rollout_maps
    from zoo.layers.rollout import rollout_cls_row, select_local_queries

    torch.manual_seed(0)
    model = timm.create_model('dcal_deit_tiny_patch16_448', img_size=64, **TINY_KW).eval()
    x = torch.randn(2, 3, 64, 64)
    own = rollout_maps(model, x)
    model.set_inference_branches('sa')  # the plain ViT forward: timm's blocks, SDPA attention, hooks
    hooked = rollout_cls_row(attention_maps(model, x))
    for b in range(2):
        torch.testing.assert_close(own[b].scores.flatten(), hooked[b, 1:], rtol=1e-5, atol=1e-7)
        assert abs(own[b].cls_share - float(hooked[b, 0])) < 1e-6
        assert abs(float(own[b].scores.sum()) + own[b].cls_share - 1) < 1e-5  # the row sums to 1
    queries = select_local_queries(hooked, model.local_query_ratio)[:, 1:] - 1
    assert torch.equal(torch.stack([m.query_patches for m in own]), queries)


def test_attention_map_agent_deit(one_thread) -> None:
    import timm

    import zoo  # noqa: F401
    from zoo.cli.attention_map import check_supported, rollout_maps

    model = timm.create_model('agent_deit_tiny', img_size=64, depth=2, agent_num=(4, 4, 4, 4)).eval()
    check_supported(model, 'agent_deit_tiny')
    (m,) = rollout_maps(model, torch.randn(1, 3, 64, 64))
    assert m.scores.shape == (4, 4) and m.query_patches is None and float(m.scores.std()) > 0
    assert abs(float(m.scores.sum()) + m.cls_share - 1) < 1e-5


def test_dcal_benchmark_suite_tiny(tmp_path: Path, one_thread) -> None:
    from zoo.cli.benchmark import main

    out = tmp_path / 'bench'
    argv = ['dcal', '--models', 'dcal_deit_tiny_patch16_448', '--img-size', '64', '--batch-size', '2']
    main([*argv, '--rounds', '1', '--model-kwargs', '{"depth": 2}', '--out-dir', str(out)])
    tables = {}
    for part in ('inference', 'attention', 'training', 'rollout'):
        assert (out / f'dcal_{part}.png').stat().st_size > 1000, part
        with open(out / f'dcal_{part}.csv') as f:
            tables[part] = list(csv.DictReader(f))
        assert len(tables[part]) == 1, part

    def positive(row: dict, *keys: str) -> None:
        for k in keys:
            v = float(row[k])
            assert math.isfinite(v) and v > 0, (k, row[k])

    inf = tables['inference'][0]
    assert (inf['model'], inf['plain_model'], inf['img_size']) == (
        'dcal_deit_tiny_patch16_448',
        'deit_tiny_patch16_224',
        '64',
    )
    positive(inf, 'params_m', 'plain_params_m', 'params_ratio', 'gmacs', 'plain_gmacs', 'gmacs_ratio')
    positive(inf, 'img_s', 'plain_img_s', 'img_s_ratio', 'cpu_ms_per_img', 'plain_cpu_ms_per_img')
    assert float(inf['params_m']) > float(inf['plain_params_m']) and float(inf['gmacs']) > float(inf['plain_gmacs'])
    assert abs(float(inf['params_ratio']) - float(inf['params_m']) / float(inf['plain_params_m'])) < 1e-3
    assert (inf['paper_params_ratio'], inf['paper_gmacs_ratio']) == ('1.09', '1.02')  # DeiT-T at 448

    tr = tables['training'][0]
    positive(tr, 'sa_step_s', 'dcal_step_s', 'step_ratio', 'sa_fwd_gmacs', 'train_fwd_gmacs', 'fwd_gmacs_ratio')
    assert abs(float(tr['paper_train_time_ratio']) - 3.8 / 2.1) < 1e-3
    assert float(tr['train_fwd_gmacs']) > float(tr['sa_fwd_gmacs'])  # GLCA + PWCA on top of SA

    att = tables['attention'][0]
    assert (att['heads'], att['head_dim'], att['tokens']) == ('3', '64', '17')  # DeiT-T: 192 = 3 x 64
    positive(att, 'fused_ms', 'eval_path_ms', 'gemm_floor_ms', 'eval_path_over_fused', 'gemm_floor_over_fused')
    assert float(att['max_abs_diff']) < 1e-5  # the eval path computes the same attention output

    ro = tables['rollout'][0]
    assert (ro['tokens'], ro['layers']) == ('17', '12')  # (64 / 16)^2 + 1 tokens
    positive(ro, 'cls_row_ms', 'full_chain_ms', 'speedup')
    assert float(ro['max_abs_diff']) < 1e-5 and float(ro['cls_row_err_vs_float64']) < 1e-5


def test_dcal_rollout_matches_the_full_chain_at_785_tokens(one_thread) -> None:
    """The paper's setting, 785 tokens x 12 layers: the CLS row equals row 0 of the N x N product chain."""
    from zoo.benchmark.dcal import full_chain_cls_row, random_maps
    from zoo.layers.rollout import rollout_cls_row

    maps = random_maps(785, 12)
    ref = full_chain_cls_row([m.double() for m in maps])
    assert float((rollout_cls_row(maps).double() - ref).abs().max()) < 1e-5
    assert float((full_chain_cls_row(maps).double() - ref).abs().max()) < 1e-5
