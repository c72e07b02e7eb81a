"""Multi-head scanning (MHS-VM, arXiv:2406.05992): 2-D scan routes, the per-head selective-scan
engine, Scan Route Attention (GFU) and the multi-head scan module.

Routes are generated for any ``H x W`` (the official code reads them from a file made for 256x256
inputs) and kept as non-persistent buffers, so they follow ``.to(device)`` and never enter the
state dict, exactly like the official checkpoints, which carry no routes.

Parameter names follow the official ``models/vmunet/mhsm.py`` (``x_ssproj``, ``scanhead_{C,X,S,Z}``,
``mambaeng.{x_proj_weight,dt_projs_weight,dt_projs_bias,A_logs,Ds}``, ``cat_norm``, ``y_proj``).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F
from timm.layers import register_notrace_module

from .fast_inference import float32_region
from .selective_scan import selective_scan

__all__ = [
    'PATTERNS',
    'route_order',
    'pattern_routes',
    'ScanRoutes',
    'ScanRouteAttention',
    'MambaEngine',
    'ScanHead',
    'MultiHeadScan',
    'run_engines',
]

# Head i scans along PATTERNS[i]; 3 heads use C, X, S and 4 heads add Z (as the official code).
PATTERNS = ('C', 'X', 'S', 'Z')
_ROUTE_CACHE_SIZE = 16  # route sets kept per ScanRoutes module for grids other than the build-time one


def _snake_rows(h: int, w: int) -> torch.Tensor:
    i = torch.arange(h, device='cpu')[:, None].expand(h, w)
    j = torch.arange(w, device='cpu')[None, :].expand(h, w)
    j = torch.where(i % 2 == 1, w - 1 - j, j)  # odd rows run right to left
    return (i * w + j).reshape(-1)


def _snake_cols(h: int, w: int) -> torch.Tensor:
    j = torch.arange(w, device='cpu')[:, None].expand(w, h)
    i = torch.arange(h, device='cpu')[None, :].expand(w, h)
    i = torch.where(j % 2 == 1, h - 1 - i, i)  # odd columns run bottom to top
    return (i * w + j).reshape(-1)


def _antidiagonal_zigzag(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows/cols of the anti-diagonal zig-zag: diagonal k = i + j in order; even k runs up-right
    (i decreasing), odd k down-left (i increasing)."""
    i = torch.arange(h, device='cpu')[:, None].expand(h, w).reshape(-1)
    j = torch.arange(w, device='cpu')[None, :].expand(h, w).reshape(-1)
    k = i + j
    within = torch.where(k % 2 == 0, -i, i)
    order = torch.argsort(k * (2 * h + 1) + within + h)
    return i[order], j[order]


