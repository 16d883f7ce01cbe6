"""What the hermetic sandbox costs a build: `conary cook` versus the same steps run bare in a shell.

A (cook): `cook_recipe(recipe, hermetic)`; its build-steps time (every step in a fresh sandbox) is
compared, and its packaging time is reported on its own.
B (bare): the same source unpacked into a temp dir, the same expanded step scripts run with
`sh -e -c` and the same environment (host paths instead of /build and /destdir), no sandbox, no
packaging.

Runs alternate A B A B after one warm-up pair; medians are reported. The source must be in the
cache (the script fetches it first, which is the only network use).

    python bench/cook_overhead.py [RECIPE] [--runs N] [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from conary.cook import CookOptions, cook_recipe, fetch_sources, step_environment, unpack
from conary.cook.pipeline import load
from conary.distro_tree import tree_dir


def bare_build(recipe_path: Path, options: CookOptions, jobs: int, scratch: Path) -> float:
    """Unpack and run the steps with sh, outside any sandbox; return the steps' wall time."""
    from conary.recipe import MacroContext

    recipe = load(recipe_path)
    fetched = fetch_sources(recipe, recipe_path.resolve().parent, options)
    work = Path(tempfile.mkdtemp(prefix="bare.", dir=scratch))
    build, dest = work / "build", work / "destdir"
    dest.mkdir(parents=True)
    result = unpack(fetched["source.archive"].path, build, extract_dir=recipe.source.extract_dir)
    expanded = recipe.expand(MacroContext(destdir=str(dest), jobs=jobs))
    env = step_environment(
        name=recipe.package.name,
        version=recipe.package.version,
        jobs=jobs,
        source_date_epoch=result.newest_mtime,
        build_dir=str(build),
        dest_dir=str(dest),
        recipe_env=dict(expanded.build.environment),
    )
    cwd = build / (expanded.build.workdir or "")
    cwd.mkdir(parents=True, exist_ok=True)
    scripts = list(expanded.build.steps())
    if expanded.build.sanity_check is not None:
        scripts.append(("sanity_check", expanded.build.sanity_check.script))
    started = time.perf_counter()
    for step, script in scripts:
        with open(work / f"{step}.log", "wb") as log:
            code = subprocess.run(
                ["/bin/sh", "-e", "-c", script],
                cwd=cwd,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            ).returncode
        if code != 0:
            sys.exit(f"bare {step} failed with exit code {code}; see {work}/{step}.log")
    elapsed = time.perf_counter() - started
    shutil.rmtree(work)
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recipe", nargs="?", type=Path, default=tree_dir("recipes") / "hello.recipe.toml")
    parser.add_argument("--runs", type=int, default=3, help="measured pairs after the warm-up (default 3)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--mirror", action="append", default=[])
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="conary-bench."))
    try:
        out = scratch / "dist"
        from conary.ccs import generate_keypair

        key, _pub = generate_keypair(scratch / "bench-key")
        options = CookOptions(
            output_dir=out, hermetic=True, jobs=args.jobs, mirrors=tuple(args.mirror), key=key
        )
        recipe = load(args.recipe)
        fetch_sources(recipe, args.recipe.resolve().parent, options)  # network, once, before timing
        print(
            f"recipe: {args.recipe} ({recipe.package.name} {recipe.package.version}), jobs={args.jobs}, "
            f"runs={args.runs} after 1 warm-up pair"
        )
        cook_build, cook_pack, cook_total, bare = [], [], [], []
        for i in range(args.runs + 1):
            shutil.rmtree(out, ignore_errors=True)
            started = time.perf_counter()
            result = cook_recipe(args.recipe, options)
            total = time.perf_counter() - started
            b = bare_build(args.recipe, options, args.jobs, scratch)
            tag = "warm-up" if i == 0 else f"run {i}"
            print(
                f"  {tag}: cook steps {result.timings['build']:.2f}s, packaging "
                f"{result.timings['package']:.2f}s, cook total {total:.2f}s | bare steps {b:.2f}s"
            )
            if i == 0:
                continue
            cook_build.append(result.timings["build"])
            cook_pack.append(result.timings["package"])
            cook_total.append(total)
            bare.append(b)
        m_cook, m_bare = statistics.median(cook_build), statistics.median(bare)
        print(
            f"median build steps: hermetic {m_cook:.2f}s, bare {m_bare:.2f}s, "
            f"ratio {m_cook / m_bare:.3f} (goal <= 1.10)"
        )
        print(
            f"median packaging: {statistics.median(cook_pack):.2f}s; median whole cook (unpack, patch, "
            f"steps, packaging): {statistics.median(cook_total):.2f}s"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
