"""What the hermetic sandbox costs a build: `conary cook` versus the same steps run bare in a shell.

A (cook): `cook_recipe(recipe, hermetic)`; its build-steps time (every step in a fresh sandbox) is
compared, and its packaging time is reported on its own.
B (bare): the same source unpacked into a temp dir, the same expanded step scripts run with
`sh -e -c` and the same environment (host paths instead of /build and /destdir), no sandbox, no
packaging.

Pairs alternate their order (A B, B A, ...) after one warm-up pair; medians are reported, as wall
time and as the CPU time of the processes each side ran (steadier on a shared machine). The script
fetches the source first, the only network use, so the timed runs read the cache.

    python bench/cook_overhead.py [RECIPE] [--runs N] [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import resource
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


def bare_build(recipe_path: Path, options: CookOptions, jobs: int, scratch: Path) -> dict[str, float]:
    """Unpack and run the steps with sh, outside any sandbox; return each step's wall time and the total."""
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
    times: dict[str, float] = {}
    started = time.perf_counter()
    for step, script in scripts:
        step_started = time.perf_counter()
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
        times[f"step:{step}"] = time.perf_counter() - step_started
    times["build"] = time.perf_counter() - started
    shutil.rmtree(work)
    return times


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


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
        cook_runs: list[dict[str, float]] = []
        bare_runs: list[dict[str, float]] = []
        for i in range(args.runs + 1):
            # Alternate which side goes first, so neither always runs on a warmer machine.
            order = ("cook", "bare") if i % 2 == 0 else ("bare", "cook")
            measured: dict[str, dict[str, float]] = {}
            for side in order:
                cpu_before = _children_cpu()
                if side == "cook":
                    shutil.rmtree(out, ignore_errors=True)
                    started = time.perf_counter()
                    result = cook_recipe(args.recipe, options)
                    measured["cook"] = {**result.timings, "total": time.perf_counter() - started}
                else:
                    measured["bare"] = bare_build(args.recipe, options, args.jobs, scratch)
                # CPU time of every finished descendant: less sensitive to a busy machine than wall time.
                measured[side]["cpu"] = _children_cpu() - cpu_before
            c, b = measured["cook"], measured["bare"]
            tag = "warm-up" if i == 0 else f"run {i}"
            print(
                f"  {tag} ({' then '.join(order)}): cook steps {c['build']:.2f}s (cpu {c['cpu']:.2f}s), "
                f"packaging {c['package']:.2f}s, cook total {c['total']:.2f}s | bare steps "
                f"{b['build']:.2f}s (cpu {b['cpu']:.2f}s)"
            )
            if i:
                cook_runs.append(c)
                bare_runs.append(b)

        def median(runs: list[dict[str, float]], key: str) -> float:
            return statistics.median(r[key] for r in runs)

        steps = [k for k in cook_runs[0] if k.startswith("step:")]
        for key in steps:
            hermetic, bare = median(cook_runs, key), median(bare_runs, key)
            print(
                f"  median {key[5:]:<13} hermetic {hermetic:7.2f}s  bare {bare:7.2f}s  "
                f"ratio {hermetic / bare:.3f}"
            )
        m_cook, m_bare = median(cook_runs, "build"), median(bare_runs, "build")
        print(
            f"median build steps: hermetic {m_cook:.2f}s, bare {m_bare:.2f}s, "
            f"ratio {m_cook / m_bare:.3f} (goal <= 1.10)"
        )
        ratios = sorted(c["build"] / b["build"] for c, b in zip(cook_runs, bare_runs, strict=True))
        m_cook_cpu, m_bare_cpu = median(cook_runs, "cpu"), median(bare_runs, "cpu")
        print(
            f"median CPU time of the steps' processes: hermetic {m_cook_cpu:.2f}s, bare {m_bare_cpu:.2f}s, "
            f"ratio {m_cook_cpu / m_bare_cpu:.3f}"
        )
        print(f"per-pair ratios: {', '.join(f'{r:.3f}' for r in ratios)}")
        print(
            f"median packaging: {median(cook_runs, 'package'):.2f}s; whole cook (cache lookup, unpack, "
            f"patch, steps, packaging): {median(cook_runs, 'total'):.2f}s"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
