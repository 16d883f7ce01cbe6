"""GNU hello 2.10 from its upstream tarball (via Debian's source archive), cooked hermetically."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conary.distro_tree import tree_dir

HELLO = tree_dir("recipes") / "hello.recipe.toml"
HELLO_SHA256 = "sha256:31e066137a962676e89f69d1b65382de95a7ef7d914b8cb956f41ea72e0f516b"


@pytest.mark.network
@pytest.mark.slow
def test_hello_cooks_runs_and_is_reproducible(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from conary.ccs import open_package
    from conary.fetch import default_cache_dir

    monkeypatch.setenv("CONARY_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    # The shared cache, so CI's `cook --fetch-only` (and earlier runs) spare the network.
    cache = default_cache_dir()
    r = cli("cook", "--fetch-only", "--source-cache", cache, HELLO)
    assert r.code == 0, r.err
    assert r.out.split()[0] == HELLO_SHA256

    runs = []
    for name in ("one", "two"):
        r = cli("cook", "--output", tmp_path / name, "--source-cache", cache, "--offline", HELLO)
        assert r.code == 0, r.err
        (path,) = (tmp_path / name).glob("*.ccs")
        runs.append(path)
    assert runs[0].name == "hello-2.10-1.x86_64.ccs"
    assert runs[0].read_bytes() == runs[1].read_bytes()

    pkg = open_package(runs[0])
    assert pkg.manifest.provenance["sources"][0]["checksum"] == HELLO_SHA256
    root = tmp_path / "root"
    pkg.extract(root)
    out = subprocess.run([root / "usr/bin/hello"], capture_output=True, text=True, check=True, env={})
    assert out.stdout == "Hello, world!\n"
    components = {f.path: f.component for f in pkg.manifest.files}
    assert components["usr/bin/hello"] == "runtime"
    assert components["usr/share/man/man1/hello.1"] == "doc"
