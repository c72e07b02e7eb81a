"""Re-identification retrieval metric (mAP and CMC) for mmengine evaluators."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from zoo.engine.metrics import evaluate_keyed
from zoo.registry import METRICS


@METRICS.register_module()
class ReIDMetric(BaseMetric):
    """mAP and CMC rank-k (percent) of query -> gallery retrieval under the standard Re-ID protocol.

    The protocol of Market-1501 (Zheng et al., ICCV 2015), used as well for MSMT17 (Wei et al., CVPR 2018) and
    VeRi-776 (Liu et al., ECCV 2016), as torchreid's ``eval_market1501`` computes it: every query ranks the
    whole gallery by distance; gallery items with the query's identity *and* camera are removed from that
    query's ranking (the same view is not a re-identification), and so are junk items (pid ``-1``). A query
    with no true match left is skipped, and counted. Then

    * AP of a query = mean over its true matches of (matches up to it) / (its rank in the filtered list);
      mAP = mean AP over the valid queries;
    * rank-k = fraction of valid queries whose first true match is within the first k of the filtered list.

    Inputs: one prediction dict per image with ``embedding`` (Tensor[D]; the key is ``embedding_key``) and the
    image's ``pid`` (int), ``camid`` (int) and ``split`` (``'query'`` or ``'gallery'``), each taken from the
    prediction dict when it has it, otherwise from the batch's ``data_samples`` (the zoo Re-ID datasets put
    them there; use ``split='test'`` for one loader over query + gallery). Returns ``reid/mAP``,
    ``reid/rank1``, ``reid/rank5``, ``reid/rank10`` (``prefix`` replaces ``reid``).

    Samples a dataset could not read are left out of their batch (``zoo.engine.SkippedSamplesHook``), never
    replaced; the metric logs how many images it ranked, how many were skipped and how many queries had no
    valid match. Under DDP the results are gathered like :class:`zoo.engine.Accuracy` does: keyed by
    ``(split, sample_idx)`` when the batches carry ``sample_idx``, so the sampler's padding is counted once.
    After ``evaluate``: ``num_samples``, ``num_skipped``, ``num_invalid_queries``.

    Args:
        metric: ``'euclidean'`` or ``'cosine'`` distance.
        normalize: L2-normalise the embeddings first (TransReID's ``TEST.FEAT_NORM``; cosine always does).
        topk: CMC ranks to report.
        embedding_key: the prediction dict's embedding key.
        chunk_size: queries ranked at once (memory ~ ``chunk_size * num_gallery * 30`` bytes).
        collect_device / prefix: as in mmengine's ``BaseMetric``.
    """

    default_prefix = 'reid'

    def __init__(
        self,
        metric: str = 'euclidean',
        normalize: bool = False,
        topk: Sequence[int] = (1, 5, 10),
        embedding_key: str = 'embedding',
        chunk_size: int = 128,
        collect_device: str = 'cpu',
        prefix: str | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if metric not in ('euclidean', 'cosine'):
            raise ValueError(f"ReIDMetric: metric must be 'euclidean' or 'cosine', got {metric!r}")
        self.metric = metric
        self.normalize = normalize
        self.topk = tuple(int(k) for k in topk)
        self.embedding_key = embedding_key
        self.chunk_size = chunk_size
        self.num_samples: int | None = None
        self.num_skipped: int | None = None
        self.num_invalid_queries: int | None = None

    def process(self, data_batch: Any, data_samples: Sequence[dict]) -> None:
        n = len(data_samples)
        fields = {k: _batch_values(data_batch, k, n) for k in ('pid', 'camid', 'split', 'sample_idx')}
        for i, sample in enumerate(data_samples):
            if self.embedding_key not in sample:
                raise KeyError(
                    f"ReIDMetric: prediction has no '{self.embedding_key}' (keys {sorted(sample)}); "
                    'set embedding_key to the model output key'
                )
            info = {}
            for k in ('pid', 'camid', 'split'):
                value = sample[k] if k in sample else (fields[k][i] if fields[k] is not None else None)
                if value is None:
                    raise KeyError(f"ReIDMetric: no '{k}' in the prediction or in the batch's data_samples")
                info[k] = value
            split = str(info['split'])
            if split not in ('query', 'gallery'):
                raise ValueError(f"ReIDMetric: sample split must be 'query' or 'gallery', got {split!r}")
            idx = fields['sample_idx'][i] if fields['sample_idx'] is not None else None
            key = (split, int(idx)) if idx is not None else None
            emb = sample[self.embedding_key].detach().float().cpu().reshape(-1)
            self.results.append((key, emb, int(info['pid']), int(info['camid']), split == 'query'))

    def evaluate(self, size: int) -> dict:
        metrics, n = evaluate_keyed(self, size)
        self.num_skipped = max(size - n, 0) if n is not None else None
        print_log(
            f'{self.prefix or "reid"} over {n} of {size} images; {self.num_skipped} skipped; '
            f'{self.num_invalid_queries} queries without a valid gallery match left out',
            logger='current',
        )
        return metrics

    def compute_metrics(self, results: list) -> dict[str, float]:
        self.num_samples = len(results)
        query = [r for r in results if r[4]]
        gallery = [r for r in results if not r[4]]
        if not query or not gallery:
            self.num_invalid_queries = len(query)
            print_log(f'ReIDMetric: {len(query)} query and {len(gallery)} gallery images; need both', logger='current')
            return {'mAP': float('nan'), **{f'rank{k}': float('nan') for k in self.topk}}
        qf, q_pid, q_cam = _stack(query)
        gf, g_pid, g_cam = _stack(gallery)
        ap, first = evaluate_rank(
            qf, gf, q_pid, q_cam, g_pid, g_cam, metric=self.metric, normalize=self.normalize, chunk=self.chunk_size
        )
        valid = torch.isfinite(first)
        self.num_invalid_queries = int((~valid).sum())
        if not valid.any():
            return {'mAP': float('nan'), **{f'rank{k}': float('nan') for k in self.topk}}
        out = {'mAP': ap[valid].mean().item() * 100.0}
        for k in self.topk:
            out[f'rank{k}'] = (first[valid] <= k).double().mean().item() * 100.0
        return out


def _stack(rows: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        torch.stack([r[1] for r in rows]),
        torch.tensor([r[2] for r in rows]),
        torch.tensor([r[3] for r in rows]),
    )


def distance_matrix(qf: torch.Tensor, gf: torch.Tensor, metric: str = 'euclidean') -> torch.Tensor:
    """``(Q, D)`` x ``(G, D)`` -> ``(Q, G)`` Euclidean or cosine (``1 - cos``) distances."""
    if metric == 'cosine':
        return 1.0 - torch.nn.functional.normalize(qf, dim=1) @ torch.nn.functional.normalize(gf, dim=1).T
    return torch.cdist(qf, gf)


def evaluate_rank(
    qf: torch.Tensor,
    gf: torch.Tensor,
    q_pid: torch.Tensor,
    q_cam: torch.Tensor,
    g_pid: torch.Tensor,
    g_cam: torch.Tensor,
    metric: str = 'euclidean',
    normalize: bool = False,
    chunk: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-query AP and rank of the first true match under the standard protocol (see :class:`ReIDMetric`).

    Args:
        qf, gf: ``(Q, D)`` query and ``(G, D)`` gallery embeddings.
        q_pid, q_cam, g_pid, g_cam: ``(Q,)`` / ``(G,)`` identities and cameras (pid ``-1`` = junk).

    Returns:
        ``ap`` ``(Q,)`` float64 and ``first`` ``(Q,)`` float64: the 1-based rank of the first true match in the
        query's filtered ranking; both ``inf`` / ``nan`` for a query without a valid match.
    """
    qf, gf = qf.double(), gf.double()
    if normalize:
        qf, gf = torch.nn.functional.normalize(qf, dim=1), torch.nn.functional.normalize(gf, dim=1)
    aps, firsts = [], []
    for s in range(0, qf.shape[0], chunk):
        dist = distance_matrix(qf[s : s + chunk], gf, metric)
        order = dist.argsort(dim=1, stable=True)  # ties keep gallery order: the same ranking on every run
        pid, cam = g_pid[order], g_cam[order]
        same_id = pid == q_pid[s : s + chunk, None]
        # the standard filter: same identity seen by the same camera, and junk images, are not ranked at all
        keep = ~(same_id & (cam == q_cam[s : s + chunk, None])) & (pid != -1)
        good = same_id & keep
        pos = keep.cumsum(dim=1).double()  # 1-based rank in the filtered list (at kept positions)
        hits = good.cumsum(dim=1).double()
        num_good = good.sum(dim=1).double()
        precision = torch.where(good, hits / pos.clamp(min=1), torch.zeros_like(pos))
        aps.append(precision.sum(dim=1) / num_good)  # nan for no match (0 / 0)
        firsts.append(torch.where(good, pos, torch.full_like(pos, float('inf'))).amin(dim=1))
    return torch.cat(aps), torch.cat(firsts)


def _batch_values(data_batch: Any, key: str, n: int) -> list | None:
    """``data_samples[key]`` of a collated batch (dict of lists/tensors, or list of dicts) as a list of n, or None."""
    ds = data_batch.get('data_samples') if isinstance(data_batch, dict) else None
    if isinstance(ds, dict) and key in ds:
        value = ds[key]
        values = value.view(-1).tolist() if isinstance(value, torch.Tensor) else list(value)
    elif isinstance(ds, (list, tuple)) and ds and all(isinstance(d, dict) and key in d for d in ds):
        values = [d[key] for d in ds]
    else:
        return None
    values = [v.item() if isinstance(v, torch.Tensor) else v for v in values]
    return values if len(values) == n else None
