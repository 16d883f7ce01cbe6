"""The cook pipeline: fetch → verify → unpack → patch → steps (sandboxed) → sanity check → package.

Only the fetch step touches the network; everything after it works from the source cache, and the
build steps run in a sandbox without a network. A failed cook leaves no package behind (the package
writer renames its file into place only when complete) and no half-written cache entry (the fetcher
verifies before it renames).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conary import __version__
from conary.ccs import (
    ComponentRules,
    PackageMeta,
    SigningKey,
    build_package,
    default_key_path,
    ensure_default_key,
    load_signing_key,
)
from conary.cook.environment import DEST_DIR, step_environment
from conary.cook.errors import StepError
from conary.cook.logs import log_path, step_output, tail
from conary.cook.patch import PatchSpec, apply_patches, verify_patch
from conary.cook.runner import (
    DEFAULT_MEMORY,
    DEFAULT_PIDS,
    DEFAULT_STEP_TIMEOUT,
    HostRunner,
    SandboxRunner,
    StepLimits,
    StepTimedOut,
    shell_argv,
)
from conary.cook.unpack import copy_source, unpack
from conary.errors import ConaryError, InputError
from conary.fetch import Fetcher, Substitute, default_cache_dir, filename_from_url, make_fetcher
from conary.recipe import Cross, MacroContext, Recipe, TargetMacros, load_recipe, localtree, native_target

Progress = Callable[[str], None]


@dataclass(frozen=True)
class CookOptions:
    """How to cook. Every field has the default `conary cook` uses."""

    output_dir: Path = Path("dist")
    source_cache: Path | None = None  # None: conary.fetch's default cache
    mirrors: tuple[str, ...] = ()  # --mirror values (URL or directory), tried before the config's
    mirror_config: Path | None = None  # None: conary.fetch's default mirror config file
    offline: bool = False
    hermetic: bool = True
    # Toolchain roots for the sandbox, top first, shown as one read-only union (instead of the host
    # /usr). With none, the host seed is the root.
    sysroots: tuple[Path, ...] = ()
    sysroot: Path | None = None  # the older single root: folded on top of sysroots, then None
    host_seed: bool = False  # the host toolchain at the bottom, under the sysroots
    step_timeout: float | None = None  # seconds per step; overrides build.timeout (default 6 hours)
    memory: int | None = None  # bytes of address space per process of a step (default 16 GiB)
    pids: int | None = None  # processes and threads of a step (default 4096)
    unsafe_host_root: bool = False  # debugging: root's steps keep host uid 0; recorded in provenance
    jobs: int | None = None  # overrides the recipe's build.jobs
    workdir: Path | None = None  # None: a fresh directory under the user's cache
    keep: bool = False  # keep the work directory after a successful cook
    key: Path | None = None  # None: the user's default key (created on first use)
    live_output: bool = False  # copy step output to stderr as it arrives
    source_date_epoch: int | None = None  # None: $SOURCE_DATE_EPOCH, else from the sources
    # The machine the recipe builds for (%(arch)s, %(cross_compile)s, ...); None: this machine.
    target: TargetMacros | None = None
    # --skip-verify: a source whose every candidate has bytes other than the pinned ones is used
    # anyway (conary.fetch.fetcher); each such source is warned about and recorded in provenance.
    skip_verify: bool = False
    # Added to the manifest's provenance, e.g. {"derivation_key": ...} from the bootstrap.
    extra_provenance: Mapping[str, Any] = field(default_factory=dict, compare=False)
    progress: Progress | None = field(default=None, compare=False)
    # Told each warning the moment it arises (an unverified source); None: nobody is told.
    warn: Callable[[str], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        roots = tuple(Path(p) for p in self.sysroots)
        if self.sysroot is not None:
            roots = (Path(self.sysroot), *roots)
        object.__setattr__(self, "sysroots", roots)
        object.__setattr__(self, "sysroot", None)


@dataclass(frozen=True)
class FetchedSource:
    key: str  # recipe key path, e.g. "source.archive"
    url: str
    checksum: str  # the recipe's pin
    path: Path  # the file in the source cache (verified unless `substitute` says otherwise)
    substitute: Substitute | None = None  # other bytes used for the pin (--skip-verify)

    @property
    def actual(self) -> str:
        """The checksum of the bytes used: the pin, unless unverified bytes stood in for it."""
        return self.substitute.actual if self.substitute is not None else self.checksum


@dataclass(frozen=True)
class CookResult:
    package_path: Path
    name: str
    version: str
    release: str
    sandbox: str  # "hermetic" or "host"
    source_date_epoch: int
    provenance: Mapping[str, Any]
    timings: Mapping[str, float]  # seconds: fetch, prepare, build (all steps), step:<name>, package
    workdir: Path | None  # set when the work directory was kept (--keep)
    key_created: Path | None  # the default key's path when this cook created it
    warnings: tuple[str, ...] = ()


def _note(options: CookOptions, text: str, name: str = "") -> None:
    if options.progress is not None:
        options.progress(f"{name}: {text}" if name else text)


def default_work_root() -> Path:
    """Work directories live beside the source cache: $XDG_CACHE_HOME/conary/work by default."""
    return default_cache_dir().parent / "work"


def recipe_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load(recipe_path: str | os.PathLike[str]) -> Recipe:
    return load_recipe(recipe_path)


def _fetcher(options: CookOptions) -> Fetcher:
    return make_fetcher(
        options.mirrors,
        offline=options.offline,
        cache_dir=options.source_cache,
        mirror_config=options.mirror_config,
    )


def source_items(
    recipe: Recipe, target: TargetMacros | None = None
) -> list[tuple[str, str, str, str | None]]:
    """(key, url, checksum, debian) of everything the recipe fetches, in cook order.

    URLs are macro-expanded (``hello-%(version)s.tar.gz`` becomes ``hello-2.10.tar.gz``), so the
    fetcher, the mirror lookup by file name and every message see the real name."""
    recipe = _expanded(recipe, DEST_DIR, target)
    items: list[tuple[str, str, str, str | None]] = []
    src = recipe.source
    debian = getattr(src, "debian", None)
    if src.archive is not None:
        items.append(("source.archive", src.archive, str(src.checksum), str(debian) if debian else None))
    for i, extra in enumerate(src.additional):
        extra_debian = str(extra.debian) if extra.debian else None
        items.append((f"source.additional[{i}]", extra.url, str(extra.checksum), extra_debian))
    for i, patch in enumerate(recipe.patches):
        if "://" in patch.file:
            items.append((f"patches.files[{i}]", patch.file, str(patch.checksum), None))
    return items


def _expanded(recipe: Recipe, destdir: str, target: TargetMacros | None) -> Recipe:
    """*recipe* with its macros expanded for a cook (a no-op for an already expanded recipe)."""
    return recipe.expand(_macro_context(recipe, destdir, target))


def fetch_sources(recipe: Recipe, recipe_dir: Path, options: CookOptions) -> dict[str, FetchedSource]:
    """Fill the source cache with every source of *recipe*; the only step that uses the network."""
    fetcher = _fetcher(options)
    fetched: dict[str, FetchedSource] = {}
    for key, url, checksum, debian in source_items(recipe, options.target):
        _note(options, f"fetch {url}", recipe.package.name)
        version = recipe.package.version if key == "source.archive" else None
        got = fetcher.fetch_source(
            url,
            checksum,
            recipe_dir=recipe_dir,
            debian=debian,
            version=version,
            skip_verify=options.skip_verify,
        )
        fetched[key] = FetchedSource(key, url, checksum, Path(got.path), got.substitute)
        if got.substitute is not None and options.warn is not None:
            options.warn(unverified_warning(recipe.package.name, fetched[key]))
    return fetched


def unverified_warning(package: str, item: FetchedSource) -> str:
    """The one line that says a source was used without matching its pin (--skip-verify)."""
    assert item.substitute is not None
    name = filename_from_url(item.url) or item.url
    return (
        f"UNVERIFIED source {name} of {package} ({item.key}) from {item.substitute.origin}: the recipe "
        f"pins {item.checksum}, the bytes are {item.actual}; used anyway (--skip-verify)"
    )


def fetch_only(recipe_paths: list[Path], options: CookOptions) -> list[FetchedSource]:
    """`conary cook --fetch-only`: fetch every source of every recipe, build nothing."""
    done: list[FetchedSource] = []
    for recipe_path in recipe_paths:
        recipe = load(recipe_path)
        done.extend(fetch_sources(recipe, recipe_path.resolve().parent, options).values())
    return done


# --------------------------------------------------------------------------- cooking


def cook_recipe(recipe_path: str | os.PathLike[str], options: CookOptions | None = None) -> CookResult:
    """Cook one recipe into a signed .ccs in options.output_dir and return where it went."""
    options = options or CookOptions()
    recipe_path = Path(recipe_path)
    recipe = load(recipe_path)
    if options.jobs is not None:
        recipe = dataclasses.replace(recipe, build=dataclasses.replace(recipe.build, jobs=options.jobs))
    recipe_dir = recipe_path.resolve().parent
    for sysroot in options.sysroots:
        if not sysroot.is_dir():
            raise InputError("sysroot is not a directory", where=str(sysroot))

    timings: dict[str, float] = {}
    started = time.perf_counter()
    fetched = fetch_sources(recipe, recipe_dir, options)
    timings["fetch"] = time.perf_counter() - started

    work = _make_workdir(options, recipe)
    state = _State()
    try:
        result = _cook_in(work, recipe, recipe_path, fetched, options, timings, state)
    except BaseException as err:
        # Keep the work dir once a build step ran (its logs and trees explain the failure) or when
        # the user chose it; a failure while preparing sources leaves nothing worth reading.
        if state.steps_started or options.workdir is not None:
            if isinstance(err, ConaryError):
                err.cook_workdir = work  # type: ignore[attr-defined]
        else:
            shutil.rmtree(work, ignore_errors=True)
        raise
    if options.keep:
        return dataclasses.replace(result, workdir=work)
    if options.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        for sub in ("build", "destdir"):
            shutil.rmtree(work / sub, ignore_errors=True)
    return result


@dataclass
class _State:
    steps_started: bool = False


def _make_workdir(options: CookOptions, recipe: Recipe) -> Path:
    nvr = f"{recipe.package.name}-{recipe.package.version}-{recipe.package.release}"
    if options.workdir is not None:
        work = options.workdir
        if work.exists() and any(work.iterdir()):
            raise InputError(
                "work directory is not empty",
                where=str(work),
                hint="give an empty or new directory; a cook never deletes files it did not create",
            )
        work.mkdir(parents=True, exist_ok=True)
    else:
        root = default_work_root()
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{nvr}.", dir=root))
    for sub in ("build", "destdir", "logs"):
        (work / sub).mkdir()
    return work.resolve()


def _cook_in(
    work: Path,
    recipe: Recipe,
    recipe_path: Path,
    fetched: Mapping[str, FetchedSource],
    options: CookOptions,
    timings: dict[str, float],
    state: _State,
) -> CookResult:
    build_host, dest_host, logs = work / "build", work / "destdir", work / "logs"
    recipe_dir = recipe_path.resolve().parent
    runner: HostRunner | SandboxRunner
    limits = _step_limits(recipe, options)
    if options.hermetic:
        runner = SandboxRunner(
            build_host,
            dest_host,
            options.sysroots,
            host_seed=options.host_seed,
            limits=limits,
            unsafe_host_root=options.unsafe_host_root,
        )
    else:
        runner = HostRunner(build_host, dest_host, limits=limits)
    where = f"cook {recipe.package.name}-{recipe.package.version}-{recipe.package.release}"

    expanded = _expanded(recipe, runner.dest_dir, options.target)
    started = time.perf_counter()
    _note(options, "unpack", recipe.package.name)
    newest = _prepare_sources(expanded, recipe_dir, fetched, build_host)
    _note(options, "patch", recipe.package.name)
    patch_sums = _patch(expanded, recipe_dir, fetched, build_host, logs / "patch.log")
    timings["prepare"] = time.perf_counter() - started

    sde = _source_date_epoch(options, newest)
    env = step_environment(
        name=recipe.package.name,
        version=recipe.package.version,
        jobs=_jobs(recipe),
        source_date_epoch=sde,
        build_dir=runner.build_dir,
        dest_dir=runner.dest_dir,
        cross=_cross_tools(expanded),
        recipe_env=dict(expanded.build.environment),
    )
    cwd = runner.build_dir
    if expanded.build.workdir:
        cwd = f"{runner.build_dir}/{expanded.build.workdir.strip('/')}"
        (build_host / expanded.build.workdir).mkdir(parents=True, exist_ok=True)

    warnings: list[str] = []
    unsafe = options.hermetic and options.unsafe_host_root and os.geteuid() == 0
    if unsafe:
        warnings.append("UNSAFE: the build steps ran as host root (--unsafe-host-root); the package says so")
    started = time.perf_counter()
    state.steps_started = True
    scripts = list(expanded.build.steps())
    if expanded.build.sanity_check is not None:
        scripts.append(("sanity_check", expanded.build.sanity_check.script))
    try:
        for step, script in scripts:
            _note(options, step, recipe.package.name)
            step_started = time.perf_counter()
            try:
                code = _run_step(runner, step, script, env, cwd, logs, options.live_output)
            except StepTimedOut as timeout:
                path = log_path(logs, step)
                with open(path, "a") as log:
                    log.write(f"conary: step '{step}' {timeout} and was killed\n")
                raise StepError(step, 124, path, tail(path), where=where, timed_out=timeout.seconds) from None
            timings[f"step:{step}"] = time.perf_counter() - step_started
            if code == 0:
                continue
            if step == "check" and expanded.build.check_optional:
                warnings.append(f"check step failed with exit code {code}; ignored (check_optional)")
                continue
            path = log_path(logs, step)
            raise StepError(step, code, path, tail(path), where=where)
    finally:
        runner.close()
    timings["build"] = time.perf_counter() - started

    started = time.perf_counter()
    _note(options, "package", recipe.package.name)
    provenance = {
        "recipe": recipe_path.name,
        "recipe_sha256": recipe_sha256(recipe_path),
        "sources": [
            {"key": item.key, "url": item.url, "checksum": item.checksum}
            for item in fetched.values()
            if not item.key.startswith("patches.")
        ],
        "patches": patch_sums,
        **_unverified_provenance(fetched),
        "builder": f"conary {__version__}",
        "sandbox": runner.mode,
        **({"unsafe_host_root": True} if unsafe else {}),
        "source_date_epoch": sde,
        **dict(options.extra_provenance),
    }
    package_path, key_created = _package(expanded, dest_host, options, provenance, sde)
    timings["package"] = time.perf_counter() - started
    return CookResult(
        package_path=package_path,
        name=recipe.package.name,
        version=recipe.package.version,
        release=recipe.package.release,
        sandbox=runner.mode,
        source_date_epoch=sde,
        provenance=provenance,
        timings=dict(timings),
        workdir=None,
        key_created=key_created,
        warnings=tuple(warnings),
    )


def _unverified_provenance(fetched: Mapping[str, FetchedSource]) -> dict[str, Any]:
    """The sources used without matching their pins, pinned and actual checksum (none: no entry,
    so a verified build's provenance is what it always was)."""
    unverified = [
        {"key": item.key, "url": item.url, "pinned": item.checksum, "actual": item.actual}
        for item in fetched.values()
        if item.substitute is not None
    ]
    return {"unverified_sources": unverified} if unverified else {}


def _step_limits(recipe: Any, options: CookOptions) -> StepLimits:
    timeout = options.step_timeout or recipe.build.timeout or DEFAULT_STEP_TIMEOUT
    return StepLimits(
        timeout=timeout, memory=options.memory or DEFAULT_MEMORY, pids=options.pids or DEFAULT_PIDS
    )


def _run_step(
    runner: HostRunner | SandboxRunner,
    step: str,
    script: str,
    env: Mapping[str, str],
    cwd: str,
    logs: Path,
    live: bool,
) -> int:
    with step_output(log_path(logs, step), live=live) as fd:
        return runner.run(shell_argv(script), env, cwd, fd)


def _prepare_sources(
    recipe: Recipe, recipe_dir: Path, fetched: Mapping[str, FetchedSource], build: Path
) -> int:
    """Unpack (or copy) the main and additional sources; return the newest source mtime seen."""
    src = recipe.source
    newest = 0
    if src.archive is not None:
        item = fetched["source.archive"]
        if src.extract:
            newest = unpack(item.path, build, extract_dir=src.extract_dir, label=item.url).newest_mtime
        else:
            copy_source(item.path, build, filename_from_url(item.url) or "source")
            newest = int(item.path.stat().st_mtime)
    elif src.path is not None:
        newest = _copy_tree(_local(src.path, recipe_dir), build)
    for i, extra in enumerate(src.additional):
        item = fetched[f"source.additional[{i}]"]
        dest = build / (extra.extract_to or ".")
        if extra.extract:
            unpack(item.path, dest, label=item.url)
        else:
            copy_source(item.path, dest, filename_from_url(item.url) or f"additional-{i}")
    return newest


def _local(path: str, recipe_dir: Path) -> Path:
    found = Path(path).expanduser()
    return found if found.is_absolute() else recipe_dir / found


def _copy_tree(source: Path, dest: Path) -> int:
    if not source.is_dir():
        raise InputError(f"local source tree '{source}' is not a directory", where="source.path")
    shutil.copytree(source, dest, symlinks=True, dirs_exist_ok=True, ignore=localtree.copy_ignore)
    newest = 0
    for dirpath, _dirs, files in localtree.walk(source):
        for name in files:
            with contextlib.suppress(OSError):
                newest = max(newest, int(os.lstat(os.path.join(dirpath, name)).st_mtime))
    return newest


def _patch(
    recipe: Recipe, recipe_dir: Path, fetched: Mapping[str, FetchedSource], build: Path, log: Path
) -> list[str]:
    verified: list[tuple[PatchSpec, Path]] = []
    # Every patch is checked before the first is applied, so a missing one fails early.
    for i, patch in enumerate(recipe.patches):
        key = f"patches.files[{i}]"
        checksum = str(patch.checksum) if patch.checksum is not None else None
        spec = PatchSpec(patch.file, checksum, patch.strip, key)
        if key in fetched:
            verified.append((spec, fetched[key].path))
        else:
            verified.append((spec, verify_patch(spec, recipe_dir)))
    if not verified:
        return []
    return apply_patches(verified, build, log)


def _source_date_epoch(options: CookOptions, newest_source_mtime: int) -> int:
    if options.source_date_epoch is not None:
        return options.source_date_epoch
    env = os.environ.get("SOURCE_DATE_EPOCH", "").strip()
    if env:
        try:
            return int(env)
        except ValueError:
            raise InputError(f"SOURCE_DATE_EPOCH is not an integer: {env!r}", where="environment")
    return max(0, newest_source_mtime)


def _jobs(recipe: Recipe) -> int:
    return recipe.build.jobs or os.cpu_count() or 1


def _macro_context(recipe: Recipe, destdir: str, target: TargetMacros | None) -> MacroContext:
    cross = recipe.cross
    stage = recipe.build.stage or (cross.stage if cross is not None else None) or "final"
    return MacroContext(
        destdir=destdir,
        jobs=_jobs(recipe),
        target=cross.target if cross is not None else None,
        sysroot=(cross.sysroot if cross is not None and cross.sysroot else "/"),
        stage=stage,
        machine=target or native_target(),
    )


def _cross_tools(recipe: Recipe) -> Cross | None:
    """The recipe's [cross] table when it sets up a cross build (its tools reach the environment)."""
    return recipe.cross if recipe.is_cross else None


def _arch(recipe: Recipe, target: TargetMacros | None) -> str:
    if target is not None:
        return target.arch
    if recipe.is_cross and recipe.cross.target:
        return recipe.cross.target.split("-", 1)[0]
    machine = platform.machine() or "x86_64"
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine.lower(), machine)


