"""The distillation losses against explicit computations: STCA-FF against a float64 softmax attention written
here, the ACAM-KD masks, masked losses and Dice diversity against hand values, and each baseline on a tiny
hand case (ACAM-KD: arXiv 2503.06307; FGD: arXiv 2111.11837; MasKD: arXiv 2205.14589)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn as nn

from zoo.distill.losses import (
    ACAMKDLoss,
    ASCMasks,
    FeatureMSELoss,
    FocalGlobalLoss,
    LogitKDLoss,
    MasKDLoss,
    STCAFusion,
    dice_diversity,
    focal_attention,
    foreground_masks,
    mask_contrast,
    mask_decorrelation,
    mask_spatial_spread,
    masked_feature_losses,
)
from zoo.hub import CheckpointError


def _explicit_fusion(fusion: STCAFusion, f_t: torch.Tensor, f_s: torch.Tensor) -> torch.Tensor:
    """softmax(Q^T K / sqrt(C_q)) V^T with every matrix formed, in float64."""
    wq, wk, wv = (c.weight[:, :, 0, 0].double() for c in (fusion.q, fusion.k, fusion.v))
    B, C, H, W = f_t.shape
    out = []
    for b in range(B):
        t = f_t[b].double().reshape(C, -1)  # (C, N_t)
        s = f_s[b].double().reshape(C, -1)  # (C, N_s)
        q, k, v = wq @ t, wk @ s, wv @ s  # (C_q, N_t), (C_q, N_s), (C, N_s)
        logits = q.T @ k / math.sqrt(wq.shape[0])  # (N_t, N_s)
        attn = torch.exp(logits - logits.max(1, keepdim=True).values)
        attn = attn / attn.sum(1, keepdim=True)
        out.append((v @ attn.T).reshape(C, H, W))
    return torch.stack(out)


@pytest.mark.parametrize('t_hw, s_hw', [((3, 5), (3, 5)), ((2, 7), (4, 3))])
def test_stca_fusion_equals_explicit_float64_attention(t_hw, s_hw) -> None:
    torch.manual_seed(0)
    fusion = STCAFusion(8).double()
    assert fusion.qk_channels == 4  # C_q = C / 2
    f_t = torch.randn(2, 8, *t_hw, dtype=torch.float64)
    f_s = torch.randn(2, 8, *s_hw, dtype=torch.float64)
    out = fusion(f_t, f_s)
    assert out.shape == (2, 8, *t_hw)  # on the teacher's (query) grid
    torch.testing.assert_close(out, _explicit_fusion(fusion, f_t, f_s), rtol=1e-10, atol=1e-10)
    fusion.pad_qk = False  # the zero channels that let a flash kernel run change nothing
    torch.testing.assert_close(fusion(f_t, f_s), out, rtol=1e-12, atol=1e-12)
    # the visualisation rows are the same attention
    rows = torch.tensor([0, t_hw[0] * t_hw[1] - 1])
    wq, wk = fusion.q.weight[:, :, 0, 0], fusion.k.weight[:, :, 0, 0]
    logits = (wq @ f_t[0].reshape(8, -1)).T @ (wk @ f_s[0].reshape(8, -1)) / 2.0
    torch.testing.assert_close(fusion.attention_rows(f_t, f_s, rows)[0], logits.softmax(-1)[rows])


def test_stca_fusion_queries_come_from_the_teacher() -> None:
    """Swapping the roles changes the result; the student reaches the output only through K and V."""
    torch.manual_seed(1)
    fusion = STCAFusion(4).double()
    f_t, f_s = torch.randn(1, 4, 2, 3, dtype=torch.float64), torch.randn(1, 4, 2, 3, dtype=torch.float64)
    assert not torch.allclose(fusion(f_t, f_s), fusion(f_s, f_t))
    f_s.requires_grad_(True)
    fusion(f_t, f_s).sum().backward()
    assert f_s.grad is not None and f_s.grad.abs().sum() > 0
    det = STCAFusion(4, detach_student=True).double()
    f_s2 = f_s.detach().clone().requires_grad_(True)
    assert not det(f_t, f_s2).requires_grad or f_s2.grad is None


def test_ascm_masks_by_hand() -> None:
    masks = ASCMasks(channels=2, num_masks=2)
    with torch.no_grad():
        masks.spatial_tokens.copy_(torch.tensor([[1.0, 0.0], [0.5, -1.0]]))
        masks.channel_tokens.copy_(torch.tensor([[2.0, 0.0], [-1.0, 1.0]]))
    fused = torch.tensor([[[[1.0, 3.0]], [[2.0, -2.0]]]])  # (B=1, C=2, H=1, W=2): z = [[1, 3], [2, -2]]
    spatial, channel = masks(fused)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    # m_s z: row 0 = [1, 3]; row 1 = 0.5 * [1, 3] - [2, -2] = [-1.5, 3.5]
    expected_s = [[sig(1), sig(3)], [sig(-1.5), sig(3.5)]]
    # v = GAP = [2, 0]; element-wise m_c * v: [[4, 0], [-2, 0]]
    expected_c = [[sig(4), sig(0)], [sig(-2), sig(0)]]
    torch.testing.assert_close(spatial[0], torch.tensor(expected_s))
    torch.testing.assert_close(channel[0], torch.tensor(expected_c))
    outer = ASCMasks(channels=2, num_masks=2, channel_mask='outer')
    assert outer.channel_tokens.shape == (2, 1)
    with torch.no_grad():
        outer.channel_tokens.copy_(torch.tensor([[1.0], [-0.5]]))
    _, ch = outer(fused)
    torch.testing.assert_close(ch[0], torch.tensor([[sig(2), sig(0)], [sig(-1), sig(0)]]))


def _hand_case() -> tuple[torch.Tensor, ...]:
    # C = 2 channels, H x W = 1 x 2 positions; D = F_T - F_S = [[1, 0], [2, 3]] (channel, position)
    f_t = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    f_s = torch.tensor([[[[0.0, 2.0]], [[1.0, 1.0]]]])
    spatial = torch.tensor([[[0.5, 1.0], [1.0, 0.0]]])  # (B, M=2, N=2)
    channel = torch.tensor([[[1.0, 0.5], [0.0, 1.0]]])  # (B, M=2, C=2)
    return f_t, f_s, spatial, channel


def test_masked_feature_losses_by_hand() -> None:
    f_t, f_s, spatial, channel = _hand_case()
    # D^2 = [[1, 0], [4, 9]]: per position (sum over channels) [5, 9], per channel (sum over positions) [1, 13]
    ls, lc = masked_feature_losses(f_t, f_s, spatial, channel)
    # L^s: mask 0: (0.25 * 5 + 1 * 9) / C = 5.125; mask 1: (1 * 5) / 2 = 2.5; mean 3.8125
    # L^c: mask 0: (1 * 1 + 0.25 * 13) / HW = 2.125; mask 1: 13 / 2 = 6.5; mean 4.3125
    assert ls.item() == pytest.approx(3.8125)
    assert lc.item() == pytest.approx(4.3125)
    ls, lc = masked_feature_losses(f_t, f_s, spatial, channel, normalize='mask_mass')
    assert ls.item() == pytest.approx((5.125 / 1.5 + 2.5 / 1.0) / 2)
    assert lc.item() == pytest.approx((2.125 / 1.5 + 6.5 / 1.0) / 2)
    with pytest.raises(ValueError, match='normalize'):
        masked_feature_losses(f_t, f_s, spatial, channel, normalize='other')


def test_dice_diversity_by_hand() -> None:
    masks = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]])  # three masks over two positions
    # <m0, m1> = 1, <m0, m2> = 0, <m1, m2> = 1; |m|^2 = 1, 2, 1
    # pairwise Dice: d01 = 2 / 3, d02 = 0, d12 = 2 / 3; mean over the 6 ordered pairs = 4 / 9
    assert dice_diversity(masks).item() == pytest.approx(4 / 9)
    # global: 2 * (2 * (1 + 0 + 1)) / (2 * (1 + 2 + 1)) = 1
    assert dice_diversity(masks, mode='global').item() == pytest.approx(1.0)
    assert dice_diversity(masks[:, :1]).item() == 0.0  # one mask: no pairs
    assert dice_diversity(torch.cat([masks, masks])).item() == pytest.approx(4 / 9)  # a batch averages


def test_acam_kd_loss_parts_and_gradients() -> None:
    torch.manual_seed(0)
    loss = ACAMKDLoss(channels=8, num_masks=3, mask_grad='joint')
    f_t = torch.randn(2, 8, 4, 5)
    f_s = torch.randn(2, 8, 4, 5, requires_grad=True)
    out = loss(f_s, f_t)
    assert set(out) == {'spatial', 'channel', 'div', 'stat_spatial_mass', 'stat_channel_mass', 'stat_spatial_std'}
    stats = {k: out.pop(k) for k in ('stat_spatial_mass', 'stat_channel_mass', 'stat_spatial_std')}
    spatial, channel = loss.last_masks
    assert spatial.shape == (2, 3, 20) and channel.shape == (2, 3, 8)
    ls, lc = masked_feature_losses(f_t, f_s.detach(), spatial, channel)
    div = sum(dice_diversity(m) + mask_decorrelation(m) for m in (spatial, channel))
    torch.testing.assert_close(out['spatial'].detach(), ls)
    torch.testing.assert_close(out['channel'].detach(), lc)
    torch.testing.assert_close(out['div'].detach(), div)
    torch.testing.assert_close(stats['stat_spatial_mass'], spatial.mean())
    torch.testing.assert_close(stats['stat_spatial_std'], spatial.std(-1, unbiased=False).mean())
    sum(out.values()).backward()
    assert f_s.grad is not None
    for p in loss.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    # 'diversity_only': the distances do not reach the fusion or the masks
    loss2 = ACAMKDLoss(channels=8, num_masks=3, mask_grad='diversity_only')
    out2 = loss2(f_s, f_t)
    (out2['spatial'] + out2['channel']).backward()  # (the stats are detached)
    assert all(p.grad is None for p in loss2.parameters())


def test_acam_kd_adversarial_masks_ascend_the_contrast() -> None:
    """The default 'adversarial' mask_grad: the logged values are the paper's (the ascent term is 0), the
    student gets the distances' gradient only, and the mask tokens move against the contrast's gradient."""
    torch.manual_seed(0)
    loss = ACAMKDLoss(channels=8, num_masks=3)
    assert loss.mask_grad == 'adversarial' and loss.masks.standardize
    f_t = torch.randn(2, 8, 4, 5)
    f_s = torch.randn(2, 8, 4, 5, requires_grad=True)
    out = loss(f_s, f_t)
    spatial, channel = loss.last_masks
    ls, lc = masked_feature_losses(f_t, f_s.detach(), spatial, channel)
    torch.testing.assert_close(out['spatial'].detach(), ls)
    d2 = (f_t - f_s.detach()).pow(2).flatten(2)
    g = mask_contrast(spatial, d2.sum(1)) + mask_contrast(channel, d2.sum(2))
    torch.testing.assert_close(out['stat_contrast'], g)
    (out['spatial'] + out['channel']).backward()
    # the student's gradient is that of the distances with the masks as constants
    f_s2 = f_s.detach().clone().requires_grad_(True)
    sum(masked_feature_losses(f_t, f_s2, spatial, channel)).backward()
    torch.testing.assert_close(f_s.grad, f_s2.grad)
    # the tokens receive minus the contrast's gradient
    tok = loss.masks.spatial_tokens
    grad = tok.grad.clone()
    tok.grad = None
    fused = loss.fusion(f_t, f_s.detach())
    sp, ch = loss.masks(fused)
    (-(mask_contrast(sp, d2.sum(1)) + mask_contrast(ch, d2.sum(2)))).backward()
    torch.testing.assert_close(grad, tok.grad)


def test_mask_contrast_and_spread_by_hand() -> None:
    dist = torch.tensor([[1.0, 3.0]])  # mean 2 -> d = [0.5, 1.5]
    masks = torch.tensor([[[1.0, 1.0], [0.0, 1.0], [0.5, 0.5]]])
    # per mask: (0.5 + 1.5) / 2 = 1; 1.5 / 1 = 1.5; 0.25 * 2 / 1 = 0.5; mean 1
    assert mask_contrast(masks, dist).item() == pytest.approx(1.0)
    # spreads over the two positions: 0, 0.5, 0 -> mean 1 / 6
    assert mask_spatial_spread(masks).item() == pytest.approx(1 / 6)


def _train_tiny_acam(seed: int, **kw) -> torch.Tensor:
    """150 Adam steps (lr 2e-3, batch 8) of a 1x1-conv student towards a fixed two-conv teacher on 8x8 maps
    of 64 random images, ACAM-KD with 4 masks; returns the spatial masks of all 64 images ``(64, 4, 64)``."""
    torch.manual_seed(seed)
    x = torch.randn(64, 3, 8, 8)
    teacher = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1))
    teacher.requires_grad_(False)
    student = nn.Conv2d(3, 16, 1)
    loss = ACAMKDLoss(16, num_masks=4, **kw)
    opt = torch.optim.Adam([*student.parameters(), *loss.parameters()], lr=2e-3)
    for i in range(150):
        xb = x[(i * 8) % 64 : (i * 8) % 64 + 8]
        out = loss(student(xb), teacher(xb))
        opt.zero_grad()
        sum(v for k, v in out.items() if not k.startswith('stat_')).backward()
        opt.step()
    with torch.no_grad():
        loss(student(x), teacher(x))
    return loss.last_masks[0]


@pytest.mark.parametrize('seed', [0, 1])
def test_acam_kd_masks_neither_saturate_nor_stay_constant(seed: int) -> None:
    """After a short training on a tiny case, every spatial mask varies over the image and the masks are not all the
    same. Measured (seeds 0 / 1): each mask's spatial std 0.37-0.38 with the defaults (0.39-0.40 with
    mask_norm='standardize', diversity='dice'); the earlier behaviour (mask_norm='none', mask_grad='diversity_only')
    ends with masks at about 0 or 1 everywhere, std 0.002-0.032, and 'joint' at 0 everywhere."""
    masks = _train_tiny_acam(seed)
    std = masks.std(-1, unbiased=False).mean(0)  # (M,) each mask's spread over the 64 positions
    assert std.min() > 0.2, std
    mean = masks.mean((0, 2))
    assert ((mean > 0.05) & (mean < 0.95)).all(), mean  # no mask is switched off or on everywhere
    # the masks are not one map: some pair differs by more than 0.3 per position on average
    diff = (masks.unsqueeze(1) - masks.unsqueeze(2)).abs().mean((0, 3))
    assert diff.max() > 0.3, diff


def _centred_cosines(masks: torch.Tensor) -> torch.Tensor:
    """``(B, M, N)`` -> ``(M, M)``: the batch mean of the cosine between mean-removed masks, written here."""
    c = masks - masks.mean(-1, keepdim=True)
    c = c / c.norm(dim=-1, keepdim=True).clamp(min=1e-12)
    return torch.einsum('bin,bjn->ij', c, c) / masks.shape[0]


@pytest.mark.parametrize('seed', [0, 1])
def test_acam_kd_masks_end_diverse(seed: int) -> None:
    """After the tiny training, no two spatial masks are one pattern or its complement. Measured (seeds 0 / 1 / 2):
    the mean |cosine| between centred masks is 0.29 / 0.29 / 0.29 with the defaults, 1.000 on all three with the
    previous defaults (mask_norm='standardize', diversity='dice'); the largest Dice between a mask and another's
    complement 0.77 / 0.76 / 0.80 against 1.000."""
    masks = _train_tiny_acam(seed)
    cos = _centred_cosines(masks)
    off = ~torch.eye(cos.shape[0], dtype=torch.bool)
    assert cos.abs()[off].mean() < 0.5, cos
    assert cos.abs()[off].max() < 0.9, cos  # no pair is (nearly) equal or complementary
    inv = 1 - masks
    dice_inv = (
        2
        * torch.einsum('bin,bjn->bij', masks, inv)
        / (masks.pow(2).sum(-1).unsqueeze(2) + inv.pow(2).sum(-1).unsqueeze(1))
    )
    assert dice_inv.mean(0)[off].max() < 0.9


def test_mask_decorrelation_by_hand() -> None:
    """Equal and complementary masks score 1, unrelated halves 0: on 4 positions, p = [1, 1, 0, 0],
    q = [1, 0, 1, 0]; centred, p and q are orthogonal, p and 1 - p opposite."""
    p = torch.tensor([1.0, 1.0, 0.0, 0.0])
    q = torch.tensor([1.0, 0.0, 1.0, 0.0])
    assert mask_decorrelation(torch.stack([p, 1 - p])[None]).item() == pytest.approx(1.0, abs=1e-5)
    assert mask_decorrelation(torch.stack([p, q])[None]).item() == pytest.approx(0.0, abs=1e-6)
    # three masks p, p, q: pairs (p, p) twice (ordered) at 1, the four with q at 0
    assert mask_decorrelation(torch.stack([p, p, q])[None]).item() == pytest.approx(2 / 6, abs=1e-5)
    # pairwise Dice cannot tell {p, p, 1-p, 1-p} from {p, 1-p, q, 1-q}: both 1/3
    same = torch.stack([p, p, 1 - p, 1 - p])[None]
    diverse = torch.stack([p, 1 - p, q, 1 - q])[None]
    assert dice_diversity(same).item() == pytest.approx(1 / 3) and dice_diversity(diverse).item() == pytest.approx(
        1 / 3
    )
    assert mask_decorrelation(same).item() == pytest.approx(1.0, abs=1e-5)
    assert mask_decorrelation(diverse).item() == pytest.approx(1 / 3, abs=1e-5)


def test_ascm_standardised_logits_by_hand() -> None:
    """logit_temp: each mask's logits to zero mean and unit variance over the positions, times the temperature.
    One channel, two positions [0, 2] (standardised: [-1, 1]), token 5: logits 5 [-1, 1] -> standardised
    [-1, 1] -> sigmoid(3 [-1, 1])."""
    masks = ASCMasks(1, 1, standardize=True, logit_temp=3.0)
    with torch.no_grad():
        masks.spatial_tokens.fill_(5.0)
    spatial, _ = masks(torch.tensor([[[[0.0, 2.0]]]]))
    torch.testing.assert_close(spatial.flatten(), torch.sigmoid(torch.tensor([-3.0, 3.0])), atol=1e-4, rtol=0)


def test_focal_global_attention_and_masks_by_hand() -> None:
    x = torch.zeros(1, 2, 1, 2)
    x[0, :, 0, 1] = torch.tensor([1.0, 3.0])  # |x| mean over channels: [0, 2]; over positions: [0.5, 1.5]
    spatial, channel = focal_attention(x, temp=1.0)
    e = math.exp(2.0)
    torch.testing.assert_close(spatial.flatten(), torch.tensor([2 / (1 + e), 2 * e / (1 + e)]))
    e1 = math.exp(1.0)  # channel means differ by 1
    torch.testing.assert_close(channel.flatten(), torch.tensor([2 / (1 + e1), 2 * e1 / (1 + e1)]))
    # a 4 x 4 map of an 8 x 8 image; box (0, 0, 4, 4) covers rows 0..2 and columns 0..2 (ceil(2) inclusive)
    fg, bg = foreground_masks([torch.tensor([[0.0, 0.0, 4.0, 4.0]])], [(8, 8)], (4, 4))
    expected_fg = torch.zeros(4, 4)
    expected_fg[:3, :3] = 1 / 9
    torch.testing.assert_close(fg[0], expected_fg)
    torch.testing.assert_close(bg[0], (expected_fg == 0).float() / 7)
    # rows are the y axis: a wide box in the top row
    fg, _ = foreground_masks([torch.tensor([[0.0, 0.0, 8.0, 1.0]])], [(8, 8)], (4, 4))
    assert fg[0, 0].gt(0).all() and fg[0, 2:].eq(0).all()


def test_focal_global_loss_by_hand() -> None:
    """Constant maps: teacher attention is 1 everywhere, so fg = C * sum(M_fg) = C, bg = C, attention 0,
    and the zero-initialised global transform leaves sum((S - T)^2) = C * H * W."""
    loss = FocalGlobalLoss(channels=2, alpha_fgd=1.0, beta_fgd=1.0, gamma_fgd=1.0, lambda_fgd=1.0)
    t = torch.ones(1, 2, 4, 4)
    s = 2 * torch.ones(1, 2, 4, 4)
    out = loss(s, t, [torch.tensor([[0.0, 0.0, 4.0, 4.0]])], [(8, 8)])
    assert out['fg'].item() == pytest.approx(2.0)
    assert out['bg'].item() == pytest.approx(2.0)
    assert out['attn'].item() == pytest.approx(0.0, abs=1e-6)
    assert out['global'].item() == pytest.approx(32.0)


def test_maskd_loss_by_hand() -> None:
    """Zero tokens give masks of 0.5 everywhere: sum_p 0.25 D^2 / (0.5 N) = 0.5 mean(D^2)."""
    loss = MasKDLoss(channels=2, num_masks=3)
    with torch.no_grad():
        loss.tokens.zero_()
    t = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])
    s = torch.tensor([[[[0.0, 2.0]], [[1.0, 1.0]]]])
    out = loss(s, t)
    assert out['feat'].item() == pytest.approx(0.5 * (1 + 0 + 4 + 9) / 4)
    assert out['div'].item() == pytest.approx(1.0)  # identical masks overlap fully


def test_maskd_frozen_tokens_from_a_file(tmp_path) -> None:
    path = tmp_path / 'tokens.pth'
    torch.save({'state_dict': {'mask_modules.0.mask_token': torch.full((3, 2), 0.25)}}, path)
    loss = MasKDLoss(channels=2, num_masks=3, tokens=str(path))
    assert not loss.tokens.requires_grad and loss.tokens.eq(0.25).all()
    with pytest.raises(CheckpointError, match='weighting head'):  # weight_mask needs the head from the same file
        MasKDLoss(channels=2, num_masks=3, tokens=str(path), weight_mask=True)
    out = loss(torch.zeros(1, 2, 1, 2), torch.ones(1, 2, 1, 2))
    assert set(out) == {'feat'}


def test_maskd_weighted_and_customised_masks_by_hand(tmp_path) -> None:
    """MasKD's distillation stage as in hunto/MasKD (mmrazor/mmrazor/models/losses/maskd.py, MasKDLoss.forward):
    per-mask softmax weights from the stage-1 head, and after the warmup the teacher's masks times the student's.
    One channel, two positions, two masks. Tokens [[a], [-a]] with a = ln 3 on the teacher map t = [1, 1]: masks
    sigmoid(ln 3) = 3/4 and 1/4 at both positions. D = t - s = [1, 2], so for a mask m constant over the two
    positions, sum_p (m D_p)^2 / sum_p m = m^2 * 5 / (2 m) = 2.5 m. The head's last conv gives logits [0, ln 3]
    (zero weights, biases [0, ln 3]): weights [1/4, 3/4]."""
    a = math.log(3.0)
    head = {
        'prob.0.weight': torch.zeros(1, 1, 3, 3),
        'prob.0.bias': torch.zeros(1),
        'prob.2.weight': torch.zeros(2, 1, 1, 1),
        'prob.2.bias': torch.tensor([0.0, a]),
    }
    state = {f'mask_modules.1.{k}': v for k, v in head.items()}
    state['mask_modules.1.mask_token'] = torch.tensor([[a], [-a]])
    state['mask_modules.0.mask_token'] = torch.zeros(2, 1)  # another level, not taken
    path = tmp_path / 'stage1.pth'
    torch.save({'state_dict': state}, path)
    loss = MasKDLoss(channels=1, num_masks=2, tokens=str(path), level=1, weight_mask=True, custom_mask_warmup=1)
    assert not any(p.requires_grad for p in loss.parameters())  # stage-1 masks and head stay fixed
    t = torch.ones(1, 1, 1, 2)
    s = torch.tensor([[[[0.0, -1.0]]]])
    # step 0: teacher masks 3/4 and 1/4 -> 2.5 * [3/4, 1/4], weighted [1/4, 3/4]
    expected = 0.25 * 2.5 * 0.75 + 0.75 * 2.5 * 0.25
    assert loss(s, t)['feat'].item() == pytest.approx(expected)

    # step 1 (warmup over): the student's masks multiply in. s = [0, -1]: sigmoid(a s) = [1/2, 1/4] and
    # sigmoid(-a s) = [1/2, 3/4]; combined masks m1 = 3/4 [1/2, 1/4], m2 = 1/4 [1/2, 3/4]
    def term(m: list[float]) -> float:
        return sum((mi * d) ** 2 for mi, d in zip(m, (1.0, 2.0))) / sum(m)

    expected = 0.25 * term([3 / 8, 3 / 16]) + 0.75 * term([1 / 8, 3 / 16])
    assert loss(s, t)['feat'].item() == pytest.approx(expected)
    loss.eval()  # no customisation counting outside training
    assert int(loss.calls) == 2


def test_maskd_segmentation_mass_eps_by_hand() -> None:
    """MasKD's segmentation loss adds 1e-5 to the mask mass (hunto/MasKD, segmentation/losses/maskd.py)."""
    loss = MasKDLoss(channels=1, num_masks=1, mass_eps=0.5)
    with torch.no_grad():
        loss.tokens.zero_()  # masks 1/2 at both positions: sum_p (D/2)^2 / (1 + 0.5) with D = [1, 1]
    out = loss(torch.zeros(1, 1, 1, 2), torch.ones(1, 1, 1, 2))
    assert out['feat'].item() == pytest.approx(0.5 / 1.5)


