"""DCAL (arXiv:2205.02151): rollout, GLCA, PWCA, the uncertainty-weighted loss and the timm models.

Sizes are tiny except where the paper's model is the point (parameter overhead on the meta device, loading
timm DeiT-T weights into ``dcal_deit_tiny_patch16_448``).
"""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import timm
import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block
from torch.utils.flop_counter import FlopCounterMode

import zoo  # noqa: F401  (registers the models)
from zoo.layers import GLCABlock, block_forward, glca_forward, rollout_cls_row, select_local_queries
from zoo.models import list_zoo_models, paper_facts
from zoo.models.dcal import DCALLoss, batch_hard_triplet_loss, sample_partners, wrap_dcal

TINY = dict(img_size=64, patch_size=16, embed_dim=32, depth=3, num_heads=2, num_classes=5)


def _tiny(**kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model('dcal_deit_tiny_patch16_448', **{**TINY, **kwargs}).eval()


def _stochastic(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g).mul(3).softmax(dim=-1)


# ---------------------------------------------------------------------------- rollout
def test_rollout_cls_row_equals_explicit_matrix_chain() -> None:
    B, H, N, L = 2, 3, 9, 4
    maps = [_stochastic(B, H, N, N, seed=s) for s in range(L)]
    eye = torch.eye(N)
    chain = eye.expand(B, N, N)
    for s in maps:  # Ŝ_L = S̄_L ... S̄_1, written out as N x N products
        chain = (0.5 * s.mean(1) + 0.5 * eye) @ chain
    got = rollout_cls_row(maps)
    assert torch.allclose(got, chain[:, 0], atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(B), atol=1e-6)
    assert torch.allclose(rollout_cls_row(maps, index=4), chain[:, 4], atol=1e-6)
    # a different residual weight is a different chain
    chain3 = eye.expand(B, N, N)
    for s in maps:
        chain3 = (0.7 * s.mean(1) + 0.3 * eye) @ chain3
    assert torch.allclose(rollout_cls_row(maps, residual=0.3), chain3[:, 0], atol=1e-6)


def test_select_local_queries_keeps_cls_and_top_patches_in_token_order() -> None:
    scores = torch.tensor([[9.0, 0.1, 0.5, 0.3, 0.9, 0.2, 0.8, 0.05, 0.6, 0.7, 0.4]])  # cls + 10 patches
    idx = select_local_queries(scores, ratio=0.3)
    assert idx.tolist() == [[0, 4, 6, 9]]  # R = 3 of 10 patches, ascending
    assert select_local_queries(scores, ratio=1.0).tolist() == [list(range(11))]
    with pytest.raises(ValueError, match='ratio'):
        select_local_queries(scores, ratio=0.0)


# ---------------------------------------------------------------------------- GLCA
def _block(dim: int = 32, heads: int = 4, **kwargs) -> Block:
    torch.manual_seed(1)
    blk = Block(dim, heads, qkv_bias=True, **kwargs).eval()
    with torch.no_grad():  # non-trivial layer scale / norms
        for p in blk.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return blk


@pytest.mark.parametrize('kwargs', [dict(), dict(init_values=0.5, qk_norm=True)])
def test_glca_selected_rows_equal_the_plain_block(kwargs: dict) -> None:
    blk = _block(**kwargs)
    glca = GLCABlock.from_block(blk)
    x = torch.randn(2, 17, 32)
    with torch.no_grad():
        full = blk(x)
        # R = 100 %: the plain block, token order kept
        all_idx = select_local_queries(torch.rand(2, 17), ratio=1.0)
        assert torch.allclose(glca(x, all_idx), full, atol=1e-5)
        assert torch.allclose(glca(x), full, atol=1e-5)
        # R < 100 %: every selected row is that token's row of the full block (K/V from all tokens)
        idx = select_local_queries(torch.rand(2, 17), ratio=0.25)
        part = glca_forward(blk, x, idx)
        assert part.shape == (2, 1 + 4, 32)
        assert torch.allclose(part, full.gather(1, idx[..., None].expand(-1, -1, 32)), atol=1e-5)


def test_glca_cost_is_kv_projection_plus_selected_rows() -> None:
    """Only the selected queries pass the Q projection, attention rows, out projection and MLP."""
    dim, n_tok, n_q = 64, 1 + 100, 1 + 10
    blk = _block(dim, 4)
    blk.attn.fused_attn = False  # explicit matmuls, which the flop counter sees on every device
    x = torch.randn(1, n_tok, dim)
    idx = torch.arange(n_q)[None]

    def flops(fn) -> int:
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            fn()
        return fc.get_total_flops()

    def expected(nq: int) -> int:  # multiply-adds, 2 flops each
        kv = n_tok * dim * 2 * dim  # K and V for every token
        q_proj_out = 2 * nq * dim * dim  # Q and the output projection, selected tokens only
        attention = 2 * nq * n_tok * dim  # Q K^T and (attn) V: nq rows
        mlp = 2 * nq * dim * 4 * dim
        return 2 * (kv + q_proj_out + attention + mlp)

    assert flops(lambda: glca_forward(blk, x, idx)) == expected(n_q)
    assert flops(lambda: glca_forward(blk, x)) == expected(n_tok)


# ---------------------------------------------------------------------------- PWCA
def test_pwca_with_itself_as_partner_equals_self_attention() -> None:
    blk = _block()
    x = torch.randn(2, 17, 32)
    with torch.no_grad():
        sa, _, kv = block_forward(blk, x)
        assert torch.allclose(sa, blk(x), atol=1e-5)
        same, _, _ = block_forward(blk, x, partner_kv=kv)
    assert torch.allclose(same, sa, atol=1e-5)


def test_pwca_is_one_softmax_over_both_images() -> None:
    blk = _block()
    attn = blk.attn
    x1, x2 = torch.randn(2, 17, 32), torch.randn(2, 13, 32)
    with torch.no_grad():
        _, _, kv2 = block_forward(blk, x2)
        got, _, _ = block_forward(blk, x1, partner_kv=kv2)

        # by hand: image 1's queries against [K1; K2], [V1; V2], one softmax over 17 + 13 keys
        def heads(t):
            return t.reshape(2, -1, 4, 8).transpose(1, 2)

        y1, y2 = blk.norm1(x1), blk.norm1(x2)
        w, b = attn.qkv.weight, attn.qkv.bias
        q1, k1, v1 = (heads(F.linear(y1, w[i * 32 : (i + 1) * 32], b[i * 32 : (i + 1) * 32])) for i in range(3))
        k2, v2 = (heads(F.linear(y2, w[i * 32 : (i + 1) * 32], b[i * 32 : (i + 1) * 32])) for i in (1, 2))
        att = (q1 @ torch.cat([k1, k2], 2).transpose(-1, -2) / math.sqrt(8)).softmax(-1)
        o = (att @ torch.cat([v1, v2], 2)).transpose(1, 2).reshape(2, 17, 32)
        ref = x1 + blk.ls1(attn.proj(o))
        ref = ref + blk.ls2(blk.mlp(blk.norm2(ref)))
    assert torch.allclose(got, ref, atol=1e-5)
    assert not torch.allclose(got, blk(x1), atol=1e-3)  # the partner matters


def test_pwca_partner_gradient_is_a_choice() -> None:
    for partner_grad in (False, True):
        model = _tiny(pwca_partner_grad=partner_grad, drop_path_rate=0.0)
        x = torch.randn(2, 3, 64, 64, requires_grad=True)
        out = model.forward_branches(x, partner_idx=torch.tensor([1, 0]))
        out['logits_pwca'][0].sum().backward()
        reaches_partner = x.grad[1].abs().sum() > 0
        assert bool(reaches_partner) == partner_grad


def test_sample_partners_is_a_derangement() -> None:
    g = torch.Generator().manual_seed(0)
    for n in (2, 3, 5, 16):
        for _ in range(20):
            p = sample_partners(n, generator=g)
            assert sorted(p.tolist()) == list(range(n))
            assert (p != torch.arange(n)).all()
    assert sample_partners(1).tolist() == [0]


# ---------------------------------------------------------------------------- model
def test_model_branches_and_outputs() -> None:
    model = _tiny()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        out = model.forward_branches(x, partner_idx=torch.arange(3))
        fused = model(x)
        feats = model.forward_features(x)
    # PWCA with each image as its own partner is the SA branch
    assert torch.allclose(out['logits_pwca'], out['logits_sa'], atol=1e-5)
    # eval output: log of the summed SA and GLCA class probabilities
    p_sum = out['logits_sa'].softmax(-1) + out['logits_glca'].softmax(-1)
    assert torch.allclose(fused.exp(), p_sum, atol=1e-5)
    assert feats.shape == (3, 1 + 16 + 1, 32)  # ViT tokens + the GLCA class token
    assert out['query_idx'].shape == (3, 1 + 2)  # R = round(0.1 * 16) = 2, plus CLS
    # GLCA starts as a copy of the last block and runs in parallel with it: same class token at init
    assert torch.allclose(out['logits_glca'], out['logits_sa'], atol=1e-5)


def _explicit_rollout(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class-token rollout written out: every block's full softmax from its own qkv, N x N products."""
    t = model._embed_tokens(x)
    B, N, C = t.shape
    chain = torch.eye(N).expand(B, N, N)
    for blk in model.blocks:
        attn = blk.attn
        h = attn.num_heads
        q, k, _ = attn.qkv(blk.norm1(t)).reshape(B, N, 3, h, C // h).permute(2, 0, 3, 1, 4)
        s = (q @ k.transpose(-2, -1) * (C // h) ** -0.5).softmax(-1).mean(1)
        chain = (0.5 * s + 0.5 * torch.eye(N)) @ chain
        t = blk(t)
    return chain[:, 0]


@pytest.mark.parametrize('train', [False, True])
def test_model_rollout_equals_the_explicit_chain_in_eval_and_training(train: bool) -> None:
    # eval takes the row-blocked explicit path for blocks 1..L-1 and only the class-token row of block L;
    # training takes the fused kernel plus side maps: both must be the rollout of the definition
    model = _tiny(depth=4, drop_path_rate=0.0)
    model.train(train)
    x = torch.randn(2, 3, 64, 64)
    with torch.set_grad_enabled(train):
        out = model.forward_branches(x, pwca=False)
    with torch.no_grad():
        ref = _explicit_rollout(model.eval(), x)
    assert torch.allclose(out['rollout'].detach(), ref, atol=1e-6)
    assert torch.equal(out['query_idx'], select_local_queries(ref, model.local_query_ratio, 1))


def test_eval_map_storage_kept_between_calls_gives_each_call_its_own_rollout() -> None:
    # eval writes the maps into storage the model keeps between calls (fresh pages cost ~5 % per forward):
    # a second call, a new batch size and a deep copy must each still give the rollout of their own input
    model = _tiny(depth=4)
    xs = [torch.randn(2, 3, 64, 64), torch.randn(2, 3, 64, 64), torch.randn(3, 3, 64, 64)]
    with torch.no_grad():
        for x in xs:
            out = model.forward_branches(x, pwca=False)
            assert torch.allclose(out['rollout'], _explicit_rollout(model, x), atol=1e-6)
        buf = model._rollout_maps
        assert buf is not None and tuple(buf.shape) == (3, 3, 17, 17)  # L - 1 maps of the last call's batch
        assert not any(t is buf for t in model.state_dict().values())
        twin = copy.deepcopy(model)
        assert torch.equal(twin(xs[0]), model(xs[0]))
        model.release_rollout_buffer()
        assert model._rollout_maps is None
        assert torch.equal(model(xs[0]), twin(xs[0]))


def test_stacked_placement_feeds_glca_the_last_block_output() -> None:
    model = _tiny(glca_placement='stacked')
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model.forward_branches(x, pwca=False)
        t = model._embed_tokens(x)
        for blk in model.blocks:
            t = blk(t)
        g = glca_forward(model.glca, t, out['query_idx'])
        ref = model.glca_head(model.glca_norm(g[:, 0]))
    assert torch.allclose(out['logits_glca'], ref, atol=1e-5)
    assert not torch.allclose(out['logits_glca'], out['logits_sa'], atol=1e-3)


def test_loss_is_uncertainty_weighted_and_training_lowers_it() -> None:
    loss_fn = DCALLoss(init=0.0)
    with torch.no_grad():
        loss_fn.w.copy_(torch.tensor([0.5, -0.2, 1.0]))
    logits = {
        f'logits_{b}': torch.randn(4, 5, generator=torch.Generator().manual_seed(i))
        for i, b in enumerate(('sa', 'glca', 'pwca'))
    }
    target = torch.tensor([0, 1, 2, 3])
    got = loss_fn(logits, target)
    ce = [F.cross_entropy(logits[f'logits_{b}'], target) for b in ('sa', 'glca', 'pwca')]
    w = [0.5, -0.2, 1.0]
    ref = 0.5 * sum(math.exp(-wi) * li + wi for wi, li in zip(w, ce))
    assert torch.allclose(got['loss'], torch.tensor(float(ref)), atol=1e-6)

    model = _tiny().train()
    torch.manual_seed(0)
    x, y = torch.randn(4, 3, 64, 64), torch.tensor([0, 1, 2, 3])
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(25):
        res = model(x, y)  # forward(x, target) = forward_train
        opt.zero_grad()
        res['loss'].backward()
        opt.step()
        losses.append([float(res[k].detach()) for k in ('loss', 'loss_sa', 'loss_glca', 'loss_pwca')])
    assert model.dcal_loss.w.grad is not None and model.dcal_loss.w.grad.abs().sum() > 0
    first, last = losses[0], losses[-1]
    # total, SA and GLCA fall fast; PWCA (a regulariser: image 2 keeps distracting) more slowly
    assert last[0] < 0.5 * first[0] and last[1] < 0.5 * first[1] and last[2] < 0.5 * first[2], losses
    assert last[3] < 0.75 * first[3], losses


def test_reid_mode_outputs_concatenated_class_tokens() -> None:
    torch.manual_seed(0)
    model = timm.create_model(
        'dcal_deit_tiny_patch16_448',
        img_size=(64, 32),
        embed_dim=32,
        depth=2,
        num_heads=2,
        num_classes=4,
        local_query_ratio=0.3,
        task='reid',
    ).eval()
    x = torch.randn(4, 3, 64, 32)
    with torch.no_grad():
        emb = model(x)
        out = model.forward_branches(x, pwca=False)
    assert emb.shape == (4, 64)
    assert torch.allclose(emb, torch.cat([out['emb_sa'], out['emb_glca']], -1), atol=1e-6)
    assert out['query_idx'].shape == (4, 1 + 2)  # round(0.3 * 8) = 2
    model.train()
    res = model(x, torch.tensor([0, 0, 1, 1]))
    ce = F.cross_entropy(res['logits_sa'], torch.tensor([0, 0, 1, 1]))
    trip = batch_hard_triplet_loss(res['emb_sa'], torch.tensor([0, 0, 1, 1]))
    assert torch.allclose(res['loss_sa'], (ce + trip).detach(), atol=1e-6)
    res['loss'].backward()


def test_batch_hard_triplet_by_hand() -> None:
    emb = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0], [0.0, 5.0]])
    target = torch.tensor([0, 0, 1, 1])
    # anchor 0: pos 3, neg min(1, 5) = 1 -> 2.3; anchor 1: pos 3, neg min(sqrt 10, sqrt 34) -> 0.3 - 0.162...
    d10 = math.sqrt(10.0)
    expected = [3 - 1 + 0.3, max(0.0, 3 - d10 + 0.3), max(0.0, 4 - 1 + 0.3), max(0.0, 4 - math.sqrt(34) + 0.3)]
    got = batch_hard_triplet_loss(emb, target, margin=0.3)
    assert abs(float(got) - sum(expected) / 4) < 1e-5


def test_pretrained_deit_loads_strictly_and_sa_branch_is_the_vit(tmp_path) -> None:
    """timm DeiT-T weights (saved here, as DeiT publishes them: {'model': state_dict}) load strictly into the
    448 DCAL model; GLCA is initialised from the last block and the SA branch gives the ViT's logits."""
    torch.manual_seed(0)
    deit = timm.create_model('deit_tiny_patch16_224')
    path = tmp_path / 'deit_tiny_patch16_224.pth'
    torch.save({'model': deit.state_dict()}, path)

    # num_classes = 1000 as in the file: timm loads with strict=True (a missing or extra key raises)
    model = timm.create_model(
        'dcal_deit_tiny_patch16_448', pretrained=True, pretrained_cfg_overlay=dict(file=str(path))
    ).eval()
    vit = timm.create_model(
        'deit_tiny_patch16_224', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), img_size=448
    ).eval()
    sd, last = model.state_dict(), deit.state_dict()
    for k, v in last.items():
        if k.startswith('blocks.11.'):
            assert torch.equal(sd['glca.' + k[len('blocks.11.') :]], v)
    assert torch.equal(sd['glca_head.weight'], last['head.weight'])
    assert model.pos_embed.shape == (1, 1 + 28 * 28, 192)

    x = torch.randn(1, 3, 448, 448)
    with torch.no_grad():
        ref = vit(x)
        model.set_inference_branches('sa')  # GLCA off at inference: the plain ViT
        assert torch.allclose(model(x), ref, atol=1e-4)
        model.set_inference_branches('sa', 'glca')
        both = model(x)
    # the GLCA copy runs in parallel with block 12, so at load time both heads agree: p_SA + p_GLCA = 2 p_SA
    assert torch.allclose(both, F.log_softmax(ref, -1) + math.log(2.0), atol=1e-4)

    # without a GLCA block the ViT file also loads strictly
    plain = timm.create_model(
        'dcal_deit_tiny_patch16_448', pretrained=True, pretrained_cfg_overlay=dict(file=str(path)), use_glca=False
    ).eval()
    with torch.no_grad():
        assert torch.allclose(plain(x), ref, atol=1e-4)


def test_param_overhead_of_dcal_deit_tiny() -> None:
    """Paper: GLCA adds 9 % parameters to DeiT-T on CUB (200 classes) at 448."""
    with torch.device('meta'):
        dcal = timm.create_model('dcal_deit_tiny_patch16_448', num_classes=200)
        deit = timm.create_model('deit_tiny_patch16_224', num_classes=200, img_size=448)
    n_dcal = sum(p.numel() for p in dcal.parameters())
    n_deit = sum(p.numel() for p in deit.parameters())
    C = 192
    block = 12 * C * C + 13 * C  # qkv, proj, fc1, fc2 weights and biases, two LayerNorms
    extra = block + 2 * C + (C * 200 + 200) + 3  # + glca_norm, glca_head, three loss weights
    assert n_dcal - n_deit == extra
    overhead = (n_dcal - n_deit) / n_deit
    print(f'dcal_deit_tiny_patch16_448: {n_dcal / 1e6:.3f}M vs deit_tiny@448 {n_deit / 1e6:.3f}M: +{overhead:.1%}')
    assert abs(overhead - paper_facts()['dcal_deit_tiny_patch16_448']['params_overhead']) < 0.01  # paper: "9 %"


def test_flops_overhead_of_dcal_deit_tiny() -> None:
    """Paper: +2 % FLOPs for DeiT-T at 448; a GLCA block over all 785 tokens would add about 8 %."""
    with torch.device('meta'):
        model = timm.create_model('dcal_deit_tiny_patch16_448', num_classes=200).eval()
    for m in model.modules():
        if hasattr(m, 'fused_attn'):
            m.fused_attn = False  # explicit matmuls: the flop counter sees the attention on every device
    x = torch.empty(1, 3, 448, 448, device='meta')

    def gmacs() -> float:
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            model(x)
        return fc.get_total_flops() / 2e9

    dcal = gmacs()
    model.set_inference_branches('sa')
    sa = gmacs()
    overhead = dcal / sa - 1
    print(f'dcal_deit_tiny_patch16_448: {dcal:.3f} GMACs vs SA {sa:.3f}: +{overhead:.2%}')
    assert abs(overhead - paper_facts()['dcal_deit_tiny_patch16_448']['flops_overhead']) < 0.005


def test_wrap_dcal_on_another_timm_vit() -> None:
    torch.manual_seed(0)
    vit = timm.create_model('vit_small_patch16_224', img_size=64, depth=2, num_classes=3).eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        ref = vit(x)
    keys = set(vit.state_dict())
    model = wrap_dcal(vit, local_query_ratio=0.5)
    assert model is vit and keys < set(model.state_dict())
    with torch.no_grad():
        out = model.forward_branches(x, partner_idx=torch.tensor([1, 0]))
        model.set_inference_branches('sa')
        assert torch.allclose(model(x), ref, atol=1e-5)
    assert torch.allclose(out['logits_sa'], ref, atol=1e-5)
    assert out['query_idx'].shape == (2, 1 + 8)
    with pytest.raises(ValueError, match='already a DCAL model'):
        wrap_dcal(model)
    with pytest.raises(TypeError, match='VisionTransformer'):
        wrap_dcal(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match='local_query_ratio'):
        wrap_dcal(timm.create_model('vit_small_patch16_224', img_size=32, depth=1), local_query_ratio=1.5)


def test_dcal_models_are_listed_for_the_contract_suite() -> None:
    names = set(list_zoo_models('dcal'))
    assert names == {
        'dcal_deit_tiny_patch16_448',
        'dcal_deit_small_patch16_448',
        'dcal_deit_base_patch16_448',
        'dcal_vit_base_patch16_448',
    }


# ---------------------------------------------------------------------------- Agent-DeiT through wrap_dcal
def test_agent_attention_map_is_the_product_of_the_two_agent_softmaxes() -> None:
    """One head: the rollout map M satisfies out = proj(M V + dwc(V)), i.e. M is the token mixing."""
    from zoo.layers.agent_attention import AgentAttention
    from zoo.layers.cross_attention import agent_attention_forward

    torch.manual_seed(0)
    attn = AgentAttention(16, num_heads=1, agent_num=4, window_size=(4, 4), num_prefix_tokens=1).eval()
    x = torch.randn(2, 1 + 16, 16)
    with torch.no_grad():
        out, amap, (k, v) = agent_attention_forward(attn, x, (4, 4), need_map=True)
        assert torch.allclose(out, attn(x, (4, 4)), atol=1e-5)
        div = attn.dwc(v[:, 0, 1:].transpose(-1, -2).reshape(2, 16, 4, 4)).flatten(2).transpose(1, 2)
        ref = attn.proj(amap @ v[:, 0] + F.pad(div, (0, 0, 1, 0)))
        same, _, _ = agent_attention_forward(attn, x, (4, 4), partner_kv=(k, v))
    assert torch.allclose(amap.sum(-1), torch.ones(2, 17), atol=1e-5)
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(same, out, atol=1e-5)  # PWCA with itself as partner


def test_wrap_dcal_on_agent_deit() -> None:
    torch.manual_seed(0)
    model = timm.create_model('agent_deit_small', img_size=112, depth=2, embed_dim=48, num_heads=3, num_classes=4)
    model.eval()
    x = torch.randn(2, 3, 112, 112)
    with torch.no_grad():
        ref = model(x)
    last = {k: v.clone() for k, v in model.blocks[-1].state_dict().items()}
    wrap_dcal(model, local_query_ratio=0.2)
    assert all(torch.equal(v, last[k]) for k, v in model.glca.state_dict().items())  # shared weights copied
    with torch.no_grad():
        out = model.forward_branches(x, partner_idx=torch.tensor([1, 0]))
        model.set_inference_branches('sa')
        assert torch.allclose(model(x), ref, atol=1e-5)
        model.set_inference_branches('sa', 'glca')
        assert model(x).shape == (2, 4)
    assert getattr(model, '_rollout_maps', None) is None  # agent blocks make their own maps: no kept storage
    assert torch.allclose(out['logits_sa'], ref, atol=1e-5)
    assert out['query_idx'].shape == (2, 1 + 10)  # 20 % of 7 x 7 patches
    # the run-time DCAL class pickles through its base class
    again = pickle.loads(pickle.dumps(model))
    assert type(again) is type(model) and type(again).__name__ == 'DCALAgentVisionTransformer'
    with torch.no_grad():
        assert torch.allclose(again(x), model(x))
    assert not torch.allclose(out['logits_pwca'], out['logits_sa'], atol=1e-4)
    model.train()
    res = model(x, torch.tensor([0, 1]))
    res['loss'].backward()
    assert model.glca.attn.qkv.weight.grad.abs().sum() > 0


def test_grad_checkpointing_keeps_training_gradients() -> None:
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([1, 3])
    grads = []
    for ckpt in (False, True):
        model = _tiny().train()
        model.set_grad_checkpointing(ckpt)
        res = model(x, y, partner_idx=torch.tensor([1, 0]))
        res['loss'].backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) == len(list(_tiny().parameters()))
    for n, g in grads[0].items():
        assert torch.allclose(g, grads[1][n], atol=1e-5), n


