"""Shared entry for the tools.

* ``run_cli``: a user error (missing file, unknown key, bad option value, bad checkpoint, weights of
  another architecture, unknown model, a missing OpenMMLab install) becomes one line on stderr and
  exit code 2; anything else keeps its traceback.
* ``build_runner``: mmengine's Runner with a short console log: a header of a few lines (config,
  work dir, model, parameters, dataset sizes), then progress. The environment, the full config, the
  hook table and the per-parameter optimizer settings still go to the log file in the work dir and
  reach the console with ``--verbose``.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

# Exact messages only: the pinned setuptools (< 81, which mmengine 0.10.7 needs) warns on every
# import of pkg_resources, and mmengine re-imports it on each config package lookup.
warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API', category=UserWarning)

OPENMMLAB_HINT = (
    'the OpenMMLab extra (mmcv, mmdet, mmseg) is not installed (`make demo` installs only the '
    'core): run `make install` (or `bash scripts/install.sh`), which builds mmcv once and caches it'
)
_OPENMMLAB = ('mmcv', 'mmdet', 'mmseg', 'mmsegmentation')  # module and distribution names


# The checkout the zoo is installed from (editable install): where relative config paths and README.md resolve
# when the tool runs from another directory.
REPO_ROOT = Path(__file__).resolve().parents[2]


class UsageError(Exception):
    """A mistake in the user's input; ``str()`` is the one-line message."""


def run_cli(main: Callable[[], object]) -> None:
    """Run a tool's ``main``; user errors exit with code 2 and one line on stderr."""
    from zoo.hub import WeightsError  # CheckpointError, ChecksumError, DownloadError

    try:
        from zoo.engine.config import ConfigValueError
    except ImportError:  # mmengine missing: the tool reports that itself
        ConfigValueError = UsageError  # noqa: N806
    try:
        result = main()
    except KeyboardInterrupt:
        sys.exit(130)
    except SystemExit:
        raise
    except ModuleNotFoundError as err:
        # mmengine's Config raises its own 'mmdet is not installed, ...' without setting err.name
        name = err.name or next(iter(re.findall(r'^(\w+) is not installed', str(err))), '')
        if name.split('.')[0] not in _OPENMMLAB:
            raise
        _fail(f'{name} is missing: {OPENMMLAB_HINT}')
    except (FileNotFoundError, KeyError, WeightsError, UsageError, ConfigValueError) as err:
        _fail(_first_line(err))
    except RuntimeError as err:
        summary = summarize_state_dict_error(str(err))
        if summary is None:
            raise
        _fail(summary)
    except OSError as err:  # PIL's UnidentifiedImageError and friends name the file
        _fail(_first_line(err))
    if isinstance(result, int) and not isinstance(result, bool) and result != 0:
        sys.exit(result)


