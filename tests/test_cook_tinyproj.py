"""Cook the small C project of tests/data/cook hermetically and inspect the package it gives."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from helpers_cook import TINY_MTIME, TINYPROJ, make_tarball, sha256, tiny_recipe, write_recipe


@pytest.fixture
def cook_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Private cache, work and key directories, so tests never touch the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("CONARY_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.delenv("CONARY_SOURCE_CACHE", raising=False)
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return tmp_path


def _cook(cli, recipe: Path, out: Path, cache: Path, *extra: str):  # type: ignore[no-untyped-def]
    return cli("cook", "--output", out, "--source-cache", cache, *extra, recipe)


def test_tinyproj_cooks_into_a_signed_package_with_components_and_deps(cli, cook_env: Path) -> None:
    from conary.ccs import open_package

    recipe = tiny_recipe(cook_env)
    out = cook_env / "dist"
    r = _cook(cli, recipe, out, cook_env / "cache")
    assert r.code == 0, r.err
    packages = sorted(out.glob("*.ccs"))
    assert [p.name for p in packages] == ["tinyproj-1.0-1.x86_64.ccs"]
    assert r.out.strip() == str(packages[0])
    assert "created signing key" in r.err  # first use of the default key

    pkg = open_package(packages[0])
    manifest = pkg.manifest
    by_path = {f.path: f for f in manifest.files}
    debug = [p for p in by_path if p.startswith("usr/lib/debug/")]
    assert {by_path[p].component for p in debug if by_path[p].type == "file"} == {"debuginfo"}
    assert len([p for p in debug if p.endswith(".debug")]) == 2  # tiny and libtiny, split out
    regular = {p: f.component for p, f in by_path.items() if f.type != "dir" and p not in debug}
    assert regular == {
        "usr/bin/tiny": "runtime",
        "usr/lib/libtiny.so.1.0": "lib",
        "usr/lib/libtiny.so.1": "lib",
        "usr/lib/libtiny.so": "devel",
        "usr/include/tiny.h": "devel",
        "usr/lib/pkgconfig/tiny.pc": "devel",
        "usr/share/man/man1/tiny.1": "doc",
    }
    provides = {(d.kind, d.name) for d in manifest.provides}
    requires = {(d.kind, d.name) for d in manifest.requires}
    assert ("soname", "libtiny.so.1") in {(k, n.split("(")[0]) for k, n in provides}
    assert any(k == "pkgconfig" and n == "tiny" for k, n in provides)
    assert any(k == "soname" and n.startswith("libc.so.6") for k, n in requires)

    prov = manifest.provenance
    assert prov["recipe_sha256"] == hashlib.sha256(recipe.read_bytes()).hexdigest()
    assert prov["sources"] == [
        {
            "key": "source.archive",
            "url": "tinyproj-1.0.tar.gz",
            "checksum": sha256(cook_env / "tinyproj-1.0.tar.gz"),
        }
    ]
    assert prov["sandbox"] == "hermetic"
    assert prov["builder"].startswith("conary ")
    assert prov["source_date_epoch"] == TINY_MTIME
    assert manifest.source_date_epoch == TINY_MTIME

    # The binary runs, and no build path leaked into it (the source dir is /build, then mapped).
    root = cook_env / "root"
    pkg.extract(root)
    run = subprocess.run(
        [root / "usr/bin/tiny"],
        capture_output=True,
        text=True,
        env={"LD_LIBRARY_PATH": str(root / "usr/lib")},
        check=True,
    )
    assert run.stdout.startswith("tiny 1.0 says hello")
    for path in ("usr/bin/tiny", "usr/lib/libtiny.so.1.0"):
        data = (root / path).read_bytes()
        assert str(cook_env).encode() not in data
        assert b"/build/" not in data
    # A successful cook removes its work directory.
    assert not any((cook_env / "xdg-cache" / "conary" / "work").iterdir())


def test_cooking_twice_gives_byte_identical_packages(cli, cook_env: Path) -> None:
    recipe = tiny_recipe(cook_env)
    first, second = cook_env / "one", cook_env / "two"
    assert _cook(cli, recipe, first, cook_env / "cache").code == 0
    assert _cook(cli, recipe, second, cook_env / "cache", "--jobs", "1").code == 0
    (a,) = first.glob("*.ccs")
    (b,) = second.glob("*.ccs")
    assert a.read_bytes() == b.read_bytes()


def test_recipe_components_override_the_builtin_split(cli, cook_env: Path) -> None:
    from conary.ccs import open_package

    recipe = tiny_recipe(
        cook_env, extra='\n[components]\ndoc = ["/usr/include/**"]\nexclude = ["/usr/lib/pkgconfig/**"]\n'
    )
    r = _cook(cli, recipe, cook_env / "dist", cook_env / "cache")
    assert r.code == 0, r.err
    (path,) = (cook_env / "dist").glob("*.ccs")
    files = {f.path: f.component for f in open_package(path).manifest.files}
    assert files["usr/include/tiny.h"] == "doc"
    assert "usr/lib/pkgconfig/tiny.pc" not in files


def test_keep_and_workdir_and_logs(cli, cook_env: Path) -> None:
    recipe = tiny_recipe(cook_env)
    work = cook_env / "work"
    r = _cook(cli, recipe, cook_env / "dist", cook_env / "cache", "--workdir", work, "--keep")
    assert r.code == 0, r.err
    assert f"work directory kept at {work}" in r.err
    assert sorted(p.name for p in (work / "logs").iterdir()) == [
        "check.log",
        "configure.log",
        "install.log",
        "make.log",
    ]
    assert "configured for /usr" in (work / "logs" / "configure.log").read_text()
    assert (work / "destdir" / "usr" / "bin" / "tiny").is_file()


def test_non_hermetic_cook_is_marked_in_provenance(cli, cook_env: Path) -> None:
    from conary.ccs import open_package

    recipe = tiny_recipe(cook_env)
    r = _cook(cli, recipe, cook_env / "dist", cook_env / "cache", "--no-hermetic")
    assert r.code == 0, r.err
    (path,) = (cook_env / "dist").glob("*.ccs")
    assert open_package(path).manifest.provenance["sandbox"] == "host"


def test_fetch_only_fills_the_cache_and_builds_nothing(cli, cook_env: Path) -> None:
    recipe = tiny_recipe(cook_env)
    cache = cook_env / "cache"
    r = cli("cook", "--fetch-only", "--source-cache", cache, "--output", cook_env / "dist", recipe)
    assert r.code == 0, r.err
    digest = sha256(cook_env / "tinyproj-1.0.tar.gz")
    assert r.out.strip() == f"{digest}  tinyproj-1.0.tar.gz"
    assert (cache / "sha256" / digest.split(":")[1]).is_file()
    assert not (cook_env / "dist").exists()
    assert not (cook_env / "xdg-cache" / "conary" / "work").exists()


def test_patches_are_verified_and_applied(cli, cook_env: Path) -> None:
    from conary.ccs import open_package

    patch = cook_env / "greeting.patch"
    patch.write_text(
        "--- a/libtiny.c\n+++ b/libtiny.c\n@@ -4,6 +4,6 @@\n const char *tiny_greeting(void)\n {\n"
        "     static char buf[64];\n"
        '-    snprintf(buf, sizeof buf, "tiny %s says hello (%s)", TINY_VERSION, __FILE__);\n'
        '+    snprintf(buf, sizeof buf, "tiny %s says hello, patched (%s)", TINY_VERSION, __FILE__);\n'
        "     return buf;\n }\n"
    )
    extra = f'\n[patches]\nfiles = [{{ file = "greeting.patch", checksum = "{sha256(patch)}", strip = 1 }}]\n'
    recipe = tiny_recipe(cook_env, extra=extra)
    r = _cook(cli, recipe, cook_env / "dist", cook_env / "cache")
    assert r.code == 0, r.err
    (path,) = (cook_env / "dist").glob("*.ccs")
    pkg = open_package(path)
    assert pkg.manifest.provenance["patches"] == [sha256(patch)]
    pkg.extract(cook_env / "root")
    assert b"says hello, patched" in (cook_env / "root" / "usr/lib/libtiny.so.1.0").read_bytes()


def test_additional_sources_go_where_the_recipe_says(cli, cook_env: Path) -> None:
    from conary.ccs import open_package

    extra_dir = cook_env / "extra-src"
    (extra_dir / "sub").mkdir(parents=True)
    (extra_dir / "sub" / "data.txt").write_text("from the additional archive\n")
    extra_tar = make_tarball(extra_dir, cook_env / "extra-2.0.tar.gz", "extra-2.0")
    plain = cook_env / "notes.txt"
    plain.write_text("copied as is\n")
    extra = (
        f'\n[[source.additional]]\nurl = "{extra_tar.name}"\nchecksum = "{sha256(extra_tar)}"\n'
        'extract_to = "vendor/extra"\n'
        f'\n[[source.additional]]\nurl = "{plain.name}"\nchecksum = "{sha256(plain)}"\nextract = false\n'
        'extract_to = "docs"\n'
    )
    steps = {
        "install": "mkdir -p $DESTDIR/usr/share/t\n"
        "cp vendor/extra/sub/data.txt docs/notes.txt $DESTDIR/usr/share/t/"
    }
    recipe = tiny_recipe(cook_env, steps=steps, extra=extra)
    r = _cook(cli, recipe, cook_env / "dist", cook_env / "cache")
    assert r.code == 0, r.err
    (path,) = (cook_env / "dist").glob("*.ccs")
    pkg = open_package(path)
    assert [s["key"] for s in pkg.manifest.provenance["sources"]] == [
        "source.archive",
        "source.additional[0]",
        "source.additional[1]",
    ]
    pkg.extract(cook_env / "root")
    share = cook_env / "root" / "usr/share/t"
    assert (share / "data.txt").read_text() == "from the additional archive\n"
    assert (share / "notes.txt").read_text() == "copied as is\n"


def test_sysroot_replaces_the_host_toolchain(cli, cook_env: Path) -> None:
    """A sysroot holding only dash and its libraries: the step sees it, and not the host's gcc."""
    from conary.ccs import open_package

    sysroot = cook_env / "sysroot"
    dash = Path("/usr/bin/dash")
    libs = subprocess.run(["ldd", dash], capture_output=True, text=True, check=True).stdout
    files = [dash] + [Path(w) for line in libs.splitlines() for w in line.split() if w.startswith("/")]
    for f in files:
        target = sysroot / f.resolve().relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(f.resolve(), target)
        if f.resolve() != f:
            (sysroot / f.relative_to("/")).parent.mkdir(parents=True, exist_ok=True)
            alias = sysroot / f.relative_to("/")
            if not alias.exists():
                alias.symlink_to(f.resolve())
    (sysroot / "usr/bin/sh").symlink_to("dash")
    for top in ("bin", "lib", "lib64"):
        if (sysroot / top).is_dir() and not (sysroot / top).is_symlink():
            continue
        (sysroot / top).symlink_to(f"usr/{top}")
    (sysroot / "usr/share").mkdir(parents=True)
    (sysroot / "usr/share/sysroot-marker").write_text("mine\n")
    steps = {
        "install": "read m < /usr/share/sysroot-marker\n"
        "if [ -e /usr/bin/gcc ]; then echo host-gcc-visible; exit 1; fi\n"
        'echo "$m" > /destdir/seen'
    }
    recipe = tiny_recipe(cook_env, steps=steps)
    r = _cook(cli, recipe, cook_env / "dist", cook_env / "cache", "--sysroot", sysroot)
    assert r.code == 0, r.err
    (path,) = (cook_env / "dist").glob("*.ccs")
    pkg = open_package(path)
    pkg.extract(cook_env / "root")
    assert (cook_env / "root" / "seen").read_text() == "mine\n"


