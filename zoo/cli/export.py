"""Export a timm / zoo model for deployment: ONNX or a torch.export ExportedProgram, checked against PyTorch.

The model is built with timm (``import zoo`` registers the zoo's models), in eval mode, with random weights or
the weights of ``--weights``. It is traced once with ``torch.export`` on a ``(2, 3, S, S)`` input
(``S`` = ``--img-size``, else the model's own input size): the batch dimension is always dynamic, height and
width are kept dynamic where the architecture allows it (``Dim.AUTO``: torch.export specialises them when the
model fixes its input size, e.g. a learned position embedding of a fixed grid). The tool says which.

Formats:
  onnx               the ExportedProgram translated by torch.onnx's dynamo exporter (``torch.onnx.export(...,
                     dynamo=True)``; the TorchScript-based exporter fails on the zoo's adaptive pooling with
                     symbolic sizes), one ``.onnx`` file with input ``x`` and output ``logits``.
  exported-program   ``torch.export.save`` of the ExportedProgram (``.pt2``); load with ``torch.export.load(PATH)
                     .module()``.
  hf-hub             a timm Hugging Face Hub folder written by timm's own ``save_for_hf`` (config.json,
                     model.safetensors) plus a README.md model card (params, GMACs, the paper's top-1, license,
                     paper); ``timm.create_model('local-dir:DIR')`` loads it after ``import zoo``, and
                     ``huggingface-cli upload ORG/NAME DIR`` publishes it for ``'hf-hub:ORG/NAME'``. No trace.

After writing, the file is read back (ONNX Runtime on the CPU for onnx, ``torch.export.load`` for
exported-program) and run on a random input of another batch size (3), and on a 2x larger image when height
and width are dynamic; the largest absolute difference to the PyTorch model is printed. The exit code is 1 when
it exceeds ``--atol`` x max(1, max |PyTorch logits|), i.e. an absolute tolerance for logits of order one and a
relative one for larger logits.

Weights: ``--weights`` takes a ``.safetensors`` file (tools/train.py's model.safetensors, tools/convert.py
output) or a ``.pth`` state dict. It is read without unpickling code (safetensors, or
``torch.load(weights_only=True)``), mapped by the model's checkpoint_filter_fn and loaded strictly; the
number of classes is read from the file's classifier.

Examples:
  python tools/export.py mambaout_femto --format onnx --out mambaout_femto.onnx
  python tools/export.py agent_swin_tiny --weights agent_swin_tiny.safetensors --format exported-program \\
      --out agent_swin_tiny.pt2
  python tools/export.py agent_deit_tiny --img-size 224 --format onnx --out agent_deit_tiny.onnx --atol 1e-5
  python tools/export.py mambaout_femto --weights mambaout_femto.safetensors --format hf-hub --out hub/mambaout_femto
"""

from __future__ import annotations

import argparse
import json
import os
import re
import time
from dataclasses import dataclass

import torch
from torch import nn

from zoo.cli.common import UsageError

__all__ = ['ExportResult', 'build_model', 'export_program', 'main', 'max_abs_diff', 'write_export']

FORMATS = ('onnx', 'exported-program', 'hf-hub')
SUFFIX = {'onnx': '.onnx', 'exported-program': '.pt2'}  # hf-hub writes a folder
SAMPLE_BATCH = 2  # batch of the tracing input: 1 would let torch.export specialise the batch dimension
CHECK_BATCH = 3  # batch of the verification input: another size than the trace's, so a dynamic batch is tested


@dataclass
class ExportResult:
    """What :func:`write_export` wrote and how the file compares to PyTorch.

    ``max_diff``: largest ``|y_file - y_torch|`` over the check inputs; ``tolerance``: ``atol x max(1,
    max |y_torch|)``; ``dynamic_hw``: whether height and width stayed symbolic in the exported graph;
    ``checked``: the input shapes ``(B, 3, H, W)`` compared.
    """

    path: str
    fmt: str
    max_diff: float
    tolerance: float
    dynamic_hw: bool
    checked: list[tuple[int, ...]]

    @property
    def ok(self) -> bool:
        return self.max_diff <= self.tolerance


def _input_side(model: nn.Module, img_size: int | None) -> int:
    if img_size:
        return img_size
    cfg = getattr(model, 'pretrained_cfg', None) or {}
    size = cfg.get('input_size') or (3, 224, 224)
    return int(size[-1])