def finish_distributed() -> None:
    """End a torchrun process cleanly: wait for every rank (rank 0 may still be writing the last
    checkpoint), then tear the process group down. A rank that left Python with a live gloo group
    could abort in the group's destructor ('terminate called without an active exception'), and
    torchrun then killed the others and failed the job."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def exit_torchrun_worker() -> None:
    """Leave a finished torchrun worker of rank > 0 without interpreter teardown (call it last in ``cli()``).

    Even after :func:`finish_distributed`, a rank-1 worker was seen to abort while Python destroyed its
    objects ('terminate called without an active exception': a C++ thread of the gloo / DDP machinery still
    joinable), and torchrun then failed the job although training had finished. Such a rank holds nothing
    left to write (rank 0 writes checkpoints, logs and exports), so it flushes its logs and streams and exits
    with ``os._exit(0)``. Rank 0 and single-process runs exit normally.
    """
    if int(os.environ.get('WORLD_SIZE', '1')) > 1 and int(os.environ.get('RANK', '0')) > 0:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _first_line(err: BaseException) -> str:
    # OSError subclasses keep (errno, strerror) in args; str() names the file for them.
    text = str(err) if isinstance(err, OSError) else str(err.args[0]) if err.args else type(err).__name__
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


def _fail(msg: str) -> None:
    print(f'error: {msg}', file=sys.stderr)
    sys.exit(2)


def check_model_names(models: list[str], where: str = 'model') -> None:
    """Unknown timm / zoo model names are one error line with the closest known names."""
    import difflib

    import timm

    import zoo  # noqa: F401  (registers the zoo's models)

    for name in models:
        arch = name.split('.')[0]  # 'model.tag' names a pretrained variant of 'model'
        if not timm.is_model(arch):
            close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
            hint = (
                f' (did you mean {", ".join(repr(c) for c in close)}?)'
                if close
                else " (see timm.list_models('*pattern*'))"
            )
            raise UsageError(f'unknown model {name!r} in {where}{hint}')


# --------------------------------------------------------------------------------------------------
# Weights of another architecture: torch's and mmengine's multi-line load errors, in one line.

_TORCH_LIST = re.compile(r'(Missing|Unexpected) key\(s\) in state_dict: ((?:"[^"]*"(?:, )?)+)')
_MMENGINE_LIST = re.compile(r'(unexpected key in source|missing keys in source) state_dict: ([^\n]*)')
_SIZE = re.compile(
    r'size mismatch for ([^:\s]+): copying a param with shape torch\.Size\((\[[^\]]*\])\) from '
    r'checkpoint, the shape in current model is torch\.Size\((\[[^\]]*\])\)'
)


def summarize_state_dict_error(text: str, source: str | None = None) -> str | None:
    """One line for a ``load_state_dict`` failure, or None when ``text`` is not one.

    Args:
        text: the message of torch's or mmengine's strict ``load_state_dict`` RuntimeError.
        source: the weights file, named in the message when given.
    """
    if 'Error(s) in loading state_dict' not in text and 'in source state_dict' not in text:
        return None
    missing: list[str] = []
    unexpected: list[str] = []
    for kind, keys in _TORCH_LIST.findall(text):
        (missing if kind == 'Missing' else unexpected).extend(re.findall(r'"([^"]*)"', keys))
    for kind, keys in _MMENGINE_LIST.findall(text):
        (missing if kind.startswith('missing') else unexpected).extend(k.strip() for k in keys.split(',') if k.strip())
    sizes = _SIZE.findall(text)
    model = re.search(r'loading state_dict for (\w+)', text)
    parts = []
    if sizes:
        k, ck, cur = sizes[0]
        more = f' and {len(sizes) - 1} more' if len(sizes) > 1 else ''
        parts.append(f'{len(sizes)} shape mismatch(es) ({k}: {ck} in the file, {cur} in the model{more})')
    for name, keys in (('missing', missing), ('unexpected', unexpected)):
        if keys:
            shown = ', '.join(keys[:3]) + (', ...' if len(keys) > 3 else '')
            parts.append(f'{len(keys)} {name} key(s) ({shown})')
    what = f'weights {source}' if source else 'the weights'
    target = f' {model.group(1)}' if model else ' the model'
    return f'{what} do not fit{target} (another architecture or num_classes?): {"; ".join(parts) or "keys differ"}'


class CaptureLoadReport(logging.Handler):
    """Collects the keys timm's ``load_pretrained`` reports as missing / unexpected: timm loads
    non-strictly (and only logs) when ``num_classes`` differs from the file's, so weights of another
    architecture would otherwise load "successfully" into a randomly initialised model."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.missing: list[str] = []
        self.unexpected: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        m = re.match(
            r'(Missing|Unexpected) keys \((.*)\) (?:discovered|found) while loading pretrained',
            record.getMessage(),
            flags=re.S,
        )
        if m:
            (self.missing if m.group(1) == 'Missing' else self.unexpected).extend(
                k.strip() for k in m.group(2).split(',') if k.strip()
            )

    def __enter__(self) -> CaptureLoadReport:
        logger = logging.getLogger('timm.models._builder')
        self._saved = logger.level, logger.propagate
        logger.addHandler(self)
        logger.setLevel(logging.INFO)
        logger.propagate = False  # reported in one line by the tool instead
        return self

    def __exit__(self, *exc) -> None:
        logger = logging.getLogger('timm.models._builder')
        logger.removeHandler(self)
        logger.setLevel(self._saved[0])
        logger.propagate = self._saved[1]

    def problem(self, classifier: tuple[str, ...] = ()) -> str | None:
        """One line about keys that do not fit (a dropped classifier is expected), or None."""
        missing = [k for k in self.missing if not k.startswith(tuple(c + '.' for c in classifier))]
        parts = [
            f'{len(keys)} {name} key(s) ({", ".join(keys[:3])}{", ..." if len(keys) > 3 else ""})'
            for name, keys in (('missing', missing), ('unexpected', self.unexpected))
            if keys
        ]
        return '; '.join(parts) or None