def test_focal_global_loss_overlapping_boxes_by_hand() -> None:
    """FGD's focal term on a 2 x 2 map (yzd-v/FGD, mmdet/distillation/losses/fgd.py, FeatureLoss.forward and
    get_fea_loss), written out: two equal channels, teacher |T| = [[2, 0], [0, 0]] so that, at temperature 1,
    the spatial attention is 4 softmax([2, 0, 0, 0]) and the channel attention is 1 (summed: twice one channel).
    Two boxes on an 8 x 8 image: (0, 0, 8, 8) spans rows and columns floor(0)..ceil(2) = 0..2 (inclusive), 9 cells
    of which 4 lie on the map, weight 1/9 (the area before clipping); (4, 4, 8, 8) spans 1..2, 4 cells, weight 1/4,
    on the map only cell (1, 1), where the larger weight wins. No background is left."""
    loss = FocalGlobalLoss(channels=2, temp=1.0, alpha_fgd=1.0, beta_fgd=1.0, gamma_fgd=0.0, lambda_fgd=0.0)
    t = torch.tensor([[[[2.0, 0.0], [0.0, 0.0]]]]).expand(1, 2, 2, 2)
    s = torch.tensor([[[[1.0, 1.0], [0.0, -2.0]]]]).expand(1, 2, 2, 2)
    boxes = [torch.tensor([[0.0, 0.0, 8.0, 8.0], [4.0, 4.0, 8.0, 8.0]])]
    out = loss(s, t, boxes, [(8, 8)])
    e2 = math.exp(2.0)
    att = [4 * e2 / (e2 + 3), 4 / (e2 + 3), 4 / (e2 + 3), 4 / (e2 + 3)]
    d2 = [1.0, 1.0, 0.0, 4.0]
    fg = [1 / 9, 1 / 9, 1 / 9, 1 / 4]
    assert out['fg'].item() == pytest.approx(2 * sum(a * d * f for a, d, f in zip(att, d2, fg)))
    assert out['bg'].item() == 0.0


