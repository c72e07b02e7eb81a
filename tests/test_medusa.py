"""MEDUSA (``zoo.models.medusa``): the body's size, the fusion ``x + x * A``, the body view, freezing, loading a
plain timm ResNet-50 checkpoint into the trunk, ``features_only`` and one-line input errors.

Models are built small where the check allows (a narrow body on a 32 px view, a one-block-per-stage trunk);
parameter counts use the full models on the meta device.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

import zoo  # noqa: F401  (registers the models)
from zoo.layers.encoder_decoder_attention import UNetBody, gate_fuse
from zoo.models import paper_facts
from zoo.models.medusa import MEDUSA

TINY_BODY = dict(body_dims=(4, 4, 4, 4, 8), body_decoder_dims=(8, 8, 4, 4), body_size=32)
TINY = dict(TINY_BODY, global_pool='avg', trunk_kwargs=dict(layers=(1, 1, 1, 1)))


def _tiny(name: str = 'medusa_resnet50', **kwargs) -> MEDUSA:
    torch.manual_seed(0)
    return timm.create_model(name, **dict(TINY, **kwargs))


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_body_has_the_reference_parameter_count() -> None:
    assert _count(UNetBody()) == 5_468_897
    assert paper_facts()['medusa_resnet50']['body_params'] == 5_468_897


def test_medusa_resnet50_matches_the_reference_total() -> None:
    with torch.device('meta'):
        model = timm.create_model('medusa_resnet50')
        resnet = timm.create_model('resnet50', num_classes=0)
    heads = sum(50 * c for c in (64, 256, 512, 1024))  # 7x7x1 weights + bias per output channel
    fc = 2 * 2 * 2048 * 2 + 2  # 2x2x2048 pooled at 480, 2 classes (COVID-negative / positive)
    assert model.head_hidden_size == 8192 and model.num_classes == 2
    assert _count(model) == _count(resnet) + 5_468_897 + heads + fc == 29_086_115
    assert abs(_count(model) / 1e6 - 29.2) / 29.2 < 0.005  # the published 29.2M


def test_fusion_is_x_plus_x_times_a() -> None:
    model = _tiny().eval()
    x = torch.randn(2, 3, 64, 64)
    t = model.trunk
    with torch.no_grad():
        for head in model.heads:  # non-zero biases: the gate is a full affine conv output
            head.conv.bias.normal_()
        attn = model.body(model.body_input(x))

        def gated(k: int, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            a = F.interpolate(attn, size=f.shape[-2:], mode='bilinear', align_corners=False)
            gate = F.conv2d(a, model.heads[k].conv.weight, model.heads[k].conv.bias, padding=3)
            return f + f * gate, gate

        # the trunk's modules called one by one outside a MEDUSA forward are ungated (their hooks stay inert)
        h, g0 = gated(0, t.maxpool(t.act1(t.bn1(t.conv1(x)))))
        h, g1 = gated(1, t.layer1(h))
        h, g2 = gated(2, t.layer2(h))
        h, g3 = gated(3, t.layer3(h))
        want = t.layer4(h)
        torch.testing.assert_close(model.forward_features(x), want)
        out = model.forward_attention(x)
    assert out['names'] == ['maxpool', 'layer1', 'layer2', 'layer3']
    torch.testing.assert_close(out['body'], attn)
    for got, ref in zip(out['gates'], (g0, g1, g2, g3)):
        torch.testing.assert_close(got, ref)
    a = torch.randn(2, 3, 4, 4)
    f = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(gate_fuse(f, a), f + f * a)


def _bilinear_half_pixel(img: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize with half-pixel centres and edge clamping (OpenCV INTER_LINEAR), written out."""
    h, w = img.shape
    out = np.empty((size, size))
    for i in range(size):
        y = min(max((i + 0.5) * h / size - 0.5, 0.0), h - 1)
        y0 = int(np.floor(y))
        y1, fy = min(y0 + 1, h - 1), y - y0
        for j in range(size):
            xx = min(max((j + 0.5) * w / size - 0.5, 0.0), w - 1)
            x0 = int(np.floor(xx))
            x1, fx = min(x0 + 1, w - 1), xx - x0
            top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
            bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
            out[i, j] = top * (1 - fy) + bottom * fy
    return out