def _component_rules(recipe: Recipe) -> ComponentRules | None:
    rules = {
        f.name: getattr(recipe.components, f.name)
        for f in dataclasses.fields(recipe.components)
        if getattr(recipe.components, f.name)
    }
    return ComponentRules.from_mapping(rules) if rules else None


def _signing_key(options: CookOptions) -> tuple[SigningKey, Path | None]:
    if options.key is not None:
        return load_signing_key(options.key), None
    key, created = ensure_default_key()
    return key, default_key_path() if created else None


def _package(
    recipe: Recipe, dest: Path, options: CookOptions, provenance: Mapping[str, Any], sde: int
) -> tuple[Path, Path | None]:
    pkg = recipe.package
    meta = PackageMeta(
        name=pkg.name,
        version=pkg.version,
        release=pkg.release,
        arch=_arch(recipe, options.target),
        summary=pkg.summary or "",
        description=pkg.description or "",
        license=pkg.license or "",
        homepage=pkg.homepage or "",
    )
    key, created = _signing_key(options)
    path = build_package(
        dest,
        meta,
        output_dir=options.output_dir,
        signing_key=key,
        component_rules=_component_rules(recipe),
        provenance=dict(provenance),
        source_date_epoch=sde,
        progress=_package_progress(options, pkg.name),
    )
    return Path(path), created


def _package_progress(options: CookOptions, name: str) -> Callable[[str, int, int], None] | None:
    """Packing progress as status notes, one per whole percent of each phase."""
    if options.progress is None:
        return None
    shown: dict[str, int] = {}
    labels = {"survey": "reading", "compress": "compressing"}

    def report(phase: str, done: int, total: int) -> None:
        percent = done * 100 // total if total else 100
        if shown.get(phase) != percent:
            shown[phase] = percent
            _note(options, f"package: {labels.get(phase, phase)} {percent}%", name)

    return report
