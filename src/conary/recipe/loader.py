"""Loading recipe files: TOML parsing, the meaning-level rules, and building the Recipe model.

`check_text`/`check_file` collect every problem of a file and return the Recipe only when there
is no error; `load_recipe` raises RecipeError (an InputError, exit 2) carrying those problems.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conary.recipe.macros import check_macros
from conary.recipe.model import (
    CROSS_STAGES,
    AdditionalSource,
    Build,
    Components,
    Cross,
    DeviationChange,
    Deviations,
    Package,
    Patch,
    Recipe,
    SanityCheck,
    Source,
)
from conary.recipe.problems import Problem, RecipeError, errors_of
from conary.recipe.schema import SCHEMA, Validator, get, valid_items

NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*\Z")
VARIABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Debian Policy 5.6.1: lower-case letters, digits, + - . ; at least two characters; optionally
# pinned to a Debian version as PACKAGE=VERSION (epoch and revision allowed).
DEBIAN_SOURCE_RE = re.compile(r"[a-z0-9][a-z0-9+.-]+(=[0-9][0-9A-Za-z.+~:-]*)?\Z")
ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
URL_SCHEMES = ("http", "https", "ftp", "file")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_AT_END = re.compile(r"\s*\(at end of document\)\s*$")


@dataclass(frozen=True)
class CheckResult:
    """The outcome for one file. `is_recipe` is False for TOML without a [package] table."""

    path: str
    recipe: Recipe | None
    problems: tuple[Problem, ...]
    is_recipe: bool = True

    @property
    def errors(self) -> list[Problem]:
        return errors_of(self.problems)

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]


# -- public entry points ----------------------------------------------------------------------------


def check_file(path: str | os.PathLike[str]) -> tuple[Recipe | None, list[Problem]]:
    """The Recipe (None if there is any error) and every problem found in the file at *path*."""
    result = check_path(path)
    return result.recipe, list(result.problems)


def load_recipe(path: str | os.PathLike[str]) -> Recipe:
    """The Recipe at *path*, or RecipeError (exit 2) carrying every problem when it has errors."""
    result = check_path(path)
    if result.recipe is None:
        raise RecipeError(result.path, result.problems)
    return result.recipe


def loads_recipe(text: str, path: str = "<string>") -> Recipe:
    """Like load_recipe, for recipe text held in memory; *path* names it in messages."""
    result = check_text(text, path)
    if result.recipe is None:
        raise RecipeError(path, result.problems)
    return result.recipe


def check_path(path: str | os.PathLike[str]) -> CheckResult:
    name = os.fspath(path)
    try:
        data = Path(name).read_bytes()
    except OSError as err:
        return CheckResult(name, None, (Problem(name, "error", "", f"cannot read: {err.strerror or err}"),))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        return CheckResult(
            name, None, (Problem(name, "error", "", f"not UTF-8 text: {err.reason} at byte {err.start}"),)
        )
    return check_text(text, name)


def check_text(text: str, path: str = "<string>") -> CheckResult:
    """Parse and validate recipe *text*; *path* is used in problems and for the file-name rule."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        return CheckResult(path, None, (_syntax_problem(path, err),))
    except RecursionError:
        return CheckResult(path, None, (Problem(path, "error", "", "TOML nesting is too deep"),))
    except ValueError as err:  # tomllib lets int() limits through, e.g. a 5000-digit number
        return CheckResult(path, None, (Problem(path, "error", "", f"TOML value error: {err}"),))
    if "package" not in raw:
        problem = Problem(path, "error", "package", "not a recipe: the file has no [package] table")
        return CheckResult(path, None, (problem,), is_recipe=False)
    return _check_document(raw, text, path)


# -- the rules --------------------------------------------------------------------------------------