def test_fgd_and_maskd_configs_use_the_authors_settings() -> None:
    """The per-detector settings of yzd-v/FGD (configs/distillers/fgd/*) and hunto/MasKD
    (mmrazor/configs/distill/maskd/*), as read from those files."""
    from conftest import ROOT
    from mmengine.config import Config

    coco = ROOT / 'configs/distill/coco'
    fgd = {
        'fgd_retinanet_r101-r50_fpn_2x_coco.py': ((0.001, 0.0005, 0.0005, 0.000005), 5),
        'fgd_faster-rcnn_r101-r50_fpn_2x_coco.py': ((0.00005, 0.000025, 0.00005, 0.0000005), 4),
        'fgd_reppoints-moment_r101-r50_fpn-gn_head-gn_2x_coco.py': ((0.0016, 0.0008, 0.0008, 0.000008), 5),
    }
    for name, (weights, levels) in fgd.items():
        losses = Config.fromfile(str(coco / name)).model.distiller.distill_losses
        assert len(losses) == levels, name
        for cfg in losses.values():
            got = (cfg.alpha_fgd, cfg.beta_fgd, cfg.gamma_fgd, cfg.lambda_fgd)
            assert got == weights and cfg.temp == 0.5, (name, got)
    maskd = {
        'maskd_retinanet_r101-r50_fpn_2x_coco.py': (7.0, 7000, 0.02),
        'maskd_faster-rcnn_r101-r50_fpn_2x_coco.py': (1.0, 7330, 0.02),
    }
    for name, (weight, warmup, lr) in maskd.items():
        cfg = Config.fromfile(str(coco / name))
        losses = cfg.model.distiller.distill_losses
        assert len(losses) == 5 and cfg.optim_wrapper.optimizer.lr == lr
        for i, loss in enumerate(losses.values()):
            assert (loss.loss_weight, loss.custom_mask_warmup, loss.weight_mask, loss.level) == (
                weight,
                warmup,
                True,
                i,
            )