def build_model(
    name: str, weights: str | None = None, img_size: int | None = None, model_kwargs: dict | None = None
) -> tuple[nn.Module, dict]:
    """A timm / zoo model in eval mode, with the weights of ``weights`` (``.safetensors`` / ``.pth``) if given.

    The file goes through the zoo's weight route (:func:`zoo.hub.create_model` with ``pretrained_cfg_overlay=
    dict(file=...)``: checked, read without unpickling, mapped by the model's ``checkpoint_filter_fn``);
    ``num_classes`` is taken from its classifier, so the head loads too. ``img_size`` is passed to models that
    take it (fully convolutional ones such as MambaOut take any size without it).

    Returns:
        ``(model, arch_kwargs)``: the ``create_model`` keywords that rebuild the architecture (``model_kwargs``,
        plus ``img_size`` where the model took it).
    """
    from zoo.cli.common import CaptureLoadReport, check_model_names
    from zoo.hub import create_model, load_checkpoint_file, unwrap_state_dict

    check_model_names([name], 'MODEL')
    kwargs = dict(model_kwargs or {})
    pretrained = False
    if weights:
        classifier = _classifier(name)
        head = unwrap_state_dict(load_checkpoint_file(weights)).get(f'{classifier}.weight')
        if head is not None and 'num_classes' not in kwargs:
            kwargs['num_classes'] = head.shape[0]
        overlay = dict(file=weights)
        if 'num_classes' in kwargs:
            overlay['num_classes'] = kwargs['num_classes']
        kwargs['pretrained_cfg_overlay'] = overlay
        pretrained = True
    arch = dict(model_kwargs or {})
    with CaptureLoadReport() as report:
        try:
            sized = {'img_size': img_size} if img_size else {}
            model = create_model(name, pretrained=pretrained, **kwargs, **sized)
            arch.update(sized)
        except TypeError as err:
            if not img_size or 'img_size' not in str(err):
                raise UsageError(f'{name} does not take these arguments ({err})') from None
            model = create_model(name, pretrained=pretrained, **kwargs)  # any input size without img_size
    problem = report.problem()
    if problem:
        raise UsageError(f'weights {weights} do not fit {name} (another architecture?): {problem}')
    if 'num_classes' in kwargs:
        arch['num_classes'] = kwargs['num_classes']
    return model.eval(), arch


def _classifier(name: str) -> str:
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except Exception:  # a name without a default cfg
        cfg = None
    cls = getattr(cfg, 'classifier', None) or 'head'
    return cls if isinstance(cls, str) else cls[0]


def export_program(
    model: nn.Module, side: int, dynamic_hw: bool | None = None
) -> tuple[torch.export.ExportedProgram, bool]:
    """``torch.export`` of ``model`` on a ``(2, 3, side, side)`` input with a dynamic batch and, where the
    model allows, dynamic height and width.

    Height and width are first traced as ``Dim.AUTO``. A model can leave them symbolic and still pin them
    with a guard (a ViT's ``H // patch == grid`` against its position embedding); so the program must also run
    a ``(1, 3, 2 side, 2 side)`` input, else the model is traced again with a fixed height and width.

    Args:
        dynamic_hw: ``None`` tries dynamic height and width as above; ``False`` traces a fixed size at once
            (the second trace of a model known to fix its size is skipped); ``True`` requires them dynamic.

    Returns:
        ``(program, dynamic_hw)``: whether the program takes other heights and widths than ``side``.
    """
    from torch.export import Dim

    x = torch.randn(SAMPLE_BATCH, 3, side, side)
    batch = Dim('batch', min=1, max=4096)
    with torch.no_grad():
        if dynamic_hw is False:
            return torch.export.export(model, (x,), dynamic_shapes=({0: batch},)), False
        program = torch.export.export(model, (x,), dynamic_shapes=({0: batch, 2: Dim.AUTO, 3: Dim.AUTO},))
        user_input = program.graph_signature.user_inputs[0]
        node = next(n for n in program.graph.nodes if n.op == 'placeholder' and n.name == user_input)
        shape = node.meta['val'].shape
        if not isinstance(shape[2], int) and not isinstance(shape[3], int):
            try:
                program.module()(torch.zeros(1, 3, 2 * side, 2 * side))
                return program, True
            except Exception:  # a guard (or the model itself) refuses another size: trace with a fixed one
                if dynamic_hw:
                    raise
            program = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    return program, False