# --------------------------------------------------------------------------------------------------
# Concise console log.

# Console-only noise: each message still reaches the log file in the work dir.
_DUMP_PREFIXES = (
    '\n' + '-' * 60 + '\nSystem environment:',  # Runner._log_env
    'Config:\n',
    'Hooks will be executed in the following order',
    'paramwise_options -- ',  # one line per parameter from DefaultOptimWrapperConstructor
    'Distributed training is not used, all SyncBatchNorm',
    # mmengine's own CheckpointHook uses its deprecated file client (nothing the user can change)
    '"FileClient" will be deprecated in future',
    '"HardDiskBackend" is the alias of "LocalBackend"',
)


class _ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a malformed record is not ours to hide
            return True
        return not msg.startswith(_DUMP_PREFIXES)


def build_runner(cfg, verbose: bool = False, header: str = 'train'):
    """``Runner.from_cfg(cfg)`` with the zoo's console log (see the module docstring).

    ``header`` is ``'train'`` or ``'test'``: which dataloaders the header describes.
    """
    from mmengine.runner import Runner

    from zoo.engine.patches import apply_patches

    apply_patches()

    class ZooRunner(Runner):
        def build_logger(self, *args, **kwargs):
            logger = super().build_logger(*args, **kwargs)
            if not verbose:
                for h in logger.handlers:
                    if isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler):
                        h.addFilter(_ConsoleFilter())
            return logger

    # mmengine keeps one Visualizer per name for the whole process: a second run in the same process
    # (tools called as functions, the tests) would write its TensorBoard events into the first run's
    # work dir. A name per run gives each run its own visualizer and backends.
    if isinstance(cfg.get('visualizer'), dict):
        import uuid

        cfg.visualizer.name = f'{cfg.visualizer.get("name", "visualizer")}_{uuid.uuid4().hex[:8]}'
    runner = ZooRunner.from_cfg(cfg)
    runner.register_hook(_header_hook(header, cfg), priority='VERY_HIGH')
    return runner


def log_file(runner) -> str | None:
    """The file mmengine's logger writes this run's full log to."""
    return next((h.baseFilename for h in runner.logger.handlers if isinstance(h, logging.FileHandler)), None)


def _describe_model(runner, cfg) -> str:
    from mmengine.model import is_model_wrapper

    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    name = getattr(model, 'model_name', None)
    backbone = cfg.model.get('backbone') if hasattr(cfg.model, 'get') else None
    if name is None and isinstance(backbone, dict):
        name = backbone.get('model_name') or backbone.get('type')
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    what = f'{type(model).__name__}' + (f' ({name})' if name else '')
    extra = f', {trainable / 1e6:.2f}M trainable' if trainable != params else ''
    return f'{what}, {params / 1e6:.2f}M params{extra}'


def _short_path(path: str) -> str:
    rel = os.path.relpath(path) if os.path.isabs(path) else path
    return path if rel.startswith('..') else rel


def _describe_loader(loader) -> str:
    try:
        n = len(loader.dataset)
    except TypeError:
        n = '?'
    batch = loader.batch_size or getattr(loader.batch_sampler, 'batch_size', '?')
    return f'{n} samples (batch {batch}, {len(loader)} iters)'


