"""Run a trained mmdet / mmseg config on one image and write the visualised prediction as a PNG.

The task comes from the config's ``default_scope`` (``'mmdet'`` or ``'mmseg'``). Checkpoints are
loaded by mmengine with ``torch.load(weights_only=True)``; ``zoo.engine`` allow-lists the data-only
types mmengine stores, so the files tools/train.py writes load without switching that off.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np


def _prepare_config(config: str, cfg_options: dict | None):
    from zoo.engine.config import load_config

    cfg = load_config(config, cfg_options)
    backbone = cfg.model.get('backbone')
    if isinstance(backbone, dict) and backbone.get('type') == 'ZooBackbone':
        backbone['pretrained'] = None  # the checkpoint holds every weight; never download here
    return cfg


def _read_rgb(image: str) -> np.ndarray:
    from PIL import Image

    if not os.path.isfile(image):
        raise FileNotFoundError(f'image {image} does not exist')
    return np.asarray(Image.open(image).convert('RGB'))


def infer_image(config: str, checkpoint: str, image: str, out_file: str, score_thr: float = 0.3,
                device: str = 'cpu', cfg_options: dict | None = None) -> dict[str, Any]:
    """Predict on ``image`` with ``config`` + ``checkpoint`` and save the overlay to ``out_file``.

    Args:
        config: an mmdet or mmseg config (``default_scope`` decides the task).
        checkpoint: a checkpoint written by tools/train.py (``epoch_N.pth``, ``iter_N.pth``, ``best_*.pth``).
        image: an RGB image file of any size.
        out_file: PNG to write (folders are created).
        score_thr: detection score threshold for drawing and counting (detection only).
        device: torch device string.
        cfg_options: extra config overrides, as ``--cfg-options``.

    Returns:
        Detection: ``dict(task='det', num_detections, labels, scores, out_file, seconds)`` for the
        detections above ``score_thr``. Segmentation: ``dict(task='seg', class_fractions, out_file,
        seconds)`` with the share of pixels per predicted class name.
    """
    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint {checkpoint} does not exist')
    start = time.time()
    cfg = _prepare_config(config, cfg_options)
    scope = cfg.get('default_scope')
    rgb = _read_rgb(image)
    os.makedirs(os.path.dirname(os.path.abspath(out_file)), exist_ok=True)
    name = f'zoo_infer_{time.time_ns()}'  # visualizers are named singletons
    if scope == 'mmdet':
        from mmdet.apis import inference_detector, init_detector
        from mmdet.registry import VISUALIZERS

        model = init_detector(cfg, checkpoint, device=device)
        result = inference_detector(model, rgb[..., ::-1].copy())  # mmdet pipelines expect BGR arrays
        vis = VISUALIZERS.build(dict(type='DetLocalVisualizer', name=name))
        vis.dataset_meta = model.dataset_meta
        vis.add_datasample('prediction', rgb, result, draw_gt=False, show=False, out_file=out_file,
                           pred_score_thr=score_thr)
        inst = result.pred_instances
        keep = inst.scores >= score_thr
        classes = model.dataset_meta.get('classes', ())
        labels = [classes[i] if i < len(classes) else str(i) for i in inst.labels[keep].tolist()]
        return dict(task='det', num_detections=int(keep.sum()), labels=labels,
                    scores=[round(float(s), 4) for s in inst.scores[keep]], out_file=out_file,
                    seconds=time.time() - start)
    if scope == 'mmseg':
        from mmseg.apis import inference_model, init_model
        from mmseg.registry import VISUALIZERS

        model = init_model(cfg, checkpoint, device=device)
        result = inference_model(model, rgb[..., ::-1].copy())
        vis = VISUALIZERS.build(dict(type='SegLocalVisualizer', name=name, alpha=0.5))
        vis.dataset_meta = model.dataset_meta
        vis.add_datasample('prediction', rgb, result, draw_gt=False, show=False, out_file=out_file,
                           with_labels=True)
        pred = result.pred_sem_seg.data[0].cpu().numpy()
        classes = model.dataset_meta.get('classes', ())
        ids, counts = np.unique(pred, return_counts=True)
        fractions = {(classes[i] if i < len(classes) else str(i)): round(float(c) / pred.size, 4)
                     for i, c in zip(ids.tolist(), counts.tolist())}
        return dict(task='seg', class_fractions=fractions, out_file=out_file, seconds=time.time() - start)
    raise ValueError(f"config {config}: default_scope must be 'mmdet' or 'mmseg' for inference, got {scope!r}")
