"""Albumentations pipelines from config lists.

A pipeline is a list of dicts, each ``dict(type=<albumentations class name>, **kwargs)``, e.g.
``[dict(type='RandomResizedCrop', size=(224, 224)), dict(type='HorizontalFlip'),
dict(type='Normalize')]``. The result maps an HWC uint8 RGB array to a CHW float tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch


def build_pipeline(pipeline: Sequence[dict] | None) -> Callable[[np.ndarray], torch.Tensor]:
    """Compose albumentations transforms; unknown ``type`` raises naming the entry."""
    import albumentations as A

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