def _spiral(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows/cols of the clockwise spiral from the top-left corner inwards (a loop over rings)."""
    rows: list[torch.Tensor] = []
    cols: list[torch.Tensor] = []
    top, left, bottom, right = 0, 0, h - 1, w - 1
    while top <= bottom and left <= right:
        if top == bottom:  # one row left: left to right
            rows.append(torch.full((right - left + 1,), top, device='cpu'))
            cols.append(torch.arange(left, right + 1, device='cpu'))
            break
        if left == right:  # one column left: top to bottom
            rows.append(torch.arange(top, bottom + 1, device='cpu'))
            cols.append(torch.full((bottom - top + 1,), left, device='cpu'))
            break
        # top row left->right, right column down, bottom row right->left, left column up
        rows += [
            torch.full((right - left,), top, device='cpu'),
            torch.arange(top, bottom, device='cpu'),
            torch.full((right - left,), bottom, device='cpu'),
            torch.arange(bottom, top, -1, device='cpu'),
        ]
        cols += [
            torch.arange(left, right, device='cpu'),
            torch.full((bottom - top,), right, device='cpu'),
            torch.arange(right, left, -1, device='cpu'),
            torch.full((bottom - top,), left, device='cpu'),
        ]
        top, left, bottom, right = top + 1, left + 1, bottom - 1, right - 1
    return torch.cat(rows), torch.cat(cols)


@lru_cache(maxsize=64)
def route_order(route: str, h: int, w: int) -> torch.Tensor:
    """Flat pixel indices (row-major) in the order one route visits them, shape ``(h*w,)``.

    Routes: ``C0`` row snake, ``C1`` column snake, ``X0`` anti-diagonal zig-zag, ``X1`` its
    left-right mirror, ``S0`` clockwise spiral, ``S1`` its top-bottom mirror, ``Z0`` row-major
    raster, ``Z1`` column-major raster.
    """
    if h < 1 or w < 1:
        raise ValueError(f'h, w: route grid must be at least 1x1, got {h}x{w}')
    if route == 'C0':
        return _snake_rows(h, w)
    if route == 'C1':
        return _snake_cols(h, w)
    if route in ('X0', 'X1'):
        i, j = _antidiagonal_zigzag(h, w)
        return i * w + (j if route == 'X0' else w - 1 - j)
    if route in ('S0', 'S1'):
        i, j = _spiral(h, w)
        return (i if route == 'S0' else h - 1 - i) * w + j
    if route == 'Z0':
        return torch.arange(h * w, device='cpu')
    if route == 'Z1':
        return torch.arange(h * w, device='cpu').view(h, w).t().reshape(-1)
    raise ValueError(f'route: unknown scan route {route!r}; expected one of C0 C1 X0 X1 S0 S1 Z0 Z1')


def pattern_routes(pattern: str, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward orders ``(2, h*w)`` of a pattern's two routes and their inverse permutations."""
    if pattern not in PATTERNS:
        raise ValueError(f'pattern: expected one of {PATTERNS}, got {pattern!r}')
    fwd = torch.stack([route_order(pattern + '0', h, w), route_order(pattern + '1', h, w)])
    inv = torch.argsort(fwd, dim=1)
    return fwd, inv


def _sequence_indices(fwd: torch.Tensor, inv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 4 sequences of a pattern as gather indices: route 0, route 0 reversed, route 1, route 1
    reversed (official order), and the positions where each pixel sits in each sequence."""
    L = fwd.shape[1]
    seq = torch.stack([fwd[0], fwd[0].flip(0), fwd[1], fwd[1].flip(0)])
    pos = torch.stack([inv[0], L - 1 - inv[0], inv[1], L - 1 - inv[1]])
    return seq, pos


class ScanRoutes(nn.Module):
    """Gathers a (b, d, h, w) map into the 4 sequences of one pattern and scatters them back.

    The K = 4 sequences are: route 0, route 0 reversed, route 1, route 1 reversed (official order).
    Routes for the build-time grid are (non-persistent) buffers, computed from the pattern (again by
    :meth:`init_non_persistent_buffers` after a meta-device build and ``to_empty``); other grids are
    generated on first use and cached per device (the 16 most recently used).
    """

    def __init__(
        self,
        pattern: str,
        grid_size: tuple[int, int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,  # accepted for the dd convention; the buffers are integer indices
    ) -> None:
        super().__init__()
        self.pattern = pattern
        hw = tuple(grid_size) if grid_size is not None else (1, 1)
        self._grid = hw
        self._cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        empty = torch.empty(4, hw[0] * hw[1], dtype=torch.long, device=device)
        self.register_buffer('seq_index', empty, persistent=False)
        self.register_buffer('pixel_pos', empty.clone(), persistent=False)
        self._init_buffers()

    def _init_buffers(self) -> None:
        """Fill the build-time grid's route buffers (nothing to fill on the meta device)."""
        self._cache.clear()
        if self.seq_index.is_meta:
            return
        seq, pos = _sequence_indices(*pattern_routes(self.pattern, *self._grid))
        with torch.no_grad():
            self.seq_index.copy_(seq)
            self.pixel_pos.copy_(pos)

    def init_non_persistent_buffers(self) -> None:
        """Recompute the route buffers (timm's hook, called by ``reinit_non_persistent_buffers``)."""
        self._init_buffers()

    def routes(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(4, h*w) sequence -> pixel indices and (4, h*w) pixel -> sequence positions."""
        if (h, w) == self._grid and self.seq_index.device == device:
            return self.seq_index, self.pixel_pos
        key = (h, w, str(device))
        if key in self._cache:
            self._cache[key] = self._cache.pop(key)  # most recently used last
        else:
            if len(self._cache) >= _ROUTE_CACHE_SIZE:  # multi-scale training sees many sizes
                self._cache.pop(next(iter(self._cache)))
            seq, pos = _sequence_indices(*pattern_routes(self.pattern, h, w))
            self._cache[key] = (seq.to(device), pos.to(device))
        return self._cache[key]

    def gather(self, x: torch.Tensor) -> torch.Tensor:
        """(b, d, h, w) -> (b, 4, d, h*w)."""
        b, d, h, w = x.shape
        seq, _ = self.routes(h, w, x.device)
        return x.reshape(b, d, h * w)[:, :, seq].transpose(1, 2)

    def scatter(self, ys: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(b, 4, d, h*w) in sequence order -> (b, 4, d, h*w) in row-major pixel order."""
        _, pos = self.routes(h, w, ys.device)
        b, k, d, L = ys.shape
        return ys.gather(3, pos.view(1, k, 1, L).expand(b, k, d, L))


class ScanRouteAttention(nn.Module):
    """Scan Route Attention (the official ``GFU``): fuses K route outputs with a CV gate.

    ``z = sum_k y_k * relu(CV - t)``, ``CV = std_k(y) / (mean_k(y - min_k y) + 1e-5)`` with the
    unbiased std. ``t`` is a plain float (not a parameter, not in the state dict).
    """

    def __init__(self, t: float = 0.0) -> None:
        super().__init__()
        self.t = float(t)

    def forward(self, ys: torch.Tensor) -> torch.Tensor:
        """(b, K, d, L) -> (b, d, L) in ``ys``' dtype, computed in float32 (at least): the CV gate divides the
        spread of K nearly equal route outputs by their range, which bfloat16 rounds to noise."""
        dtype = ys.dtype
        if dtype not in (torch.float32, torch.float64):
            ys = ys.float()
        k = ys.shape[1]
        parts = ys.unbind(1)  # elementwise over K slices: much faster than reductions over dim 1
        total = parts[0]
        low = parts[0]
        for p in parts[1:]:
            total = total + p
            low = torch.minimum(low, p)
        mean = total / k
        var = sum((p - mean) ** 2 for p in parts) / (k - 1)  # unbiased, as torch.std
        # sqrt with a zero (sub)gradient where all routes agree exactly (torch.std's gradient is NaN)
        std = torch.where(var > 0, var.clamp_min(1e-30).sqrt(), torch.zeros_like(var))
        cv = std / (mean - low + 1e-5)  # mean_k(y - min_k y) = mean - min
        return (total * F.relu(cv - self.t)).to(dtype)

    def extra_repr(self) -> str:
        return f't={self.t}'


class MambaEngine(nn.Module):
    """Selective-scan SSM over K = 4 sequences with packed per-direction parameters (expansion 1).

    Parameters (official names and shapes, ``r = ceil(d/16)``): ``x_proj_weight`` (4, r + 2N, d),
    ``dt_projs_weight`` (4, d, r), ``dt_projs_bias`` (4, d), ``A_logs`` (4d, N), ``Ds`` (4d,).
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        k: int = 4,
        dt_min: float = 0.001,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.d_model = d_model
        self.d_state = d_state
        self.k = k
        self.dt_rank = math.ceil(d_model / 16)
        self._dt_range = (dt_min, dt_max, dt_init_floor)
        self.x_proj_weight = nn.Parameter(torch.empty(k, self.dt_rank + 2 * d_state, d_model, **dd))
        self.dt_projs_weight = nn.Parameter(torch.empty(k, d_model, self.dt_rank, **dd))
        self.dt_projs_bias = nn.Parameter(torch.empty(k, d_model, **dd))
        self.A_logs = nn.Parameter(torch.empty(k * d_model, d_state, **dd))
        self.Ds = nn.Parameter(torch.empty(k * d_model, **dd))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The Mamba initialisation, in place (a no-op on the meta device)."""
        bound = 1.0 / math.sqrt(self.d_model)  # nn.Linear's default init
        self.x_proj_weight.uniform_(-bound, bound)
        std = self.dt_rank**-0.5
        self.dt_projs_weight.uniform_(-std, std)
        # softplus(bias) log-uniform in [dt_min, dt_max], drawn in float32 on the parameter's device
        dt_min, dt_max, floor = self._dt_range
        u = torch.rand(self.dt_projs_bias.shape, device=self.dt_projs_bias.device)
        dt = torch.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)
        self.dt_projs_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real: A = -(1..N) for every channel and direction
        a_init = torch.arange(1, self.d_state + 1, dtype=torch.float32, device=self.A_logs.device)
        self.A_logs.copy_(torch.log(a_init).expand_as(self.A_logs))
        self.Ds.fill_(1.0)

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        """(b, K, d, L) -> (b, K, d, L), float32 (float64 for float64 inputs)."""
        return run_engines([self], xs)


def run_engines(engines: list[MambaEngine], xs: torch.Tensor) -> torch.Tensor:
    """Runs several engines (same sizes) in one selective-scan call: their K-direction groups are
    stacked, so ``xs`` is (b, E*K, d, L) with engine e owning groups e*K .. e*K+K-1.

    Under autocast (``--bf16``) the engines run in float32 (autocast off) and return float32: the step sizes
    ``exp(delta * A)`` compound over the whole sequence, and the routes' outputs feed the CV gate of
    :class:`ScanRouteAttention`, which needs their small differences."""
    if torch.is_autocast_enabled(xs.device.type):
        with float32_region(xs):
            return run_engines(engines, xs.float())
    b, k, d, L = xs.shape
    e0 = engines[0]

    def cat(name: str) -> torch.Tensor:
        ts = [getattr(e, name) for e in engines]
        return ts[0] if len(ts) == 1 else torch.cat(ts, dim=0)

    proj = torch.einsum('bkdl,kcd->bkcl', xs, cat('x_proj_weight'))
    dts, Bs, Cs = torch.split(proj, [e0.dt_rank, e0.d_state, e0.d_state], dim=2)
    dts = torch.einsum('bkrl,kdr->bkdl', dts, cat('dt_projs_weight'))
    A_logs = cat('A_logs')
    As = -torch.exp(A_logs if xs.dtype == torch.float64 else A_logs.float())
    ys = selective_scan(
        xs.reshape(b, k * d, L),
        dts.reshape(b, k * d, L),
        As,
        Bs.contiguous(),
        Cs.contiguous(),
        D=cat('Ds'),
        delta_bias=cat('dt_projs_bias').reshape(-1),
        delta_softplus=True,
    )
    return ys.view(b, k, d, L)


@register_notrace_module  # FX: one leaf (routes picked and cached per map size, chunked scan)
class ScanHead(nn.Module):
    """One head: scan a subspace map along one pattern's 4 sequences, fuse them with SRA."""

    def __init__(
        self,
        dim_sub: int,
        d_state: int = 16,
        pattern: str = 'C',
        gfu_t: float = 0.0,
        grid_size: tuple[int, int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        self.esfusion = ScanRouteAttention(gfu_t)
        self.mambaeng = MambaEngine(dim_sub, d_state, **dd)
        self.routes = ScanRoutes(pattern, grid_size, **dd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, d, h, w) -> (b, d, h*w) in row-major order."""
        _, _, h, w = x.shape
        ys = self.mambaeng(self.routes.gather(x))
        return self.esfusion(self.routes.scatter(ys, h, w))


@register_notrace_module  # FX: one leaf (routes picked and cached per map size, chunked scan)
class MultiHeadScan(nn.Module):
    """Multi-head scan module (the official ``MHSM``).

    Projects C channels into ``head_num`` subspaces of ``C // head_num`` channels (``x_ssproj``),
    scans each along its own pattern (C, X, S[, Z]), concatenates, then ``cat_norm`` LayerNorm and
    ``y_proj`` back to C when ``with_proj``.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        head_num: int = 4,
        gfu_t: float = 0.0,
        with_proj: bool = True,
        grid_size: tuple[int, int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        dd = {'device': device, 'dtype': dtype}
        super().__init__()
        if head_num not in (3, 4):
            raise ValueError(f'head_num: MHS-VM defines 3 or 4 heads (patterns C, X, S[, Z]), got {head_num}')
        self.d_model = d_model
        self.head_num = head_num
        self.dim_sub = d_model // head_num
        self.patterns = PATTERNS[:head_num]
        self.x_ssproj = nn.Linear(d_model, self.dim_sub * head_num, bias=False, **dd)
        for p in self.patterns:
            self.add_module(f'scanhead_{p}', ScanHead(self.dim_sub, d_state, p, gfu_t, grid_size, **dd))
        self.with_proj = with_proj
        if with_proj:
            self.cat_norm = nn.LayerNorm(self.dim_sub * head_num, **dd)
            self.y_proj = nn.Linear(self.dim_sub * head_num, d_model, bias=False, **dd)

    def set_gfu_t(self, t: float) -> None:
        for p in self.patterns:
            getattr(self, f'scanhead_{p}').esfusion.t = float(t)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(b, C, h, w) -> (b, h, w, C)."""
        b, _, h, w = x.shape
        xs = torch.einsum('bdhw,cd->bchw', x, self.x_ssproj.weight)
        heads = [getattr(self, f'scanhead_{p}') for p in self.patterns]
        parts = torch.split(xs, self.dim_sub, dim=1)
        # All heads' sequences go through one scan call (one group of K directions per head).
        seqs = torch.cat([hd.routes.gather(part) for hd, part in zip(heads, parts)], dim=1)
        ys = run_engines([hd.mambaeng for hd in heads], seqs).split(4, dim=1)
        y = torch.cat([hd.esfusion(hd.routes.scatter(yh, h, w)) for hd, yh in zip(heads, ys)], dim=1)
        y = y.transpose(1, 2)  # (b, L, C')
        if self.with_proj:
            y = self.y_proj(self.cat_norm(y))
        return y.reshape(b, h, w, -1)
