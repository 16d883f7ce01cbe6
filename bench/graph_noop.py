"""A no-op graph build (every checkpoint present) against bare doit over the same tasks.

Two trees:
- real: the recipes of a directory (default recipes/lfs when present, else the recipes in
  recipes/ written again under 80 package names), at least 80 Conary-format recipes;
- synthetic: N generated recipes (default 5,000), each depending on up to three earlier ones.

Each tree's store is filled first as if every package had been built: keys are computed by
conary.graph itself in dependency order and one small package file stands for every build
(no cook runs: what is measured is deciding that nothing needs to be done).

A (conary): `conary.graph.build()` of the tree as a no-op run after a complete one: the snapshot of
the last run matches (every recipe file and seed package stat'ed), each key's checkpoint is read
and each package checked in place.
A' (conary, full path): the same without the snapshot (as after a change elsewhere in the tree):
recipes from the store's recipe cache, the graph resolved, every key computed and looked up.
B (baseline): bare doit over the same tasks and edges, each up to date (`uptodate=[True]`),
with its dependency file on disk.

Runs alternate A A' B after one warm-up; medians and the ratios A/B and A'/B are printed.
Goals: under 0.5 s for the real tree, under 1.5 s for 5,000 recipes, and at most 1.5x bare doit.

    python bench/graph_noop.py [DIR] [--count 5000] [--runs 5]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import re
import statistics
import sys
import tempfile
import time
import tomllib
from pathlib import Path

from doit.cmd_base import TaskLoader2
from doit.doit_cmd import DoitMain
from doit.task import Task

from conary.ccs import generate_keypair
from conary.graph import BuildRequest, Checkpoint, CheckpointStore, Session, build
from conary.graph.store import kept_package

ROOT = Path(__file__).resolve().parent.parent


def profile_break_edges() -> tuple[tuple[str, str], ...]:
    """The edges the profiles in stages/ drop to break toolchain cycles (for a tree of their recipes)."""
    edges: list[tuple[str, str]] = []
    for profile in sorted((ROOT / "stages").glob("*.toml")):
        for stage in tomllib.loads(profile.read_text()).get("stages", []):
            edges.extend((a, b) for a, b in stage.get("break_edges", []))
    return tuple(edges)


def real_tree(directory: Path | None, scratch: Path) -> Path:
    if directory is not None:
        return directory
    lfs = ROOT / "recipes" / "lfs"
    if lfs.is_dir():
        return lfs
    # The shipped recipes written again under 80 names: real recipe text, real validation.
    out = scratch / "real"
    out.mkdir()
    templates = sorted((ROOT / "recipes").glob("*.recipe.toml"))
    for i in range(80):
        text = templates[i % len(templates)].read_text()
        name = re.search(r'^name = "([^"]+)"', text, re.M)
        assert name is not None
        new = f"{name.group(1)}{i}"
        text = text.replace(f'name = "{name.group(1)}"', f'name = "{new}"', 1)
        # Requirements name the earlier copies, so the tree has edges like a distro's.
        text = re.sub(r"^requires = .*$", "", text, flags=re.M)
        deps = [f"{templates[j % len(templates)].name.split('.')[0]}{j}" for j in range(max(0, i - 3), i)]
        text = text.replace("[build]\n", f"[build]\nrequires = {deps!r}\n".replace("'", '"'), 1)
        (out / f"{new}.recipe.toml").write_text(text)
    return out


SYNTHETIC = """[package]
name = "{name}"
version = "1.{i}"
summary = "synthetic package {i}"
license = "MIT"

[source]
archive = "https://example.invalid/{name}-1.{i}.tar.gz"
checksum = "sha256:{checksum}"