def test_body_view_is_grayscale_resize_zscore() -> None:
    model = _tiny().eval()
    mean, std = np.array(model.input_mean), np.array(model.input_std)
    rng = np.random.default_rng(0)
    raw = rng.uniform(0, 1, size=(2, 3, 40, 48))  # an RGB image in [0, 1]
    x = torch.tensor((raw - mean[:, None, None]) / std[:, None, None], dtype=torch.float32)
    view = model.body_input(x)
    assert view.shape == (2, 1, 32, 32)
    for b in range(2):
        gray = 0.299 * raw[b, 0] + 0.587 * raw[b, 1] + 0.114 * raw[b, 2]
        small = _bilinear_half_pixel(gray, 32)
        want = (small - small.mean()) / small.std()
        np.testing.assert_allclose(view[b, 0].numpy(), want, atol=1e-4)
    # the explicit second input gives the same output as the derived view
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x, body_x=view))
    # a gray image (R = G = B): the view does not depend on the input normalisation
    gray = torch.rand(1, 1, 40, 48).expand(1, 3, 40, 48)
    other = MEDUSA(trunk='resnet18', gate_taps=(1,), input_mean=(0, 0, 0), input_std=(1, 1, 1), **TINY_BODY)
    torch.testing.assert_close(other.body_input(gray), model.body_input((gray - 0.5) / 0.25), atol=1e-4, rtol=0)


def test_freeze_body_freezes_exactly_body_and_heads() -> None:
    model = _tiny(freeze_body=True)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    want = {n for n, _ in model.named_parameters() if n.startswith(('body.', 'heads.'))}
    assert frozen == want and len(want) == 2 * 22 + 2 * 4  # 22 body convs, 4 heads
    model.set_body_trainable(True)
    assert all(p.requires_grad for p in model.parameters())


def test_features_only_shapes_and_strides() -> None:
    for name, kwargs in (('medusa_resnet50', TINY), ('medusa_convnext_tiny', dict(TINY_BODY, global_pool='avg'))):
        model = timm.create_model(name, features_only=True, **kwargs).eval()
        assert model.feature_info.reduction() == [4, 8, 16, 32]
        with torch.no_grad():
            feats = model(torch.randn(1, 3, 64, 96))
        for f, ch, red in zip(feats, model.feature_info.channels(), model.feature_info.reduction()):
            assert f.shape == (1, ch, 64 // red, 96 // red), name


def test_a_plain_timm_resnet50_checkpoint_loads_into_the_trunk(tmp_path) -> None:
    torch.manual_seed(1)
    resnet = timm.create_model('resnet50')  # what timm's resnet50.tv_in1k file holds (keys and shapes)
    path = tmp_path / 'resnet50.pth'
    torch.save(resnet.state_dict(), path)
    torch.manual_seed(2)
    body = UNetBody()
    body_path = tmp_path / 'body.pth'
    torch.save({'state_dict': body.state_dict()}, body_path)

    model = timm.create_model(
        'medusa_resnet50', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), body_checkpoint=str(body_path)
    )
    trunk = model.trunk.state_dict()
    for k, v in resnet.state_dict().items():
        if k.startswith('fc.'):  # 1000 ImageNet classes vs our 2: not loaded
            continue
        assert torch.equal(trunk[k], v), k
    assert model.fc.out_features == 2
    for k, v in body.state_dict().items():  # the body checkpoint survives the trunk's load
        assert torch.equal(model.body.state_dict()[k], v), k

    # a body checkpoint that does not fit: one line naming the file
    torch.save(UNetBody(dims=(8, 8, 8, 8, 8)).state_dict(), tmp_path / 'bad.pth')
    with pytest.raises(ValueError, match=r'^body_checkpoint .*bad\.pth: does not fit') as err:
        _tiny(body_checkpoint=str(tmp_path / 'bad.pth'))
    assert '\n' not in str(err.value)


def test_zoo_checkpoint_round_trip(tmp_path) -> None:
    model = _tiny(num_classes=3)
    path = tmp_path / 'medusa.pth'
    torch.save(model.state_dict(), path)
    again = timm.create_model(
        'medusa_resnet50', pretrained=True, pretrained_cfg_overlay=dict(file=str(path), num_classes=3), **TINY
    )
    again.load_state_dict(model.state_dict())  # same keys
    for k, v in model.state_dict().items():
        assert torch.equal(again.state_dict()[k], v), k


def test_bad_inputs_give_one_line() -> None:
    model = _tiny(global_pool='paper', img_size=480).eval()
    assert model.head_hidden_size == 8192
    with torch.no_grad(), pytest.raises(ValueError, match=r"built for img_size=\(480, 480\).*global_pool='avg'") as e:
        model(torch.randn(1, 3, 224, 224))
    assert '\n' not in str(e.value)
    with pytest.raises(ValueError, match=r'expected a \(B, 3, H, W\) image batch, got \(1, 1, 64, 64\)'):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r'body_x must be \(B=1, 1, H, W\)'):
        model(torch.randn(1, 3, 480, 480), body_x=torch.randn(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"smaller than the 'paper' classifier's 7x7 pool"):
        _tiny(global_pool='paper', img_size=128)
    with pytest.raises(ValueError, match=r"gate taps \['layer9'\] are not modules of resnet50"):
        _tiny(gate_taps=('layer9',))


def test_any_timm_backbone_with_stage_index_taps() -> None:
    model = MEDUSA(trunk='resnet18', gate_taps=(1, 2, 3), num_classes=4, **TINY_BODY)
    assert model.gate_modules == ('layer1', 'layer2', 'layer3') and model.gate_channels == (64, 128, 256)
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 4)
    out.sum().backward()
    assert all(h.conv.weight.grad is not None for h in model.heads)


