"""Fine-grained visual categorisation (FGVC) datasets in their published layouts.

* CUB-200-2011 (Wah et al., *The Caltech-UCSD Birds-200-2011 Dataset*, Caltech tech. report CNS-TR-2011-001, 2011);
* Stanford Cars (Krause et al., *3D Object Representations for Fine-Grained Categorization*, 3dRR workshop at
  ICCV 2013), in the layout torchvision's ``StanfordCars`` reads;
* FGVC-Aircraft (Maji et al., *Fine-Grained Visual Classification of Aircraft*, arXiv 1306.5151, 2013),
  the official ``fgvc-aircraft-2013b`` release.

All three build on the zoo's image-list base (:class:`zoo.data.image_datasets._ImageListDataset`): images are
read with their true bit depth (:func:`zoo.data.read_rgb`), an unreadable image becomes a
:class:`~zoo.data.SkippedSample` (skipped and reported, never replaced), and ``pipeline`` is a list of
albumentations dicts. Items are ``dict(inputs=Tensor[3, H, W], data_samples=dict(gt_label=int, sample_idx=int))``
with 0-based labels.

Annotation files are checked when the dataset is built: a missing file raises ``FileNotFoundError`` naming
it, a malformed or inconsistent line raises ``ValueError`` naming ``path:line``, each in one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from zoo.data.image_datasets import _ImageListDataset
from zoo.registry import DATASETS

# ----------------------------------------------------------------------------------------- helpers


def _require_file(owner: str, path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{owner}: annotation file '{path}' does not exist")
    return path


def _require_dir(owner: str, path: Path) -> Path:
    if not path.is_dir():
        raise FileNotFoundError(f"{owner}: image folder '{path}' does not exist")
    return path


def read_table(owner: str, path: Path, ncols: int = 2) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of every non-blank line of a whitespace-separated annotation file.

    The line is split into at most ``ncols`` fields (the last keeps its inner spaces: Aircraft variant names
    such as ``'Cessna 172'``); a line with fewer fields raises ``ValueError`` naming ``path:line``.
    """
    _require_file(owner, path)
    rows = []
    with open(path, encoding='utf-8') as f:
        for n, line in enumerate(f, start=1):
            text = line.strip()
            if not text:
                continue
            fields = text.split(None, ncols - 1)
            if len(fields) != ncols:
                raise ValueError(f'{owner}: {path}:{n}: expected {ncols} fields, got {text!r}')
            rows.append((n, fields))
    return rows


