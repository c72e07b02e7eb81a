"""Object re-identification datasets in their published layouts, and the P x K identity sampler.

* Market-1501 (Zheng et al., *Scalable Person Re-identification: A Benchmark*, ICCV 2015);
* MSMT17 (Wei et al., *Person Transfer GAN to Bridge Domain Gap for Person Re-Identification*, CVPR 2018);
* VeRi-776 (Liu et al., *A Deep Learning-Based Approach to Progressive Vehicle Re-identification for Urban
  Surveillance*, ECCV 2016; *Large-scale vehicle re-identification in urban surveillance videos*, ICME 2016).

Images are read as in the zoo's other image datasets (:class:`zoo.data.image_datasets._ImageListDataset`:
true bit depth, unreadable images skipped and reported, albumentations ``pipeline``). Items are::

    dict(inputs=Tensor[3, H, W],
         data_samples=dict(gt_label=int, pid=int, camid=int, split=str, sample_idx=int))

``gt_label`` is the identity relabelled to ``0..N-1`` for the training splits (the classifier target) and the
original identity for ``'query'`` / ``'gallery'``; ``pid`` is always the original identity; ``camid`` is the
camera number of the file name minus one (0-based, as torchreid and fast-reid store it); ``split`` is
``'train'``, ``'query'`` or ``'gallery'``. ``split='test'`` gives the query images followed by the gallery
images in one dataset (each item keeps its own ``split``), which is what one mmengine val/test loader and
:class:`zoo.engine.ReIDMetric` need.

Every dataset exposes ``pids``, ``camids`` and ``splits`` (one entry per index, no image read), which
:class:`IdentityBalancedSampler` and the metric use.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from torch.utils.data import Sampler

from zoo.data.fgvc import _require_dir, parse_int, read_table
from zoo.data.image_datasets import IMG_EXTENSIONS, _ImageListDataset
from zoo.data.skipping import SkippedSample
from zoo.registry import DATA_SAMPLERS, DATASETS

_TRAIN_SPLITS = ('train',)


class _ReIDDataset(_ImageListDataset):
    """Base of the Re-ID datasets: ``records`` are ``(path, pid, camid, split)``; see the module docstring.

    ``train_splits``: the splits whose ``gt_label`` is the relabelled identity (``0..N-1`` in sorted pid
    order over the dataset's own records).
    """

    def __init__(
        self,
        records: list[tuple[str, int, int, str]],
        pipeline: Sequence[dict] | None,
        skip_unreadable: bool | None,
        train_splits: Sequence[str] = _TRAIN_SPLITS,
    ) -> None:
        train_pids = sorted({pid for _, pid, _, s in records if s in train_splits})
        relabel = {pid: i for i, pid in enumerate(train_pids)}
        samples = [(path, relabel[pid] if s in train_splits else pid) for path, pid, _, s in records]
        # classes: the training identities in label order; for evaluation splits, the identities present.
        classes = train_pids or sorted({pid for _, pid, _, _ in records})
        super().__init__(samples, [str(p) for p in classes], pipeline, skip_unreadable)
        self.pids = [pid for _, pid, _, _ in records]
        self.camids = [cam for _, _, cam, _ in records]
        self.splits = [s for _, _, _, s in records]
        self.metainfo.update(num_pids=len(set(self.pids)), num_cams=len(set(self.camids)))

    def __getitem__(self, i: int) -> dict | SkippedSample:
        item = super().__getitem__(i)
        if isinstance(item, dict):
            item['data_samples'].update(pid=self.pids[i], camid=self.camids[i], split=self.splits[i])
        return item


def _split_folders(owner: str, split: str, folders: dict[str, str]) -> list[tuple[str, str]]:
    """``[(item split, folder)]`` for ``split`` (``'test'`` = query then gallery)."""
    if split == 'test':
        return [('query', folders['query']), ('gallery', folders['gallery'])]
    if split not in folders:
        raise ValueError(f'{owner}: split must be one of {[*folders, "test"]}, got {split!r}')
    return [(split, folders[split])]


def _scan(owner: str, folder: Path, pattern: re.Pattern) -> list[tuple[str, int, int]]:
    """``(path, pid, camera number)`` of the images in ``folder`` (sorted by name); a name that does not
    match ``pattern`` (groups: pid, camera) raises ``ValueError`` naming the file."""
    out = []
    for p in sorted(_require_dir(owner, folder).iterdir()):
        if p.suffix.lower() not in IMG_EXTENSIONS:
            continue  # Thumbs.db and similar files ship in some copies
        m = pattern.match(p.name)
        if m is None:
            raise ValueError(f'{owner}: {p}: file name does not match <pid>_c<camera>... ({pattern.pattern})')
        out.append((str(p), int(m.group(1)), int(m.group(2))))
    return out


# ------------------------------------------------------------------------------------------ Market-1501

_MARKET_NAME = re.compile(r'^(-?\d+)_c(\d+)')


class _FolderReIDDataset(_ReIDDataset):
    """A Re-ID set with one folder per split and ``<pid>_c<camera>...`` file names (Market-1501, VeRi-776):
    subclasses set ``folders`` (split -> folder), ``name_pattern`` (pid and camera groups) and ``keep``."""

    folders: dict[str, str] = {}
    name_pattern: re.Pattern

    def keep(self, pid: int, split: str) -> bool:
        """Whether an image with this pid belongs to ``split`` (pid -1 marks junk boxes)."""
        return pid != -1

    def __init__(
        self,
        data_root: str,
        split: str = 'train',
        pipeline: Sequence[dict] | None = None,
        skip_unreadable: bool | None = None,
    ) -> None:
        owner = type(self).__name__
        records = []
        for s, folder in _split_folders(owner, split, self.folders):
            for path, pid, cam in _scan(owner, Path(data_root) / folder, self.name_pattern):
                if self.keep(pid, s):
                    records.append((path, pid, cam - 1, s))  # cameras are 1-based in the names
        super().__init__(records, pipeline, skip_unreadable)


@DATASETS.register_module()
class Market1501Dataset(_FolderReIDDataset):
    """Market-1501 (Zheng et al., ICCV 2015): 751 train / 750 test identities, 6 cameras.

    Layout (``Market-1501-v15.09.15``)::

        data_root/bounding_box_train/   12,936 images
        data_root/query/                 3,368 images
        data_root/bounding_box_test/    19,732 images (gallery)

    Names are ``<pid>_c<camera>s<sequence>_<frame>_<box>.jpg``, e.g. ``0002_c1s1_000451_03.jpg`` (pid 2,
    camera 1 -> ``camid`` 0). Standard protocol: pid ``-1`` (junk boxes) is dropped from every split; the
    ``0000`` distractors are dropped from training and kept in the gallery (they are never a true match).

    Args:
        data_root: the Market-1501 folder.
        split: ``'train'``, ``'query'``, ``'gallery'`` or ``'test'`` (query + gallery).
        pipeline: albumentations transform dicts.
        skip_unreadable: see :class:`zoo.data.image_datasets._ImageListDataset`.
    """

    folders = {'train': 'bounding_box_train', 'query': 'query', 'gallery': 'bounding_box_test'}
    name_pattern = _MARKET_NAME

    def keep(self, pid: int, split: str) -> bool:
        return pid != -1 and not (pid == 0 and split == 'train')


# ------------------------------------------------------------------------------------------------ MSMT17

_MSMT_MARKET_STYLE = re.compile(r'^(\d+)_c(\d+)_')  # 0000_c14_0030.jpg (re-packed copies)
_MSMT_OFFICIAL = re.compile(r'^(\d+)_(\d+)_(\d+)_')  # 0000_014_01_0303morning_0015_0.jpg: pid_index_camera_...


def msmt17_camera(name: str) -> int | None:
    """Camera number (1-based) of an MSMT17 file name, or None.

    Two namings are read: the official V1 / V2 one, ``<pid>_<image index>_<camera>_<date><time>_<frame>_<n>.jpg``
    (e.g. ``0000_014_01_0303morning_0015_0.jpg``: camera ``01``, the third field, as torchreid and fast-reid
    read it), and the Market-style re-packing ``<pid>_c<camera>_<n>.jpg`` (e.g. ``0000_c14_0030.jpg``).
    """
    m = _MSMT_MARKET_STYLE.match(name)
    if m is not None:
        return int(m.group(2))
    m = _MSMT_OFFICIAL.match(name)
    return int(m.group(3)) if m is not None else None


@DATASETS.register_module()
class MSMT17Dataset(_ReIDDataset):
    """MSMT17 (Wei et al., CVPR 2018): 1,041 train / 3,060 test identities, 15 cameras.

    Layout (``MSMT17_V1`` or ``MSMT17_V2``)::

        data_root/list_train.txt, list_val.txt        <path under the train folder> <pid>
        data_root/list_query.txt, list_gallery.txt    <path under the test folder> <pid>
        data_root/train/ and data_root/test/          (V1)  or  mask_train_v2/ and mask_test_v2/ (V2)

    List lines look like ``0000/0000_000_01_0303morning_0015_0.jpg 0``; the camera is parsed from the file
    name (see :func:`msmt17_camera`: the official naming and the ``0000_c14_0030.jpg`` re-packing are read).

    Args:
        data_root: the MSMT17_V1 / MSMT17_V2 folder.
        split: ``'train'`` (the conventional protocol: ``list_train`` only), ``'val'``, ``'trainval'``
            (train + val, relabelled together), ``'query'``, ``'gallery'`` or ``'test'`` (query + gallery).
        pipeline: albumentations transform dicts.
        skip_unreadable: see :class:`zoo.data.image_datasets._ImageListDataset`.

    Items of ``'val'`` and ``'trainval'`` have ``split='train'`` and relabelled ``gt_label``.
    """

    lists = {'train': 'list_train.txt', 'val': 'list_val.txt', 'query': 'list_query.txt', 'gallery': 'list_gallery.txt'}

    def __init__(
        self,
        data_root: str,
        split: str = 'train',
        pipeline: Sequence[dict] | None = None,
        skip_unreadable: bool | None = None,
    ) -> None:
        owner = type(self).__name__
        root = Path(data_root)
        parts = {
            'train': ['train'],
            'val': ['val'],
            'trainval': ['train', 'val'],
            'query': ['query'],
            'gallery': ['gallery'],
            'test': ['query', 'gallery'],
        }
        if split not in parts:
            raise ValueError(f'{owner}: split must be one of {list(parts)}, got {split!r}')
        records = []
        for part in parts[split]:
            is_train = part in ('train', 'val')
            image_dir = _first_dir(owner, root, ('train', 'mask_train_v2') if is_train else ('test', 'mask_test_v2'))
            list_path = root / self.lists[part]
            for n, (rel, pid_text) in read_table(owner, list_path):
                pid = parse_int(owner, list_path, n, pid_text, 'pid')
                cam = msmt17_camera(Path(rel).name)
                if cam is None:
                    raise ValueError(f'{owner}: {list_path}:{n}: no camera in file name {Path(rel).name!r}')
                records.append((str(image_dir / rel), pid, cam - 1, 'train' if is_train else part))
        super().__init__(records, pipeline, skip_unreadable)


def _first_dir(owner: str, root: Path, names: Sequence[str]) -> Path:
    for name in names:
        if (root / name).is_dir():
            return root / name
    raise FileNotFoundError(f"{owner}: image folder '{root / names[0]}' (or {', '.join(names[1:])}) does not exist")


# ---------------------------------------------------------------------------------------------- VeRi-776

_VERI_NAME = re.compile(r'^(-?\d+)_c(\d+)_')


@DATASETS.register_module()
class VeRi776Dataset(_FolderReIDDataset):
    """VeRi-776 (Liu et al., ECCV 2016 / ICME 2016): 576 train / 200 test vehicles, 20 cameras.

    Layout::

        data_root/image_train/   37,778 images
        data_root/image_query/    1,678 images
        data_root/image_test/    11,579 images (gallery)

    Names are ``<vehicle id>_c<camera>_<timestamp>_<n>.jpg``, e.g. ``0001_c001_00016450_0.jpg`` (id 1,
    camera 1 -> ``camid`` 0). Evaluation is image-to-image with same-id same-camera gallery items removed
    (the protocol torchreid, fast-reid and TransReID / DCAL report).

    Args:
        data_root: the VeRi folder.
        split: ``'train'``, ``'query'``, ``'gallery'`` or ``'test'`` (query + gallery).
        pipeline: albumentations transform dicts.
        skip_unreadable: see :class:`zoo.data.image_datasets._ImageListDataset`.
    """

    folders = {'train': 'image_train', 'query': 'image_query', 'gallery': 'image_test'}
    name_pattern = _VERI_NAME


# ------------------------------------------------------------------------------------------------ sampler


@DATA_SAMPLERS.register_module()
class IdentityBalancedSampler(Sampler):
    """P x K sampler (Hermans et al., 2017, as in torchreid's ``RandomIdentitySampler``): every batch holds
    ``P = batch_size // num_instances`` distinct identities with ``K = num_instances`` images each.

    Each identity's images are shuffled and cut into groups of K (an identity with fewer than K images is
    filled up by sampling with replacement; a last group shorter than K is dropped, as torchreid does); a batch
    takes one group from each of P identities drawn uniformly from those with groups left, and when fewer than
    P identities have groups left a fresh round of groups is added. An epoch has
    ``len(dataset) // (batch_size * world_size)`` batches per rank (at least one), so it covers about the
    dataset once.

    Use it as an mmengine sampler, ``sampler=dict(type='IdentityBalancedSampler', num_instances=4,
    batch_size=64)``, with the same ``batch_size`` as the dataloader (per GPU): the sampler yields indices and
    the DataLoader cuts them into batches, so each batch is P x K only when the two agree. Under DDP all ranks
    draw the same list of batches (same seed) and rank ``r`` takes batches ``r, r + W, ...``: disjoint shares.

    Args:
        dataset: a dataset exposing ``pids`` (one identity per index, read without loading images), e.g. the
            Re-ID datasets of this module.
        batch_size: images per batch (per rank); a multiple of ``num_instances``.
        num_instances: K, images per identity in a batch.
        shuffle: draw identities and images at random (``False``: identities in sorted order, images in
            dataset order, no randomness; for debugging).
        seed: base seed; epoch ``e`` uses ``seed + e``. ``None``: a seed shared by all ranks
            (mmengine's ``sync_random_seed``, as ``DefaultSampler``). mmengine passes the run's seed.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        num_instances: int = 4,
        shuffle: bool = True,
        seed: int | None = None,
    ) -> None:
        from mmengine.dist import get_dist_info, sync_random_seed

        if num_instances < 1 or batch_size < num_instances or batch_size % num_instances:
            raise ValueError(
                f'IdentityBalancedSampler: batch_size ({batch_size}) must be P * num_instances ({num_instances}) '
                f'with P >= 1; e.g. batch_size={max(1, batch_size // max(num_instances, 1)) * max(num_instances, 1)}'
            )
        pids = getattr(dataset, 'pids', None)
        if pids is None:
            raise TypeError(
                f'IdentityBalancedSampler: {type(dataset).__name__} has no `pids` attribute '
                '(the identity of each index, e.g. the zoo Re-ID datasets)'
            )
        self.dataset = dataset
        self.batch_size = batch_size
        self.num_instances = num_instances
        self.num_ids_per_batch = batch_size // num_instances
        self.shuffle = shuffle
        self.seed = sync_random_seed() if seed is None else int(seed)
        self.rank, self.world_size = get_dist_info()
        self.epoch = 0
        groups: dict[int, list[int]] = {}
        for i, pid in enumerate(pids):
            groups.setdefault(int(pid), []).append(i)
        self.index_by_pid = dict(sorted(groups.items()))
        if len(self.index_by_pid) < self.num_ids_per_batch:
            raise ValueError(
                f'IdentityBalancedSampler: {len(self.index_by_pid)} identities in the dataset, fewer than '
                f'P = batch_size // num_instances = {self.num_ids_per_batch}'
            )
        self.num_batches = max(1, len(pids) // (batch_size * self.world_size))

    def set_epoch(self, epoch: int) -> None:
        """Called by mmengine's train loop before each epoch: a new, reproducible order."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_batches * self.batch_size

    def _groups(self, rng: random.Random | None) -> dict[int, list[list[int]]]:
        """One round: ``{pid: [K indices, ...]}``."""
        k = self.num_instances
        out = {}
        for pid, idx in self.index_by_pid.items():
            idx = list(idx)
            if len(idx) < k:  # too few images: keep each once and fill up with repeats (with replacement)
                n = len(idx)
                idx += [rng.choice(idx[:n]) if rng else idx[j % n] for j in range(k - n)]
            if rng:
                rng.shuffle(idx)
            out[pid] = [idx[j : j + k] for j in range(0, len(idx) - k + 1, k)]
        return out

    def batches(self) -> list[list[int]]:
        """Every rank's batches of this epoch, ``num_batches * world_size`` lists of ``batch_size`` indices."""
        rng = random.Random(self.seed + self.epoch) if self.shuffle else None
        pending: dict[int, list[list[int]]] = {pid: [] for pid in self.index_by_pid}
        out: list[list[int]] = []
        while len(out) < self.num_batches * self.world_size:
            available = [pid for pid, g in pending.items() if g]
            if len(available) < self.num_ids_per_batch:
                for pid, g in self._groups(rng).items():
                    pending[pid].extend(g)
                continue
            chosen = rng.sample(available, self.num_ids_per_batch) if rng else available[: self.num_ids_per_batch]
            out.append([i for pid in chosen for i in pending[pid].pop(0)])
        return out

    def __iter__(self) -> Iterator[int]:
        mine = self.batches()[self.rank :: self.world_size]
        return iter([i for batch in mine for i in batch])