@pytest.mark.parametrize('keys', [10, 64, 65])
def test_cpu_training_attention_on_short_sequences_equals_sdpa(keys: int) -> None:
    """In a CPU training step on <= CPU_TRAIN_EXPLICIT_KEYS keys, multi_head_attention takes the explicit products
    (faster there than SDPA's CPU backward): the same output and gradients as SDPA, map included."""
    from zoo.layers.cross_attention import CPU_TRAIN_EXPLICIT_KEYS, multi_head_attention

    torch.manual_seed(0)
    blk = Block(32, 2, qkv_bias=True).train()
    q0, k0, v0 = (torch.randn(3, 2, n, 16) for n in (7, keys, keys))
    g = torch.randn(3, 2, 7, 16)
    q, k, v = (t.clone().requires_grad_(True) for t in (q0, k0, v0))
    out, amap = multi_head_attention(blk.attn, q, k, v, need_map=True)
    out.backward(g)
    qr, kr, vr = (t.clone().requires_grad_(True) for t in (q0, k0, v0))
    ref = F.scaled_dot_product_attention(qr, kr, vr, scale=blk.attn.scale)
    ref.backward(g)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    for a, b in ((q, qr), (k, kr), (v, vr)):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)
    probs = ((q0 * blk.attn.scale) @ k0.transpose(-2, -1)).softmax(-1).mean(1)
    torch.testing.assert_close(amap, probs, rtol=1e-5, atol=1e-6)
    assert (keys <= CPU_TRAIN_EXPLICIT_KEYS) == (keys <= 64)
