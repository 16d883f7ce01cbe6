"""How fast recipes load: Conary's full load (read, parse, validate, macro check) versus bare tomllib.

The corpus is N recipe files written to a temp dir from the recipes in tests/data/recipes/valid,
each under its own package name so that nothing is cached between files.

A (conary): `conary.recipe.check_path(path)` for every file, then `recipe.expand()` of each.
B (baseline): `tomllib.loads(path.read_text())` for every file: the floor any TOML loader pays.

Runs alternate A B A B after one warm-up pair; medians are reported with their ratio.

    python bench/recipe_parse.py [--count 1000] [--runs 7]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from conary.recipe import check_path

TEMPLATES = Path(__file__).resolve().parent.parent / "tests" / "data" / "recipes" / "valid"


def write_corpus(directory: Path, count: int) -> list[Path]:
    templates = sorted(p for p in TEMPLATES.glob("*.toml"))
    paths = []
    for i in range(count):
        template = templates[i % len(templates)]
        text = template.read_text()
        name = re.search(r'^name = "([^"]+)"', text, re.M)
        assert name is not None
        new_name = f"{name.group(1)}-{i}"
        text = text.replace(f'name = "{name.group(1)}"', f'name = "{new_name}"', 1)
        path = directory / f"{new_name}.toml"
        path.write_text(text)
        paths.append(path)
    # Local patches are looked up beside the recipe; copy them so the corpus checks clean.
    for patch in TEMPLATES.glob("*.patch"):
        (directory / patch.name).write_bytes(patch.read_bytes())
    return paths


def run_conary(paths: list[Path]) -> float:
    start = time.perf_counter()
    for path in paths:
        result = check_path(path)
        if result.recipe is None:
            raise SystemExit(f"corpus recipe failed to load: {result.problems[0].render()}")
        result.recipe.expand()
    return time.perf_counter() - start


def run_tomllib(paths: list[Path]) -> float:
    start = time.perf_counter()
    for path in paths:
        tomllib.loads(path.read_text())
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000, help="recipes in the corpus (default 1000)")
    parser.add_argument("--runs", type=int, default=7, help="measured A/B pairs (default 7)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="recipe-bench.") as tmp:
        paths = write_corpus(Path(tmp), args.count)
        run_conary(paths), run_tomllib(paths)  # warm-up pair: page cache, imports, regex compiles
        a_times, b_times = [], []
        for _ in range(args.runs):
            a_times.append(run_conary(paths))
            b_times.append(run_tomllib(paths))

    a, b = statistics.median(a_times), statistics.median(b_times)
    n = args.count
    print(f"corpus: {n} recipes from {TEMPLATES}")
    print(f"A conary load+validate+expand: {a:.3f} s  ({n / a:,.0f} recipes/s)")
    print(f"B bare tomllib.loads:          {b:.3f} s  ({n / b:,.0f} recipes/s)")
    print(f"ratio A/B: {a / b:.2f}x   (medians of {args.runs} alternating runs after one warm-up pair)")
    goal = 2.0 * n / 1000
    print(f"goal: {n} recipes in < {goal:.1f} s: {'met' if a < goal else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
