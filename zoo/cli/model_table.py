"""Generate the README model table from the zoo's registry.

Params and GMACs are measured on the model as built (GMACs = FLOPs/2 from torch's FLOP
counter, at the cfg input size); the paper's numbers and the weights' sources come from each
model's pretrained cfgs (zoo.hub.ZooPretrainedCfg), which also generate weights/manifest.csv.
`--write` replaces the table between the markers in README.md; `--manifest` rewrites the manifest.

Examples:
  python tools/analysis/model_table.py            # print the table
  python tools/analysis/model_table.py --write    # update README.md
  python tools/analysis/model_table.py --speed --write   # the fast-inference tables from benchmarks/fast_inference*.csv
  python tools/analysis/model_table.py --manifest   # regenerate weights/manifest.csv (no measuring)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, 'README.md')
MANIFEST = os.path.join(ROOT, 'weights', 'manifest.csv')  # zoo.hub.MANIFEST, without importing torch for --help
BEGIN, END = '<!-- model-table:begin -->', '<!-- model-table:end -->'
SPEED_BEGIN, SPEED_END = '<!-- speed-table:begin -->', '<!-- speed-table:end -->'
SPEED_CSVS = ['benchmarks/fast_inference.csv']


def measure(name: str) -> tuple[float, float, tuple[int, ...]]:
    """(params in M, GMACs per image at the cfg input size, input size) without running real math."""
    import timm
    import torch

    from zoo.benchmark.macs import count_macs

    with torch.device('meta'):
        model = timm.create_model(name)
    size = tuple(model.pretrained_cfg['input_size'])
    params = sum(p.numel() for p in model.parameters()) / 1e6
    try:
        gmacs = count_macs(model, torch.empty(1, *size, device='meta')).total
    except Exception:  # a model that needs real values (data-dependent shapes): count on CPU
        gmacs = count_macs(timm.create_model(name), torch.zeros(1, *size)).total
    return params, gmacs, size


def table_rows() -> list[dict]:
    import zoo  # noqa: F401
    from zoo.hub import manifest_rows
    from zoo.models import family_of, list_zoo_models, paper_facts

    facts = paper_facts()
    official = {}  # arch -> URL of its official weights (the first tag that has one)
    for row in manifest_rows():
        official.setdefault(row['name'].split('.')[0], row['url'])
    from tqdm import tqdm

    rows = []
    for name in tqdm(list_zoo_models(), desc='measure', leave=False):
        params, gmacs, size = measure(name)
        f = facts.get(name, {})
        rows.append(
            dict(
                model=name,
                family=family_of(name),
                params=params,
                gmacs=gmacs,
                size=f'{size[1]}×{size[2]}',
                paper_params=f.get('params_m'),
                top1=f.get('top1'),
                weights=official.get(name) or f.get('weights_page'),
            )
        )
    return rows


def render(rows: list[dict]) -> str:
    def fmt(v, spec):
        return format(v, spec) if isinstance(v, (int, float)) else '–'

    lines = [
        '| model | family | input | params (M) | paper params (M) | GMACs | paper top-1 | weights |',
        '|---|---|---|---:|---:|---:|---:|---|',
    ]
    for r in rows:
        w = r['weights']
        weights = f'[official]({w})' if w else 'none published'
        lines.append(
            f'| `{r["model"]}` | {r["family"]} | {r["size"]} | {r["params"]:.2f} | '
            f'{fmt(r["paper_params"], ".2f")} | {r["gmacs"]:.2f} | {fmt(r["top1"], ".1f")} | {weights} |'
        )
    return '\n'.join(lines)


def render_speed(csv_path: str) -> str:
    """The README's fast-inference table from a ``benchmark.py --variants ...`` CSV: img/s per variant (with the
    speed-up over fp32), the share of the matmul peak of the variant's precision, and the compile time."""
    import csv

    import zoo  # noqa: F401
    from zoo.models import family_of

    rows = list(csv.DictReader(open(csv_path)))
    variants = list(dict.fromkeys(r['variant'] for r in rows))
    by = {(r['model'], r['variant']): r for r in rows}
    models = list(dict.fromkeys(r['model'] for r in rows))
    r0 = rows[0]
    head = ['model', 'family', 'input', 'GMACs'] + [f'{v} img/s' for v in variants]
    compiled = any(r.get('compile_s') not in (None, '', 'nan') for r in rows)
    head += [f'{v} % of peak' for v in variants] + (['compile (s)'] if compiled else [])
    lines = ['| ' + ' | '.join(head) + ' |', '|---|---|---|' + '---:|' * (len(head) - 3)]
    for m in models:
        base = float(by[m, variants[0]]['infer_img_s'])
        cells = [f'`{m}`', family_of(m) if m in zoo.models.list_zoo_models() else 'timm', f'{r0["img_size"]}²']
        cells.append(f'{float(by[m, variants[0]]["gmacs"]):.2f}')
        for v in variants:
            x = float(by[m, v]['infer_img_s']) if (m, v) in by else float('nan')
            cells.append('–' if x != x else f'{x:.2f}' + ('' if v == variants[0] else f' ({x / base:.2f}×)'))
        cells += [f'{100 * float(by[m, v]["share_of_peak"]):.1f}' if (m, v) in by else '–' for v in variants]
        compile_s = [
            float(by[m, v]['compile_s']) for v in variants if (m, v) in by and by[m, v]['compile_s'] not in ('', 'nan')
        ]
        if compiled:
            cells.append(f'{compile_s[0]:.0f}' if compile_s else '–')
        lines.append('| ' + ' | '.join(cells) + ' |')
    loads = [float(r['load_avg']) for r in rows]
    lines.append('')
    lines.append(
        f'{r0["device"]}, {r0["threads"]} thread(s), batch {r0["batch_size"]}; matmul peak measured in the same '
        f'run: {float(r0["peak_fp32_gflop_s"]):.0f} GFLOP/s fp32, {float(r0["peak_bf16_gflop_s"]):.0f} GFLOP/s '
        f'bf16; 1-minute load average {min(loads):.1f}-{max(loads):.1f} (other jobs on the machine). '
        f'Generated from `{csv_path}`.'
    )
    return '\n'.join(lines)