def test_benchmark_suite_writes_csv_and_png(tmp_path) -> None:
    """tools/analysis/benchmark.py medusa on a tiny setting: one row per entry, the published figures on the
    MEDUSA row, and the body counted on its own view."""
    import csv

    from zoo.cli.benchmark import main

    out = tmp_path / 'medusa'
    kwargs = '{"body_size": 32, "body_dims": [4, 4, 4, 4, 8], "body_decoder_dims": [8, 8, 4, 4], "global_pool": "avg"}'
    main(
        [
            'medusa',
            '--img-size',
            '64',
            '--batch-size',
            '1',
            '--rounds',
            '1',
            '--model-kwargs',
            kwargs,
            '--out',
            str(out),
        ]
    )
    rows = list(csv.DictReader(open(f'{out}.csv')))
    assert [r['model'] for r in rows] == ['medusa_resnet50', 'resnet50', 'body']
    assert rows[0]['paper_params_m'] == '29.2' and rows[2]['input'] == '32x32x1'
    assert float(rows[0]['params_m']) > float(rows[1]['params_m']) and (tmp_path / 'medusa.png').stat().st_size > 0


def test_channels_last_trunk_is_gated_in_its_layout() -> None:
    """medusa_mambaout_femto: timm's MambaOut stages are NHWC; the gate is the same conv output, permuted."""
    torch.manual_seed(0)
    model = timm.create_model('medusa_mambaout_femto', **TINY_BODY).eval()
    assert model.trunk_nhwc and model.gate_channels == (48, 96, 192)
    x = torch.randn(2, 3, 64, 64)
    t = model.trunk
    with torch.no_grad():
        attn = model.body(model.body_input(x))
        h = t.stem(x)
        for k in range(3):
            h = t.stages[k](h)
            a = F.interpolate(attn, size=h.shape[1:3], mode='bilinear', align_corners=False)
            gate = F.conv2d(a, model.heads[k].conv.weight, model.heads[k].conv.bias, padding=3).permute(0, 2, 3, 1)
            h = h + h * gate
        torch.testing.assert_close(model.forward_features(x), t.stages[3](h))
        feats = model.forward_intermediates(x, intermediates_only=True)  # NCHW, as timm's features_only
    assert [f.shape[1] for f in feats] == [48, 96, 192, 288]
    with pytest.raises(ValueError, match="global_pool='paper' needs an NCHW trunk"):
        timm.create_model('medusa_mambaout_femto', global_pool='paper', **TINY_BODY)


def _write_keras_body(path, body: UNetBody) -> None:
    """``body`` as Keras' ``model.save`` writes build_UNet2D_4L (sem/1 ... sem/34; pooling, upsampling and
    concatenation layers hold no weights), kernels in Keras' (kh, kw, cin, cout) layout."""
    import h5py

    from zoo.models.medusa import keras_conv_order

    convs = iter(keras_conv_order(body))
    # layer kinds of build_UNet2D_4L in order: c = conv, p = pool, u = upsampling, m = concatenate
    kinds = 'ccpccpccpccpc' + 'uccmc' * 4 + 'c'
    with h5py.File(path, 'w') as f:
        root = f.create_group('model_weights')
        names = [f'sem/{i + 1}' for i in range(len(kinds))]
        root.attrs['layer_names'] = [n.encode() for n in names]
        for name, kind in zip(names, kinds):
            g = root.create_group(name)
            if kind != 'c':
                g.attrs['weight_names'] = []
                continue
            conv = next(convs)
            g.attrs['weight_names'] = [f'{name}/kernel:0'.encode(), f'{name}/bias:0'.encode()]
            g[f'{name}/kernel:0'] = conv.weight.detach().permute(2, 3, 1, 0).numpy()
            g[f'{name}/bias:0'] = conv.bias.detach().numpy()


def test_keras_body_weights_convert(tmp_path) -> None:
    torch.manual_seed(3)
    keras_body = UNetBody(dims=(4, 4, 4, 4, 8), decoder_dims=(8, 8, 4, 4))
    _write_keras_body(tmp_path / 'trained_model.hdf5', keras_body)
    model = _tiny(body_checkpoint=str(tmp_path / 'trained_model.hdf5'))
    for k, v in keras_body.state_dict().items():
        assert torch.equal(model.body.state_dict()[k], v), k
    x = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(model.body(x), keras_body(x))
    with pytest.raises(ValueError, match=r'trained_model\.hdf5: does not fit the MEDUSA body \(conv 1 of 22'):
        MEDUSA(trunk='resnet18', gate_taps=(1,), body_checkpoint=str(tmp_path / 'trained_model.hdf5'))  # full body
