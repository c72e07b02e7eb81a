"""Generate the README model table from the zoo's registry.

Params and GMACs are measured on the model as built (GMACs = FLOPs/2 from torch's FLOP
counter, at the cfg input size); the paper's numbers and the weights' sources come from each
model's pretrained cfgs (zoo.hub.ZooPretrainedCfg), which also generate weights/manifest.csv.
`--write` replaces the table between the markers in README.md; `--manifest` rewrites the manifest.

Examples:
  python tools/analysis/model_table.py              # print the table
  python tools/analysis/model_table.py --write      # update README.md
  python tools/analysis/model_table.py --manifest   # regenerate weights/manifest.csv (no measuring)
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

MANIFEST = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'weights', 'manifest.csv'
)
BEGIN, END = '<!-- model-table:begin -->', '<!-- model-table:end -->'
README = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), 'README.md')


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


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--write', action='store_true', help=f'replace the table in {README}')
    p.add_argument('--manifest', action='store_true', help=f'regenerate {MANIFEST} from the cfgs and stop')
    args = p.parse_args(argv)
    if args.manifest:
        import zoo  # noqa: F401
        from zoo.hub import manifest_csv

        Path(MANIFEST).write_text(manifest_csv())
        print(f'model_table: wrote {MANIFEST}')
        return ''
    table = render(table_rows())
    if args.write:
        text = open(README).read()
        if BEGIN not in text or END not in text:
            raise SystemExit(f'error: {README} lacks the markers {BEGIN} / {END}')
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        with open(README, 'w') as f:
            f.write(f'{head}{BEGIN}\n{table}\n{END}{tail}')
        print(f'model_table: wrote {table.count(chr(10)) - 1} models to {README}')
    else:
        print(table)
    return table


def cli() -> None:
    """Console entry point (``zoo-model-table``, ``python tools/analysis/model_table.py``)."""
    main()


if __name__ == '__main__':
    cli()