def parse_int(owner: str, path: Path, n: int, text: str, what: str) -> int:
    """``int(text)``, or ``ValueError`` naming ``path:line`` and the field."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f'{owner}: {path}:{n}: {what} must be an integer, got {text!r}') from None


def _id_table(owner: str, path: Path) -> dict[int, tuple[int, str]]:
    """``{image id: (line, value)}`` of a CUB ``<id> <value>`` file; duplicate ids are an error."""
    out: dict[int, tuple[int, str]] = {}
    for n, (key, value) in read_table(owner, path):
        i = parse_int(owner, path, n, key, 'image id')
        if i in out:
            raise ValueError(f'{owner}: {path}:{n}: image id {i} repeats line {out[i][0]}')
        out[i] = (n, value)
    return out


# --------------------------------------------------------------------------------------------- CUB


@DATASETS.register_module()
class CUBDataset(_ImageListDataset):
    """CUB-200-2011 (Wah et al., 2011): 200 bird species, 5,994 train / 5,794 test images.

    Layout (the ``CUB_200_2011`` folder of the official archive)::

        data_root/images.txt               <image id> <path under images/>
        data_root/train_test_split.txt     <image id> <1 = train | 0 = test>
        data_root/image_class_labels.txt   <image id> <class id 1..200>
        data_root/classes.txt              <class id> <name>        (optional: class names)
        data_root/images/<path>

    Args:
        data_root: the ``CUB_200_2011`` folder.
        split: ``'train'`` or ``'test'``.
        pipeline: albumentations transform dicts (see ``zoo.data.transforms``).
        skip_unreadable: see :class:`zoo.data.image_datasets._ImageListDataset`.

    Labels are the class ids minus one (0..199), samples in ``images.txt`` order.
    """

    def __init__(
        self,
        data_root: str,
        split: str = 'train',
        pipeline: Sequence[dict] | None = None,
        skip_unreadable: bool | None = None,
    ) -> None:
        owner = type(self).__name__
        if split not in ('train', 'test'):
            raise ValueError(f"{owner}: split must be 'train' or 'test', got {split!r}")
        root = Path(data_root)
        images_txt, split_txt, labels_txt = (
            root / 'images.txt',
            root / 'train_test_split.txt',
            root / 'image_class_labels.txt',
        )
        images = _id_table(owner, images_txt)
        is_train = _id_table(owner, split_txt)
        labels = _id_table(owner, labels_txt)
        classes_txt = root / 'classes.txt'
        names = [name for _, (_, name) in read_table(owner, classes_txt)] if classes_txt.is_file() else None
        image_dir = _require_dir(owner, root / 'images')

        want = '1' if split == 'train' else '0'
        samples: list[tuple[str, int]] = []
        top = 0
        for i, (n, rel) in images.items():
            for table, path in ((is_train, split_txt), (labels, labels_txt)):
                if i not in table:
                    raise ValueError(f'{owner}: {path} has no line for image id {i} ({images_txt}:{n})')
            sn, flag = is_train[i]
            if flag not in ('0', '1'):
                raise ValueError(f'{owner}: {split_txt}:{sn}: train flag must be 0 or 1, got {flag!r}')
            ln, text = labels[i]
            label = parse_int(owner, labels_txt, ln, text, 'class id')
            if label < 1 or (names is not None and label > len(names)):
                limit = f'1..{len(names)}' if names is not None else '>= 1'
                raise ValueError(f'{owner}: {labels_txt}:{ln}: class id {label} outside {limit}')
            top = max(top, label)
            if flag == want:
                samples.append((str(image_dir / rel), label - 1))
        classes = names if names is not None else [str(c) for c in range(1, top + 1)]
        super().__init__(samples, classes, pipeline, skip_unreadable)


# ------------------------------------------------------------------------------------ Stanford Cars


def _loadmat(owner: str, path: Path) -> dict:
    from scipy.io import loadmat

    _require_file(owner, path)
    try:
        return loadmat(str(path), squeeze_me=True)
    except Exception as err:  # scipy raises several types for a damaged / non-MAT file
        raise ValueError(f'{owner}: cannot read {path}: {err}') from None


def _mat_field(owner: str, path: Path, mat: dict, key: str):
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith('__'))
        raise ValueError(f"{owner}: {path} has no variable '{key}' (has {found})")
    return mat[key]


@DATASETS.register_module()
class StanfordCarsDataset(_ImageListDataset):
    """Stanford Cars (Krause et al., 2013): 196 car models, 8,144 train / 8,041 test images.

    Layout: the original release with the devkit and the test labels published afterwards, as torchvision's
    ``StanfordCars`` reads it (``data_root`` = torchvision's ``<root>/stanford_cars``)::

        data_root/devkit/cars_meta.mat                  class_names (196 names, class id = position + 1)
        data_root/devkit/cars_train_annos.mat           annotations: fname, class (1..196), bbox_*
        data_root/cars_test_annos_withlabels.mat        annotations of the test images, with class
                                                        (also looked up in devkit/)
        data_root/cars_train/<fname>
        data_root/cars_test/<fname>

    The ``.mat`` files are read with scipy. Bounding boxes are not used (the DCAL recipe classifies the whole
    image).

    Args:
        data_root: the folder holding ``devkit/``, ``cars_train/`` and ``cars_test/``.
        split: ``'train'`` or ``'test'``.
        pipeline: albumentations transform dicts.
        skip_unreadable: see :class:`zoo.data.image_datasets._ImageListDataset`.

    Labels are the class ids minus one (0..195).
    """

    def __init__(
        self,
        data_root: str,
        split: str = 'train',
        pipeline: Sequence[dict] | None = None,
        skip_unreadable: bool | None = None,
    ) -> None:
        owner = type(self).__name__
        if split not in ('train', 'test'):
            raise ValueError(f"{owner}: split must be 'train' or 'test', got {split!r}")
        root = Path(data_root)
        meta_path = root / 'devkit' / 'cars_meta.mat'
        classes = [str(c) for c in _mat_field(owner, meta_path, _loadmat(owner, meta_path), 'class_names').tolist()]
        if split == 'train':
            ann_path = root / 'devkit' / 'cars_train_annos.mat'
        else:
            ann_path = root / 'cars_test_annos_withlabels.mat'
            if not ann_path.is_file() and (root / 'devkit' / ann_path.name).is_file():
                ann_path = root / 'devkit' / ann_path.name
        annotations = _mat_field(owner, ann_path, _loadmat(owner, ann_path), 'annotations')
        image_dir = _require_dir(owner, root / f'cars_{split}')
        records = annotations.reshape(-1)  # squeeze_me turns a one-image file into a 0-d record
        fields = records.dtype.names or ()
        for key in ('fname', 'class'):
            if key not in fields:
                raise ValueError(f"{owner}: {ann_path}: annotations have no field '{key}' (fields {list(fields)})")
        samples = []
        for n, rec in enumerate(records, start=1):
            label = int(rec['class'])
            if not 1 <= label <= len(classes):
                raise ValueError(f'{owner}: {ann_path}:annotation {n}: class {label} outside 1..{len(classes)}')
            samples.append((str(image_dir / str(rec['fname'])), label - 1))
        super().__init__(samples, classes, pipeline, skip_unreadable)


# ------------------------------------------------------------------------------------ FGVC-Aircraft

_AIRCRAFT_LEVELS = {'variant': 'variants.txt', 'family': 'families.txt', 'manufacturer': 'manufacturers.txt'}


@DATASETS.register_module()
class FGVCAircraftDataset(_ImageListDataset):
    """FGVC-Aircraft (Maji et al., 2013): 10,000 images; 100 variants / 70 families / 30 manufacturers.

    Layout (the official ``fgvc-aircraft-2013b`` archive)::

        data_root/data/images/<image id>.jpg
        data_root/data/images_<level>_<split>.txt    <image id> <class name>   (names may contain spaces)
        data_root/data/variants.txt                  class order, one name a line (families.txt,
                                                     manufacturers.txt for the other levels)

    ``data_root`` may also be the ``data`` folder itself. The images keep the 20-pixel copyright banner at the
    bottom, as torchvision's ``FGVCAircraft`` does; crop it in the pipeline if wanted.

    Args:
        data_root: the ``fgvc-aircraft-2013b`` folder (or its ``data`` folder).
        split: ``'train'``, ``'val'``, ``'trainval'`` or ``'test'`` (DCAL and most FGVC work train on
            ``trainval`` and report ``test``).
        pipeline: albumentations transform dicts.
        annotation_level: ``'variant'`` (100 classes, the benchmark), ``'family'`` or ``'manufacturer'``.
        skip_unreadable: see :class:`zoo.data.image_datasets._ImageListDataset`.

    Labels are positions in the class list file.
    """

    def __init__(
        self,
        data_root: str,
        split: str = 'trainval',
        pipeline: Sequence[dict] | None = None,
        annotation_level: str = 'variant',
        skip_unreadable: bool | None = None,
    ) -> None:
        owner = type(self).__name__
        if split not in ('train', 'val', 'trainval', 'test'):
            raise ValueError(f"{owner}: split must be 'train', 'val', 'trainval' or 'test', got {split!r}")
        if annotation_level not in _AIRCRAFT_LEVELS:
            raise ValueError(
                f'{owner}: annotation_level must be one of {list(_AIRCRAFT_LEVELS)}, got {annotation_level!r}'
            )
        root = Path(data_root)
        if (root / 'data').is_dir():
            root = root / 'data'
        class_path = _require_file(owner, root / _AIRCRAFT_LEVELS[annotation_level])
        with open(class_path, encoding='utf-8') as f:
            classes = [line.strip() for line in f if line.strip()]
        index = {name: i for i, name in enumerate(classes)}
        list_path = root / f'images_{annotation_level}_{split}.txt'
        rows = read_table(owner, list_path)
        image_dir = _require_dir(owner, root / 'images')
        samples = []
        for n, (image_id, name) in rows:
            if name not in index:
                raise ValueError(f'{owner}: {list_path}:{n}: {annotation_level} {name!r} is not in {class_path}')
            samples.append((str(image_dir / f'{image_id}.jpg'), index[name]))
        super().__init__(samples, classes, pipeline, skip_unreadable)
