"""Run a trained mmdet / mmseg config on images and write the drawn predictions as PNGs.

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
    from zoo.hub import drop_pretrained

    cfg = load_config(config, cfg_options)
    drop_pretrained(cfg.model)  # the checkpoint holds every weight: never download backbone weights here
    return cfg


IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


class ImageReadError(OSError):
    """An input that is not a readable image; ``str()`` names the file."""

    def __str__(self) -> str:
        return str(self.args[0])


def _read_rgb(image: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if not os.path.isfile(image):
        raise FileNotFoundError(f'image {image} does not exist')
    try:
        with Image.open(image) as im:
            return np.asarray(im.convert('RGB'))
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise ImageReadError(
            f'{image} is not a readable image ({type(err).__name__}: '
            f'{str(err).splitlines()[0] if str(err) else "unreadable"})'
        ) from None


class InferenceConfigError(KeyError):
    """A config this tool cannot predict with; ``str()`` is the one-line message."""

    def __str__(self) -> str:
        return str(self.args[0])


class Predictor:
    """A trained mmdet / mmseg config, built once, that predicts on image files and draws the result.

    Args:
        config: an mmdet or mmseg config (``default_scope`` decides the task).
        checkpoint: a checkpoint written by tools/train.py (``epoch_N.pth``, ``iter_N.pth``, ``best_*.pth``).
        device: torch device string.
        cfg_options: extra config overrides, as ``--cfg-options``.
    """

    def __init__(self, config: str, checkpoint: str, device: str = 'cpu', cfg_options: dict | None = None) -> None:
        from zoo.hub import load_checkpoint_file

        if not os.path.isfile(checkpoint):
            raise FileNotFoundError(f'checkpoint {checkpoint} does not exist')
        load_checkpoint_file(checkpoint)  # one-line CheckpointError for a truncated / corrupt / foreign file
        self.config = config
        cfg = _prepare_config(config, cfg_options)
        self.task = {'mmdet': 'det', 'mmseg': 'seg'}.get(cfg.get('default_scope'))
        if self.task is None:
            raise InferenceConfigError(
                f"config {config}: default_scope must be 'mmdet' or 'mmseg' for "
                f'inference, got {cfg.get("default_scope")!r}'
            )
        if self.task == 'det':
            from mmdet.apis import init_detector

            self.model = init_detector(cfg, checkpoint, device=device)
        else:
            from mmseg.apis import init_model

            self.model = init_model(cfg, checkpoint, device=device)
        self.classes = tuple(str(c) for c in (self.model.dataset_meta or {}).get('classes', ()))
        self._vis = None

    def class_name(self, i: int) -> str:
        return self.classes[i] if 0 <= i < len(self.classes) else str(i)

    def __call__(self, image: str, out_file: str, score_thr: float = 0.3, nms_iou: float = 0.5) -> dict[str, Any]:
        """Predict on ``image`` and write the drawing to ``out_file`` (folders are created).

        Detection keeps the boxes with score >= ``score_thr`` and removes duplicates of the same
        class (IoU > ``nms_iou``, highest score kept), then draws them on the image, enlarged to at
        least 512 px on the long side so that labels stay legible on small inputs.

        Returns:
            Detection: ``dict(task='det', num_detections, labels, scores, boxes, out_file, seconds)``.
            Segmentation: ``dict(task='seg', class_fractions, out_file, seconds)`` with the share of
            pixels per predicted class name.
        """
        start = time.time()
        rgb = _read_rgb(image)
        os.makedirs(os.path.dirname(os.path.abspath(out_file)), exist_ok=True)
        if self.task == 'det':
            from mmdet.apis import inference_detector

            result = inference_detector(self.model, rgb[..., ::-1].copy())  # mmdet pipelines expect BGR arrays
            inst = dedupe_detections(result.pred_instances, score_thr, nms_iou)
            labels = [self.class_name(i) for i in inst.labels.tolist()]
            masks = inst.masks.cpu().numpy().astype(bool) if 'masks' in inst else None
            draw_detections(
                rgb,
                inst.bboxes.cpu().numpy(),
                labels,
                inst.scores.cpu().numpy(),
                out_file,
                masks=masks,
                label_ids=inst.labels.tolist(),
            )
            return dict(
                task='det',
                num_detections=len(labels),
                labels=labels,
                scores=[round(float(s), 4) for s in inst.scores],
                boxes=inst.bboxes.cpu().tolist(),
                out_file=out_file,
                seconds=time.time() - start,
            )
        from mmseg.apis import inference_model
        from mmseg.registry import VISUALIZERS

        result = inference_model(self.model, rgb[..., ::-1].copy())
        if self._vis is None:  # visualizers are named singletons
            self._vis = VISUALIZERS.build(
                dict(type='SegLocalVisualizer', name=f'zoo_infer_{time.time_ns()}', alpha=0.5)
            )
            self._vis.dataset_meta = self.model.dataset_meta
        self._vis.add_datasample(
            'prediction', rgb, result, draw_gt=False, show=False, out_file=out_file, with_labels=True
        )
        pred = result.pred_sem_seg.data[0].cpu().numpy()
        ids, counts = np.unique(pred, return_counts=True)
        fractions = {self.class_name(i): round(float(c) / pred.size, 4) for i, c in zip(ids.tolist(), counts.tolist())}
        return dict(task='seg', class_fractions=fractions, out_file=out_file, seconds=time.time() - start)


def dedupe_detections(instances, score_thr: float = 0.3, nms_iou: float = 0.5):
    """Detections with score >= ``score_thr``, duplicates of one class removed (per-class NMS at
    ``nms_iou``), highest score first. ``instances`` is mmdet's ``pred_instances`` (bboxes ``[N, 4]``
    xyxy, scores ``[N]``, labels ``[N]``, optional masks ``[N, H, W]``); returns the same type."""
    from torchvision.ops import batched_nms

    inst = instances[instances.scores >= score_thr]
    if len(inst) == 0:
        return inst
    keep = batched_nms(inst.bboxes.float(), inst.scores.float(), inst.labels, nms_iou)  # sorted by score
    return inst[keep]


def _palette(n: int) -> list[tuple[int, int, int]]:
    import matplotlib

    cmap = matplotlib.colormaps['tab20']
    return [tuple(int(255 * c) for c in cmap(i % 20)[:3]) for i in range(max(n, 1))]


def draw_detections(
    rgb: np.ndarray,
    boxes: np.ndarray,
    labels: list[str],
    scores: np.ndarray,
    out_file: str,
    masks: np.ndarray | None = None,
    label_ids: list[int] | None = None,
    min_side: int = 512,
) -> str:
    """Draw boxes (xyxy pixels of ``rgb``), optional masks ``[N, H, W]`` and ``"label 0.87"`` tags.

    The canvas is enlarged so its long side is at least ``min_side`` px; line width and font size
    follow the canvas size, and each tag is kept inside the image (inside the box's top edge when
    there is no room above it). Returns ``out_file``.
    """
    from PIL import Image, ImageDraw, ImageFont

    h, w = rgb.shape[:2]
    scale = max(1.0, min_side / max(h, w))
    canvas = rgb.astype(np.float32)
    ids = label_ids if label_ids is not None else list(range(len(labels)))
    colours = _palette(max(ids, default=0) + 1)
    if masks is not None:
        for m, i in zip(masks, ids):
            canvas[m] = 0.55 * canvas[m] + 0.45 * np.array(colours[i], np.float32)
    img = Image.fromarray(canvas.clip(0, 255).astype(np.uint8))
    if scale > 1:
        img = img.resize((round(w * scale), round(h * scale)), Image.Resampling.BILINEAR)
    W, H = img.size
    draw = ImageDraw.Draw(img)
    line = max(1, round(min(W, H) / 250))
    font = ImageFont.load_default(size=max(11, round(min(W, H) / 32)))
    placed: list[tuple[float, float, float, float]] = []
    for box, label, score, i in zip(boxes, labels, scores, ids):
        x0, y0, x1, y1 = (float(v) * scale for v in box)
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(W - 1.0, x1), min(H - 1.0, y1)
        colour = colours[i]
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=line)
        text = f'{label} {float(score):.2f}'
        l, t, r, b = draw.textbbox((0, 0), text, font=font)
        tw, th = r - l + 4, b - t + 4
        tx = min(max(0.0, x0), W - tw)
        ty = y0 - th if y0 - th >= 0 else min(y0 + line, H - th)  # above the box, else just inside it
        for _ in range(len(placed)):  # step down past tags already drawn there (boxes of other classes)
            hit = [p for p in placed if tx < p[2] and p[0] < tx + tw and ty < p[3] and p[1] < ty + th]
            if not hit or max(p[3] for p in hit) + th > H:
                break
            ty = max(p[3] for p in hit)
        placed.append((tx, ty, tx + tw, ty + th))
        draw.rectangle((tx, ty, tx + tw, ty + th), fill=colour)
        dark = sum(colour) < 380
        draw.text((tx + 2 - l, ty + 2 - t), text, fill=(255, 255, 255) if dark else (0, 0, 0), font=font)
    img.save(out_file)
    return out_file


def infer_image(
    config: str,
    checkpoint: str,
    image: str,
    out_file: str,
    score_thr: float = 0.3,
    device: str = 'cpu',
    cfg_options: dict | None = None,
) -> dict[str, Any]:
    """Predict on one image with ``config`` + ``checkpoint`` and save the drawing to ``out_file``;
    see ``Predictor`` (build it once to predict on many images)."""
    return Predictor(config, checkpoint, device=device, cfg_options=cfg_options)(image, out_file, score_thr)