def test_workdir_macros_and_recipe_environment_reach_the_steps(cli, cook_env: Path) -> None:
    from conary.ccs import open_package

    steps = {
        "install": "mkdir -p %(destdir)s/usr/share/t\n"
        "pwd > %(destdir)s/usr/share/t/pwd\n"
        "echo '%(jobs)s %(name)s-%(version)s' > %(destdir)s/usr/share/t/macros\n"
        'echo "$MAKEFLAGS $GREETING $CFLAGS" > %(destdir)s/usr/share/t/env'
    }
    extra = '\n[build.environment]\nGREETING = "hi"\nCFLAGS = "-O1"\n'
    recipe = tiny_recipe(cook_env, steps=steps, extra=extra)
    text = recipe.read_text().replace("[build]\n", '[build]\nworkdir = "obj/x"\n', 1)
    recipe.write_text(text)
    r = cli(
        "cook",
        "--json",
        "--jobs",
        "3",
        "--output",
        cook_env / "dist",
        "--source-cache",
        cook_env / "cache",
        recipe,
    )
    assert r.code == 0, r.err
    (result,) = json.loads(r.out)
    assert result["sandbox"] == "hermetic"
    assert set(result["timings"]) >= {"fetch", "prepare", "build", "step:install", "package"}
    root = cook_env / "root"
    open_package(Path(result["package"])).extract(root)
    share = root / "usr/share/t"
    assert (share / "pwd").read_text() == "/build/obj/x\n"
    assert (share / "macros").read_text() == "3 tinyproj-1.0\n"
    assert (share / "env").read_text() == "-j3 hi -O1 -ffile-prefix-map=/build=/usr/src/tinyproj-1.0\n"


