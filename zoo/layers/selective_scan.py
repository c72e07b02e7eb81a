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

Two backends (``backend=`` / :func:`set_scan_backend` / ``ZOO_SCAN_BACKEND``): ``'eager'``, the
blocked scan above (default; forward and backward), and ``'fused'``, the exact recurrence in
``torch.compile``d kernels, forward and a hand-written backward (see the sections at the end).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function

from zoo.layers.fast_inference import compile_failed, float32_region

__all__ = ['selective_scan', 'selective_scan_sequential', 'set_scan_backend', 'get_scan_backend']

# Largest in-chunk decay exponent allowed per compute dtype (exp(60) ~ 1e26 leaves float32 room
# for the cumulative sum; float64 goes far beyond). Per-step clamps: exp(-M) far below eps.
_MAX_RANGE = {torch.float32: 60.0, torch.float64: 600.0}
_STEP_CLAMP = {torch.float32: 30.0, torch.float64: 80.0}
_MAX_CHUNK = 64
_MIN_FP32_CHUNK = 16
_BLOCK_ELEMS = 1 << 18  # elements of one (b, d, chunks, T, N) work block
_LOG2E = 1.4426950408889634


def _check_inputs(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> None:
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
                raise ValueError(f'{name} (not input-dependent) must have the shape of A, got {tuple(t.shape)}')
        elif t.ndim == 3:
            if t.shape != (u.shape[0], A.shape[1], u.shape[2]):
                raise ValueError(f'{name} must be (batch, d_state, length), got {tuple(t.shape)}')
        elif t.ndim == 4:
            if (t.shape[0], t.shape[2], t.shape[3]) != (u.shape[0], A.shape[1], u.shape[2]) or u.shape[1] % t.shape[1]:
                raise ValueError(
                    f'{name} must be (batch, groups, d_state, length) with groups dividing '
                    f'dim={u.shape[1]}, got {tuple(t.shape)}'
                )
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


@register_notrace_function  # FX: one leaf (input checks, chunk length picked from the data)
@torch.fx.wrap
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
    backend: str | None = None,
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
        chunk_size: force the chunk length (a power of two); ``None`` picks it from the data
            (eager backend only).
        backend: ``'eager'`` (blocked log-space scan in plain ops) or ``'fused'`` (``torch.compile``d
            kernels, forward and backward; with autograd and ``return_last_state`` the eager scan runs);
            ``None`` uses the process default (:func:`set_scan_backend`, ``ZOO_SCAN_BACKEND``, else ``'eager'``).

    Returns:
        ``y`` of shape ``(b, d, L)`` in ``u``'s dtype (and the last state, float32/64, when asked).

    Under autocast (``--bf16``) the scan still runs in float32 (float64 for float64 inputs): autocast is off
    inside, and ``y`` comes back in ``u``'s dtype.
    """
    if torch.is_autocast_enabled(u.device.type):
        with float32_region(u):
            return selective_scan(
                u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, chunk_size, backend
            )
    _check_inputs(u, delta, A, B, C)
    backend = _BACKEND if backend is None else backend
    if backend not in _BACKENDS:
        raise ValueError(f'backend: expected one of {_BACKENDS}, got {backend!r}')
    b, d, L = u.shape
    n = A.shape[1]
    dtype = torch.float64 if u.dtype == torch.float64 else torch.float32
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias)
    )
    if backend == 'fused' and not (needs_grad and return_last_state) and _fused_available():
        try:
            return _fused_call(
                u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, dtype, needs_grad
            )
        except Exception as e:  # noqa: BLE001 - inputs are checked above: this is the compiler failing
            _fused_failed(e)
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
                out = selective_scan(
                    u.double(),
                    delta.double(),
                    A.double(),
                    B.double(),
                    C.double(),
                    D=None if D is None else D.double(),
                    z=None if z is None else z.double(),
                    delta_bias=None,
                    delta_softplus=False,
                    return_last_state=return_last_state,
                )
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
    Ag = (A_ * _LOG2E).view(1, g, h, 1, n, 1)  # exp2 is ~3x faster than exp on CPU
    dc = dl.unflatten(3, (nc, T)).unsqueeze(4)  # (b, g, h, nc, 1, T)
    duc = (dl * ul).unflatten(3, (nc, T)).unsqueeze(4)  # delta_t u_t
    dcum = dc.cumsum(dim=5)  # in-chunk cumulative delta (the decay factorises when nothing is clamped)

    def chunked(t: torch.Tensor) -> torch.Tensor:  # (.., L|1, N) -> (.., nc|1, N, T|1)
        if t.shape[3] == 1:
            return t.unsqueeze(3).transpose(-1, -2)
        return t.unflatten(3, (nc, T)).transpose(-1, -2).contiguous()

    Bc, Cc = chunked(Bv), chunked(Cv)

    # Work through blocks of chunks so that the (.., N, T) temporaries stay in cache. Without
    # autograd, two preallocated buffers are reused for every block (fresh allocations of this size
    # cost more than the arithmetic on CPU).
    per_block = max(1, _BLOCK_ELEMS // max(1, b * d * T * n))
    state = uf.new_zeros(b, g, h, 1, n)  # state entering the current block
    if not needs_grad:
        shape = (b, g, h, min(per_block, nc), n, T)
        buf_s, buf_w = uf.new_empty(shape), uf.new_empty(shape)
        y_all = uf.new_empty(b, g, h, nc, T)
    ys = []
    for c0 in range(0, nc, per_block):
        c1 = min(nc, c0 + per_block)
        Bk = Bc[:, :, :, c0:c1] if Bc.shape[3] > 1 else Bc
        Ck = Cc[:, :, :, c0:c1] if Cc.shape[3] > 1 else Cc
        if needs_grad:
            if need_clamp:
                S = (dc[:, :, :, c0:c1] * Ag).clamp(min=-step_clamp * _LOG2E).cumsum(dim=5)
            else:
                S = dcum[:, :, :, c0:c1] * Ag  # S_t = A * sum_{s<=t} delta_s  (<= 0)
            decay = S.exp2()
            # chunk-local state scaled by exp(-S_t), as its own exp: dividing by decay would put
            # 1/decay**2 (beyond float32 for ranges over ~44) into the backward pass
            w = (duc[:, :, :, c0:c1] * Bk * (-S).exp2()).cumsum(dim=5)
            a_end = decay[..., -1]  # decay over each whole chunk, (b, g, h, c, N)
            q = Ck * decay  # C_t exp(S_t)
        else:
            decay = buf_s[:, :, :, : c1 - c0]
            w = buf_w[:, :, :, : c1 - c0]
            if need_clamp:
                torch.mul(dc[:, :, :, c0:c1], Ag, out=decay).clamp_(min=-step_clamp * _LOG2E).cumsum_(dim=5)
            else:
                torch.mul(dcum[:, :, :, c0:c1], Ag, out=decay)
            decay.exp2_()
            torch.mul(duc[:, :, :, c0:c1], Bk, out=w).div_(decay).cumsum_(dim=5)
            a_end = decay[..., -1].clone()
            q = decay.mul_(Ck)
        h_end = a_end * w[..., -1]  # chunk-end state from the chunk's own inputs
        prod, acc = _chunk_scan(a_end, h_end)  # inclusive over the block's chunks
        # state entering chunk c: exclusive prefix, plus the block's incoming state decayed
        carry = F.pad(acc[:, :, :, :-1], (0, 0, 1, 0)) + F.pad(prod[:, :, :, :-1], (0, 0, 1, 0), value=1.0) * state
        state = acc[:, :, :, -1:] + prod[:, :, :, -1:] * state
        if needs_grad:
            ys.append((q * (w + carry.unsqueeze(-1))).sum(-2))  # (b, g, h, c, T)
        else:
            torch.sum(w.add_(carry.unsqueeze(-1)).mul_(q), dim=-2, out=y_all[:, :, :, c0:c1])
    if not needs_grad:
        ys = [y_all]
    y = torch.cat(ys, dim=3) if len(ys) > 1 else ys[0]
    y = y.reshape(b, d, nc * T)[..., :L]
    return _finish(y, uf, D, z, u.dtype, state.reshape(b, d, n) if return_last_state else None)


def _finish(
    y: torch.Tensor,
    uf: torch.Tensor,
    D: torch.Tensor | None,
    z: torch.Tensor | None,
    out_dtype: torch.dtype,
    state: torch.Tensor | None,
):
    """Skip term, gate, output dtype; (b, d, L) scan output -> the public return value."""
    if D is not None:
        y = y + uf * D.to(uf.dtype)[None, :, None]
    if z is not None:
        y = y * F.silu(z.to(uf.dtype))
    out = y.to(out_dtype)
    return (out, state) if state is not None else out


def _chunk_scan(a: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Inclusive scan of h_c = a_c h_{c-1} + x_c along dim 3 in log2(C) doubling steps (Hillis-Steele).

    Returns (prod_{c'<=c} a_c', h_c with h_{-1} = 0). Only products of decays <= 1: stable.
    """
    n = a.shape[3]
    shift = 1
    while shift < n:
        x = torch.cat([x[:, :, :, :shift], x[:, :, :, shift:] + a[:, :, :, shift:] * x[:, :, :, :-shift]], dim=3)
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
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
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


# --- fused backend --------------------------------------------------------------------------------
# The eager scan needs ~9 full passes over the (b, d, L, N) state-sized temporaries; on CPU that, not
# the arithmetic, is what it costs. The fused backend writes the same scan as three small functions
# that torch.compile (Inductor's C++/OpenMP code generator) turns into loop nests which keep the
# state in registers: the exact recurrence, unrolled over the T = 16 positions of a chunk (so there
# is no log-space rescaling and no range limit), plus a 16-way unrolled recurrence over chunks,
# applied hierarchically. When autograd needs the graph, :class:`_FusedScanFn` runs the same forward
# and a backward written the same way (next section; tracing autograd through the unrolled forward
# took minutes to compile). Compiling the forward takes 5-45 s once, the backward 40-110 s (shapes
# are dynamic; Inductor caches the result on disk); if it fails (no C++ compiler, unsupported
# platform), a warning is printed once and the eager scan runs instead (in a backward that already
# ran the fused forward: the eager scan recomputed under autograd).

_BACKENDS = ('eager', 'fused')
_BACKEND = os.environ.get('ZOO_SCAN_BACKEND', 'eager')
if _BACKEND not in _BACKENDS:
    raise ValueError(f'ZOO_SCAN_BACKEND: expected one of {_BACKENDS}, got {_BACKEND!r}')
_FUSED_T = 16  # chunk length of the fused kernels (unrolled)
_fused_state: dict = {}


def set_scan_backend(name: str) -> None:
    """Process-wide default backend of :func:`selective_scan`: ``'eager'`` or ``'fused'``
    (environment: ``ZOO_SCAN_BACKEND``)."""
    global _BACKEND
    if name not in _BACKENDS:
        raise ValueError(f'backend: expected one of {_BACKENDS}, got {name!r}')
    _BACKEND = name


def get_scan_backend() -> str:
    return _BACKEND


def _local_scan(dl, du, A2, B, C, states, ul, Dv):
    """Recurrence inside each chunk, started from the state the chunk receives; unrolled over the
    chunk's T positions. Adds the skip term ``D * u``.

    dl, du, ul: (b, g, h, nc, T, 1) step sizes, delta*u and u; A2: (1, g, h, 1, N) = A*log2(e);
    B, C: broadcastable to (b, g, h, nc, T, N); states: (b, g, h, nc, N) inclusive chunk-end states
    (shifted by one chunk here); Dv: (1, g, h, 1, 1). Returns y: (b, g, h, nc, T).
    """
    state = F.pad(states[:, :, :, :-1], (0, 0, 1, 0))
    ys = []
    for t in range(dl.shape[4]):
        state = torch.exp2(dl[:, :, :, :, t] * A2) * state + du[:, :, :, :, t] * B[:, :, :, :, t]
        ys.append((state * C[:, :, :, :, t]).sum(-1))
    return torch.stack(ys, dim=-1) + ul[..., 0] * Dv


def _chunk_summaries(raw, ul, bias, A2, B, length, use_softplus: bool):
    """Per chunk: the step sizes, delta*u, the decay over the whole chunk and the chunk-end state
    from the chunk's own inputs, sum_t exp(A * rest_t) delta_t u_t B_t (rest_t: summed delta of the
    later steps).

    raw, ul: (b, g, h, nc, T, 1) delta before bias / softplus and u, zero-padded after ``length``
    steps; bias: (1, g, h, 1, 1, 1); A2: (1, g, h, 1, N); B: broadcastable to (b, g, h, nc, T, N).
    Returns dl, du (b, g, h, nc, T, 1), decay (b, g, h, nc, N), end state (b, g, h, nc, N).
    """
    dl = raw + bias
    if use_softplus:
        dl = _softplus(dl)
    nc, T = dl.shape[3], dl.shape[4]
    step = torch.arange(nc * T, device=dl.device).view(nc, T, 1)
    dl = torch.where(step < length, dl, 0.0)  # padded steps: delta = 0, the state passes unchanged
    du = dl * ul
    cum = dl.cumsum(dim=4)
    total = cum[:, :, :, :, -1:]
    ends = (torch.exp2((total - cum) * A2.unsqueeze(-2)) * du * B).sum(-2)
    return dl, du, torch.exp2(total[:, :, :, :, 0] * A2), ends


def _softplus(x):
    """softplus = log1p(exp(x)) below the threshold 20, as Kahan's log(1 + e) * e / ((1 + e) - 1):
    log1p has no vectorised CPU kernel (10x slower than log here); this keeps log1p's precision."""
    e = torch.exp(x.clamp(max=20.0))
    one_e = 1.0 + e
    den = one_e - 1.0
    tiny = den == 0  # e below eps: log1p(e) = e
    log1p = torch.where(tiny, e, torch.log(one_e) * e / torch.where(tiny, torch.ones_like(den), den))
    return torch.where(x > 20.0, x, log1p)


def _recurrence_16(a, x):
    """Inclusive ``h_i = a_i h_{i-1} + x_i`` along dim -2 (length 16), and the running products."""
    hs, ps = [x[..., 0, :]], [a[..., 0, :]]
    for i in range(1, a.shape[-2]):
        hs.append(a[..., i, :] * hs[-1] + x[..., i, :])
        ps.append(a[..., i, :] * ps[-1])
    return torch.stack(ps, dim=-2), torch.stack(hs, dim=-2)


def _fused_available() -> bool:
    if 'kernels' not in _fused_state and 'error' not in _fused_state:
        try:
            kernels = {
                f.__name__: torch.compile(f, fullgraph=True, dynamic=True)
                for f in (_local_scan, _chunk_summaries, _recurrence_16, _bwd_summaries, _local_scan_bwd)
            }
            _fused_state['kernels'] = kernels
            # compile something small now: fail early, once
            _kernel('_recurrence_16', torch.rand(2, 16, 3), torch.rand(2, 16, 3))
        except Exception as e:  # noqa: BLE001 - any compiler failure means: use the eager scan
            _fused_failed(e)
    return 'kernels' in _fused_state


def _fused_failed(e: Exception) -> None:
    """Turns the fused backend off for this process, with one warning that says why."""
    _fused_state.pop('kernels', None)
    _fused_state['error'] = compile_failed('selective_scan: fused backend', e, 'using the eager scan')


def _kernel(name: str, *args):
    """Calls a compiled kernel. Shapes are dynamic without duck sizing (dims that happen to be equal
    are not assumed equal), so new shapes rarely recompile; the limit is raised for the few variants
    (size-1 dims, thread count) a model needs."""
    import torch._dynamo.config as dynamo_config
    import torch.fx.experimental._config as fx_config

    with dynamo_config.patch(recompile_limit=64), fx_config.patch(use_duck_shape=False):
        return _fused_state['kernels'][name](*args)


def _linear_recurrence(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Inclusive ``h_c = a_c h_{c-1} + x_c`` along dim 3 of (b, g, h, C, N): 16-step unrolled
    recurrences, then the same on the group ends (recursively), then one correction."""
    n_steps = a.shape[3]
    groups = -(-n_steps // 16)
    pad = groups * 16 - n_steps
    if pad:  # identity steps: a = 1, x = 0
        a = F.pad(a, (0, 0, 0, pad), value=1.0)
        x = F.pad(x, (0, 0, 0, pad))
    shape = (*a.shape[:3], groups, 16, a.shape[-1])
    prods, states = _kernel(
        '_recurrence_16', a.reshape(-1, 16, shape[-1]).contiguous(), x.reshape(-1, 16, shape[-1]).contiguous()
    )
    prods, states = prods.view(shape), states.view(shape)
    if groups > 1:
        ends = _linear_recurrence(prods[:, :, :, :, -1], states[:, :, :, :, -1])
        entering = F.pad(ends[:, :, :, :-1], (0, 0, 1, 0))  # state entering each group
        states = states + prods * entering.unsqueeze(4)
    return states.flatten(3, 4)[:, :, :, :n_steps]


def _fused_scan(
    uf: torch.Tensor,
    delta: torch.Tensor,
    A_: torch.Tensor,
    Bv: torch.Tensor,
    Cv: torch.Tensor,
    g: int,
    D: torch.Tensor | None,
    delta_bias: torch.Tensor | None,
    delta_softplus: bool,
    keep: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fused-kernel scan of raw delta: (b, d, L) -> y (b, d, L) with the D skip (not z), and the last
    state (b, d, N). ``keep``, when given, receives what the fused backward needs (chunked B / C,
    final step sizes, chunk decays and inclusive chunk-end states: all small except B / C)."""
    b, d, L = uf.shape
    h, n, T = d // g, A_.shape[1], _FUSED_T
    nc = -(-L // T)
    pad = nc * T - L
    if pad:  # padded steps get delta = 0 and u = 0 (in the kernel): the state passes through unchanged
        delta, uf = F.pad(delta, (0, pad)), F.pad(uf, (0, pad))
    dl, ul = delta.contiguous().view(b, g, h, nc, T, 1), uf.contiguous().view(b, g, h, nc, T, 1)
    Bc, Cc = _chunked(Bv, nc, pad), _chunked(Cv, nc, pad)
    A2 = (A_ * _LOG2E).view(1, g, h, 1, n)
    bias = (uf.new_zeros(d) if delta_bias is None else delta_bias.to(uf.dtype)).view(1, g, h, 1, 1, 1)
    dl, du, decay, ends = _kernel('_chunk_summaries', dl, ul, bias, A2, Bc, L, bool(delta_softplus))
    states = _linear_recurrence(decay, ends)  # inclusive state at each chunk end
    Dv = (uf.new_zeros(d) if D is None else D.to(uf.dtype)).view(1, g, h, 1, 1)
    y = _kernel('_local_scan', dl, du, A2, Bc, Cc, states, ul, Dv)
    if keep is not None:
        keep.update(Bc=Bc, Cc=Cc, dl=dl, ul=ul, A2=A2, decay=decay, states=states)
    return y.reshape(b, d, nc * T)[..., :L], states[:, :, :, -1].reshape(b, d, n)


def _chunked(t: torch.Tensor, nc: int, pad: int) -> torch.Tensor:
    """(b|1, g|1, h|1, L|1, N) -> (.., nc|1, T, N), zero-padded to nc * T steps."""
    if t.shape[3] == 1:  # the same for every step
        return t.unsqueeze(3).expand(-1, -1, -1, -1, _FUSED_T, -1)
    return (F.pad(t, (0, 0, 0, pad)) if pad else t).unflatten(3, (nc, _FUSED_T)).contiguous()


# --- fused backward -------------------------------------------------------------------------------
# Reverse-mode of the recurrence, with the forward's structure. With g_t = dL/dh_t (the adjoint):
#     g_t = dy_t C_t + a_{t+1} g_{t+1},        a_t = exp(delta_t A)
#     dC_t = dy_t h_t,   dB_t = g_t delta_t u_t,   du_t = delta_t <g_t, B_t> + D dy_t,
#     ddelta_t = u_t <g_t, B_t> + <g_t a_t h_{t-1}, A>,   dA = sum_t delta_t g_t a_t h_{t-1}.
# (a) per chunk, the adjoint a chunk hands to the previous one from its own dy alone:
#     sum_t exp(A * cumdelta_t) dy_t C_t (one exp per element, like the forward's chunk summaries);
# (b) a reverse linear recurrence over chunks (the forward's, on flipped chunks), with the chunk decays
#     saved by the forward; (c) one kernel per chunk that recomputes h_t from the saved chunk-start
#     state (16 unrolled steps, states kept) and runs the adjoint back over the chunk, emitting every
#     gradient. All hand-written and compiled like the forward: tracing autograd through the unrolled
#     forward took minutes to compile.


def _bwd_summaries(dl, dy, A2, C):
    """Per chunk, the adjoint handed to the previous chunk from this chunk's dy alone,
    sum_t exp(A * sum_{s<=t} delta_s) dy_t C_t.

    dl, dy: (b, g, h, nc, T, 1); A2: (1, g, h, 1, N) = A*log2(e); C: broadcastable to (b, g, h, nc, T, N).
    Returns (b, g, h, nc, N)."""
    cum = dl.cumsum(dim=4)
    return (torch.exp2(cum * A2.unsqueeze(-2)) * dy * C).sum(-2)


def _local_scan_bwd(dl, ul, A2, B, C, states, carry, dy):
    """Gradients inside each chunk. dl, ul, dy: (b, g, h, nc, T, 1) final step sizes, u and dL/dy
    (the scan output, before the D skip); A2: (1, g, h, 1, N); B, C: broadcastable to (b, g, h, nc, T, N);
    states: (b, g, h, nc, N) inclusive chunk-end states of the forward; carry: (b, g, h, nc, N) the
    adjoint entering each chunk's last step from the later chunks (already times their decay).

    Returns, for each step t of the chunk in order, dB_t, dC_t per channel (b, g, h, nc, N) and du_t
    (without the D term), ddelta_t (b, g, h, nc); then dA per chunk (b, g, h, nc, N). One tensor per
    step, not stacked: a stacked (.., T, N) output made Inductor write every step twice (2x slower)."""
    T = dl.shape[4]
    h = F.pad(states[:, :, :, :-1], (0, 0, 1, 0))  # state entering the chunk
    hs, decays = [h], []
    for t in range(T):  # forward again, keeping the chunk's states
        a = torch.exp2(dl[:, :, :, :, t] * A2)
        h = a * h + dl[:, :, :, :, t] * ul[:, :, :, :, t] * B[:, :, :, :, t]
        decays.append(a)
        hs.append(h)
    A = A2 * (1.0 / _LOG2E)
    gnext = carry
    out = [None] * (4 * T)
    dA = torch.zeros_like(carry)
    for t in range(T - 1, -1, -1):
        dyt, dlt, ut = dy[:, :, :, :, t], dl[:, :, :, :, t], ul[:, :, :, :, t]
        gt = dyt * C[:, :, :, :, t] + gnext  # the adjoint of h_t
        gb = (gt * B[:, :, :, :, t]).sum(-1)
        x = gt * decays[t] * hs[t]  # dL/d(exp(delta_t A)) * exp(delta_t A)
        out[4 * t : 4 * t + 4] = gt * (dlt * ut), dyt * hs[t + 1], dlt[..., 0] * gb, ut[..., 0] * gb + (x * A).sum(-1)
        dA = dA + x * dlt
        gnext = decays[t] * gt
    return (*out, dA)


def _sum_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Sums the dims of ``t`` that ``shape`` broadcasts (size 1 there)."""
    dims = [i for i, (a, s) in enumerate(zip(t.shape, shape)) if s == 1 and a != 1]
    return t.sum(dims, keepdim=True) if dims else t


class _FusedScanFn(torch.autograd.Function):
    """The fused scan with its fused backward: (uf, raw delta, A, B view, C view, D, delta_bias) -> y
    (b, d, L) with the D skip. B / C views as :func:`_prepare` makes them (broadcastable to
    (b, G, H, L, N)); autograd takes the gradients on through ``_prepare`` (casts, grouping)."""

    @staticmethod
    def forward(ctx, uf, delta, A_, Bv, Cv, D, delta_bias, g: int, delta_softplus: bool):
        keep = {}
        y, _ = _fused_scan(uf, delta, A_, Bv, Cv, g, D, delta_bias, delta_softplus, keep)
        ctx.g, ctx.softplus, ctx.shapes = g, delta_softplus, (Bv.shape, Cv.shape)
        ctx.has = (D is not None, delta_bias is not None)
        ctx.save_for_backward(
            uf, delta, A_, Bv, Cv, D, delta_bias, keep['Bc'], keep['Cc'], keep['dl'], keep['decay'], keep['states']
        )
        return y

    @staticmethod
    def backward(ctx, gy):
        uf, delta, A_, Bv, Cv, D, delta_bias, Bc, Cc, dl, decay, states = ctx.saved_tensors
        grads = None
        if 'kernels' in _fused_state:
            try:
                grads = _fused_backward(ctx, gy, uf, delta, A_, D, delta_bias, Bc, Cc, dl, decay, states)
            except Exception as e:  # noqa: BLE001 - the compiler failing: recompute with the eager scan
                _fused_failed(e)
        if grads is None:
            grads = _eager_backward(ctx, gy, uf, delta, A_, Bv, Cv, D, delta_bias)
        return (*grads, None, None)


def _fused_backward(ctx, gy, uf, delta, A_, D, delta_bias, Bc, Cc, dl, decay, states):
    """Gradients of :class:`_FusedScanFn` through the compiled backward kernels."""
    b, d, L = uf.shape
    g = ctx.g
    h, n, T = d // g, A_.shape[1], _FUSED_T
    nc = dl.shape[3]
    pad = nc * T - L
    gy = gy.to(uf.dtype)
    dy = (F.pad(gy, (0, pad)) if pad else gy).contiguous().view(b, g, h, nc, T, 1)
    ul = (F.pad(uf, (0, pad)) if pad else uf).contiguous().view(b, g, h, nc, T, 1)
    A2 = (A_ * _LOG2E).view(1, g, h, 1, n)
    local = _kernel('_bwd_summaries', dl, dy, A2, Cc)
    # adjoint leaving each chunk to the left: X_c = local_c + decay_c X_{c+1} (a recurrence on flipped chunks)
    X = _linear_recurrence(decay.flip(3), local.flip(3)).flip(3)
    carry = F.pad(X[:, :, :, 1:], (0, 0, 0, 1))  # entering chunk c from chunk c + 1 (none for the last)
    out = _kernel('_local_scan_bwd', dl, ul, A2, Bc, Cc, states, carry, dy)
    dA = out[-1]
    # per-channel dB_t / dC_t summed over the channels (and steps) that share them, then stacked
    dB = torch.stack([_sum_to(t, Bc.shape[:4] + Bc.shape[5:]) for t in out[0:-1:4]], dim=4)
    dC = torch.stack([_sum_to(t, Cc.shape[:4] + Cc.shape[5:]) for t in out[1:-1:4]], dim=4)
    du, ddl = torch.stack(out[2:-1:4], dim=4), torch.stack(out[3:-1:4], dim=4)

    def per_token(t):  # (b, g, h, nc, T) -> (b, d, L)
        return t.reshape(b, d, nc * T)[..., :L]

    def per_state(t, shape):  # (b|1, g|1, h|1, nc|1, T, N) -> the B / C view's shape (b|1, G|1, H|1, L|1, N)
        if t.shape[3] == 1 and shape[3] == 1:  # constant B / C: also summed over the chunk's steps
            return t.sum(4)
        return t.flatten(3, 4)[:, :, :, :L]

    du, ddl = per_token(du), per_token(ddl)
    dD = None
    if ctx.has[0]:
        du = du + gy * D.to(uf.dtype)[None, :, None]
        dD = (gy * uf).sum((0, 2)).to(D.dtype)
    if ctx.softplus:
        bias = 0.0 if delta_bias is None else delta_bias.to(uf.dtype)[None, :, None]
        ddl = ddl * torch.sigmoid(delta + bias)
    dbias = ddl.sum((0, 2)).to(delta_bias.dtype) if ctx.has[1] else None
    dA_ = dA.sum((0, 3)).reshape(d, n)
    dBv, dCv = per_state(dB, ctx.shapes[0]), per_state(dC, ctx.shapes[1])
    return du, ddl, dA_, dBv, dCv, dD, dbias


def _eager_backward(ctx, gy, uf, delta, A_, Bv, Cv, D, delta_bias):
    """Fallback gradients of :class:`_FusedScanFn` (a backward kernel failed to compile): the eager scan
    recomputed under autograd, with B / C expanded to one group per channel."""
    b, d, L = uf.shape
    n = A_.shape[1]
    args = [uf, delta, A_, Bv, Cv, D, delta_bias]
    leaves = [None if t is None else t.detach().requires_grad_(True) for t in args]
    with torch.enable_grad():
        u_, dt_, A2_, B_, C_, D_, bias_ = leaves

        def per_channel(t):  # (b|1, G|1, H|1, L|1, N) -> (b, d, N, L), one group per channel
            return t.expand(b, ctx.g, d // ctx.g, L, n).reshape(b, d, L, n).transpose(2, 3)

        y = selective_scan(
            u_, dt_, A2_, per_channel(B_), per_channel(C_), D_, None, bias_, ctx.softplus, backend='eager'
        )
        used = [t for t in leaves if t is not None]
        grads = iter(torch.autograd.grad(y, used, gy, allow_unused=True))
    return tuple(None if t is None else next(grads) for t in leaves)


def _fused_call(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, dtype, needs_grad=False):
    """:func:`selective_scan` through the compiled kernels (arguments checked by the caller)."""
    # bias and softplus run inside the first kernel (aten's CPU softplus is slow)
    delta, Bv, Cv, g = _prepare(u, delta, A, B, C, None, False, dtype)
    uf = u.to(dtype)
    if needs_grad:  # autograd needs the graph: the fused backward (not with return_last_state)
        y = _FusedScanFn.apply(uf, delta, A.to(dtype), Bv, Cv, D, delta_bias, g, bool(delta_softplus))
        return _finish(y, uf, None, z, u.dtype, None)
    y, state = _fused_scan(uf, delta, A.to(dtype), Bv, Cv, g, D, delta_bias, delta_softplus)
    return _finish(y, uf, None, z, u.dtype, state if return_last_state else None)