def _syntax_problem(path: str, err: tomllib.TOMLDecodeError) -> Problem:
    message = str(err)
    line = getattr(err, "lineno", None)
    column = getattr(err, "colno", None)
    found = _TOML_POSITION.search(message)
    if found:
        line = line or int(found.group(1))
        column = column or int(found.group(2))
        message = message[: found.start()]
    else:
        message = _TOML_AT_END.sub("", message)
    if line is None:
        lines = message.count("\n")
        line, column = lines + 1, 1
    return Problem(path, "error", "", f"TOML syntax error: {message}", line=line, column=column)


def _check_document(raw: dict[str, Any], text: str, path: str) -> CheckResult:
    v = Validator(path)
    doc = v.table(raw, SCHEMA, "", "") or {}
    recipe = _build(doc, v, text, path)
    v.problems.extend(check_macros(recipe, path))
    _check_file_name(recipe, v, path)
    if not errors_of(v.problems):
        _check_local_files(recipe, v, path)
    problems = tuple(v.problems)
    ok = not errors_of(problems)
    return CheckResult(path, recipe if ok else None, problems)


def _build(doc: dict[str, Any], v: Validator, text: str, path: str) -> Recipe:
    package = _package(get(doc, "package", {}), v)
    source = _source(doc["source"], v) if isinstance(get(doc, "source"), dict) else Source()
    build = _build_section(get(doc, "build", {}), v)
    cross = _cross(doc["cross"], v) if isinstance(get(doc, "cross"), dict) else None
    patches = _patches(get(doc, "patches", {}), v)
    components = _components(get(doc, "components", {}), v)
    variables = _variables(get(doc, "variables", ()), v)
    deviations = _deviations(doc["deviations"], v) if isinstance(get(doc, "deviations"), dict) else None
    return Recipe(
        package=package,
        source=source,
        build=build,
        cross=cross,
        patches=patches,
        components=components,
        variables=variables,
        deviations=deviations,
        path=path,
        text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
        raw_text=text,
    )


def _package(t: dict[str, Any], v: Validator) -> Package:
    name = get(t, "name", "")
    if isinstance(t.get("name"), str) and not NAME_RE.match(name):
        v.error(
            "package.name",
            f"invalid package name {name!r}: use letters, digits and . _ + - "
            "(starting with a letter or digit)",
        )
    for key in ("version", "release"):
        value = get(t, key)
        if value is None:
            continue
        if not value or any(c.isspace() for c in value):
            v.error(f"package.{key}", f"{key} must be non-empty and contain no whitespace, got {value!r}")
        elif "%(" in value:
            v.error(f"package.{key}", f"macros are not allowed in package.{key}")
    return Package(
        name=name,
        version=get(t, "version", ""),
        release=get(t, "release", "1"),
        summary=get(t, "summary"),
        description=get(t, "description"),
        license=get(t, "license"),
        homepage=get(t, "homepage"),
    )


def _check_url(v: Validator, key_path: str, url: str) -> None:
    scheme, sep, _ = url.partition("://")
    if sep and scheme.lower() not in URL_SCHEMES:
        v.error(key_path, f"unsupported URL scheme '{scheme}' (expected one of: {', '.join(URL_SCHEMES)})")
    elif not url.strip():
        v.error(key_path, "must not be empty")


def _check_relative(v: Validator, key_path: str, value: str) -> None:
    """Directories inside the build tree: relative, and never climbing out of it."""
    if not value.strip():
        v.error(key_path, "must not be empty")
    elif value.startswith("/"):
        v.error(key_path, f"must be a relative path inside the build tree, got {value!r}")
    elif ".." in value.split("/"):
        v.error(key_path, f"must not leave the build tree with '..', got {value!r}")