def _header_hook(mode: str, cfg):
    """A hook that logs the run header once, when the loops (and so the dataloaders) exist."""
    from mmengine.hooks import Hook

    class HeaderHook(Hook):
        priority = 'VERY_HIGH'

        def __init__(self) -> None:
            self.done = False

        def _log(self, runner, data: str) -> None:
            if self.done:
                return
            self.done = True
            cfg_path = getattr(cfg, 'filename', None) or '?'
            lines = [
                f'config:   {_short_path(cfg_path)}',
                f'work dir: {runner.work_dir}  (full config and environment: {log_file(runner) or "log file"})',
                f'model:    {_describe_model(runner, cfg)}',
                f'data:     {data}',
                f'run:      launcher {runner.launcher}, world_size: {runner.world_size}, seed {runner.seed}',
            ]
            runner.logger.info('\n'.join(lines))

        def before_train(self, runner) -> None:
            if mode != 'train':
                return
            data = f'train {_describe_loader(runner.train_dataloader)}'
            if runner.val_loop is not None:
                data += f'; val {_describe_loader(runner.val_dataloader)}'
            train_cfg = cfg.get('train_cfg') or {}
            total = (
                f'{train_cfg["max_epochs"]} epochs'
                if 'max_epochs' in train_cfg
                else f'{train_cfg.get("max_iters", "?")} iters'
            )
            self._log(runner, f'{data}; {total}')

        def before_test(self, runner) -> None:
            if mode == 'test':
                self._log(runner, f'test {_describe_loader(runner.test_dataloader)}')

    return HeaderHook()


# --------------------------------------------------------------------------------------------------
# The fast inference path: --bf16 / --compile / --channels-last (tools/test.py, infer.py, wsi_extract.py and
# tools/analysis/benchmark.py).


def add_fast_args(p) -> None:
    """Add ``--bf16``, ``--compile`` and ``--channels-last`` to an argparse parser (one group)."""
    g = p.add_argument_group(
        'fast inference (see README "Fast inference"; benchmarks/fast_inference.csv has the measured speed-ups)'
    )
    g.add_argument(
        '--bf16',
        action='store_true',
        help='run the model under bfloat16 autocast (matmuls and convolutions in bfloat16; the selective scan, '
        'spike thresholds, LSQ-quantised layers, softmax statistics and MIL attention pooling stay float32, and '
        "QSD's quantised layers multiply spike counts exactly in int8); "
        'outputs are handed on as float32. Logits agree with float32 within the tolerances '
        'tests/test_fast_inference.py states',
    )
    g.add_argument(
        '--compile',
        action='store_true',
        help='torch.compile the model (Inductor; on CPU it needs a C++ compiler). The first batch compiles '
        '(seconds to minutes; the time is printed); when compiling fails, one warning and the model runs eagerly',
    )
    g.add_argument(
        '--channels-last',
        action='store_true',
        help='channels_last (NHWC) memory format for the model, so convolutions run NHWC (helps conv-heavy '
        'models: MambaOut, MEDUSA, ResNets)',
    )


def fast_target(model):
    """The module the fast path applies to: a wrapper's timm / OpenMMLab ``backbone``, or a MIL classifier's
    ``head`` (the ACMIL / ABMIL model), else the model itself."""
    import torch

    for name in ('backbone', 'head'):
        sub = getattr(model, name, None)
        if isinstance(sub, torch.nn.Module):
            return sub
    return model


def apply_fast_args(model, args, what: str | None = None):
    """``zoo.layers.prepare_inference`` on ``model`` with the parsed ``--bf16 / --compile / --channels-last``;
    returns the compile state (None without ``--compile``)."""
    from zoo.layers import prepare_inference

    return prepare_inference(model, bf16=args.bf16, compile=args.compile, channels_last=args.channels_last, what=what)


def fast_summary(args, state) -> str:
    """``'; bf16, compiled (first batch 12.3 s)'``-style suffix for a tool's summary line ('' for none)."""
    parts = [name for name, on in (('bf16', args.bf16), ('channels_last', args.channels_last)) if on]
    if args.compile:
        if state is not None and state.error:
            parts.append('compile failed, ran eagerly')
        elif state is not None and state.first_call_s is not None:
            parts.append(f'compiled (first batch, with compiling: {state.first_call_s:.1f} s)')
        else:
            parts.append('compiled')
    return f'; {", ".join(parts)}' if parts else ''