def test_feature_mse_and_logit_kd_by_hand() -> None:
    assert FeatureMSELoss(loss_weight=2.0)(torch.zeros(1, 1, 1, 2), torch.tensor([[[[1.0, 3.0]]]])).item() == 10.0
    s = torch.zeros(1, 2)
    t = torch.tensor([[math.log(3.0), 0.0]])  # p_T = [0.75, 0.25], p_S = [0.5, 0.5]
    kl = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert LogitKDLoss()(s, t).item() == pytest.approx(kl)
    # tau = 2: p_T = softmax([ln3 / 2, 0]) = [sqrt3, 1] / (sqrt3 + 1); times tau^2
    r = math.sqrt(3.0)
    pt = [r / (r + 1), 1 / (r + 1)]
    kl2 = sum(p * math.log(p / 0.5) for p in pt)
    assert LogitKDLoss(tau=2.0)(s, t).item() == pytest.approx(4 * kl2)
    # segmentation: the same per pixel, mean over pixels
    s_seg = torch.zeros(1, 2, 2, 3)
    t_seg = t.view(1, 2, 1, 1).expand(1, 2, 2, 3)
    assert LogitKDLoss()(s_seg, t_seg).item() == pytest.approx(kl)


def test_stca_fusion_runs_on_a_flash_kernel() -> None:
    """With only the flash backend allowed, the fusion (forward and backward) still runs: Q / K / V meet the
    fused kernels' conditions (one head width after the zero padding, unit channel stride), so the HW x HW
    matrix is never formed. Without the padding the call has no kernel."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    fusion = STCAFusion(16)
    f_t, f_s = torch.randn(1, 16, 6, 7), torch.randn(1, 16, 6, 7, requires_grad=True)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        fusion(f_t, f_s).sum().backward()
        fusion.pad_qk = False
        with warnings.catch_warnings(record=True) as caught, pytest.raises(RuntimeError):
            warnings.simplefilter('always')
            fusion(f_t, f_s)
    assert f_s.grad is not None
    # PyTorch says why the flash kernel refused the unpadded call: q / k (C_q = 8) and v (16) differ in width
    assert any('same last dimension' in str(w.message) for w in caught), [str(w.message) for w in caught]