def replace_between(text: str, begin: str, end: str, body: str, where: str = 'README.md') -> str:
    """``text`` with what lies between the ``begin`` and ``end`` markers replaced by ``body``."""
    if begin not in text or end not in text:
        raise SystemExit(f'error: {where} lacks the markers {begin} / {end}')
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    return f'{head}{begin}\n{body}\n{end}{tail}'


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--write', action='store_true', help=f'replace the table in {README}')
    p.add_argument('--manifest', action='store_true', help=f'regenerate {MANIFEST} from the cfgs and stop')
    p.add_argument(
        '--speed',
        nargs='*',
        metavar='CSV',
        help=f'the fast-inference tables (README "Fast inference"), one per benchmark CSV (default '
        f'{" ".join(SPEED_CSVS)}), instead of the model table; with --write, replace them in README.md',
    )
    args = p.parse_args(argv)
    if args.manifest:
        import zoo  # noqa: F401
        from zoo.hub import manifest_csv

        Path(MANIFEST).write_text(manifest_csv())
        print(f'model_table: wrote {MANIFEST}')
        return ''
    speed = args.speed is not None
    begin, end = (SPEED_BEGIN, SPEED_END) if speed else (BEGIN, END)
    if speed:
        tables = []
        for csv_path in args.speed or SPEED_CSVS:
            path = csv_path if os.path.isabs(csv_path) else os.path.join(ROOT, csv_path)
            if not os.path.isfile(path):
                raise SystemExit(f'error: {csv_path} does not exist (tools/analysis/benchmark.py writes it)')
            tables.append(render_speed(path).replace(ROOT + os.sep, ''))
        table = '\n\n'.join(tables)
    else:
        table = render(table_rows())
    if args.write:
        text = replace_between(open(README).read(), begin, end, table, README)
        with open(README, 'w') as f:
            f.write(text)
        print(f'model_table: wrote {table.count(chr(10)) - 1} rows to {README}')
    else:
        print(table)
    return table


def cli() -> None:
    """Console entry point (``zoo-model-table``, ``python tools/analysis/model_table.py``)."""
    main()


if __name__ == '__main__':
    cli()
