"""Image pipelines from config lists: albumentations steps, or timm's own ``create_transform``.

A pipeline is a list of dicts, each ``dict(type=<albumentations class name>, **kwargs)``, e.g.
``[dict(type='RandomResizedCrop', size=(224, 224)), dict(type='HorizontalFlip'),
dict(type='Normalize')]``. The result maps an HWC uint8 RGB array to a CHW float tensor.

The ImageNet recipes use timm's transform instead, as the official training scripts do: a pipeline of
one ``dict(type='TimmTransform', **kwargs)`` whose keyword arguments are ``timm.data.create_transform``'s
(``input_size``, ``is_training``, ``auto_augment='rand-m9-mstd0.5-inc1'``, ``re_prob``, ``re_mode``,
``interpolation``, ``crop_pct``, ``crop_mode``, ``mean``, ``std``, ``scale``, ``hflip``, ...). It sees the
image as a PIL RGB image, exactly as in timm's and the official loaders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch


def _posterize(img, bits_to_keep, **_):
    """timm's RandAugment ``Posterize`` for every Pillow: keeping 0 bits gives a black image, as Pillow < 11 did;
    Pillow >= 11 raises ``ValueError`` for ``bits=0``, which ``rand-m9-mstd0.5-inc1`` draws (magnitude 10)."""
    from PIL import Image, ImageOps

    if bits_to_keep >= 8:
        return img
    if bits_to_keep <= 0:
        return Image.new(img.mode, img.size, 0)
    return ImageOps.posterize(img, bits_to_keep)


def _fix_timm_posterize() -> None:
    from timm.data import auto_augment

    for name in ('Posterize', 'PosterizeIncreasing', 'PosterizeOriginal'):
        if auto_augment.NAME_TO_OP.get(name) is auto_augment.posterize:
            auto_augment.NAME_TO_OP[name] = _posterize


def build_timm_transform(spec: dict, where: str = 'pipeline[0]') -> Callable[[np.ndarray], torch.Tensor]:
    """``timm.data.create_transform(**spec)`` (``spec`` without ``type``) as an HWC uint8 array -> CHW float tensor
    callable. An unknown keyword is a one-line ``KeyError`` naming it."""
    import inspect
    import random

    from PIL import Image
    from timm.data import create_transform

    known = set(inspect.signature(create_transform).parameters)
    unknown = sorted(set(spec) - known)
    if unknown:
        raise KeyError(
            f'{where} (TimmTransform): unknown key(s) {unknown}; timm.data.create_transform takes {sorted(known)}'
        )
    for key in ('input_size', 'scale', 'ratio', 'mean', 'std'):  # mmengine configs may hold lists
        if isinstance(spec.get(key), list):
            spec[key] = tuple(spec[key])
    _fix_timm_posterize()
    transform = create_transform(**spec)

    def apply(image: np.ndarray) -> torch.Tensor:
        # timm's crops and RandAugment's magnitudes draw from Python's `random`, RandAugment's op choice from numpy's,
        # random erasing from torch: seed the first two from torch's generator, so `randomness.seed` and an exact
        # --resume reproduce the stream (as for albumentations below).
        seed = int(torch.randint(0, 2**31 - 1, ()))
        random.seed(seed)
        np.random.seed(seed)
        out = transform(Image.fromarray(np.ascontiguousarray(image)).convert('RGB'))
        return out.float() if isinstance(out, torch.Tensor) else torch.as_tensor(np.asarray(out)).float()

    return apply


def build_pipeline(pipeline: Sequence[dict] | None) -> Callable[[np.ndarray], torch.Tensor]:
    """Compose albumentations transforms, or timm's ``create_transform`` for a ``TimmTransform`` entry (which must
    then be the only one); an unknown ``type`` or key raises naming the entry."""
    import albumentations as A

    specs = list(pipeline or ())
    for i, spec in enumerate(specs):
        if dict(spec).get('type') == 'TimmTransform':
            if len(specs) != 1:
                raise KeyError(
                    f'pipeline[{i}]: TimmTransform is a whole pipeline (crop, augmentation, erasing, normalisation); '
                    f'it cannot be combined with the {len(specs) - 1} other step(s)'
                )
            spec = dict(spec)
            spec.pop('type')
            return build_timm_transform(spec, f'pipeline[{i}]')

    steps = []
    for i, spec in enumerate(pipeline or ()):
        spec = dict(spec)
        name = spec.pop('type', None)
        cls = getattr(A, str(name), None)
        if cls is None:
            raise KeyError(f'pipeline[{i}]: unknown albumentations transform type {name!r}')
        try:
            steps.append(cls(**spec))
        except TypeError as err:
            raise TypeError(f'pipeline[{i}] ({name}): {err}') from None
    compose = A.Compose(steps)

    def apply(image: np.ndarray) -> torch.Tensor:
        # albumentations 2 draws from Compose's own generators, seeded from OS entropy: re-seed them from
        # torch's global generator for every image, so `randomness.seed` reproduces a run and an exact
        # --resume (zoo.engine.resume restores torch's generator) continues the augmentation stream.
        compose.set_random_seed(int(torch.randint(0, 2**31 - 1, ())))
        out = compose(image=image)['image']
        if out.dtype == np.uint8:  # no Normalize in the pipeline: scale to [0, 1]
            out = out.astype(np.float32) / 255.0
        return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))).float()

    return apply