def _source(t: dict[str, Any], v: Validator) -> Source:
    archive, path, checksum = get(t, "archive"), get(t, "path"), get(t, "checksum")
    if archive is not None and path is not None:
        v.error("source.path", "give either source.archive or source.path, not both")
    elif "archive" not in t and "path" not in t:
        v.error("source", "missing source: give source.archive (with source.checksum) or source.path")
    if archive is not None:
        _check_url(v, "source.archive", archive)
        if "checksum" not in t:
            v.error(
                "source.checksum", "missing checksum: an archive needs one, e.g. 'sha256:<64 hex digits>'"
            )
    if path is not None:
        if not path.strip():
            v.error("source.path", "must not be empty")
        if "checksum" in t and archive is None:
            v.error("source.checksum", "a checksum applies to source.archive, not to a local source.path")
    debian = get(t, "debian")
    if debian is not None and not DEBIAN_SOURCE_RE.match(debian):
        v.error(
            "source.debian",
            f"{debian!r} is not a Debian source package name, optionally =VERSION (e.g. 'xz-utils')",
        )
    elif debian is not None and archive is None:
        v.error(
            "source.debian", "source.debian names where an archive's bytes can be found; give source.archive"
        )
    if (signature := get(t, "signature")) is not None:
        _check_url(v, "source.signature", signature)
    if (extract_dir := get(t, "extract_dir")) is not None:
        _check_relative(v, "source.extract_dir", extract_dir)
    additional = []
    for i, row in get(t, "additional", ()):
        where = f"source.additional[{i}]"
        if (url := get(row, "url")) is not None:
            _check_url(v, f"{where}.url", url)
        if (extract_to := get(row, "extract_to")) is not None:
            _check_relative(v, f"{where}.extract_to", extract_to)
        row_debian = get(row, "debian")
        if row_debian is not None and not DEBIAN_SOURCE_RE.match(row_debian):
            v.error(
                f"{where}.debian",
                f"{row_debian!r} is not a Debian source package name, optionally =VERSION (e.g. 'gmp')",
            )
        if url is not None and get(row, "checksum") is not None:
            additional.append(
                AdditionalSource(
                    url=url,
                    checksum=get(row, "checksum"),
                    extract=get(row, "extract", True),
                    extract_to=extract_to,
                    debian=row_debian,
                )
            )
    return Source(
        archive=archive,
        checksum=checksum,
        path=path,
        signature=get(t, "signature"),
        debian=debian,
        extract=get(t, "extract", True),
        extract_dir=get(t, "extract_dir"),
        additional=tuple(additional),
    )


def _build_section(t: dict[str, Any], v: Validator) -> Build:
    jobs = get(t, "jobs")
    if jobs is not None and jobs < 1:
        v.error("build.jobs", f"jobs must be 1 or more, got {jobs}")
    timeout = get(t, "timeout")
    if timeout is not None and timeout < 1:
        v.error("build.timeout", f"timeout must be 1 second or more, got {timeout}")
    for key, _ in get(t, "environment", ()):
        if not ENV_NAME_RE.match(key):
            v.error(f"build.environment.{key}", f"{key!r} is not a valid environment variable name")
    if (workdir := get(t, "workdir")) is not None:
        _check_relative(v, "build.workdir", workdir)
    if get(t, "check_optional") and "check" not in t:
        v.warning("build.check_optional", "check_optional has no effect: the recipe has no check step")
    if "install" not in t:
        v.warning(
            "build.install", "no install step: the package will be empty unless another step fills DESTDIR"
        )
    sanity = get(t, "sanity_check")
    return Build(
        requires=get(t, "requires", ()),
        makedepends=get(t, "makedepends", ()),
        setup=get(t, "setup"),
        configure=get(t, "configure"),
        make=get(t, "make"),
        check=get(t, "check"),
        install=get(t, "install"),
        post_install=get(t, "post_install"),
        environment=get(t, "environment", ()),
        workdir=workdir,
        jobs=jobs,
        timeout=timeout,
        stage=get(t, "stage"),
        chroot=get(t, "chroot", False),
        check_optional=get(t, "check_optional", False),
        sanity_check=SanityCheck(sanity["script"]) if sanity and get(sanity, "script") is not None else None,
    )


def _cross(t: dict[str, Any], v: Validator) -> Cross:
    stage = get(t, "stage")
    if stage is not None and stage not in CROSS_STAGES:
        close = difflib.get_close_matches(stage, CROSS_STAGES, n=1, cutoff=0.6)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        v.error("cross.stage", f"invalid stage {stage!r}{hint}: expected one of {', '.join(CROSS_STAGES)}")
    return Cross(**valid_items(t))


