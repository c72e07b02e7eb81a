"""Synthetic mmdet batches for benchmarks: a normalised image tensor and data samples with boxes, as a
detector's ``loss`` takes them after its data preprocessor (no dataset, no file)."""

from __future__ import annotations

import torch

__all__ = ['det_batch', 'image_samples']


def det_batch(
    height: int, width: int, num_boxes: int = 4, batch: int = 1, num_classes: int = 80, seed: int = 0
) -> tuple[torch.Tensor, list]:
    """``(inputs (batch, 3, H, W), data_samples)``: ``H, W`` rounded up to a multiple of 32 (mmdet's padding),
    ``num_boxes`` random boxes per image inside ``height x width`` with random labels."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    gen = torch.Generator().manual_seed(seed)
    ph, pw = -(-height // 32) * 32, -(-width // 32) * 32
    inputs = torch.randn(batch, 3, ph, pw, generator=gen)
    samples = []
    for _ in range(batch):
        xy = torch.rand(num_boxes, 2, generator=gen) * torch.tensor([width * 0.7, height * 0.7])
        wh = (0.1 + 0.2 * torch.rand(num_boxes, 2, generator=gen)) * torch.tensor([width, height])
        ds = DetDataSample(
            metainfo=dict(
                img_shape=(height, width),
                ori_shape=(height, width),
                pad_shape=(ph, pw),
                batch_input_shape=(ph, pw),
                scale_factor=(1.0, 1.0),
            )
        )
        ds.gt_instances = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1), labels=torch.randint(0, num_classes, (num_boxes,), generator=gen)
        )
        samples.append(ds)
    return inputs, samples


def image_samples(task: str, img_shape: tuple[int, int], batch_input_shape: tuple[int, int], batch: int = 1) -> list:
    """Data samples that carry only the image metainfo (no annotations) a detector or segmentor reads in its
    ``'tensor'`` forward: ``task`` ``'det'`` (``DetDataSample``) or ``'seg'`` (``SegDataSample``); ``img_shape``
    the image's ``(H, W)``, ``batch_input_shape`` the padded batch's."""
    if task == 'seg':
        from mmseg.structures import SegDataSample as Sample
    else:
        from mmdet.structures import DetDataSample as Sample
    meta = dict(
        img_shape=tuple(img_shape),
        ori_shape=tuple(img_shape),
        pad_shape=tuple(batch_input_shape),
        batch_input_shape=tuple(batch_input_shape),
        scale_factor=(1.0, 1.0),
    )
    return [Sample(metainfo=dict(meta)) for _ in range(batch)]
