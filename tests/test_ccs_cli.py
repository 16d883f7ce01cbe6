"""`conary ccs` commands end to end: keygen, build from ccs.toml, sign, verify, inspect, extract."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from conary.ccs import open_package


@pytest.fixture
def keydir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CONARY_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1000")
    return tmp_path / "keys"


def _pkgdir(tmp_path: Path, toml: str) -> Path:
    d = tmp_path / "pkg"
    (d / "root/usr/bin").mkdir(parents=True)
    (d / "root/usr/bin/hello").write_text("#!/bin/sh\necho hello\n")
    os.chmod(d / "root/usr/bin/hello", 0o755)
    (d / "root/usr/include").mkdir(parents=True)
    (d / "root/usr/include/hello.h").write_text("int hello(void);\n")
    (d / "ccs.toml").write_text(toml)
    return d


TOML = """
[package]
name = "hello"
version = "2.1"
release = "3"
arch = "x86_64"
summary = "says hello"
license = "MIT"

[components]
doc = ["usr/include/**"]

[scriptlets]
post_install = "echo installed"
"""


def test_build_verify_inspect_extract(tmp_path: Path, keydir: Path, cli) -> None:
    d = _pkgdir(tmp_path, TOML)
    r = cli("ccs", "build", d, "--output", tmp_path / "out")
    assert r.code == 0, r.err
    pkg = Path(r.out.strip())
    assert pkg == tmp_path / "out/hello-2.1-3.x86_64.ccs"
    assert "created signing key" in r.err and (keydir / "default").exists()
    assert (keydir / "default").stat().st_mode & 0o777 == 0o600

    r = cli("ccs", "verify", pkg, "--trust", keydir / "default.pub")
    assert r.code == 0 and r.out.startswith("OK hello-2.1-3.x86_64 signed by ")

    r = cli("ccs", "inspect", pkg, "--files", "--deps")
    assert r.code == 0 and "usr/bin/hello" in r.out and "binary(hello)" in r.out

    with open_package(pkg) as opened:
        assert opened.manifest.scriptlets["post_install"] == "echo installed"
        assert {f.path: f.component for f in opened.manifest.files}["usr/include/hello.h"] == "doc"

    r = cli("ccs", "extract", pkg, tmp_path / "x", "--component", "doc")
    assert r.code == 0, r.err
    assert (tmp_path / "x/usr/include/hello.h").exists() and not (tmp_path / "x/usr/bin").exists()
    r = cli("ccs", "extract", pkg, tmp_path / "y")
    assert r.code == 0 and (tmp_path / "y/usr/bin/hello").stat().st_mode & 0o777 == 0o755
    r = cli("ccs", "extract", pkg, tmp_path / "z", "--component", "nope")
    assert r.code == 1 and "no component nope" in r.err


def test_source_option_and_second_build_reuses_key(tmp_path: Path, keydir: Path, cli) -> None:
    d = _pkgdir(tmp_path, TOML)
    other = tmp_path / "tree"
    (other / "opt").mkdir(parents=True)
    (other / "opt/file").write_text("x")
    r1 = cli("ccs", "build", d, "--source", other, "--output", tmp_path / "o1", "--no-split-debug")
    r2 = cli("ccs", "build", d, "--source", other, "--output", tmp_path / "o2")
    assert r1.code == r2.code == 0
    assert "created signing key" in r1.err and "created" not in r2.err
    a, b = Path(r1.out.strip()), Path(r2.out.strip())
    assert a.read_bytes() == b.read_bytes()
    with open_package(a) as pkg:
        assert [f.path for f in pkg.manifest.files] == ["opt", "opt/file"]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            '[package]\nnmae = "x"\nversion = "1"\n',
            "package.nmae: unknown key 'nmae' (hint: did you mean 'name'?)",
        ),
        (
            '[package]\nname = "x"\nversion = "1"\n[scriptlet]\n',
            "unknown key 'scriptlet' (hint: did you mean 'scriptlets'?)",
        ),
        (
            '[package]\nname = "x"\nversion = "1"\n[scriptlets]\npost_instal = "x"\n',
            "did you mean 'post_install'?",
        ),
        ('[package]\nname = "x"\n', "package.version: required key is missing"),
        ('[package]\nname = "x y"\nversion = "1"\n', "invalid name"),
    ],
)
def test_bad_ccs_toml(tmp_path: Path, keydir: Path, cli, toml: str, message: str) -> None:
    d = _pkgdir(tmp_path, toml)
    r = cli("ccs", "build", d, "--output", tmp_path / "out")
    assert r.code == 2
    assert message in r.err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").glob("*.ccs"))


def test_keygen_refuses_overwrite_and_sign_replaces_signature(tmp_path: Path, keydir: Path, cli) -> None:
    r = cli("ccs", "keygen", "--output", tmp_path / "k")
    assert r.code == 0 and (tmp_path / "k").stat().st_mode & 0o777 == 0o600 and (tmp_path / "k.pub").exists()
    before = (tmp_path / "k").read_bytes()
    r = cli("ccs", "keygen", "--output", tmp_path / "k")
    assert r.code == 1 and "refusing to overwrite" in r.err
    assert (tmp_path / "k").read_bytes() == before

    d = _pkgdir(tmp_path, TOML)
    pkg = Path(cli("ccs", "build", d, "--output", tmp_path / "out").out.strip())
    size = pkg.stat().st_size
    r = cli("ccs", "sign", pkg, "--key", tmp_path / "k")
    assert r.code == 0, r.err
    assert pkg.stat().st_size == size
    assert cli("ccs", "verify", pkg, "--trust", tmp_path / "k.pub").code == 0
    r = cli("ccs", "verify", pkg, "--trust", keydir / "default.pub")
    assert r.code == 1 and "untrusted key" in r.err


def test_verify_reports_missing_file(tmp_path: Path, cli) -> None:
    r = cli("ccs", "verify", tmp_path / "nope.ccs")
    assert r.code == 1 and "package not found" in r.err


def test_build_into_a_full_disk_says_so_and_leaves_nothing(tmp_path: Path, keydir: Path, cli) -> None:
    """Worker processes run out of space writing their spools: one line, and the output directory
    holds no scratch and no partial package."""
    d = _pkgdir(tmp_path, TOML)
    for n in range(6):  # 24 MiB that do not compress: packed by worker processes
        (d / f"root/usr/share/blob{n}").parent.mkdir(parents=True, exist_ok=True)
        (d / f"root/usr/share/blob{n}").write_bytes(os.urandom(4 << 20))
    out = tmp_path / "small-fs"
    out.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(out)], check=True)
    try:
        r = cli("ccs", "build", d, "--output", out, "--no-split-debug")
        assert r.code == 1
        lines = r.err.strip().splitlines()
        assert lines[-1].startswith(f"conary: error: {out}: no space left for the package (hint: ")
        assert "free some space" in lines[-1]
        assert "Traceback" not in r.err
        assert os.listdir(out) == []
    finally:
        subprocess.run(["umount", "-l", str(out)], check=True)


def test_build_shows_progress_on_a_terminal(tmp_path: Path, keydir: Path, conary_bin) -> None:
    import pty
    import shutil
    import sys
    import threading

    d = _pkgdir(tmp_path, TOML)
    (d / "root/usr/share").mkdir(parents=True)
    (d / "root/usr/share/blob").write_bytes(os.urandom(2 << 20))
    exe = shutil.which("conary") or str(Path(sys.executable).with_name("conary"))
    main, terminal = pty.openpty()
    shown = bytearray()

    def drain() -> None:
        while True:
            try:
                block = os.read(main, 65536)
            except OSError:  # EIO: the terminal's other end is closed
                return
            if not block:
                return
            shown.extend(block)

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        r = subprocess.run(
            [exe, "ccs", "build", str(d), "--output", str(tmp_path / "out")],
            stdout=subprocess.PIPE, stderr=terminal, text=True,
        )  # fmt: skip
    finally:
        os.close(terminal)
        reader.join()
        os.close(main)
    assert r.returncode == 0
    assert Path(r.stdout.strip()).exists()
    assert b"reading" in shown and b"compressing" in shown
    r = conary_bin("ccs", "build", d, "--output", tmp_path / "out2")  # a pipe: no bar
    assert r.returncode == 0 and "reading" not in r.stderr
