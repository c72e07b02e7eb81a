"""Selective scan (the Mamba S6 recurrence) in pure PyTorch, vectorised over the sequence.

Same call, shapes and semantics as ``mamba_ssm.ops.selective_scan_interface.selective_scan_fn``
(real ``A`` only), so code written against the CUDA kernel runs on any device:

    delta  <- softplus(delta + delta_bias)            (bias / softplus optional)
    h_t    =  exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t    =  <C_t, h_t> + D * u_t                    (then * silu(z_t) when z is given)

Several scan directions (the ``K`` of VMamba / MHS-VM) are handled the way the kernel does it:
they are packed into the channel axis (``u`` is ``(b, K*d, L)``) and ``B`` / ``C`` carry one group
per direction (``(b, K, N, L)``); channel ``c`` reads group ``c // d``.

Algorithm (blocked log-space scan): the sequence is cut into chunks of ``T`` tokens. Inside a chunk
the cumulative log-decay ``S_t = sum_{s<=t} delta_s A`` turns the recurrence into two cumulative
sums, ``h_t = exp(S_t) * (h_0 + cumsum_s(exp(-S_s) * delta_s B_s u_s))``, vectorised over every
token of a block of chunks (layout ``(b, G, H, chunk, N, T)``, ``T`` contiguous). The chunk-end
states are then combined across the chunks of a block with a log2-step (Hillis-Steele) scan, and
one state is carried from block to block: a Python loop over blocks of about 2**18 elements, never
over tokens. Blocks keep the temporaries in cache; without autograd two buffers are reused for all
blocks. The absolute error of the chunked form is bounded by ``eps * sum|delta B u|`` over a chunk
as long as ``exp(-S)`` stays finite, so ``T`` (<= 64) is chosen from the data: the largest power of
two whose worst in-chunk decay range stays below a safe exponent for the compute dtype (float32, or
float64 when float32 would force chunks shorter than 16). Single steps whose decay ``exp(delta A)``
is below ``eps**2`` are clamped there, which changes nothing at working precision. Backward is
plain autograd through the vectorised ops (checked against a sequential float64 reference).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ['selective_scan', 'selective_scan_sequential']

# Largest in-chunk decay exponent allowed per compute dtype (exp(60) ~ 1e26 leaves float32 room
# for the cumulative sum; float64 goes far beyond). Per-step clamps: exp(-M) far below eps.
_MAX_RANGE = {torch.float32: 60.0, torch.float64: 600.0}
_STEP_CLAMP = {torch.float32: 30.0, torch.float64: 80.0}
_MAX_CHUNK = 64
_MIN_FP32_CHUNK = 16
_BLOCK_ELEMS = 1 << 18  # elements of one (b, d, chunks, T, N) work block


def _check_inputs(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                  C: torch.Tensor) -> None:
    if u.ndim != 3:
        raise ValueError(f'u must be (batch, dim, length), got shape {tuple(u.shape)}')
    if delta.shape != u.shape:
        raise ValueError(f'delta must have the shape of u {tuple(u.shape)}, got {tuple(delta.shape)}')
    if A.ndim != 2 or A.shape[0] != u.shape[1]:
        raise ValueError(f'A must be (dim={u.shape[1]}, d_state), got {tuple(A.shape)}')
    if A.is_complex():
        raise ValueError('A: complex A is not supported by this implementation')
    for name, t in (('B', B), ('C', C)):
        if t.ndim == 2:
            if t.shape != A.shape:
                raise ValueError(f'{name} (not input-dependent) must have the shape of A, '
                                 f'got {tuple(t.shape)}')
        elif t.ndim == 3:
            if t.shape != (u.shape[0], A.shape[1], u.shape[2]):
                raise ValueError(f'{name} must be (batch, d_state, length), got {tuple(t.shape)}')
        elif t.ndim == 4:
            if (t.shape[0], t.shape[2], t.shape[3]) != (u.shape[0], A.shape[1], u.shape[2]) \
                    or u.shape[1] % t.shape[1]:
                raise ValueError(f'{name} must be (batch, groups, d_state, length) with groups dividing '
                                 f'dim={u.shape[1]}, got {tuple(t.shape)}')
        else:
            raise ValueError(f'{name} must have 2, 3 or 4 dims, got shape {tuple(t.shape)}')


def _prepare(u, delta, A, B, C, delta_bias, delta_softplus, dtype):
    """Shared preprocessing: the final delta, and B / C as views broadcastable to (b, G, H, L, N)."""
    b, d, L = u.shape
    n = A.shape[1]
    delta = delta.to(dtype)
    if delta_bias is not None:
        delta = delta + delta_bias.to(dtype)[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    groups = {t.shape[1] for t in (B, C) if t.ndim == 4}
    if len(groups) > 1:  # B and C grouped differently: give every channel its own group
        B = B.repeat_interleave(d // B.shape[1], dim=1)
        C = C.repeat_interleave(d // C.shape[1], dim=1)
        groups = {d}
    g = groups.pop() if groups else 1

    def as_view(t: torch.Tensor) -> torch.Tensor:
        t = t.to(dtype)
        if t.ndim == 2:  # (d, N): the same for every step
            return t.view(1, g, d // g, 1, n)
        if t.ndim == 3:  # (b, N, L): shared by all channels
            return t.transpose(1, 2).reshape(b, 1, 1, L, n)
        return t.permute(0, 1, 3, 2).unsqueeze(2)  # (b, G, N, L) -> (b, G, 1, L, N)

    return delta, as_view(B), as_view(C), g


def selective_scan(
        u: torch.Tensor,
        delta: torch.Tensor,
        A: torch.Tensor,
        B: torch.Tensor,
        C: torch.Tensor,
        D: torch.Tensor | None = None,
        z: torch.Tensor | None = None,
        delta_bias: torch.Tensor | None = None,
        delta_softplus: bool = False,
        return_last_state: bool = False,
        chunk_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Selective scan with the semantics of mamba_ssm's ``selective_scan_fn``.

    Args:
        u: input, ``(b, d, L)``; ``d = K * d_inner`` for K packed scan directions.
        delta: step sizes, ``(b, d, L)``.
        A: state matrix (diagonal), ``(d, N)``, real (usually negative).
        B: input matrix: ``(b, G, N, L)`` (G groups, channel ``c`` uses group ``c // (d // G)``),
            ``(b, N, L)`` (shared by all channels) or ``(d, N)`` (not input-dependent).
        C: output matrix, same forms as ``B``.
        D: skip weight ``(d,)``.
        z: gate ``(b, d, L)``; the output is multiplied by ``silu(z)``.
        delta_bias: ``(d,)``, added to ``delta`` before the softplus.
        delta_softplus: apply softplus to ``delta``.
        return_last_state: also return the final state ``(b, d, N)``.
        chunk_size: force the chunk length (a power of two); ``None`` picks it from the data.

    Returns:
        ``y`` of shape ``(b, d, L)`` in ``u``'s dtype (and the last state, float32/64, when asked).
    """
    _check_inputs(u, delta, A, B, C)
    b, d, L = u.shape
    n = A.shape[1]
    dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    delta, Bv, Cv, g = _prepare(u, delta, A, B, C, delta_bias, delta_softplus, dtype)
    h = d // g
    A_ = A.to(dtype)
    uf = u.to(dtype)

    # Pick the chunk length from the worst decay range a chunk can see.
    with torch.no_grad():
        step_clamp = _STEP_CLAMP[dtype]
        a_max = (-A_).clamp(min=0).amax(dim=1)  # (d,)
        step = (delta * a_max[None, :, None]).clamp(max=step_clamp)  # (b, d, L) worst per-step decay
        if chunk_size is None:
            chunk_size = _pick_chunk(step, L, _MAX_RANGE[dtype])
            if dtype == torch.float32 and chunk_size < min(_MIN_FP32_CHUNK, L):
                # float32 would need tiny chunks: redo the scan in float64 (rare, extreme deltas).
                out = selective_scan(u.double(), delta.double(), A.double(), B.double(), C.double(),
                                     D=None if D is None else D.double(), z=None if z is None else z.double(),
                                     delta_bias=None, delta_softplus=False,
                                     return_last_state=return_last_state)
                if return_last_state:
                    return out[0].to(u.dtype), out[1].float()
                return out.to(u.dtype)
        need_clamp = bool((delta * a_max[None, :, None] > step_clamp).any())
    T = int(chunk_size)
    nc = -(-L // T)
    pad = nc * T - L

    # (b, g, h, L) layouts; padding with delta = 0 and u = 0 leaves the state unchanged.
    dl = delta.view(b, g, h, L)
    ul = uf.view(b, g, h, L)
    Bv = Bv.contiguous()
    Cv = Cv.contiguous()
    if pad:
        dl = F.pad(dl, (0, pad))
        ul = F.pad(ul, (0, pad))
        Bv = F.pad(Bv, (0, 0, 0, pad)) if Bv.shape[3] != 1 else Bv
        Cv = F.pad(Cv, (0, 0, 0, pad)) if Cv.shape[3] != 1 else Cv
    # Work layout (b, g, h, chunk, N, T): T last and contiguous, so the cumulative sums run along
    # memory and every elementwise op sees operands of one layout (much faster on CPU).
    Ag = A_.view(1, g, h, 1, n, 1)
    dc = dl.unflatten(3, (nc, T)).unsqueeze(4)  # (b, g, h, nc, 1, T)
    duc = (dl * ul).unflatten(3, (nc, T)).unsqueeze(4)  # delta_t u_t
    dcum = dc.cumsum(dim=5)  # in-chunk cumulative delta (the decay factorises when nothing is clamped)

    def chunked(t: torch.Tensor) -> torch.Tensor:  # (.., L|1, N) -> (.., nc|1, N, T|1)
        if t.shape[3] == 1:
            return t.unsqueeze(3).transpose(-1, -2)
        return t.unflatten(3, (nc, T)).transpose(-1, -2).contiguous()

    Bc, Cc = chunked(Bv), chunked(Cv)
    grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias))

    # Work through blocks of chunks so that the (.., N, T) temporaries stay in cache. Without
    # autograd, two preallocated buffers are reused for every block (fresh allocations of this size
    # cost more than the arithmetic on CPU).
    per_block = max(1, _BLOCK_ELEMS // max(1, b * d * T * n))
    state = uf.new_zeros(b, g, h, 1, n)  # state entering the current block
    if not grad:
        shape = (b, g, h, min(per_block, nc), n, T)
        buf_s, buf_w = uf.new_empty(shape), uf.new_empty(shape)
        y_all = uf.new_empty(b, g, h, nc, T)
    ys = []
    for c0 in range(0, nc, per_block):
        c1 = min(nc, c0 + per_block)
        Bk = Bc[:, :, :, c0:c1] if Bc.shape[3] > 1 else Bc
        Ck = Cc[:, :, :, c0:c1] if Cc.shape[3] > 1 else Cc
        if grad:
            if need_clamp:
                S = (dc[:, :, :, c0:c1] * Ag).clamp(min=-step_clamp).cumsum(dim=5)
            else:
                S = dcum[:, :, :, c0:c1] * Ag  # S_t = A * sum_{s<=t} delta_s  (<= 0)
            decay = S.exp()
            # chunk-local state scaled by exp(-S_t); the range bound keeps 1/decay finite
            w = (duc[:, :, :, c0:c1] * Bk / decay).cumsum(dim=5)
            a_end = decay[..., -1]  # decay over each whole chunk, (b, g, h, c, N)
            q = Ck * decay  # C_t exp(S_t)
        else:
            decay = buf_s[:, :, :, :c1 - c0]
            w = buf_w[:, :, :, :c1 - c0]
            if need_clamp:
                torch.mul(dc[:, :, :, c0:c1], Ag, out=decay).clamp_(min=-step_clamp).cumsum_(dim=5)
            else:
                torch.mul(dcum[:, :, :, c0:c1], Ag, out=decay)
            decay.exp_()
            torch.mul(duc[:, :, :, c0:c1], Bk, out=w).div_(decay).cumsum_(dim=5)
            a_end = decay[..., -1].clone()
            q = decay.mul_(Ck)
        h_end = a_end * w[..., -1]  # chunk-end state from the chunk's own inputs
        prod, acc = _chunk_scan(a_end, h_end)  # inclusive over the block's chunks
        # state entering chunk c: exclusive prefix, plus the block's incoming state decayed
        carry = F.pad(acc[:, :, :, :-1], (0, 0, 1, 0)) \
            + F.pad(prod[:, :, :, :-1], (0, 0, 1, 0), value=1.0) * state
        state = acc[:, :, :, -1:] + prod[:, :, :, -1:] * state
        if grad:
            ys.append((q * (w + carry.unsqueeze(-1))).sum(-2))  # (b, g, h, c, T)
        else:
            torch.sum(w.add_(carry.unsqueeze(-1)).mul_(q), dim=-2, out=y_all[:, :, :, c0:c1])
    if not grad:
        ys = [y_all]
    y = torch.cat(ys, dim=3) if len(ys) > 1 else ys[0]
    y = y.reshape(b, d, nc * T)[..., :L]
    if D is not None:
        y = y + uf * D.to(dtype)[None, :, None]
    if z is not None:
        y = y * F.silu(z.to(dtype))
    out = y.to(u.dtype)
    if return_last_state:
        return out, state.reshape(b, d, n)
    return out


def _chunk_scan(a: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan of h_c = a_c h_{c-1} + x_c along dim 3 in log2(C) doubling steps (Hillis-Steele).

    Returns (prod_{c'<=c} a_c', h_c with h_{-1} = 0). Only products of decays <= 1: stable.
    """
    n = a.shape[3]
    shift = 1
    while shift < n:
        x = torch.cat([x[:, :, :, :shift], x[:, :, :, shift:] + a[:, :, :, shift:] * x[:, :, :, :-shift]],
                      dim=3)
        a = torch.cat([a[:, :, :, :shift], a[:, :, :, shift:] * a[:, :, :, :-shift]], dim=3)
        shift *= 2
    return a, x


def _pick_chunk(step: torch.Tensor, L: int, max_range: float) -> int:
    """Largest power-of-two chunk (<= _MAX_CHUNK) whose summed per-step decay stays below max_range."""
    T = 1
    while T * 2 <= min(_MAX_CHUNK, max(L, 1)):
        T *= 2
    nc = -(-L // T)
    sums = F.pad(step, (0, nc * T - L)).unflatten(-1, (nc, T))  # (b, d, nc, T)
    while T > 1:
        if float(sums.sum(-1).amax()) <= max_range:
            break
        T //= 2
        sums = sums.unflatten(-1, (2, T)).flatten(-3, -2)
    return T


def selective_scan_sequential(
        u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
        D: torch.Tensor | None = None, z: torch.Tensor | None = None, delta_bias: torch.Tensor | None = None,
        delta_softplus: bool = False) -> torch.Tensor:
    """Token-by-token reference in the style of mamba_ssm's ``selective_scan_ref`` (decays and inputs
    precomputed for all tokens, then one Python step per token). Slow; for benchmarks and checks.
    Same arguments as :func:`selective_scan`."""
    _check_inputs(u, delta, A, B, C)
    b, d, L = u.shape
    dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    delta, Bv, Cv, g = _prepare(u, delta, A, B, C, delta_bias, delta_softplus, dtype)
    h = d // g
    dl = delta.view(b, g, h, L, 1)
    decay = (dl * A.to(dtype).view(1, g, h, 1, -1)).exp()  # (b, g, h, L, N)
    inp = dl * u.to(dtype).view(b, g, h, L, 1) * Bv
    Cb = Cv.expand(b, g, h, L, -1)
    state = torch.zeros(b, g, h, A.shape[1], dtype=dtype, device=u.device)
    ys = []
    for t in range(L):
        state = decay[:, :, :, t] * state + inp[:, :, :, t]
        ys.append((state * Cb[:, :, :, t]).sum(-1))
    y = torch.stack(ys, dim=-1).reshape(b, d, L)
    if D is not None:
        y = y + u.to(dtype) * D.to(dtype)[None, :, None]
    if z is not None:
        y = y * F.silu(z.to(dtype))
    return y.to(u.dtype)
