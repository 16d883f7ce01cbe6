"""%(name)s macros: built-ins, [variables], nesting, escapes, errors, and expansion everywhere."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conary.recipe import MacroContext, Recipe, check_text, host_triple, load_recipe, loads_recipe
from conary.recipe.macros import macro_strings

VALID = Path(__file__).parent / "data" / "recipes" / "valid"
SHA = "b" * 64
CTX = MacroContext(
    destdir="/D",
    jobs=7,
    target="aarch64-lfs-linux-gnu",
    sysroot="/S",
    build="x86_64-pc-linux-gnu",
    stage="stage1",
)


def recipe_with(build: str = "", variables: str = "", extra: str = "") -> Recipe:
    text = f"""
[package]
name = "demo"
version = "2.1"
release = "4"

[source]
archive = "https://example.org/%(name)s-%(version)s.tar.gz"
checksum = "sha256:{SHA}"

[build]
install = "make DESTDIR=%(destdir)s install"
{build}
{extra}
[variables]
{variables}
"""
    return loads_recipe(text, "demo.toml")


def test_builtins_come_from_package_and_context() -> None:
    r = recipe_with(
        'configure = "%(name)s %(version)s %(release)s %(destdir)s %(jobs)s %(target)s '
        '%(sysroot)s %(build)s %(stage)s"'
    ).expand(CTX)
    assert r.build.configure == "demo 2.1 4 /D 7 aarch64-lfs-linux-gnu /S x86_64-pc-linux-gnu stage1"
    assert r.source.archive == "https://example.org/demo-2.1.tar.gz"
    assert r.expanded


def test_default_context_is_meaningful() -> None:
    r = recipe_with('make = "make -j%(jobs)s"\nconfigure = "--build=%(build)s --host=%(target)s"').expand()
    assert r.build.install == "make DESTDIR=/destdir install"
    assert r.build.make is not None and int(r.build.make.removeprefix("make -j")) >= 1
    assert r.build.configure == f"--build={host_triple()} --host={host_triple()}"
    assert host_triple().endswith("-linux-gnu")


def test_build_jobs_sets_the_jobs_macro() -> None:
    r = recipe_with('jobs = 1\nmake = "make -j%(jobs)s"').expand(CTX)
    assert r.build.make == "make -j1"


def test_variables_override_builtins_and_nest() -> None:
    r = recipe_with(
        'make = "make -j%(jobs)s"\nconfigure = "./configure --prefix=%(prefix)s --docdir=%(docdir)s"',
        variables='jobs = "$(nproc)"\nprefix = "/usr"\ndocdir = "%(prefix)s/share/doc/%(name)s-%(version)s"',
    ).expand(CTX)
    assert r.build.make == "make -j$(nproc)"
    assert r.build.configure == "./configure --prefix=/usr --docdir=/usr/share/doc/demo-2.1"
    assert dict(r.variables)["docdir"] == "/usr/share/doc/demo-2.1"


def test_percent_escapes_and_shell_percent_signs() -> None:
    r = recipe_with(
        """configure = 'printf "100%%" ; echo ${f%.tar.xz} ; date +%Y ; printf "%(pct)s"'""",
        variables='pct = "50%%"',
    ).expand(CTX)
    # %% is one literal %, other % signs stay, and a substituted value is not scanned again.
    assert r.build.configure == 'printf "100%" ; echo ${f%.tar.xz} ; date +%Y ; printf "50%"'


def test_every_string_of_the_recipe_is_expanded() -> None:
    for path in sorted(VALID.rglob("*.toml")):
        raw = load_recipe(path)
        expanded = raw.expand(CTX)
        for key_path, text in macro_strings(expanded):
            assert "%(" not in text, (path.name, key_path, text)
        for key, value in expanded.variables:
            assert "%(" not in value, (path.name, key, value)


def test_expansion_reaches_every_section() -> None:
    r = load_recipe(VALID / "glibc.toml").expand(CTX)
    assert r.source.signature == "https://ftp.gnu.org/gnu/glibc/glibc-2.42.tar.xz.sig"
    assert r.patches[0].file == "glibc-2.42-fhs-1.patch"
    assert r.build.configure is not None and "--host=aarch64-lfs-linux-gnu" in r.build.configure
    assert r.build.sanity_check is not None and "aarch64-lfs-linux-gnu-gcc" in r.build.sanity_check.script
    assert r.cross is not None and r.cross.cc == "aarch64-lfs-linux-gnu-gcc" and r.cross.sysroot == "/S"
    gcc = load_recipe(VALID / "gcc-pass1.toml").expand(CTX)
    assert gcc.source.additional[1].url == "https://ftp.gnu.org/gnu/gmp/gmp-6.3.0.tar.xz"
    assert gcc.source.extract_dir == "gcc-15.2.0"
    assert dict(gcc.build.environment)["PATH"] == "/tools/bin:/usr/bin:/bin"
    assert gcc.build.workdir == "build"
    zlib = recipe_with(extra='[components]\ndoc = ["/usr/share/doc/%(name)s/**"]\n').expand(CTX)
    assert zlib.components.doc == ("/usr/share/doc/demo/**",)


def test_expansion_keeps_identity_fields_and_is_idempotent() -> None:
    r = load_recipe(VALID / "glibc.toml")
    e = r.expand(CTX)
    assert e.package.name == r.package.name and e.source.checksum == r.source.checksum
    assert e.deviations == r.deviations and e.path == r.path and e.text_sha256 == r.text_sha256
    assert e.expand(MacroContext(destdir="/other")) is e
    assert dataclasses.replace(e, expanded=False) != r


@pytest.mark.parametrize(
    ("build", "variables", "key_path", "message"),
    [
        ('make = "make -j%(job)s"', "", "build.make", "undefined macro %(job)s (did you mean %(jobs)s?)"),
        ('make = "%(nothing_like_it)s"', "", "build.make", "undefined macro %(nothing_like_it)s"),
        ("", 'a = "%(a)s"', "variables.a", "macro cycle: a -> a"),
        ("", 'a = "%(b)s"\nb = "%(c)s"\nc = "%(a)s"', "variables.a", "macro cycle: a -> b -> c -> a"),
        ("", 'jobs = "%(jobs)s"', "variables.jobs", "macro cycle: jobs -> jobs"),
        ("", 'a = "%(missing)s"', "variables.a", "undefined macro %(missing)s"),
        ('make = "make %(name)d"', "", "build.make", "malformed macro '%(name)': write it as %(name)s"),
        (
            "[build.environment]\nCFLAGS = '%(optflags)s'",
            "",
            "build.environment.CFLAGS",
            "undefined macro %(optflags)s",
        ),
    ],
)
def test_macro_errors_name_the_key_path(build: str, variables: str, key_path: str, message: str) -> None:
    text = f"""
