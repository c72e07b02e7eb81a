"""One distiller for classification, detection and segmentation, configured in MMRazor's vocabulary.

A model config of this form (MMRazor's ``SingleTeacherDistill`` keys)::

    model = dict(
        type='SingleTeacherDistiller',
        architecture=dict(type='mmdet.RetinaNet', ...),      # the student: any model config
        teacher=dict(type='mmdet.RetinaNet', ...),
        teacher_ckpt='https://... or PATH',                   # loaded into the teacher, strictly
        inherit=['neck', 'bbox_head'],                        # optional: copy these teacher modules
        distiller=dict(
            student_recorders=dict(fpn0=dict(type='ModuleOutputs', source='neck.fpn_convs.0')),
            teacher_recorders=dict(fpn0=dict(type='ModuleOutputs', source='neck.fpn_convs.0')),
            connectors=dict(s_fpn0=dict(type='ConvModuleConnector', in_channel=256, out_channel=256)),
            distill_losses=dict(loss_acam_fpn0=dict(type='ACAMKDLoss', channels=256, num_masks=6)),
            loss_forward_mappings=dict(
                loss_acam_fpn0=dict(
                    s_feature=dict(from_student=True, recorder='fpn0', connector='s_fpn0'),
                    t_feature=dict(from_student=False, recorder='fpn0'))),
        ),
    )

The student and teacher are built from the zoo's MODELS registry (``TimmClassifier``, ``mmdet.*``,
``mmseg.*``), and both are called as mmengine models: ``model(inputs, data_samples, mode)``. The teacher
runs in ``'tensor'`` mode under ``no_grad`` with every module in eval mode (BatchNorm keeps its
statistics); the student runs in ``'loss'`` mode, so its task losses come from its own head. Forward hooks
record module outputs by path only during that step.

A mapping entry is ``dict(from_student=bool, recorder=NAME, record_idx=0, data_idx=None, connector=None)``
(MMRazor's keys: ``record_idx`` picks the call of a module called several times, ``data_idx`` an element
of a tuple output; the zoo adds ``nhwc=True`` for channels-last maps, permuted to ``(B, C, H, W)``), or
``dict(from_data='gt_bboxes' | 'img_shapes')`` for losses that need the ground truth (FGD).
A loss returns a tensor (logged as its name) or a dict of parts (logged as ``NAME_PART``); a part named
``stat_X`` is a statistic, logged as ``NAME_X`` without the ``loss_`` prefix so mmengine does not sum it.

``export_state_dict()`` is the plain student (``TimmClassifier``'s timm keys, else the student's own
``state_dict``), so ``ExportSafetensorsHook`` writes a file that ``tools/test.py`` takes with the
student's own config.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import torch
import torch.nn as nn
from mmengine.model import BaseModel

from zoo.registry import MODELS

__all__ = ['SingleTeacherDistiller', 'load_teacher_weights', 'model_config']


def load_teacher_weights(teacher: nn.Module, path: str) -> str:
    """Load ``path`` strictly into ``teacher``: a file, or an http(s) URL downloaded once into the zoo's
    cache. A file holding only the inner network of a wrapper (``TimmClassifier``'s exported
    ``model.safetensors``: timm keys) goes into ``teacher.backbone``.
    Returns the module path it was loaded into (``''`` or ``'backbone'``)."""
    from zoo.hub import load_checkpoint_file, local_or_cached, unwrap_state_dict

    path = local_or_cached(path, 'teachers', what='the teacher')  # OpenMMLab's published teachers: cached once
    state = unwrap_state_dict(load_checkpoint_file(path))
    own = teacher.state_dict()
    inner = getattr(teacher, 'backbone', None)
    if not set(own) <= set(state) and inner is not None and set(inner.state_dict()) <= set(state):
        inner.load_state_dict(state, strict=True)  # a wrapper's inner network (timm keys)
        return 'backbone'
    # keys the teacher lacks are left out; missing keys raise, naming them
    teacher.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
    return ''


class _Recorder:
    """Forward hooks that keep the outputs of modules, by path, while ``active``."""

    def __init__(self, model: nn.Module, sources: dict[str, dict]) -> None:
        self.data: dict[str, list[Any]] = {name: [] for name in sources}
        self.active = False
        self.handles = []
        for name, cfg in sources.items():
            kind = cfg.get('type', 'ModuleOutputs')
            if kind != 'ModuleOutputs':
                raise ValueError(f"recorder {name!r}: only type='ModuleOutputs' is supported, got {kind!r}")
            try:
                module = model.get_submodule(cfg['source'])
            except AttributeError:
                raise ValueError(f'recorder {name!r}: the model has no module {cfg["source"]!r}') from None
            self.handles.append(module.register_forward_hook(self._hook(name)))

    def _hook(self, name: str):
        def hook(module: nn.Module, args: tuple, output: Any) -> None:
            if self.active:
                self.data[name].append(output)

        return hook

    def reset(self) -> None:
        for v in self.data.values():
            v.clear()

    def get(self, name: str, record_idx: int = 0, data_idx: int | None = None) -> Any:
        calls = self.data[name]
        if not calls:
            raise RuntimeError(f'recorder {name!r} recorded nothing in this step')
        out = calls[record_idx]
        return out if data_idx is None else out[data_idx]


def model_config(cfg: dict) -> dict:  # a ConfigDict
    """A model config, or MMRazor's ``dict(cfg_path='mmdet::retinanet/...py', pretrained=False)``: the
    ``model`` of that config file, built in the file's ``default_scope`` (``_scope_``); ``pretrained=False``
    switches off its pretrained-weight sources (``zoo.hub.drop_pretrained``)."""
    from mmengine.config import Config, ConfigDict
    from mmengine.hub import get_config

    cfg = ConfigDict(cfg)  # mmdet reads nested keys as attributes (train_cfg.rpn)
    if 'cfg_path' not in cfg:
        return cfg

    from zoo.hub import drop_pretrained

    extra = set(cfg) - {'cfg_path', 'pretrained'}
    if extra:
        raise ValueError(f"a cfg_path model takes only 'pretrained' besides it, got {sorted(extra)}")
    path = cfg['cfg_path']
    loaded = get_config(path) if '::' in path else Config.fromfile(path)  # 'mmdet::...': a package's config
    model = ConfigDict(loaded.model.to_dict())
    if loaded.get('default_scope') and '_scope_' not in model:
        model['_scope_'] = loaded.default_scope
    if not cfg.get('pretrained', True):
        drop_pretrained(model)
    return model


@MODELS.register_module()
class SingleTeacherDistiller(BaseModel):
    """A student trained with its task losses plus weighted distillation losses from a frozen teacher.

    Args:
        architecture: the student's model config, or ``dict(cfg_path=..., pretrained=...)`` (``model_config``).
        teacher: the teacher's, the same way.
        teacher_ckpt: weights file for the teacher (see ``load_teacher_weights``); without one the teacher
            keeps the weights it was built with (``init_weights`` never runs on the teacher, so an mmdet /
            mmseg teacher needs this file).
        distiller: ``dict(student_recorders, teacher_recorders, connectors, distill_losses,
            loss_forward_mappings)`` as in the module docstring.
        inherit: teacher module paths copied into the student after initialisation (FGD / MasKD's
            "inheritance": the student's neck and head start from the teacher's; shapes must match).
        teacher_norm_eval: keep the teacher in eval mode (always on; present so configs can say it).
        data_preprocessor: default the student's own preprocessor (teacher and student see one input).
    """

    def __init__(
        self,
        architecture: dict,
        teacher: dict,
        distiller: dict,
        teacher_ckpt: str | None = None,
        inherit: list[str] | tuple[str, ...] = (),
        teacher_norm_eval: bool = True,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if not teacher_norm_eval:
            raise ValueError('teacher_norm_eval=False is not supported: the teacher is frozen')
        self.student = MODELS.build(model_config(architecture))
        self.teacher = MODELS.build(model_config(teacher))
        if data_preprocessor is None and hasattr(self.student, 'data_preprocessor'):
            self.data_preprocessor = self.student.data_preprocessor
        # The teacher's weights come from teacher_ckpt or from its own construction (timm's pretrained=True);
        # its init_weights never runs: timm models' init_weights would re-draw loaded weights.
        self.teacher_loaded_into = load_teacher_weights(self.teacher, teacher_ckpt) if teacher_ckpt else None
        self.teacher.eval().requires_grad_(False)
        self.inherit = tuple(inherit)

        cfg = dict(distiller)
        unknown = set(cfg) - {
            'type',
            'student_recorders',
            'teacher_recorders',
            'connectors',
            'distill_losses',
            'loss_forward_mappings',
        }
        if unknown:
            raise ValueError(f'model.distiller: unknown keys {sorted(unknown)}')
        self.student_recorder = _Recorder(self.student, dict(cfg.get('student_recorders') or {}))
        self.teacher_recorder = _Recorder(self.teacher, dict(cfg.get('teacher_recorders') or {}))
        self.connectors = nn.ModuleDict({k: MODELS.build(v) for k, v in (cfg.get('connectors') or {}).items()})
        self.distill_losses = nn.ModuleDict({k: MODELS.build(v) for k, v in (cfg.get('distill_losses') or {}).items()})
        self.loss_forward_mappings = {k: dict(v) for k, v in (cfg.get('loss_forward_mappings') or {}).items()}
        self._check_mappings()
        self._inherit()

    # -- set-up ----------------------------------------------------------------------------------
    def _check_mappings(self) -> None:
        missing = set(self.distill_losses) ^ set(self.loss_forward_mappings)
        if missing:
            raise ValueError(f'model.distiller: distill_losses and loss_forward_mappings differ in {sorted(missing)}')
        for loss_name, args in self.loss_forward_mappings.items():
            for arg, spec in args.items():
                if 'from_data' in spec:
                    if spec['from_data'] not in ('gt_bboxes', 'img_shapes'):
                        raise ValueError(f'{loss_name}.{arg}: from_data must be gt_bboxes or img_shapes')
                    continue
                rec = self.student_recorder if spec['from_student'] else self.teacher_recorder
                if spec['recorder'] not in rec.data:
                    raise ValueError(f'{loss_name}.{arg}: no recorder {spec["recorder"]!r}')
                if spec.get('connector') and spec['connector'] not in self.connectors:
                    raise ValueError(f'{loss_name}.{arg}: no connector {spec["connector"]!r}')

    def _inherit(self) -> None:
        for path in self.inherit:
            self.student.get_submodule(path).load_state_dict(self.teacher.get_submodule(path).state_dict())

    def init_weights(self) -> None:
        """The runner's initialisation: everything but the teacher, then the inherited modules again."""
        for name, child in self.named_children():
            if name != 'teacher' and hasattr(child, 'init_weights'):
                child.init_weights()
        self._inherit()

    def train(self, mode: bool = True) -> SingleTeacherDistiller:
        super().train(mode)
        self.teacher.eval()  # BatchNorm statistics and dropout of the teacher stay fixed
        return self

    # -- forward ---------------------------------------------------------------------------------
    @staticmethod
    def _from_data(what: str, data_samples: Any) -> list:
        if what == 'gt_bboxes':
            return [ds.gt_instances.bboxes for ds in data_samples]
        # the padded batch input is what the feature maps cover (FGD's code used the unpadded img_shape)
        return [tuple(ds.metainfo.get('batch_input_shape', ds.metainfo['img_shape'])[:2]) for ds in data_samples]

    def _argument(self, spec: dict, data_samples: Any) -> Any:
        if 'from_data' in spec:
            return self._from_data(spec['from_data'], data_samples)
        rec = self.student_recorder if spec['from_student'] else self.teacher_recorder
        x = rec.get(spec['recorder'], spec.get('record_idx', 0), spec.get('data_idx'))
        if spec.get('nhwc'):  # channels-last maps (MambaOut stages) -> (B, C, H, W)
            x = x.permute(0, 3, 1, 2)
        if spec.get('connector'):
            x = self.connectors[spec['connector']](x)
        return x

    @contextmanager
    def _recording(self, inputs: torch.Tensor, data_samples: Any):
        """Run the teacher (``'tensor'`` mode, no gradient) with its recorders on, then arm the student's
        recorders for the caller's student call; both are cleared on exit."""
        for rec in (self.student_recorder, self.teacher_recorder):
            rec.reset()
        try:
            self.teacher_recorder.active = True
            with torch.no_grad():
                self.teacher(inputs, data_samples, mode='tensor')
            self.teacher_recorder.active = False
            self.student_recorder.active = True
            yield
        finally:
            for rec in (self.student_recorder, self.teacher_recorder):
                rec.active = False
                rec.reset()

    def _loss_kwargs(self, name: str, data_samples: Any) -> dict[str, Any]:
        return {k: self._argument(v, data_samples) for k, v in self.loss_forward_mappings[name].items()}

    def loss(self, inputs: torch.Tensor, data_samples: Any) -> dict[str, torch.Tensor]:
        """Student task losses (their own names) plus every distillation loss (``loss_*``)."""
        with self._recording(inputs, data_samples):
            losses = dict(self.student(inputs, data_samples, mode='loss'))
            self.student_recorder.active = False
            for name, loss_fn in self.distill_losses.items():
                out = loss_fn(**self._loss_kwargs(name, data_samples))
                if isinstance(out, dict):
                    for part, v in out.items():
                        if part.startswith('stat_'):  # logged, not summed: mmengine sums keys containing 'loss'
                            losses[f'{name.removeprefix("loss_")}_{part[5:]}'] = v.detach()
                        else:
                            losses[f'{name}_{part}'] = v
                else:
                    losses[name] = out
        return losses

    @torch.no_grad()
    def distill_arguments(self, inputs: torch.Tensor, data_samples: Any = None) -> dict[str, dict[str, Any]]:
        """Every distillation loss's keyword arguments for one batch, formed as in :meth:`loss` (recorders,
        ``data_idx``, ``nhwc``, connectors) but with the student in ``'tensor'`` mode and no gradient: what a
        loss sees, for visualisation and analysis. ``inputs``: the preprocessed batch ``(B, 3, H, W)``;
        ``data_samples`` is needed only by ``from_data`` arguments (FGD's boxes)."""
        with self._recording(inputs, data_samples):
            self.student(inputs, data_samples, mode='tensor')
            self.student_recorder.active = False
            return {name: self._loss_kwargs(name, data_samples) for name in self.distill_losses}

    def forward(self, inputs: torch.Tensor, data_samples: Any = None, mode: str = 'tensor') -> Any:
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        return self.student(inputs, data_samples, mode=mode)

    def export_state_dict(self) -> dict[str, torch.Tensor]:
        """The plain student: what ``tools/test.py`` loads with the student's own config."""
        if hasattr(self.student, 'export_state_dict'):
            return self.student.export_state_dict()
        return self.student.state_dict()
