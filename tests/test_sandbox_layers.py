"""Build roots made of several layers: one read-only union, the top layer winning, the host seed below."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conary.cook import CookOptions
from conary.cook.runner import SandboxRunner
from conary.sandbox import (
    Bind,
    Overlay,
    SandboxError,
    Symlink,
    build_spec,
    layered_root_ops,
    run,
)


def _root(path: Path, files: dict[str, str], links: dict[str, str] | None = None) -> Path:
    for name, content in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(content)
    for name, target in (links or {}).items():
        (path / name).symlink_to(target)
    return path


@pytest.fixture
def two_roots(tmp_path: Path) -> tuple[Path, Path]:
    top = _root(
        tmp_path / "top",
        {"usr/share/doc/top.txt": "top only\n", "usr/share/clash.txt": "from top\n", "opt/x": "opt\n"},
        {"bin": "usr/bin"},
    )
    bottom = _root(
        tmp_path / "bottom",
        {"usr/share/doc/bottom.txt": "bottom only\n", "usr/share/clash.txt": "from bottom\n"},
        {"bin": "usr/bin"},
    )
    return top, bottom


def _sh(spec, script: str, tmp_path: Path) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    with open(out, "wb") as handle:
        code = run(spec, ["/bin/sh", "-c", script], stdout=handle, stderr=handle)
    return code, out.read_text()


def test_plan_overlays_shared_directories_and_binds_the_rest(two_roots: tuple[Path, Path]) -> None:
    top, bottom = two_roots
    ops = layered_root_ops([top, bottom])
    assert Overlay((f"{top}/usr", f"{bottom}/usr"), "/usr") in ops
    assert Bind(f"{top}/opt", "/opt") in ops
    assert Symlink("usr/bin", "/bin") in ops
    assert any(op.dest == "/etc/passwd" for op in ops)  # neither layer has an /etc


def test_directory_against_symlink_is_one_precise_error(tmp_path: Path) -> None:
    top = _root(tmp_path / "top", {"usr/bin/x": ""}, {"bin": "usr/bin"})
    bottom = _root(tmp_path / "bottom", {"bin/sh": ""})
    with pytest.raises(SandboxError) as caught:
        layered_root_ops([top, bottom])
    assert caught.value.what == (
        f"root layers disagree on /bin: a symlink to usr/bin, a directory in {bottom}"
    )
    assert caught.value.where == "/bin"
    assert caught.value.hint


@pytest.mark.parametrize("userns", [False, True], ids=["root", "userns"])
def test_union_shows_both_layers_top_wins_read_only(
    two_roots: tuple[Path, Path], tmp_path: Path, userns: bool
) -> None:
    top, bottom = two_roots
    (tmp_path / "b").mkdir()
    (tmp_path / "d").mkdir()
    spec = build_spec(tmp_path / "b", tmp_path / "d", sysroot=[top, bottom], host_seed=True)
    spec = dataclasses.replace(spec, user_namespace=userns)
    code, out = _sh(
        spec,
        "cat /usr/share/doc/top.txt /usr/share/doc/bottom.txt /usr/share/clash.txt /opt/x; "
        "for p in /usr/share/new /usr/share/clash.txt /opt/new; do "
        '  if (echo x > "$p") 2>/dev/null; then echo "wrote $p"; else echo "denied $p"; fi; done; '
        "rm /usr/share/doc/top.txt 2>/dev/null || echo 'denied rm'",
        tmp_path,
    )
    assert code == 0, out
    assert out.splitlines() == [
        "top only",
        "bottom only",
        "from top",
        "opt",
        "denied /usr/share/new",
        "denied /usr/share/clash.txt",
        "denied /opt/new",
        "denied rm",
    ]
    assert (top / "usr/share/doc/top.txt").read_text() == "top only\n"
    assert not (top / "usr/share/new").exists() and not (bottom / "usr/share/new").exists()


def test_host_seed_at_the_bottom_compiles_against_an_upper_header(tmp_path: Path) -> None:
    layer = _root(
        tmp_path / "pkg",
        {"usr/include/conary_layer.h": '#define LAYER_GREETING "hello from a layer"\n'},
        {"bin": "usr/bin"},
    )
    build, destdir = tmp_path / "b", tmp_path / "d"
    build.mkdir()
    destdir.mkdir()
    (build / "main.c").write_text(
        "#include <stdio.h>\n#include <conary_layer.h>\nint main(void) { puts(LAYER_GREETING); return 0; }\n"
    )
    spec = build_spec(build, destdir, sysroot=[layer], host_seed=True)
    code, out = _sh(spec, "cc main.c -o /destdir/main && /destdir/main", tmp_path)
    assert code == 0, out
    assert out == "hello from a layer\n"
    # Without the layer the header is not there: the union is what made it visible.
    code, out = _sh(build_spec(build, destdir), "cc main.c -o /destdir/main", tmp_path)
    assert code != 0
    assert "conary_layer.h" in out


def test_cook_options_stack_sysroots_for_the_runner(two_roots: tuple[Path, Path], tmp_path: Path) -> None:
    top, bottom = two_roots
    options = CookOptions(sysroot=top, sysroots=(bottom,), host_seed=True)
    assert options.sysroots == (top, bottom)
    assert dataclasses.replace(options, jobs=2).sysroots == (top, bottom)
    runner = SandboxRunner(tmp_path / "b", tmp_path / "d", options.sysroots, host_seed=options.host_seed)
    plan = runner.describe()
    assert f"overlay ro {top}/usr + {bottom}/usr + /usr -> /usr (top first)" in plan
    assert f"bind ro {top}/opt -> /opt" in plan