[package]
name = "demo"
version = "1"
[source]
archive = "https://example.org/demo.tar.gz"
checksum = "sha256:{SHA}"
[variables]
{variables}
[build]
install = "true"
{build}
"""
    result = check_text(text)
    assert result.recipe is None
    assert [(p.key_path, p.message) for p in result.errors] == [(key_path, message)]


def test_macros_not_allowed_in_version() -> None:
    result = check_text(
        '[package]\nname = "d"\nversion = "%(v)s"\n[source]\npath = "."\n[build]\ninstall = "true"\n'
        '[variables]\nv = "1"\n'
    )
    assert [(p.key_path, p.message) for p in result.errors] == [
        ("package.version", "macros are not allowed in package.version")
    ]


def test_long_variable_chain_expands() -> None:
    chain = "\n".join(f'v{i} = "%(v{i + 1})s"' for i in range(2000)) + '\nv2000 = "end"'
    r = recipe_with('make = "%(v0)s"', variables=chain).expand(CTX)
    assert r.build.make == "end"


def test_shared_dependencies_expand_once_each() -> None:
    r = recipe_with('make = "%(a)s"', variables='a = "%(b)s%(c)s"\nb = "B"\nc = "%(b)s!"').expand(CTX)
    assert r.build.make == "BB!"