def write_hub_folder(model: nn.Module, name: str, out: str, model_args: dict, side: int) -> str:
    """Write ``model`` as a timm Hub folder (timm's ``save_for_hf``: ``config.json`` with the architecture,
    ``num_classes``, the pretrained cfg and ``model_args``; ``model.safetensors``) and a ``README.md`` model card.

    Args:
        model: eval-mode model taking ``(B, 3, side, side)``.
        model_args: the ``create_model`` keywords that rebuild the same architecture (``img_size``, depths, ...).

    Returns:
        A short summary of the card (params, GMACs).
    """
    from timm.models import get_pretrained_cfg
    from timm.models._hub import save_for_hf

    from zoo.benchmark.macs import count_macs
    from zoo.models import paper_facts

    arch = name.split('.')[0]
    args = {k: v for k, v in model_args.items() if k != 'num_classes'}
    save_for_hf(model, out, model_args=args or None, safe_serialization=True)
    params = sum(p.numel() for p in model.parameters())
    try:
        with torch.no_grad():
            gmacs = f'{count_macs(model, torch.zeros(1, 3, side, side)).total:.2f}'
    except Exception as err:  # a model the MAC counter cannot run: the card says so instead of a number
        gmacs = f'not counted ({type(err).__name__})'
    cfg = get_pretrained_cfg(arch)
    cfg = cfg.to_dict() if cfg is not None else {}
    facts = paper_facts().get(arch, {})
    paper_ids = cfg.get('paper_ids') or ''
    paper_ids = [paper_ids] if isinstance(paper_ids, str) else list(paper_ids)
    links = [f'https://arxiv.org/abs/{p.split(":", 1)[1]}' if p.startswith('arXiv:') else p for p in paper_ids if p]
    paper = cfg.get('paper_name') or 'see the links'
    license_ = cfg.get('license') or 'see the source repository'
    top1 = f'{facts["top1"]}' if facts.get('top1') is not None else 'not reported'
    cite_key = re.sub(r'\W+', '_', arch)
    lines = [
        '---',
        'library_name: timm',
        f'license: {license_}',
        'tags: [image-classification, timm, attention-zoo]',
        '---',
        f'# {arch}',
        '',
        f'A [timm](https://github.com/huggingface/pytorch-image-models) model from attention-zoo ({paper}).',
        '',
        '| | |',
        '|---|---|',
        f'| Parameters | {params / 1e6:.2f}M |',
        f'| GMACs | {gmacs} (at {side}x{side}) |',
        f'| Classes | {getattr(model, "num_classes", "?")} |',
        f"| Paper's top-1 (ImageNet-1k, the published weights) | {top1} |",
        f'| License | {license_} |',
        f'| Paper | {", ".join(links) or paper} |',
        f'| Source | {cfg.get("origin_url") or "-"} |',
        '',
        '## Usage',
        '',
        '```python',
        'import timm',
        'import zoo  # registers the attention-zoo architectures with timm',
        '',
        f"model = timm.create_model('hf-hub:ORG/{arch}', pretrained=True)  # or 'local-dir:PATH'",
        '```',
        '',
        '## Citation',
        '',
        '```bibtex',
        f'@misc{{{cite_key},',
        f'  title = {{{paper}}},',
        f'  note = {{{", ".join(links) or "-"}}},',
        '}',
        '```',
        '',
    ]
    with open(os.path.join(out, 'README.md'), 'w') as f:
        f.write('\n'.join(lines))
    return f'{params / 1e6:.2f}M params, {gmacs} GMACs'


def max_abs_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """``max |a - b|`` of two equal-shape outputs, in float64."""
    if a.shape != b.shape:
        raise RuntimeError(f'the exported model returns {tuple(a.shape)}, PyTorch {tuple(b.shape)}')
    return (a.double() - b.double()).abs().max().item()


def _check_shapes(side: int, dynamic_hw: bool) -> list[tuple[int, int, int, int]]:
    shapes = [(CHECK_BATCH, 3, side, side)]
    if dynamic_hw:
        shapes.append((1, 3, 2 * side, 2 * side))
    return shapes