def test_mirrors_from_the_command_line_and_the_config_file(cli, cook_env: Path) -> None:
    """The archive's URL is unreachable; the bytes come from a directory mirror found by file name."""
    tarball = make_tarball(TINYPROJ, cook_env / "tinyproj-1.0.tar.gz", "tinyproj-1.0")
    mirror = cook_env / "mirror"
    mirror.mkdir()
    shutil.move(tarball, mirror / tarball.name)
    recipe = write_recipe(
        cook_env, "tinyproj", "http://127.0.0.1:1/tinyproj-1.0.tar.gz", sha256(mirror / tarball.name)
    )

    r = _cook(cli, recipe, cook_env / "one", cook_env / "cache-one", "--mirror", mirror)
    assert r.code == 0, r.err

    config = cook_env / "xdg-config" / "conary" / "mirrors.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[[mirror]]\nurl = "{mirror}"\n')
    r = _cook(cli, recipe, cook_env / "two", cook_env / "cache-two")
    assert r.code == 0, r.err
    assert (cook_env / "one" / "tinyproj-1.0-1.x86_64.ccs").read_bytes() == (
        cook_env / "two" / "tinyproj-1.0-1.x86_64.ccs"
    ).read_bytes()


def test_terminal_status_runs_no_thread_so_packaging_may_fork(
    cli, cook_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal the cook shows which stage runs. The line is redrawn without a refresh thread,
    so the packaging step still finds itself the only thread and may start worker processes."""
    import io
    import threading

    from rich.console import Console

    from conary.ccs import scheduler
    from conary.cli import output

    screen = io.StringIO()
    monkeypatch.setattr(output, "stderr", Console(file=screen, force_terminal=True, width=100))
    threads_when_packing: list[int] = []
    real = scheduler.packing_workers

    def watching(*args, **kwargs):  # type: ignore[no-untyped-def]
        threads_when_packing.append(threading.active_count())
        return real(*args, **kwargs)

    monkeypatch.setattr(scheduler, "packing_workers", watching)
    monkeypatch.setattr("conary.ccs.build.packing_workers", watching)
    recipe = tiny_recipe(cook_env)
    r = _cook(cli, recipe, cook_env / "dist", cook_env / "cache")
    assert r.code == 0, r.err
    assert threads_when_packing == [1]
    shown = screen.getvalue()
    assert "cook: " in shown and "package: compressing 100%" in shown