def _patches(t: dict[str, Any], v: Validator) -> tuple[Patch, ...]:
    patches = []
    for i, row in get(t, "files", ()):
        where = f"patches.files[{i}]"
        strip = get(row, "strip", 1)
        if strip < 0:
            v.error(f"{where}.strip", f"strip must be 0 or more, got {strip}")
        file = get(row, "file")
        if file is None:
            continue
        if not file.strip():
            v.error(f"{where}.file", "must not be empty")
        elif "://" in file:
            _check_url(v, f"{where}.file", file)
            if "checksum" not in row:
                v.error(f"{where}.checksum", "missing checksum: a patch fetched from a URL needs one")
        patches.append(Patch(file=file, checksum=get(row, "checksum"), strip=strip))
    return tuple(patches)


def _components(t: dict[str, Any], v: Validator) -> Components:
    t = valid_items(t)
    for key, globs in t.items():
        for i, glob in enumerate(globs):
            if not (glob.startswith("/") or glob.startswith("%(")):
                v.error(
                    f"components.{key}[{i}]",
                    f"{glob!r} must be an absolute path glob such as '/usr/include/**'",
                )
    return Components(**t)


def _variables(pairs: tuple[tuple[str, str], ...], v: Validator) -> tuple[tuple[str, str], ...]:
    kept = []
    for key, value in pairs:
        if VARIABLE_RE.match(key):
            kept.append((key, value))
        else:
            v.error(f"variables.{key}", f"{key!r} cannot be used as a macro name: use letters, digits and _")
    return tuple(kept)


def _deviations(t: dict[str, Any], v: Validator) -> Deviations:
    if (url := get(t, "lfs_url")) is not None:
        _check_url(v, "deviations.lfs_url", url)
    changes = tuple(
        DeviationChange(
            flag=row["flag"], reason=row["reason"], lfs=get(row, "lfs"), conary=get(row, "conary")
        )
        for row in (valid_items(r) for _, r in get(t, "changes", ()))
        if "flag" in row and "reason" in row
    )
    return Deviations(lfs_section=get(t, "lfs_section"), lfs_url=url, changes=changes)


def expected_name(path: str) -> str | None:
    """The package name a recipe file's name implies: NAME.recipe.toml, NAME.toml or NAME/recipe.toml."""
    p = Path(path)
    if p.name == "recipe.toml":
        return p.parent.name or None
    if p.name.endswith(".recipe.toml"):
        return p.name[: -len(".recipe.toml")]
    if p.name.endswith(".toml"):
        return p.name[: -len(".toml")]
    return None


def _check_file_name(recipe: Recipe, v: Validator, path: str) -> None:
    if path.startswith("<") or not NAME_RE.match(recipe.package.name):
        return
    wanted = expected_name(path)
    name = recipe.package.name
    if wanted is not None and wanted != name:
        v.warning(
            "package.name",
            f"package name '{name}' does not match the file name '{Path(path).name}' "
            f"(expected {name}.recipe.toml, {name}.toml or {name}/recipe.toml)",
        )


def _check_local_files(recipe: Recipe, v: Validator, path: str) -> None:
    """Local patches and source trees are looked up beside the recipe; say early if one is absent."""
    if path.startswith("<"):
        return
    local_patches = any("://" not in p.file for p in recipe.patches)
    if not local_patches and recipe.source.path is None:
        return
    base = Path(path).parent
    expanded = recipe.expand()
    wanted = [
        (f"patches.files[{i}].file", p.file) for i, p in enumerate(expanded.patches) if "://" not in p.file
    ]
    if expanded.source.path is not None:
        wanted.append(("source.path", expanded.source.path))
    for key_path, name in wanted:
        if not (base / name).exists():
            v.warning(key_path, f"{name!r} does not exist next to the recipe ({base / name})")
