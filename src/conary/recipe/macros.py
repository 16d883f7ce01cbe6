"""%(name)s macros: the built-ins, [variables], static checks and expansion of a whole recipe.

A macro is written `%(name)s`; `%%` is a literal `%`. Any other `%` is left alone, because shell
scripts are full of them (`${f%.tar.xz}`, `date +%Y`). Values substituted into a text are not
scanned again, so a `%%` inside a variable stays one literal `%` wherever it lands.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import platform
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from conary.errors import InputError
from conary.recipe.model import STEP_NAMES, Components, Cross, Recipe
from conary.recipe.problems import Problem

# What a recipe knows of the machine it builds for; see TargetMacros.
TARGET_MACROS = ("arch", "kernel_arch", "gnu_triple", "musl_triple", "cross_compile", "target_cflags")
BUILTINS = (
    "name",
    "version",
    "release",
    "destdir",
    "jobs",
    "target",
    "sysroot",
    "build",
    "stage",
    *TARGET_MACROS,
)

MACRO_RE = re.compile(r"%(?:(%)|\(([A-Za-z_][A-Za-z0-9_]*)\)(s?))")


_KERNEL_ARCH = {"x86_64": "x86", "i686": "x86", "aarch64": "arm64", "riscv64": "riscv"}


def machine_name() -> str:
    """This machine's architecture in Conary's spelling (x86_64, aarch64, riscv64)."""
    machine = (platform.machine() or "x86_64").lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def host_triple() -> str:
    """The GNU triple of this machine, e.g. x86_64-pc-linux-gnu."""
    machine = machine_name()
    vendor = "pc" if machine in ("x86_64", "i386", "i486", "i586", "i686") else "unknown"
    return f"{machine}-{vendor}-linux-gnu"


@dataclass(frozen=True)
class TargetMacros:
    """The machine a recipe builds for, as the macros %(arch)s, %(kernel_arch)s, %(gnu_triple)s,
    %(musl_triple)s, %(cross_compile)s and %(target_cflags)s.

    The bootstrap fills it from toolchains/<arch>.toml; a plain cook builds for this machine.
    `cross_compile` is the tool prefix (``aarch64-linux-gnu-``) when the target is not this machine,
    and empty otherwise, so one recipe serves native and cross builds (``CROSS_COMPILE=%(cross_compile)s``).
    """

    arch: str
    kernel_arch: str
    gnu_triple: str
    musl_triple: str
    cross_compile: str = ""
    cflags: str = "-O2 -pipe"


def native_target() -> TargetMacros:
    arch = machine_name()
    return TargetMacros(
        arch=arch,
        kernel_arch=_KERNEL_ARCH.get(arch, arch),
        gnu_triple=f"{arch}-linux-gnu",
        musl_triple=f"{arch}-linux-musl",
    )


@dataclass(frozen=True)
class MacroContext:
    """Values of the built-in macros that come from the cook rather than from the recipe.

    `jobs` None means os.cpu_count(); `target` None means the build triple. A recipe's
    `build.jobs` takes precedence over `jobs`, and a [variables] entry over any built-in.
    """

    destdir: str = "/destdir"
    jobs: int | None = None
    target: str | None = None
    sysroot: str = "/"
    build: str = dataclasses.field(default_factory=host_triple)
    stage: str = "final"
    machine: TargetMacros = dataclasses.field(default_factory=native_target)


class MacroError(InputError):
    """A macro that cannot be expanded (only reachable for a Recipe that skipped validation)."""


def references(text: str) -> Iterator[tuple[str, bool]]:
    """(name, well_formed) for every %(name)… in *text*; `%%` escapes are skipped."""
    if "%" not in text:
        return
    for match in MACRO_RE.finditer(text):
        if match.group(1) is None:
            yield match.group(2), match.group(3) == "s"


@functools.cache
def _cpu_count() -> int:
    return os.cpu_count() or 1


def builtin_values(recipe: Recipe, context: MacroContext) -> dict[str, str]:
    jobs = recipe.build.jobs or context.jobs or _cpu_count()
    return {
        "name": recipe.package.name,
        "version": recipe.package.version,
        "release": recipe.package.release,
        "destdir": context.destdir,
        "jobs": str(jobs),
        "target": context.target or context.build,
        "sysroot": context.sysroot,
        "build": context.build,
        "stage": context.stage,
        "arch": context.machine.arch,
        "kernel_arch": context.machine.kernel_arch,
        "gnu_triple": context.machine.gnu_triple,
        "musl_triple": context.machine.musl_triple,
        "cross_compile": context.machine.cross_compile,
        "target_cflags": context.machine.cflags,
    }


# -- static checks (used by the loader) -------------------------------------------------------------


def macro_strings(recipe: Recipe) -> Iterator[tuple[str, str]]:
    """(key_path, text) of every string that is expanded, except [variables] values."""
    pkg = recipe.package
    for key in ("summary", "description", "license", "homepage"):
        if (value := getattr(pkg, key)) is not None:
            yield f"package.{key}", value
    src = recipe.source
    for key in ("archive", "path", "signature", "extract_dir"):
        if (value := getattr(src, key)) is not None:
            yield f"source.{key}", value
    for i, extra in enumerate(src.additional):
        yield f"source.additional[{i}].url", extra.url
        if extra.extract_to is not None:
            yield f"source.additional[{i}].extract_to", extra.extract_to
    build = recipe.build
    for key in ("requires", "makedepends"):
        for i, item in enumerate(getattr(build, key)):
            yield f"build.{key}[{i}]", item
    for name, script in build.steps():
        yield f"build.{name}", script
    for key, value in build.environment:
        yield f"build.environment.{key}", value
    for key in ("workdir", "stage"):
        if (value := getattr(build, key)) is not None:
            yield f"build.{key}", value
    if build.sanity_check is not None:
        yield "build.sanity_check.script", build.sanity_check.script
    if recipe.cross is not None:
        for f in dataclasses.fields(Cross):
            if (value := getattr(recipe.cross, f.name)) is not None:
                yield f"cross.{f.name}", value
    for i, patch in enumerate(recipe.patches):
        yield f"patches.files[{i}].file", patch.file
    for f in dataclasses.fields(Components):
        for i, glob in enumerate(getattr(recipe.components, f.name)):
            yield f"components.{f.name}[{i}]", glob


def check_macros(recipe: Recipe, path: str) -> list[Problem]:
    """Undefined or malformed macros anywhere, and cycles among [variables]."""
    variables = dict(recipe.variables)
    defined = set(BUILTINS) | variables.keys()
    problems: list[Problem] = []

    def scan(key_path: str, text: str) -> None:
        for name, well_formed in references(text):
            if not well_formed:
                problems.append(
                    Problem(path, "error", key_path, f"malformed macro '%({name})': write it as %({name})s")
                )
            elif name not in defined:
                close = difflib.get_close_matches(name, sorted(defined), n=1, cutoff=0.6)
                hint = f" (did you mean %({close[0]})s?)" if close else ""
                problems.append(Problem(path, "error", key_path, f"undefined macro %({name})s{hint}"))

    for key, value in variables.items():
        scan(f"variables.{key}", value)
    for key_path, text in macro_strings(recipe):
        scan(key_path, text)
    problems.extend(_cycles(variables, path))
    return problems


def _cycles(variables: Mapping[str, str], path: str) -> list[Problem]:
    edges = {
        key: [name for name, ok in references(value) if ok and name in variables]
        for key, value in variables.items()
    }
    done: set[str] = set()
    problems: list[Problem] = []
    for start in variables:
        if start in done:
            continue
        # Iterative DFS so a long chain of variables cannot exhaust the Python stack.
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(edges[start]))]
        on_path = [start]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path.pop()
                done.add(node)
            elif child in on_path:
                cycle = [*on_path[on_path.index(child) :], child]
                problems.append(
                    Problem(path, "error", f"variables.{child}", "macro cycle: " + " -> ".join(cycle))
                )
            elif child not in done:
                stack.append((child, iter(edges[child])))
                on_path.append(child)
    return problems


# -- expansion --------------------------------------------------------------------------------------


class _Expander:
    """Expands texts against built-in values and [variables] templates.

    Variables are resolved up front in dependency order (an explicit stack, not recursion), so a
    long chain of variables cannot exhaust the Python stack.
    """

    def __init__(self, literals: dict[str, str], templates: Mapping[str, str]) -> None:
        self.values = {k: v for k, v in literals.items() if k not in templates}
        for name in templates:
            self._resolve(name, templates)

    def _resolve(self, start: str, templates: Mapping[str, str]) -> None:
        if start in self.values:
            return
        path = [start]
        frames = [iter([ref for ref, ok in references(templates[start]) if ok and ref in templates])]
        while frames:
            ref = next(frames[-1], None)
            if ref is None:
                frames.pop()
                name = path.pop()
                self.values[name] = self.text(templates[name], f"variables.{name}")
            elif ref in path:
                cycle = " -> ".join([*path[path.index(ref) :], ref])
                raise MacroError(f"macro cycle: {cycle}", where=f"variables.{ref}")
            elif ref not in self.values:
                path.append(ref)
                frames.append(iter([r for r, ok in references(templates[ref]) if ok and r in templates]))

    def value(self, name: str, where: str) -> str:
        found = self.values.get(name)
        if found is None:
            raise MacroError(f"undefined macro %({name})s", where=where)
        return found

    def text(self, text: str, where: str = "") -> str:
        if "%" not in text:
            return text

        def substitute(match: re.Match[str]) -> str:
            if match.group(1) is not None:
                return "%"
            if match.group(3) != "s":
                raise MacroError(f"malformed macro '%({match.group(2)})'", where=where)
            return self.value(match.group(2), where)

        return MACRO_RE.sub(substitute, text)


def expand_recipe(recipe: Recipe, context: MacroContext | None = None) -> Recipe:
    """A copy of *recipe* with every string macro-expanded. Package name, version and release,
    checksums and the [deviations] notes are taken as written; [variables] hold expanded values."""
    if recipe.expanded:
        return recipe
    ctx = context or MacroContext()
    templates = dict(recipe.variables)
    ex = _Expander(builtin_values(recipe, ctx), templates)
    t = ex.text

    def opt(value: str | None, where: str) -> str | None:
        return None if value is None else t(value, where)

    def each(values: tuple[str, ...], where: str) -> tuple[str, ...]:
        return tuple(t(v, f"{where}[{i}]") for i, v in enumerate(values))

    def fields_of(obj: object, names: tuple[str, ...], where: str) -> dict[str, str | None]:
        return {n: opt(getattr(obj, n), f"{where}.{n}") for n in names}

    pkg = recipe.package
    package = dataclasses.replace(
        pkg, **fields_of(pkg, ("summary", "description", "license", "homepage"), "package")
    )
    src = recipe.source
    source = dataclasses.replace(
        src,
        **fields_of(src, ("archive", "path", "signature", "extract_dir"), "source"),
        additional=tuple(
            dataclasses.replace(a, url=t(a.url), extract_to=opt(a.extract_to, "source.additional"))
            for a in src.additional
        ),
    )
    b = recipe.build
    build = dataclasses.replace(
        b,
        requires=each(b.requires, "build.requires"),
        makedepends=each(b.makedepends, "build.makedepends"),
        environment=tuple((k, t(v, f"build.environment.{k}")) for k, v in b.environment),
        sanity_check=None
        if b.sanity_check is None
        else dataclasses.replace(b.sanity_check, script=t(b.sanity_check.script, "build.sanity_check")),
        **fields_of(b, (*STEP_NAMES, "workdir", "stage"), "build"),
    )
    cross = None
    if recipe.cross is not None:
        names = tuple(f.name for f in dataclasses.fields(Cross))
        cross = dataclasses.replace(recipe.cross, **fields_of(recipe.cross, names, "cross"))
    comps = recipe.components
    components = dataclasses.replace(
        comps,
        **{f.name: each(getattr(comps, f.name), f"components.{f.name}") for f in dataclasses.fields(comps)},
    )
    return dataclasses.replace(
        recipe,
        package=package,
        source=source,
        build=build,
        cross=cross,
        patches=tuple(dataclasses.replace(p, file=t(p.file, "patches.files")) for p in recipe.patches),
        components=components,
        variables=tuple((k, ex.value(k, f"variables.{k}")) for k, _ in recipe.variables),
        expanded=True,
    )
