"""A minimal-profile bootstrap from cached sources against its floor, a bare kernel build.

A (bootstrap): `conary bootstrap` of the minimal profile through Base (or --until) in a fresh work
dir: the wall time of each stage and the total, then the time of a no-op re-run (the median of
--noop-runs, every package cached).
B (floor): a bare `make` of the same kernel configuration (recipes/linux.recipe.toml, its configure
step run first and not timed), in a shell on the host, no sandbox, no packaging. A bootstrap that
includes the kernel cannot take less than that; the ratio A/B says how far from the floor it is.

Every source is fetched first (the only network use), so the timed runs read the cache. A and B run
once each (a bootstrap takes minutes): B runs first on even --order and last on odd, and the load
average is printed beside each, since the machine is shared.

    python bench/bootstrap_minimal.py [--target ARCH] [--seed host|lock] [--jobs N] [--until STAGE]
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

from conary.bootstrap import BootstrapConfig, load_profile, save_config
from conary.bootstrap.pipeline import Bootstrap
from conary.bootstrap.seedlock import import_lock, import_stage_debs
from conary.cook import CookOptions, fetch_only, fetch_sources, step_environment, unpack
from conary.cook.pipeline import load
from conary.distro_tree import tree_dir
from conary.recipe import MacroContext
from conary.targets import load_target


def fetch_everything(bootstrap: Bootstrap, options: CookOptions, kernel: Path | None) -> None:
    recipes = sorted({p for stage in bootstrap.active_stages() for p in bootstrap.profile.recipes_of(stage)})
    fetch_only([*recipes, *([kernel] if kernel else [])], options)


def _quiet(warnings: list[str]) -> None:
    """The importers' warnings (maintainer scripts not run) are the same in every run: not news here."""


def run_bootstrap(bootstrap: Bootstrap, until: str) -> tuple[dict[str, float], float]:
    started = time.perf_counter()
    report = bootstrap.run(until)
    total = time.perf_counter() - started
    if not report.ok:
        failed = [f"{p.name} ({p.log})" for s in report.stages for p in s.failures]
        sys.exit(f"the bootstrap failed: {', '.join(failed)}")
    return {s.name: s.seconds for s in report.stages}, total


def bare_kernel_make(
    recipe_path: Path, options: CookOptions, target_arch: str, jobs: int, scratch: Path
) -> float:
    """Unpack the kernel, run its configure step, and time its make step, bare on the host."""
    target = load_target(target_arch)
    recipe = load(recipe_path)
    fetched = fetch_sources(recipe, recipe_path.resolve().parent, options)
    build, dest = scratch / "kernel" / "build", scratch / "kernel" / "destdir"
    dest.mkdir(parents=True)
    result = unpack(fetched["source.archive"].path, build)
    for i, extra in enumerate(recipe.source.additional):
        item = fetched[f"source.additional[{i}]"]
        folder = build / (extra.extract_to or ".")
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(item.path, folder / Path(extra.url).name)
    expanded = recipe.expand(MacroContext(destdir=str(dest), jobs=jobs, machine=target.macros()))
    env = step_environment(
        name=recipe.package.name,
        version=recipe.package.version,
        jobs=jobs,
        source_date_epoch=result.newest_mtime,
        build_dir=str(build),
        dest_dir=str(dest),
        recipe_env=dict(expanded.build.environment),
    )
    steps = dict(expanded.build.steps())
    timed = 0.0
    for step in ("setup", "configure", "make"):
        if step not in steps:
            continue
        started = time.perf_counter()
        with open(scratch / f"kernel-{step}.log", "wb") as log:
            code = subprocess.run(
                ["/bin/sh", "-e", "-c", steps[step]], cwd=build, env=env, stdout=log, stderr=subprocess.STDOUT
            ).returncode
        if code != 0:
            sys.exit(f"bare kernel {step} failed ({code}); see {scratch}/kernel-{step}.log")
        if step == "make":
            timed = time.perf_counter() - started
    shutil.rmtree(scratch / "kernel")
    return timed


def load_average() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", default="x86_64")
    parser.add_argument("--seed", choices=("host", "lock"), default="host")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="packages at once and make -j")
    parser.add_argument("--until", default="base", help="the last stage timed (default: base)")
    parser.add_argument("--source-cache", type=Path, default=None)
    parser.add_argument("--noop-runs", type=int, default=3)
    parser.add_argument("--order", type=int, default=0, help="even: floor first; odd: bootstrap first")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="conary-bench-bootstrap."))
    try:
        config = BootstrapConfig(
            work=scratch / "work",
            target=args.target,
            jobs=args.jobs,
            seed=args.seed,
            source_cache=args.source_cache,
        )
        save_config(config)  # a kept work dir takes `conary bootstrap ... --work` (bench/image.py)
        cache = args.source_cache
        bootstrap = Bootstrap(
            config,
            load_profile("minimal"),
            load_target(args.target),
            seed_importer=lambda lock, repo, key: _quiet(
                import_lock(lock, repo, source_cache=cache, signing_key=key)
            ),
            debian_importer=lambda lock, spec, repo, key: _quiet(
                import_stage_debs(lock, spec, repo, source_cache=cache, signing_key=key)
            ),
        )
        options = CookOptions(source_cache=args.source_cache, jobs=args.jobs)
        kernel = tree_dir("recipes") / "linux.recipe.toml"
        kernel_recipe = kernel if kernel.is_file() else None
        fetch_everything(bootstrap, options, kernel_recipe)  # network, once, before timing
        print(f"minimal profile for {args.target} through {args.until}, seed {args.seed}, jobs {args.jobs}")

        floor = None

        def measure_floor() -> None:
            nonlocal floor
            if kernel_recipe is None:
                print("floor: no recipes/linux.recipe.toml in this tree, so no kernel floor")
                return
            load = load_average()
            floor = bare_kernel_make(kernel_recipe, options, args.target, args.jobs, scratch)
            print(f"floor: bare kernel make {floor:.1f}s (load {load})")

        if args.order % 2 == 0:
            measure_floor()
        load = load_average()
        stages, total = run_bootstrap(bootstrap, args.until)
        print(f"bootstrap (load {load}):")
        for name, seconds in stages.items():
            print(f"  {name:<8} {seconds:8.1f}s")
        print(f"  total    {total:8.1f}s")
        names = list(stages)
        if "base" in names and names[-1] != "base":
            to_base = sum(stages[n] for n in names[: names.index("base") + 1])
            print(f"  to the end of Base {to_base:8.1f}s")
        noop = []
        for _ in range(args.noop_runs):
            _, seconds = run_bootstrap(bootstrap, args.until)
            noop.append(seconds)
        print(f"no-op re-run: median {statistics.median(noop):.2f}s of {', '.join(f'{s:.2f}' for s in noop)}")
        if args.order % 2 == 1:
            measure_floor()
        if floor:
            print(f"ratio bootstrap/floor: {total / floor:.2f} (goal: under 4 minutes to the end of Base)")
    finally:
        if args.keep:
            print(f"work dir kept: {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
