"""`conary bootstrap`: take a target from a pinned seed through a profile's stages (docs/bootstrap.md)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.live import Live
from rich.text import Text

from conary.bootstrap import (
    DEFAULT_WORK,
    SEED_MODES,
    BootstrapConfig,
    DryRunOptions,
    DryRunReport,
    config_path,
    dry_run,
    load_config,
    load_profile,
    prerequisites,
    save_config,
)
from conary.bootstrap.pipeline import Bootstrap, RunReport
from conary.bootstrap.profile import DebianSpec
from conary.bootstrap.seedlock import import_lock, import_stage_debs, lock_the_seed
from conary.cli import output
from conary.errors import ConaryError, InputError
from conary.graph import BuildEvent
from conary.recipe import machine_name
from conary.sandbox import check_support
from conary.targets import load_target


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bootstrap",
        help="bootstrap a system for a target from a pinned seed, stage by stage",
        description=(
            "Bootstrap a system: from a seed of pinned Debian packages (Stage0) through the stages of "
            "a profile (stages/<profile>.toml: stage1, stage2, base, conary, image) for a target "
            "(toolchains/<arch>.toml). 'init' records the choices in a work dir; every other "
            "subcommand reads them from there. See docs/bootstrap.md."
        ),
    )
    p.set_defaults(func=lambda _args: _usage(p))
    sub = p.add_subparsers(dest="bootstrap_command", metavar="SUBCOMMAND", parser_class=type(p))

    init = sub.add_parser(
        "init",
        help="create a work dir and record the target, profile and options",
        description=(
            "Create (or update) a bootstrap work dir and record the choices in DIR/bootstrap.toml, "
            "written atomically. Later subcommands take them from there."
        ),
    )
    init.add_argument("--target", required=True, metavar="ARCH", help="x86_64, aarch64 or riscv64")
    init.add_argument(
        "--profile", default="minimal", metavar="NAME", help="profile in stages/ (default: minimal)"
    )
    _work_option(init)
    init.add_argument("--jobs", type=int, default=1, metavar="N", help="packages built at once (default: 1)")
    init.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="M",
        help="a source mirror, directory or http(s) base (repeatable)",
    )
    init.add_argument(
        "--source-cache",
        default=None,
        metavar="DIR",
        help="source cache (default: conary's, $XDG_CACHE_HOME/conary/sources)",
    )
    init.add_argument(
        "--seed",
        choices=SEED_MODES,
        default="lock",
        help="'lock': the Debian packages pinned in stages/seed/ARCH.lock (default); "
        "'host': the host's /usr, read-only, under every build root (quick, not reproducible)",
    )
    init.add_argument("--skip-stage2", action="store_true", help="leave out the optional Stage2 rebuild")
    init.add_argument(
        "--skip-conary",
        action="store_true",
        help="leave out the optional Conary stage (where the target does not require it)",
    )
    _skip_verify_option(init)
    init.set_defaults(func=_init)

    check = sub.add_parser(
        "check",
        help="list the host prerequisites, with the Debian package for each missing one",
        description=(
            "List what the host needs to bootstrap the work dir's target (or --target): the programs "
            "it runs and user namespaces for the sandbox. Each missing program comes with the Debian "
            "package that provides it. Exits 1 when something is missing."
        ),
    )
    _work_option(check)
    check.add_argument("--target", default=None, metavar="ARCH", help="instead of the work dir's target")
    check.add_argument("--no-image", action="store_true", help="leave out the image stage's tools")
    check.add_argument("--json", action="store_true", help="print the list as JSON")
    check.set_defaults(func=_check)

    dry = sub.add_parser(
        "dry-run",
        help="resolve and validate everything; list packages, actions and sources; build nothing",
        description=(
            "Resolve the profile for the target, validate every recipe, and list per stage each "
            "package with the action a run would take and why, and each source as present in the "
            "source cache or a mirror, or missing. Nothing is built or downloaded. Exits 1 when a "
            "source or the seed lock is missing or a recipe does not validate. Takes the work dir's "
            "choices, or --profile and --target without a work dir."
        ),
    )
    _work_option(dry)
    dry.add_argument("--profile", default=None, metavar="NAME", help="instead of the work dir's profile")
    dry.add_argument("--target", default=None, metavar="ARCH", help="instead of the work dir's target")
    dry.add_argument(
        "--mirror", action="append", default=[], metavar="M", help="an extra source mirror (repeatable)"
    )
    dry.add_argument(
        "--source-cache", default=None, metavar="DIR", help="instead of the work dir's source cache"
    )
    dry.add_argument("--skip-stage2", action="store_true", help="plan without the optional Stage2 rebuild")
    dry.add_argument("--skip-conary", action="store_true", help="plan without the optional Conary stage")
    dry.add_argument("--json", action="store_true", help="print the plan as JSON")
    dry.set_defaults(func=_dry_run)

    seed = sub.add_parser(
        "seed",
        help="pin the seed (--lock), or import the pinned seed into the work dir",
        description="With --lock: resolve the closure of the profile's seed packages (plus the target's "
        "cross compilers) with apt in a private state, from deb entries derived from this machine's "
        "apt sources, and write stages/seed/ARCH.lock (or --output). Without --lock: download the "
        "lock's .debs into the source cache by sha256, verify and import them as the work dir's seed "
        "(the same as 'bootstrap stage0' for a profile without a stage0 of its own).",
    )
    _work_option(seed)
    seed.add_argument("--lock", action="store_true", help="resolve and write the lock")
    seed.add_argument("--target", default=None, metavar="ARCH", help="with --lock: instead of the work dir's")
    seed.add_argument(
        "--profile", default=None, metavar="NAME", help="with --lock: instead of the work dir's"
    )
    seed.add_argument("--output", default=None, metavar="FILE", help="with --lock: write the lock here")
    seed.set_defaults(func=_seed)

    for name, text in STAGE_HELP.items():
        stage = sub.add_parser(
            name,
            help=text,
            description=f"Run {name} ({text}) and every earlier stage not yet done. A package whose "
            "key has a checkpoint is not built again.",
        )
        _work_option(stage)
        _keep_going_option(stage)
        _skip_verify_option(stage)
        if name == "image":
            stage.description += (
                " The disk's path is the last line of output; with every input unchanged, the disk on "
                "hand is kept."
            )
            stage.add_argument("--format", choices=("raw", "qcow2"), help="over the image definition's")
            stage.add_argument(
                "--size", metavar="S", help="root partition size, e.g. 256M (over the definition's)"
            )
        stage.set_defaults(func=_run, until=name)

    run = sub.add_parser(
        "run",
        help="run every stage of the profile",
        description="Import the seed and run every stage of the work dir's profile in order. "
        "A killed run is continued by 'resume' (or by 'run' again): nothing with a checkpoint is "
        "built again.",
    )
    _work_option(run)
    _keep_going_option(run)
    run.add_argument("--skip-stage2", action="store_true", help="leave out the optional Stage2 rebuild")
    run.add_argument("--skip-conary", action="store_true", help="leave out the optional Conary stage")
    _skip_verify_option(run)
    run.set_defaults(func=_run, until=None)

    resume = sub.add_parser(
        "resume",
        help="continue the last run after a kill or a fix",
        description="Run again towards the stage the last run was asked to reach; packages whose key "
        "has a checkpoint are not built again, and a failed package is retried.",
    )
    _work_option(resume)
    _keep_going_option(resume)
    resume.set_defaults(func=_resume)

    stat = sub.add_parser(
        "status",
        help="per stage and package: done, pending, failed or running, with time, key and log",
        description="Show each stage and each of its packages as done, pending, failed or running, "
        "with the build time, the derivation key and the log, from the work dir's checkpoint store.",
    )
    _work_option(stat)
    stat.add_argument("--json", action="store_true", help="print the status as JSON")
    stat.set_defaults(func=_status)

    clean = sub.add_parser(
        "clean",
        help="forget built outputs (a stage's, or all of them)",
        description="Without --stage, remove everything in the work dir but its choices "
        "(bootstrap.toml) and its signing key (keys/). With --stage S, remove S's packages so its "
        "next run builds them again ('seed' removes the imported seed).",
    )
    _work_option(clean)
    clean.add_argument("--stage", default=None, metavar="S", help="only this stage (or 'seed')")
    clean.set_defaults(func=_clean)

    whyp = sub.add_parser(
        "why",
        help="which key input of a package changed since its last build",
        description="Print which inputs of PKG's derivation key (recipe fields, source checksums, a "
        "dependency's output digest, the toolchain) changed since its last checkpoint, or that none did.",
    )
    _work_option(whyp)
    whyp.add_argument("package", metavar="PKG", help="a package built by the profile")
    whyp.set_defaults(func=_why)


STAGE_HELP = {
    "stage0": "import the seed (and build the profile's stage0, if it has one)",
    "stage1": "build the first stage (minimal: Linux headers and musl)",
    "stage2": "rebuild stage1 in a root of its own output and compare output digests",
    "base": "build the base system",
    "conary": "import Python from Debian's packages and package Conary itself",
    "image": "build the bootable disk from the earlier stages' packages",
}


def _keep_going_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="after a failure, keep building packages that do not depend on it",
    )


def _skip_verify_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--skip-verify",
        action="store_true",
        help="escape hatch for a re-rolled tarball: when no place has a source's pinned bytes but one "
        "has other bytes, build from those. Recorded in bootstrap.toml (it stays on for later runs), "
        "warned about at every run and for every such source, part of each such package's key, and "
        "recorded in its provenance (unverified_sources). The seed's .debs are always verified",
    )


def _work_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--work",
        default=os.environ.get("CONARY_BOOTSTRAP_WORK", str(DEFAULT_WORK)),
        metavar="DIR",
        help=f"the bootstrap work dir (default: $CONARY_BOOTSTRAP_WORK, else ./{DEFAULT_WORK})",
    )


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


# --------------------------------------------------------------------------- init / check


def _init(args: argparse.Namespace) -> int:
    target = load_target(args.target)
    profile = load_profile(args.profile)
    if target.arch not in profile.targets:
        raise InputError(
            f"profile {profile.name} does not support target {target.arch}",
            where=str(profile.path),
            hint=f"its targets: {', '.join(profile.targets)}",
        )
    if args.jobs < 1:
        raise InputError("--jobs must be at least 1", where="bootstrap init")
    conary_required = "conary" in profile.stage_names() and not profile.stage("conary").is_optional_for(
        target.arch
    )
    if args.skip_conary and conary_required:
        raise InputError(
            f"the conary stage is required for {target.arch}",
            where=str(profile.path),
            hint="drop --skip-conary",
        )
    config = BootstrapConfig(
        work=Path(args.work),
        target=target.arch,
        profile=args.profile,
        jobs=args.jobs,
        mirrors=tuple(args.mirror),
        source_cache=Path(args.source_cache).resolve() if args.source_cache else None,
        skip_stage2=args.skip_stage2,
        skip_conary=args.skip_conary,
        skip_verify=args.skip_verify,
        seed=args.seed,
    )
    path = save_config(config)
    if config.seed == "host":
        output.warn("the seed is the host's /usr: the result depends on this machine and is not reproducible")
    print(f"bootstrap {profile.name} for {target.arch} in {config.work} (choices in {path})")
    return 0


def _check(args: argparse.Namespace) -> int:
    arch = args.target
    if arch is None:
        arch = (
            load_config(Path(args.work)).target if config_path(Path(args.work)).is_file() else machine_name()
        )
    target = load_target(arch)
    found = prerequisites(target, image=not args.no_image)
    sandbox_problem = ""
    try:
        check_support()
    except ConaryError as err:
        sandbox_problem = err.render()
    missing = [p for p in found if not p.ok]
    if args.json:
        output.emit_json(
            {
                "target": target.arch,
                "ok": not missing and not sandbox_problem,
                "prerequisites": [
                    {
                        "tool": p.tool,
                        "debian_package": p.debian_package,
                        "purpose": p.purpose,
                        "found": p.found,
                    }
                    for p in found
                ],
                "sandbox": sandbox_problem or "ok",
            }
        )
    else:
        for p in found:
            state = p.found if p.ok else f"MISSING: apt-get install {p.debian_package}"
            print(f"{p.tool:<22} {state}  ({p.purpose})")
        print(f"{'user namespaces':<22} {sandbox_problem or 'ok'}  (the build sandbox)")
        if missing:
            packages = " ".join(sorted({p.debian_package for p in missing}))
            print(f"{len(missing)} missing: apt-get install {packages}")
    return 1 if missing or sandbox_problem else 0


# --------------------------------------------------------------------------- dry-run


def _dry_run(args: argparse.Namespace) -> int:
    work = Path(args.work)
    config = load_config(work) if config_path(work).is_file() else None
    profile_name = args.profile or (config.profile if config else None)
    arch = args.target or (config.target if config else None)
    if profile_name is None or arch is None:
        raise InputError(
            "no work dir here, so dry-run needs --profile and --target",
            where=str(work),
            hint="give --profile NAME --target ARCH, or run 'conary bootstrap init' first",
        )
    cache = args.source_cache or (config.source_cache if config else None)
    options = DryRunOptions(
        source_cache=Path(cache) if cache else None,
        mirrors=tuple(config.mirrors if config else ()) + tuple(args.mirror),
        skip_stage2=args.skip_stage2 or bool(config and config.skip_stage2),
        skip_conary=args.skip_conary or bool(config and config.skip_conary),
        seed=config.seed if config else "lock",
    )
    report = dry_run(load_profile(profile_name), load_target(arch), options)
    skip_verify = bool(config and config.skip_verify)
    if args.json:
        output.emit_json({**report.to_json(), "skip_verify": skip_verify})
    else:
        if skip_verify:
            print(f"skip-verify: ON ({_SKIP_VERIFY_NOTE})")
        _print_plan(report)
    return 0 if report.ok else 1


def _print_plan(report: DryRunReport) -> None:
    seed = report.seed
    print(f"profile {report.profile.name} ({report.profile.path}), target {report.target.arch}")
    if seed.mode == "host":
        print("seed: the host's /usr (--seed host)")
    else:
        if not seed.lock_present:
            state = "MISSING (run 'conary bootstrap seed --lock')"
        else:
            state = f"{seed.debs} .debs, {seed.debs_cached} in the cache"
            if seed.debs_cached < seed.debs:
                state += f", {seed.debs - seed.debs_cached} missing (run 'conary bootstrap stage0')"
        count = len(seed.packages)
        print(f"seed: {count} Debian packages from {seed.suite} and their closure; lock {seed.lock}: {state}")
    for stage in report.stages:
        note = f" (skipped: {stage.reason})" if stage.skipped else ""
        print(f"{stage.name}: {stage.summary}{note}")
        for package in stage.packages:
            print(f"  {package.name} {package.version}-{package.release}  {package.action}: {package.reason}")
            for source in package.sources:
                print(f"    {source.checksum}  {source.state}  {source.url}")
                if source.state == "missing":
                    print(f"      {source.location}")
    for problem in report.problems:
        print(f"{problem.where}: error: {problem.what}")
    packages = sum(len(s.packages) for s in report.stages)
    sources = report.sources()
    missing = report.missing()
    print(
        f"{packages} packages in {len(report.stages)} stages, {len(sources)} sources: "
        f"{len(sources) - len(missing)} present, {len(missing)} missing; "
        f"{len(report.problems)} errors, {report.warnings} warnings"
    )
    if missing:
        print("missing sources: fetch them ('conary cook --fetch-only RECIPE') or give a --mirror")


# --------------------------------------------------------------------------- runs


def _bootstrap(args: argparse.Namespace, config: BootstrapConfig | None = None) -> Bootstrap:
    config = config or load_config(Path(args.work))
    cache = config.source_cache

    def import_seed(lock: Path, repo: Path, key: Path) -> None:
        warnings = import_lock(lock, repo, source_cache=cache, signing_key=key, notice=output.notice)
        if warnings:
            output.warn(
                f"{len(warnings)} seed packages have maintainer scripts that were not run "
                "(the seed fixups stand in for what they make; see docs/debian-import.md)"
            )

    def import_stage(lock: Path, spec: DebianSpec, repo: Path, key: Path) -> None:
        warnings = import_stage_debs(
            lock, spec, repo, source_cache=cache, signing_key=key, notice=output.notice
        )
        if warnings:
            output.warn(
                f"{len(warnings)} packages of {lock.name} have maintainer scripts that were not run "
                "(see docs/debian-import.md)"
            )

    return Bootstrap(
        config=config,
        profile=load_profile(config.profile),
        target=load_target(config.target),
        keep_going=bool(getattr(args, "keep_going", False)),
        seed_importer=import_seed,
        debian_importer=import_stage,
        image_format=getattr(args, "format", None),
        image_size=getattr(args, "size", None),
        notice=output.notice,
    )


def _seed(args: argparse.Namespace) -> int:
    work = Path(args.work)
    config = load_config(work) if config_path(work).is_file() else None
    if not args.lock:
        if args.target or args.profile or args.output:
            raise InputError("--target, --profile and --output go with --lock", where="bootstrap seed")
        bootstrap = _bootstrap(args, config)
        _warn_skip_verify(bootstrap.config)
        return _print_run(bootstrap.run("stage0"))
    arch = args.target or (config.target if config else None)
    if arch is None:
        raise InputError(
            "seed --lock needs --target (or a work dir)", where=str(work), hint="give --target ARCH"
        )
    profile = load_profile(args.profile or (config.profile if config else "minimal"))
    path, count, size = lock_the_seed(
        profile,
        load_target(arch),
        source_cache=config.source_cache if config else None,
        output=Path(args.output) if args.output else None,
    )
    print(f"{path}: {count} packages, {size / 1e6:.1f} MB")
    return 0


def _run(args: argparse.Namespace) -> int:
    config = load_config(Path(args.work))
    if getattr(args, "skip_stage2", False) or getattr(args, "skip_conary", False) or args.skip_verify:
        config = dataclasses.replace(
            config,
            skip_stage2=config.skip_stage2 or getattr(args, "skip_stage2", False),
            skip_conary=config.skip_conary or getattr(args, "skip_conary", False),
            skip_verify=config.skip_verify or args.skip_verify,
        )
        save_config(config)
    _warn_skip_verify(config)
    bootstrap = _bootstrap(args, config)
    with _progress() as progress:
        report = dataclasses.replace(bootstrap, progress=progress).run(args.until)
    return _print_run(report)


def _resume(args: argparse.Namespace) -> int:
    bootstrap = _bootstrap(args)
    _warn_skip_verify(bootstrap.config)
    with _progress() as progress:
        report = dataclasses.replace(bootstrap, progress=progress).resume()
    return _print_run(report)


_SKIP_VERIFY_NOTE = "sources whose bytes differ from their recipe's checksum are used"


def _warn_skip_verify(config: BootstrapConfig) -> None:
    if config.skip_verify:
        output.warn(
            f"--skip-verify is on for {config.work}: {_SKIP_VERIFY_NOTE}; each is named below, in "
            "its package's key and in its provenance"
        )


def _print_run(report: RunReport) -> int:
    for stage in report.stages:
        counts: dict[str, int] = {}
        for package in stage.packages:
            counts[package.action] = counts.get(package.action, 0) + 1
        summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))
        detail = f": {summary}" if summary else (f": {stage.reason}" if stage.reason else "")
        print(f"{stage.name}: {stage.state} in {stage.seconds:.1f}s{detail}")
        for verdict in stage.reproducibility:
            if verdict.verdict == "reproducible":
                print(f"  {verdict.package}: reproducible ({verdict.second[:16]})")
            else:
                before, now = verdict.first[:16] or "none", verdict.second[:16]
                print(f"  {verdict.package}: NOT reproducible: output {before} before, {now} now")
        for failure in stage.failures:
            step = Path(failure.log).stem if failure.log.endswith(".log") else "cook"
            print(f"  {failure.name} failed at step {step}; log: {failure.log or 'none'}")
            for line in failure.tail:
                print(f"    | {line}")
        blocked = [p.name for p in stage.packages if p.action == "blocked"]
        if blocked:
            print(f"  not built because a dependency failed: {', '.join(blocked)}")
    if not report.ok:
        print("fix the failure, then run 'conary bootstrap resume'")
    disks = [s.image for s in report.stages if s.image is not None]
    if report.ok and disks:
        print(disks[-1])
    return 0 if report.ok else 1


@contextlib.contextmanager
def _progress() -> Iterator[Callable[[str, BuildEvent], None]]:
    """A live view on a terminal (stage, done/total, each running package and its time); one line
    per event on stderr otherwise. The view refreshes only on events: no thread, so the graph's
    workers may fork at any time."""
    if not sys.stderr.isatty():

        def line(stage: str, event: BuildEvent) -> None:
            if event.kind == "started":
                print(f"conary: {stage} [{event.done}/{event.total}] start {event.name}", file=sys.stderr)
            elif event.kind == "finished":
                print(
                    f"conary: {stage} [{event.done}/{event.total}] {event.action} {event.name}",
                    file=sys.stderr,
                )

        yield line
        return
    running: dict[str, float] = {}
    with Live(console=output.stderr, auto_refresh=False, transient=True) as live:

        def update(stage: str, event: BuildEvent) -> None:
            if event.kind == "started":
                running[event.name] = time.monotonic()
            elif event.kind == "finished":
                running.pop(event.name, None)
                if event.action not in ("cached", ""):
                    live.console.print(f"{stage}: {event.action} {event.name}")
            now = time.monotonic()
            lines = [f"{stage}: {event.done}/{event.total} packages"]
            lines += [f"  {name}  {now - t:.0f}s" for name, t in sorted(running.items())]
            live.update(Text("\n".join(lines)), refresh=True)

        yield update


# --------------------------------------------------------------------------- queries


def _status(args: argparse.Namespace) -> int:
    bootstrap = _bootstrap(args)
    stages = bootstrap.status()
    if args.json:
        output.emit_json(
            {
                "profile": bootstrap.profile.name,
                "target": bootstrap.target.arch,
                "skip_verify": bootstrap.config.skip_verify,
                "seed": "host"
                if bootstrap.config.seed == "host"
                else ("done" if bootstrap.seed_imported() else "pending"),
                "stages": [
                    {
                        "name": s.name,
                        "state": s.state,
                        "reason": s.reason,
                        "seconds": round(s.seconds, 3),
                        "packages": [
                            {
                                "name": p.name,
                                "state": p.state,
                                "seconds": round(p.seconds, 3),
                                "key": p.key,
                                "log": p.log,
                            }
                            for p in s.packages
                        ],
                    }
                    for s in stages
                ],
            }
        )
        return 0
    seed = (
        "the host's /usr"
        if bootstrap.config.seed == "host"
        else ("imported" if bootstrap.seed_imported() else "not imported yet")
    )
    print(f"{bootstrap.profile.name} for {bootstrap.target.arch} in {bootstrap.config.work}; seed: {seed}")
    if bootstrap.config.skip_verify:
        print(f"skip-verify: ON ({_SKIP_VERIFY_NOTE})")
    for stage in stages:
        note = f" ({stage.reason})" if stage.reason else ""
        print(f"{stage.name}: {stage.state} {stage.seconds:.1f}s{note}")
        for p in stage.packages:
            print(f"  {p.name:<20} {p.state:<8} {p.seconds:7.1f}s  {p.key[:16] or '-':<16}  {p.log or '-'}")
    return 0


def _clean(args: argparse.Namespace) -> int:
    removed = _bootstrap(args).clean(args.stage)
    for path in removed:
        print(f"removed {path}")
    if not removed:
        print("nothing to remove")
    return 0


def _why(args: argparse.Namespace) -> int:
    stage, report = _bootstrap(args).why(args.package)
    if not report.previous_key:
        print(f"{report.name} ({stage}): never built; its key would be {report.current_key[:16]}")
    elif report.unchanged:
        print(f"{report.name} ({stage}): nothing changed since its checkpoint {report.current_key[:16]}")
    else:
        print(f"{report.name} ({stage}): key {report.previous_key[:16]} -> {report.current_key[:16]}")
        for line in report.changes:
            print(f"  {line}")
    return 0
