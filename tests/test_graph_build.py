"""Graph builds of a tree of small real C projects (tarballs made here), over the host seed:
order, build roots made of exactly the declared dependencies, checkpoints, rebuild sets and cutoff."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conary.cli.main import main
from conary.graph import BuildRequest, CheckpointStore, Session, build, status, why
from conary.runtime import list_installed
from helpers_cook import TINY_STEPS, TINYPROJ
from helpers_graph import STEPS, TREE, write_graph_recipe, write_tree

pytestmark = pytest.mark.slow


def request(tmp: Path, tree: Path, **kw: object) -> BuildRequest:
    return BuildRequest(
        recipes=(tree,),
        output=tmp / "repo",
        state=tmp / "state",
        host_seed=True,
        toolchain="host",  # what `conary build --seed host` names
        source_cache=tmp / "sources",
        **kw,  # type: ignore[arg-type]
    )


def actions(report) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {r.name: r.action for r in report.results}


def repo_bytes(repo: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(repo.glob("*.ccs"))}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("graph")
    tree = write_tree(tmp / "tree")
    report = build(request(tmp, tree, jobs=2))
    assert actions(report) == dict.fromkeys(TREE, "built"), [(r.name, r.tail) for r in report.results]
    return tmp, tree


def test_tree_builds_in_dependency_order_with_roots_of_exactly_its_dependencies(
    built: tuple[Path, Path],
) -> None:
    tmp, tree = built
    session = Session(request(tmp, tree))
    try:
        order = session.graph.order
        for name, deps in TREE.items():
            assert all(order.index(dep) < order.index(name) for dep in deps)
            root = session.build_root(name)
            installed: set[str] = set()
            for layer in root.layers:
                installed |= {p.name for p in list_installed(layer)}
            closure = set(session.graph.runtime_closure(deps))
            assert installed == closure, name
            assert root.host_seed
    finally:
        session.store.close()
    assert sorted(p.name.split("-1.0")[0] for p in (tmp / "repo").glob("*.ccs")) == sorted(TREE)


def test_a_second_run_builds_nothing(built: tuple[Path, Path]) -> None:
    tmp, tree = built
    cooks = len(CheckpointStore(tmp / "state").cooks())
    report = build(request(tmp, tree, jobs=2))
    assert actions(report) == dict.fromkeys(TREE, "cached")
    assert len(CheckpointStore(tmp / "state").cooks()) == cooks


def test_a_package_removed_from_the_repository_is_put_back(built: tuple[Path, Path], tmp_path: Path) -> None:
    tmp0, tree = built
    shutil.copytree(tmp0, tmp_path, dirs_exist_ok=True)
    before = repo_bytes(tmp_path / "repo")
    victim = next(name for name in before if name.startswith("top-"))
    (tmp_path / "repo" / victim).unlink()
    (tmp_path / "repo" / next(name for name in before if name.startswith("base-"))).write_bytes(b"damaged")
    cooks = len(CheckpointStore(tmp_path / "state").cooks())
    # The fixture's own recipes and a copy of its state: the no-op fast path (the snapshot) runs.
    report = build(request(tmp_path, tree))
    assert actions(report) == dict.fromkeys(TREE, "cached")
    assert repo_bytes(tmp_path / "repo") == before
    assert len(CheckpointStore(tmp_path / "state").cooks()) == cooks


def test_dry_run_and_status_say_what_would_be_cooked(built: tuple[Path, Path], tmp_path: Path) -> None:
    tmp0, _ = built
    shutil.copytree(tmp0, tmp_path, dirs_exist_ok=True)
    tree = tmp_path / "tree"
    write_graph_recipe(
        tree, "zmath", TREE["zmath"], steps={**STEPS, "configure": "./configure --greeting=dry"}
    )
    report = build(request(tmp_path, tree), dry_run=True)
    assert actions(report) == {**dict.fromkeys(TREE, "cached"), "zmath": "pending", "zcalc": "pending"}
    assert {r.name: r.key for r in report.results}["zcalc"] == ""  # needs zmath's new output first
    states = {s.name: s.state for s in status(request(tmp_path, tree))}
    assert states == {**dict.fromkeys(TREE, "done"), "zmath": "pending", "zcalc": "pending"}


def test_changes_rebuild_exactly_what_they_should(built: tuple[Path, Path], tmp_path: Path) -> None:
    tmp0, _ = built
    tmp = tmp_path
    shutil.copytree(tmp0, tmp, dirs_exist_ok=True)
    tree = tmp / "tree"
    before = repo_bytes(tmp / "repo")

    # A comment: nothing rebuilds.
    write_graph_recipe(tree, "left", TREE["left"], comment="only a comment")
    assert actions(build(request(tmp, tree))) == dict.fromkeys(TREE, "cached")

    # The check step: left is cooked again, its output is the same, its dependents stay cached.
    steps = {
        "configure": "./configure --prefix=/usr",
        "make": "make",
        "check": "make check && true",
        "install": "make install",
    }
    write_graph_recipe(tree, "left", TREE["left"], steps=steps)
    report = build(request(tmp, tree))
    assert actions(report) == {**dict.fromkeys(TREE, "cached"), "left": "cutoff"}
    explained = why(request(tmp, tree), "left")
    assert explained.unchanged

    # The configure line changes left's greeting, which is compiled into everything built on left:
    # left and its dependents rebuild, nothing else.
    steps["configure"] = "./configure --prefix=/usr --greeting=hi"
    write_graph_recipe(tree, "left", TREE["left"], steps=steps)
    cooks = len(CheckpointStore(tmp / "state").cooks())
    report = build(request(tmp, tree, jobs=2))
    assert actions(report) == {
        **dict.fromkeys(TREE, "cached"),
        "left": "built",
        "top": "built",
        "app": "built",
    }
    assert sorted(name for _, name, _ in CheckpointStore(tmp / "state").cooks()[cooks:]) == [
        "app",
        "left",
        "top",
    ]
    after = repo_bytes(tmp / "repo")
    changed = {name.split("-1.0")[0] for name in before if before[name] != after[name]}
    assert changed == {"left", "top", "app"}


def test_why_names_the_changed_input(
    built: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp0, _ = built
    shutil.copytree(tmp0, tmp_path, dirs_exist_ok=True)
    tree = tmp_path / "tree"
    steps = {
        "configure": "./configure --prefix=/usr --greeting=why",
        "make": "make",
        "install": "make install",
    }
    write_graph_recipe(tree, "base", (), steps=steps)
    code = main(["build", "why", "zmath", str(tree), "--state", str(tmp_path / "state")])
    out = capsys.readouterr().out
    assert code == 0
    assert "- dep:base:" in out and "+ dep:base:(not built)" in out
    code = main(["build", "why", "base", str(tree), "--state", str(tmp_path / "state")])
    out = capsys.readouterr().out
    assert '+ recipe:build.configure="./configure --prefix=/usr --greeting=why"' in out
    assert "- recipe:build.check=" in out


def test_cli_json_and_package_bytes_do_not_depend_on_jobs(
    built: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tmp0, tree = built
    code = main(
        [
            "build",
            str(tree),
            "--output",
            str(tmp_path / "repo"),
            "--state",
            str(tmp_path / "state"),
            "--seed",
            "host",
            "-j",
            "1",
            "--source-cache",
            str(tmp0 / "sources"),
            "--json",
        ]
    )
    assert code == 0
    results = json.loads(capsys.readouterr().out)
    assert [r["action"] for r in results] == ["built"] * len(TREE)
    assert set(results[0]) == {"name", "version", "action", "key", "output_digest", "seconds", "log"}
    digests = {r.name: r.output_digest for r in build(request(tmp0, tree)).results}
    assert {r["name"]: r["output_digest"] for r in results} == digests
    # The same keys (the CLI names the host toolchain as the library calls here do): the same bytes.
    assert repo_bytes(tmp_path / "repo") == repo_bytes(tmp0 / "repo")


def test_seed_packages_form_the_base_layer_of_every_root(built: tuple[Path, Path], tmp_path: Path) -> None:
    tmp0, _ = built
    seed = tmp_path / "seed"
    seed.mkdir()
    for package in (tmp0 / "repo").glob("base-*.ccs"):
        shutil.copy(package, seed / package.name)
    tree = tmp_path / "tree"
    tree.mkdir()
    write_graph_recipe(tree, "left", ("base",))  # base is not in the set: the seed provides it
    req = request(tmp_path, tree, seed=(seed,))
    report = build(req)
    assert actions(report) == {"left": "built"}
    session = Session(req)
    try:
        root = session.build_root("left")
        assert len(root.layers) == 1  # no dependency layer: only the stage's base
        assert [p.name for p in list_installed(root.layers[0])] == ["base"]
        key = session.key("left")
        assert key is not None and any(line.startswith("base:base:sha256:") for line in key.text.splitlines())
    finally:
        session.store.close()
    # The seed package's digest is read from the store's cache now; the key is the same.
    assert actions(build(req)) == {"left": "cached"}


def test_a_local_source_tree_is_part_of_the_key(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    shutil.copytree(TINYPROJ, tree / "tinysrc")
    lines = [
        "[package]",
        'name = "tinylocal"',
        'version = "1.0"',
        'summary = "s"',
        'license = "MIT"',
        "",
        "[source]",
        'path = "tinysrc"',
        "",
        "[build]",
    ]
    lines += [f"{step} = '{script}'" for step, script in TINY_STEPS.items()]
    (tree / "tinylocal.recipe.toml").write_text("\n".join(lines) + "\n")
    req = request(tmp_path, tree)
    assert actions(build(req)) == {"tinylocal": "built"}
    assert actions(build(req)) == {"tinylocal": "cached"}  # the no-op snapshot, inputs unchanged
    assert actions(build(req)) == {"tinylocal": "cached"}
    source = tree / "tinysrc" / "tiny.c"
    source.write_text(source.read_text() + "/* a comment */\n")
    cooks = len(CheckpointStore(tmp_path / "state").cooks())
    assert actions(build(req))["tinylocal"] in ("built", "cutoff")
    assert len(CheckpointStore(tmp_path / "state").cooks()) == cooks + 1
    (tree / "tinysrc" / "NEWS").write_text("a new file\n")
    assert actions(build(req))["tinylocal"] in ("built", "cutoff")


def test_a_library_used_but_not_declared_fails_to_build(built: tuple[Path, Path], tmp_path: Path) -> None:
    tmp0, _ = built
    shutil.copytree(tmp0, tmp_path, dirs_exist_ok=True)
    tree = tmp_path / "tree"
    write_graph_recipe(tree, "sneaky", (), uses=(), link="-lbase")
    write_graph_recipe(tree, "victim", ("sneaky",))
    write_graph_recipe(tree, "bystander", ("base",))
    report = build(request(tmp_path, tree, keep_going=True))
    results = {r.name: r for r in report.results}
    assert results["sneaky"].action == "failed"
    assert any("lbase" in line for line in results["sneaky"].tail)
    assert Path(results["sneaky"].log).is_file()
    assert results["victim"].action == "blocked"
    assert results["bystander"].action == "built"  # --keep-going: what does not need sneaky
    assert not report.ok