def write_export(
    model: nn.Module,
    fmt: str,
    out: str,
    side: int,
    atol: float = 1e-4,
    seed: int = 0,
    program: tuple[torch.export.ExportedProgram, bool] | None = None,
) -> ExportResult:
    """Export ``model`` (eval mode) to ``out`` as ``fmt``, read the file back and compare it to ``model``.

    Args:
        model: the PyTorch model, taking ``(B, 3, H, W)`` and returning ``(B, num_classes)`` logits.
        fmt: ``'onnx'`` or ``'exported-program'``.
        side: square input side ``S`` of the trace.
        atol: tolerance factor; the check passes when ``max_diff <= atol * max(1, max |logits|)``.
        program: ``export_program(model, side)``'s result, to write several formats from one trace.
    """
    program, dynamic_hw = program or export_program(model, side)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if fmt == 'onnx':
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            onnx_program = torch.onnx.export(
                program, input_names=['x'], output_names=['logits'], dynamo=True, verbose=False, report=False
            )
        onnx_program.save(out)
        run = _onnx_runner(out)
    else:
        torch.export.save(program, out)
        loaded = torch.export.load(out).module()

        def run(x: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                return loaded(x)

    g = torch.Generator().manual_seed(seed)
    worst, scale, checked = 0.0, 1.0, []
    for shape in _check_shapes(side, dynamic_hw):
        x = torch.randn(*shape, generator=g)
        with torch.no_grad():
            ref = model(x)
        worst = max(worst, max_abs_diff(run(x), ref))
        scale = max(scale, ref.abs().max().item())
        checked.append(shape)
    return ExportResult(out, fmt, worst, atol * scale, dynamic_hw, checked)


def _onnx_runner(path: str):
    try:
        import onnxruntime as ort
    except ImportError:
        raise UsageError(
            'onnxruntime is not installed: pip install "attention-zoo[export]" (or: pip install onnx onnxruntime)'
        ) from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(None, {name: x.numpy()})[0])

    return run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('model', help='timm / zoo model name, e.g. mambaout_femto, agent_swin_tiny, deit_tiny_patch16_224')
    p.add_argument(
        '--format',
        required=True,
        choices=FORMATS,
        help='onnx (.onnx), exported-program (.pt2) or hf-hub (a folder for the Hugging Face Hub)',
    )
    p.add_argument(
        '--out', required=True, help='output file (.onnx for onnx, .pt2 for exported-program) or folder (hf-hub)'
    )
    p.add_argument(
        '--weights',
        help="a local .safetensors or .pth state dict with the timm model's keys (default: random init); "
        'read without unpickling, num_classes from its classifier',
    )
    p.add_argument(
        '--img-size',
        type=int,
        help="square input side of the trace (default: the model's input size); passed as img_size to "
        'models built for one size',
    )
    p.add_argument(
        '--model-kwargs',
        default='{}',
        metavar='JSON',
        help='extra create_model arguments as a JSON object, e.g. \'{"num_classes": 10, "depth": 6}\'',
    )
    p.add_argument(
        '--atol',
        type=float,
        default=1e-4,
        help='fail (exit 1) when max |exported - PyTorch| > ATOL x max(1, max |PyTorch logits|) (default %(default)s)',
    )
    p.add_argument('--seed', type=int, default=0, help='seed of the random init and the check inputs')
    args = p.parse_args(argv)
    want = SUFFIX.get(args.format, '')
    if want and not args.out.endswith(want):
        p.error(f'--out for --format {args.format} must end with {want}, got {args.out}')
    if args.img_size is not None and args.img_size <= 0:
        p.error(f'--img-size must be positive, got {args.img_size}')
    try:
        args.model_kwargs = json.loads(args.model_kwargs)
    except ValueError as err:
        p.error(f'--model-kwargs: {args.model_kwargs!r} is not JSON ({err})')
    if not isinstance(args.model_kwargs, dict):
        p.error(f'--model-kwargs: expected a JSON object, got {args.model_kwargs!r}')
    if 'img_size' in args.model_kwargs:
        p.error('--model-kwargs: give the input side as --img-size, not img_size')
    return args


def main(argv: list[str] | None = None) -> int:
    """Returns the exit code: 0, or 1 when the exported file does not match PyTorch."""
    args = parse_args(argv)
    start = time.time()
    if args.weights and not os.path.isfile(args.weights):
        raise FileNotFoundError(f'--weights {args.weights} does not exist')
    torch.manual_seed(args.seed)
    model, arch_kwargs = build_model(args.model, args.weights, args.img_size, args.model_kwargs)
    side = _input_side(model, args.img_size)
    if args.format == 'hf-hub':
        card = write_hub_folder(model, args.model, args.out, arch_kwargs, side)
        print(
            f'export: {args.model} -> {args.out} (hf-hub: config.json, model.safetensors, README.md; {card}; '
            f'weights {os.path.basename(args.weights) if args.weights else "random init"}); '
            f"load with timm.create_model('local-dir:{args.out}'); {time.time() - start:.1f}s"
        )
        return 0
    try:
        result = write_export(model, args.format, args.out, side, atol=args.atol, seed=args.seed)
    except UsageError:
        raise
    except Exception as err:  # an architecture torch.export / ONNX cannot capture: one line, the cause named
        text = str(err).strip().splitlines()[0] if str(err).strip() else ''
        raise UsageError(f'{args.model} cannot be exported as {args.format}: {type(err).__name__}: {text}') from None
    hw = 'dynamic' if result.dynamic_hw else f'fixed {side}x{side}'
    checked = ', '.join('x'.join(map(str, s)) for s in result.checked)
    verdict = 'ok' if result.ok else 'MISMATCH'
    print(
        f'export: {args.model} -> {result.path} ({args.format}, batch dynamic, height/width {hw}; '
        f'weights {os.path.basename(args.weights) if args.weights else "random init"}); '
        f'max abs diff to PyTorch {result.max_diff:.2e} (tolerance {result.tolerance:.1e}) on {checked}: {verdict}; '
        f'{os.path.getsize(result.path) / 1e6:.1f} MB, {time.time() - start:.1f}s'
    )
    return 0 if result.ok else 1


def cli() -> None:
    """Console entry point (``zoo-export``, ``python tools/export.py``)."""
    from zoo.cli.common import run_cli

    run_cli(main)


if __name__ == '__main__':
    cli()
