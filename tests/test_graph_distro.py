"""A graph build of the shipped hello, zlib and xz recipes over the host seed is reproducible:
two builds from empty stores give byte-identical packages."""

from __future__ import annotations

from pathlib import Path

import pytest

from conary.ccs import generate_keypair
from conary.distro_tree import tree_dir
from conary.graph import BuildRequest, build

RECIPES = tuple(tree_dir("recipes") / f"{name}.recipe.toml" for name in ("hello", "zlib", "xz"))


@pytest.mark.network
@pytest.mark.slow
def test_hello_zlib_and_xz_build_to_the_same_bytes_twice(
    tmp_path: Path, shared_source_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    key = tmp_path / "key"
    generate_keypair(key)
    packages = []
    for run in ("one", "two"):
        report = build(
            BuildRequest(
                recipes=RECIPES,
                output=tmp_path / run / "repo",
                state=tmp_path / run / "state",
                host_seed=True,
                toolchain="host",
                jobs=2,
                source_cache=shared_source_cache,
                signing_key=key,
            )
        )
        assert {r.name: r.action for r in report.results} == dict.fromkeys(
            ("hello", "xz", "zlib"), "built"
        ), [r.tail for r in report.results]
        packages.append({p.name: p.read_bytes() for p in sorted((tmp_path / run / "repo").glob("*.ccs"))})
    assert sorted(packages[0]) == [
        "hello-2.10-1.x86_64.ccs",
        "xz-5.4.1-1.x86_64.ccs",
        "zlib-1.2.13-1.x86_64.ccs",
    ]
    assert packages[0] == packages[1]