[build]
requires = [{requires}]
configure = "./configure --prefix=/usr"
make = "make -j%(jobs)s"
install = "make install DESTDIR=%(destdir)s"
"""


def synthetic_tree(scratch: Path, count: int) -> Path:
    out = scratch / "synthetic"
    out.mkdir()
    rng = random.Random(5000)
    for i in range(count):
        name = f"pkg{i:05d}"
        deps = sorted({f"pkg{rng.randrange(i):05d}" for _ in range(rng.randint(0, 3))}) if i else []
        text = SYNTHETIC.format(
            name=name,
            i=i,
            checksum=hashlib.sha256(name.encode()).hexdigest(),
            requires=", ".join(f'"{d}"' for d in deps),
        )
        (out / f"{name}.recipe.toml").write_text(text)
    return out


def fill_store(request: BuildRequest) -> Session:
    """Checkpoints for every package, as a completed build leaves them (one transaction)."""
    session = Session(request)
    stand_in = Path(request.state) / "stand-in.ccs"
    stand_in.write_bytes(b"a package stands here\n")
    Path(request.output).mkdir(parents=True, exist_ok=True)
    kept_dir = kept_package(Path(request.state), "x").parent
    kept_dir.mkdir(parents=True, exist_ok=True)
    store = session.store
    with store.transaction() as db:
        for name in session.graph.order:
            key = session.key(name)
            assert key is not None
            node = session.graph.nodes[name]
            package = f"{name}-{node.version}-{node.release}.x86_64.ccs"
            kept = kept_package(Path(request.state), key.digest)
            kept.hardlink_to(stand_in)
            (Path(request.output) / package).hardlink_to(stand_in)
            db.execute(
                "INSERT INTO checkpoints VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                tuple(
                    vars(
                        Checkpoint(
                            key.digest,
                            name,
                            node.version,
                            node.release,
                            package,
                            "",
                            "sha256:" + hashlib.sha256(name.encode()).hexdigest(),
                            key.text,
                            1.0,
                            "",
                            0.0,
                        )
                    ).values()
                ),
            )
            db.execute("INSERT OR REPLACE INTO latest VALUES (?, ?)", (name, key.digest))
    return session


class _Loader(TaskLoader2):
    def __init__(self, tasks: list[Task], dep_file: Path) -> None:
        super().__init__()
        self.tasks = tasks
        self.dep_file = dep_file

    def setup(self, opt_values: object) -> None: ...

    def load_doit_config(self) -> dict[str, object]:
        return {"dep_file": str(self.dep_file), "backend": "sqlite3", "verbosity": 0, "reporter": "zero"}

    def load_tasks(self, cmd: object, pos_args: object) -> list[Task]:
        return self.tasks


def bare_doit(edges: dict[str, tuple[str, ...]], dep_file: Path) -> float:
    start = time.perf_counter()
    tasks = [
        Task(name, actions=[(lambda: True, [], {})], task_dep=list(deps), uptodate=[True])
        for name, deps in edges.items()
    ]
    code = DoitMain(_Loader(tasks, dep_file), config_filenames=()).run(["run"])
    assert code == 0
    return time.perf_counter() - start


def conary_noop(request: BuildRequest, snapshot: bool = True) -> float:
    if not snapshot:
        with CheckpointStore(Path(request.state)) as store, store.transaction() as db:
            db.execute("DELETE FROM meta WHERE name LIKE 'snapshot:%'")
    start = time.perf_counter()
    report = build(request)
    elapsed = time.perf_counter() - start
    assert report.count("cached") == len(report.results), "the no-op run would cook something"
    return elapsed


def measure(label: str, tree: Path, scratch: Path, runs: int) -> None:
    """Fill a store for TREE, then time A (conary) and B (bare doit) alternately."""
    key = scratch / f"{label}.key"
    generate_keypair(key)
    request = BuildRequest(
        recipes=(tree,),
        output=scratch / f"{label}-repo",
        state=scratch / f"{label}-state",
        host_seed=True,
        toolchain="host",
        signing_key=key,
        break_edges=profile_break_edges(),
    )
    session = fill_store(request)
    edges = {name: session.graph.nodes[name].deps for name in session.graph.order}
    session.store.close()
    dep_file = scratch / f"{label}-doit.db"
    a_times, full_times, b_times = [], [], []
    conary_noop(request, snapshot=False), bare_doit(edges, dep_file)  # warm-up
    for _ in range(runs):
        full_times.append(conary_noop(request, snapshot=False))  # leaves the snapshot for A
        a_times.append(conary_noop(request))
        b_times.append(bare_doit(edges, dep_file))
    a, full, b = statistics.median(a_times), statistics.median(full_times), statistics.median(b_times)
    print(
        f"{label:<10} {len(edges):>5} recipes  conary no-op {a:.3f} s ({a / b:.2f}x)  "
        f"full path {full:.3f} s ({full / b:.2f}x)  bare doit {b:.3f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("directory", nargs="?", type=Path, help="the real recipe tree (default: recipes/lfs)")
    parser.add_argument("--count", type=int, default=5000, help="recipes in the synthetic tree")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="graph-noop.") as tmp:
        scratch = Path(tmp)
        measure("real", real_tree(args.directory, scratch), scratch, args.runs)
        measure("synthetic", synthetic_tree(scratch, args.count), scratch, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
