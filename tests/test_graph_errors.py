"""A graph that cannot be built is one line naming the recipes: a cycle, a missing dependency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conary.cli.main import main
from conary.graph import BuildRequest, GraphError, load_graph
from helpers_graph import write_graph_recipe


def req(tree: Path, tmp: Path, host: bool = False) -> BuildRequest:
    return BuildRequest(recipes=(tree,), output=tmp / "repo", state=tmp / "state", host_seed=host)


def test_a_cycle_is_reported_as_its_exact_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    write_graph_recipe(tree, "aa", ("cc",))
    write_graph_recipe(tree, "bb", ("aa",))
    write_graph_recipe(tree, "cc", ("bb",))
    write_graph_recipe(tree, "dd", ())
    with pytest.raises(GraphError, match=r"dependency cycle: aa -> cc -> bb -> aa"):
        load_graph(req(tree, tmp_path))
    assert main(["graph", "show", str(tree)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "aa -> cc -> bb -> aa" in err[0]


def test_a_named_edge_breaks_a_cycle(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    write_graph_recipe(tree, "gcc", ("libc",))
    write_graph_recipe(tree, "libc", ("gcc",))
    request = BuildRequest(
        recipes=(tree,), output=tmp_path / "r", state=tmp_path / "s", break_edges=(("gcc", "libc"),)
    )
    assert load_graph(request).order == ("gcc", "libc")


def test_a_missing_dependency_names_the_recipe_and_the_dependency(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    write_graph_recipe(tree, "aa", ())
    write_graph_recipe(tree, "bb", ("aa", "no-such-lib"))
    with pytest.raises(GraphError) as info:
        load_graph(req(tree, tmp_path))
    assert "'no-such-lib' of bb" in info.value.what
    assert main(["build", str(tree), "--output", str(tmp_path / "repo")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bb.recipe.toml: build.requires" in err[0] and "no-such-lib" in err[0]


def test_the_host_seed_provides_the_hosts_packages(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    write_graph_recipe(tree, "aa", ("libc6",))
    graph = load_graph(req(tree, tmp_path, host=True))
    assert graph.nodes["aa"].seed_deps == ("libc6",)
    with pytest.raises(GraphError):
        load_graph(req(tree, tmp_path / "x", host=False))


def test_order_is_critical_path_first_then_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for name, deps in {"zz": (), "aa": (), "mid": ("zz",), "end": ("mid",), "solo": ()}.items():
        write_graph_recipe(tree, name, deps)
    assert load_graph(req(tree, tmp_path)).order == ("zz", "mid", "aa", "end", "solo")
    assert main(["graph", "show", str(tree), "--dot"]) == 0
    assert '"end" -> "mid";' in capsys.readouterr().out
    assert main(["graph", "show", str(tree), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["order"] == ["zz", "mid", "aa", "end", "solo"]
    assert shown["edges"] == [["end", "mid"], ["mid", "zz"]]
