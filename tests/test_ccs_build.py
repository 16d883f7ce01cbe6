"""Building packages from real trees: components, dependencies, debug split, determinism."""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import shutil
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from conary import fsutil
from conary.ccs import (
    CcsInputError,
    PackageMeta,
    build_package,
    classify_component,
    generate_keypair,
    load_signing_key,
    open_package,
)
from conary.ccs import build as ccs_build
from conary.ccs import scheduler as ccs_scheduler
from conary.ccs.debuginfo import TreeItem
from conary.ccs.deps import NO_FACTS
from conary.ccs.errors import CcsError
from conary.ccs.keys import new_signing_key
from conary.ccs.packer import ObjectRun, PackedFile, SpooledRun
from helpers_ccs import LIBZ, ZLIB_VERSION, make_elf_tree

KEY = new_signing_key()
META = PackageMeta("zlib", ZLIB_VERSION, "1", "x86_64", summary="compression library")


@pytest.fixture(scope="module")
def elf_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_elf_tree(tmp_path_factory.mktemp("elf") / "root")


@pytest.fixture(scope="module")
def elf_package(elf_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_package(
        elf_tree,
        META,
        output_dir=tmp_path_factory.mktemp("out"),
        signing_key=KEY,
        source_date_epoch=1700000000,
    )


def test_inspect_json_shows_sonames_libc_pkgconfig_and_components(elf_package: Path, cli) -> None:
    r = cli("ccs", "inspect", elf_package, "--json")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert (data["name"], data["version"], data["release"], data["arch"]) == (
        "zlib",
        ZLIB_VERSION,
        "1",
        "x86_64",
    )
    provides = {(d["kind"], d["name"]): d["version"] for d in data["provides"]}
    requires = {(d["kind"], d["name"]) for d in data["requires"]}
    assert ("soname", "libz.so.1(x86-64)") in provides
    assert provides[("pkgconfig", "zlib")] == ZLIB_VERSION
    assert provides[("package", "zlib")] == f"{ZLIB_VERSION}-1"
    assert ("binary", "zhello") in provides
    assert ("soname", "libc.so.6(x86-64)") in requires  # NEEDED of libz and zhello
    assert ("soname", "libz.so.1(x86-64)") not in requires  # zhello's NEEDED, satisfied by the package
    assert ("interpreter", "/lib64/ld-linux-x86-64.so.2") in requires
    assert ("file", "/usr/bin/python3") in requires  # zscript's #! line
    assert ("pkgconfig", "libpng") in requires and ("pkgconfig", "libzstd") in requires
    assert ("pkgconfig", "zlib") not in requires  # zhello.pc requires it, the package provides it

    component = {f["path"]: f["component"] for f in data["files"]}
    assert component[f"usr/lib/{LIBZ.name}"] == "lib"
    assert component["usr/lib/libz.so.1"] == "lib"
    assert component["usr/lib/libz.so"] == "devel"  # unversioned symlink for the linker
    assert component["usr/lib/libz.a"] == "devel"
    assert component["usr/include/zlib.h"] == "devel"
    assert component["usr/lib/pkgconfig/zlib.pc"] == "devel"
    assert component["usr/share/doc/zlib/README"] == "doc"
    assert component["usr/share/man/man3/zlib.3"] == "doc"
    assert component["etc/zhello.conf"] == "config"
    assert component["usr/bin/zhello"] == "runtime"
    debug = [p for p in component if p.startswith("usr/lib/debug/.build-id/") and p.endswith(".debug")]
    assert debug and all(component[p] == "debuginfo" for p in debug)

    comps = data["components"]
    assert {n: c["default"] for n, c in comps.items()} == {
        "config": True,
        "debuginfo": False,
        "devel": False,
        "doc": False,
        "lib": True,
        "runtime": True,
    }
    assert comps["lib"]["files"] == 2 and comps["lib"]["size"] == LIBZ.stat().st_size
    assert all(len(c["root"]) == 64 for c in comps.values()) and len(data["content_root"]) == 64
    entry = next(f for f in data["files"] if f["path"] == "usr/bin/zscript")
    assert entry["mode"] == 0o755 and entry["type"] == "file" and len(entry["sha256"]) == 64


def test_debug_split_strips_binary_and_links_debug_file(
    elf_package: Path, elf_tree: Path, tmp_path: Path
) -> None:
    original = (elf_tree / "usr/bin/zhello").read_bytes()
    with open_package(elf_package) as pkg:
        pkg.extract(tmp_path / "x", ["runtime", "debuginfo"])
        debug = [f for f in pkg.manifest.files if f.component == "debuginfo" and f.type == "file"]
    binary = tmp_path / "x/usr/bin/zhello"
    assert (elf_tree / "usr/bin/zhello").read_bytes() == original  # caller's tree untouched
    assert binary.stat().st_size < len(original)
    sections = subprocess.run(
        ["objdump", "-h", str(binary)], capture_output=True, text=True, check=True
    ).stdout
    assert ".gnu_debuglink" in sections and ".debug_info" not in sections
    debug_file = tmp_path / "x" / debug[0].path
    debug_sections = subprocess.run(["objdump", "-h", str(debug_file)], capture_output=True, text=True).stdout
    assert ".debug_info" in debug_sections
    assert (
        subprocess.run([str(binary)], capture_output=True, text=True, env={"LD_LIBRARY_PATH": ""}).returncode
        == 0
    )


def test_no_split_debug_keeps_binary(elf_tree: Path, tmp_path: Path) -> None:
    path = build_package(elf_tree, META, output_dir=tmp_path, signing_key=KEY, split_debug=False)
    with open_package(path) as pkg:
        assert "debuginfo" not in {c.name for c in pkg.manifest.components}
        entry = next(f for f in pkg.manifest.files if f.path == "usr/bin/zhello")
        assert pkg.read_file(entry) == (elf_tree / "usr/bin/zhello").read_bytes()


def test_same_tree_twice_is_byte_identical(tmp_path: Path) -> None:
    steps = ["lib", "links", "static", "bin", "script", "headers", "pc", "pc2", "doc", "etc", "big", "empty"]
    reverse = list(reversed(steps))
    first = make_elf_tree(tmp_path / "a-some-path" / "root", order=steps)
    second = make_elf_tree(tmp_path / "b" / "deeper" / "elsewhere", order=reverse)
    rng = random.Random(7)
    for dirpath, _dirs, files in os.walk(second):
        for name in files:
            t = rng.randint(1_000_000, 2_000_000_000)
            os.utime(os.path.join(dirpath, name), (t, t), follow_symlinks=False)
    out_a, out_b = tmp_path / "out-a", tmp_path / "out-b"
    a = build_package(first, META, output_dir=out_a, signing_key=KEY, source_date_epoch=1234567890)
    b = build_package(
        second, META, output_dir=out_b, signing_key=KEY, source_date_epoch=1234567890, workers=1
    )
    assert a.name == b.name == f"zlib-{ZLIB_VERSION}-1.x86_64.ccs"
    assert a.read_bytes() == b.read_bytes()
    c = build_package(first, META, output_dir=tmp_path / "out-c", signing_key=KEY, source_date_epoch=1)
    assert c.read_bytes() != a.read_bytes()


@pytest.mark.parametrize("thread_alive", [False, True], ids=["worker-processes", "caller-has-threads"])
def test_worker_processes_and_segmented_files_give_the_same_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, thread_alive: bool
) -> None:
    """Packed in this process, or by three worker processes with every file over 4 KiB (ELF files
    whose debug info is split off among them) cut by one worker and hashed in segments by all:
    not a byte of the package may differ. A caller running another
    thread gets no worker processes (forking could copy a held lock into them)."""
    tree = make_elf_tree(tmp_path / "root")
    rng = random.Random(11)
    big = rng.randbytes(700_000) + b"\0" * 900_000 + rng.randbytes(700_000)  # repeated zero chunks
    (tree / "usr/share/zhello/big.bin").write_bytes(big)
    (tree / "usr/share/zhello/copy.bin").write_bytes(big[:800_000])  # chunks shared with big.bin
    shutil.copy(tree / "usr/bin/zhello", tree / "usr/bin/zhello-copy")  # same build-id, one debug file
    plain = build_package(
        tree, META, output_dir=tmp_path / "plain", signing_key=KEY, source_date_epoch=9, workers=1
    )
    monkeypatch.setattr(ccs_build, "SPLIT_FILE_BYTES", 4096)  # the ELF files too, split or not
    monkeypatch.setattr(ccs_build, "SEGMENT_BYTES", 64 * 1024)
    monkeypatch.setattr(ccs_build, "EARLY_FILE_BYTES", 1024)  # compressed in the compress pass
    monkeypatch.setattr(ccs_scheduler, "BIG_FILE_BYTES", 4096)
    monkeypatch.setattr(ccs_scheduler, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(ccs_scheduler, "BATCH_FILES", 2)
    pools: list[object] = []
    real_pool = ccs_scheduler.ProcessPoolExecutor

    def counting_pool(*args: object, **kwargs: object) -> object:
        pools.append(kwargs["mp_context"])
        return real_pool(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ccs_scheduler, "ProcessPoolExecutor", counting_pool)
    out = tmp_path / "parallel"
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    if thread_alive:
        other.start()
    try:
        started = multiprocessing.active_children()
        parallel = build_package(tree, META, output_dir=out, signing_key=KEY, source_date_epoch=9, workers=3)
    finally:
        stop.set()
        if thread_alive:
            other.join()
    assert parallel.read_bytes() == plain.read_bytes()
    assert len(pools) == (0 if thread_alive else 1)
    assert os.listdir(out) == [parallel.name]  # the spools went with the work directory
    assert not set(multiprocessing.active_children()) - set(started)  # the workers are gone
    with open_package(parallel) as pkg:
        entry = next(f for f in pkg.manifest.files if f.path == "usr/share/zhello/big.bin")
        assert len(entry.chunks) > 10
        assert pkg.read_file(entry) == big
        debug = [f.path for f in pkg.manifest.files if f.component == "debuginfo" and f.type == "file"]
        assert len(debug) == 1


def test_packs_in_process_where_worker_processes_cannot_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tree = make_elf_tree(tmp_path / "root")
    (tree / "usr/share/zhello/big.bin").write_bytes(random.Random(5).randbytes(600_000))
    plain = build_package(tree, META, output_dir=tmp_path / "plain", signing_key=KEY, workers=1)

    def no_semaphores(*args: object, **kwargs: object) -> None:
        raise ImportError("This platform lacks a functioning sem_open implementation")

    monkeypatch.setattr(ccs_scheduler, "PARALLEL_MIN_BYTES", 0)
    monkeypatch.setattr(ccs_scheduler, "ProcessPoolExecutor", no_semaphores)
    fallback = build_package(tree, META, output_dir=tmp_path / "fallback", signing_key=KEY, workers=2)
    assert fallback.read_bytes() == plain.read_bytes()


def test_worker_errors_reach_the_caller_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An error raised in a worker process arrives with its location, and leaves no output."""
    tree = make_elf_tree(tmp_path / "root")
    # a real binary with debug info whose .comment section claims to lie past the end of the file:
    # the dependency scan still reads it, but objcopy refuses to split it
    data = bytearray((tree / "usr/bin/zhello").read_bytes())
    with open(tree / "usr/bin/zhello", "rb") as handle:
        elf = ELFFile(handle)
        index = next(i for i, s in enumerate(elf.iter_sections()) if s.name == ".comment")
        header = elf["e_shoff"] + index * elf["e_shentsize"]
    struct.pack_into("<Q", data, header + 24, len(data) * 4)  # Elf64_Shdr.sh_offset
    (tree / "usr/bin/broken").write_bytes(data)
    (tree / "usr/bin/broken").chmod(0o755)
    for n in range(4):
        (tree / f"usr/share/f{n}").write_bytes(random.Random(n).randbytes(300_000))
    monkeypatch.setattr(ccs_scheduler, "PARALLEL_MIN_BYTES", 0)
    out = tmp_path / "out"
    with pytest.raises(CcsError) as info:
        build_package(tree, META, output_dir=out, signing_key=KEY, workers=2)
    assert info.value.where == "usr/bin/broken"
    assert "objcopy failed" in info.value.what
    assert os.listdir(out) == []


def test_a_file_changed_between_survey_and_compression_fails_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A big file's objects are read twice (hashed, then compressed); a change in between must not
    slip through as an object whose bytes disagree with its id."""
    tree = tmp_path / "root"
    (tree / "usr/share/data").mkdir(parents=True)
    victim = tree / "usr/share/data/blob.bin"
    victim.write_bytes(random.Random(3).randbytes(200_000))
    surveyed = ccs_build.object_plan

    def rewrite_then_plan(files: object, early: object) -> object:
        before = victim.stat().st_mtime_ns
        victim.write_bytes(random.Random(4).randbytes(200_000))  # same size, new content
        # a later write has a later mtime; set it, since two writes within one clock tick may not
        os.utime(victim, ns=(before + 10**9, before + 10**9))
        return surveyed(files, early)  # type: ignore[arg-type]

    monkeypatch.setattr(ccs_build, "object_plan", rewrite_then_plan)
    monkeypatch.setattr(ccs_build, "EARLY_FILE_BYTES", 100_000)  # the victim is a big file
    out = tmp_path / "out"
    with pytest.raises(CcsError) as info:
        build_package(tree, META, output_dir=out, signing_key=KEY, workers=1)
    assert info.value.what == "file changed while it was being packed"
    assert info.value.where == str(victim)
    assert os.listdir(out) == []


def test_component_overrides_and_exclude(tmp_path: Path) -> None:
    tree = tmp_path / "root"
    for rel in ("usr/bin/tool", "usr/share/tool/extra.txt", "usr/share/tool/skip.log", "usr/lib/libx.so.2"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(rel)
    rules = {"doc": ["/usr/share/tool/*.txt"], "extras": ["usr/bin/**"], "exclude": ["**/*.log"]}
    path = build_package(
        tree, PackageMeta("t", "1"), output_dir=tmp_path, signing_key=KEY, component_rules=rules
    )
    with open_package(path) as pkg:
        comp = {f.path: f.component for f in pkg.manifest.files}
        defaults = {c.name: c.default for c in pkg.manifest.components}
        pkg.extract(tmp_path / "x", ["extras"])
    assert comp["usr/share/tool/extra.txt"] == "doc"
    assert comp["usr/bin/tool"] == "extras" and comp["usr/bin"] == "extras"
    assert comp["usr/lib/libx.so.2"] == "lib"
    assert "usr/share/tool/skip.log" not in comp
    assert defaults["extras"] is False
    assert sorted(p.name for p in (tmp_path / "x/usr/bin").iterdir()) == ["tool"]
    assert not (tmp_path / "x/usr/lib").exists()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("etc/ssl/openssl.cnf", "config"),
        ("usr/lib/debug/.build-id/ab/cdef.debug", "debuginfo"),
        ("usr/lib/x86_64-linux-gnu/libfoo.so.1.debug", "debuginfo"),
        ("usr/include/foo/bar.h", "devel"),
        ("usr/lib/libfoo.a", "devel"),
        ("usr/lib/x86_64-linux-gnu/pkgconfig/foo.pc", "devel"),
        ("usr/lib/cmake/Foo/FooConfig.cmake", "devel"),
        ("usr/share/aclocal/foo.m4", "devel"),
        ("usr/share/doc/foo/README", "doc"),
        ("usr/share/man/man1/foo.1.gz", "doc"),
        ("usr/share/info/foo.info", "doc"),
        ("usr/lib/libfoo.so.1.2.3", "lib"),
        ("usr/lib64/libfoo.so", "lib"),
        ("lib/x86_64-linux-gnu/libc.so.6", "lib"),
        ("usr/lib/python3/dist-packages/mod.so", "runtime"),
        ("usr/bin/foo", "runtime"),
        ("usr/share/foo/data", "runtime"),
    ],
)
def test_builtin_component_rules(path: str, expected: str) -> None:
    assert classify_component(path) == expected


def test_unversioned_so_symlink_is_devel() -> None:
    assert classify_component("usr/lib/libz.so", is_symlink=True) == "devel"
    assert classify_component("usr/lib/libz.so.1", is_symlink=True) == "lib"


def test_bad_metadata_and_special_files_are_refused(tmp_path: Path) -> None:
    tree = tmp_path / "root"
    tree.mkdir()
    with pytest.raises(CcsInputError, match="invalid name"):
        build_package(tree, PackageMeta("bad name", "1"), output_dir=tmp_path, signing_key=KEY)
    os.symlink("../../etc/passwd", tree / "escape")
    with pytest.raises(CcsInputError, match="symlink points out of the package root"):
        build_package(tree, PackageMeta("ok", "1"), output_dir=tmp_path, signing_key=KEY)
    os.unlink(tree / "escape")
    os.mkfifo(tree / "fifo")
    with pytest.raises(CcsInputError, match="unsupported file type"):
        build_package(tree, PackageMeta("ok", "1"), output_dir=tmp_path, signing_key=KEY)
    assert not list(tmp_path.glob("*.ccs"))


def test_keypair_files(tmp_path: Path) -> None:
    private, public = generate_keypair(tmp_path / "k")
    assert private.stat().st_mode & 0o777 == 0o600
    assert public.read_text().split()[2] == load_signing_key(private).key_id
    assert len(load_signing_key(private).key_id) == 16


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_reports_each_phase_up_to_its_total(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    tree = make_elf_tree(tmp_path / "root")
    for n in range(3):
        (tree / f"usr/share/zhello/blob{n}").write_bytes(random.Random(n).randbytes(400_000))
    monkeypatch.setattr(ccs_scheduler, "PARALLEL_MIN_BYTES", 0)
    calls: list[tuple[str, int, int]] = []
    build_package(
        tree, META, output_dir=tmp_path / "out", signing_key=KEY, workers=workers,
        progress=lambda phase, done, total: calls.append((phase, done, total)),
    )  # fmt: skip
    phases = [c[0] for c in calls]
    assert phases == sorted(phases, key=["survey", "compress"].index)  # survey first, then compress
    for phase in ("survey", "compress"):
        seen = [(done, total) for p, done, total in calls if p == phase]
        assert seen, phase
        dones = [d for d, _ in seen]
        assert dones == sorted(dones) and all(d <= t for d, t in seen)
        assert seen[-1][0] == seen[-1][1] > 0
    regular = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file() and not p.is_symlink())
    assert next(t for p, _, t in calls if p == "survey") == regular


def test_packing_in_process_leaves_no_file_open(tmp_path: Path) -> None:
    tree = make_elf_tree(tmp_path / "root")
    before = set(os.listdir("/proc/self/fd"))
    for n in range(3):
        build_package(tree, META, output_dir=tmp_path / f"out{n}", signing_key=KEY, workers=1)
    leaked = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in set(os.listdir("/proc/self/fd")) - before}
    leaked = {fd: path for fd, path in leaked.items() if "/proc/" not in path}
    assert leaked == {}


def test_the_plan_joins_records_that_lie_one_after_another_in_a_spool() -> None:
    """Records the survey compressed reach the package in as few copies as their places in the
    spools allow; objects still to compress come between them as runs, and an object the archive
    already has is left out."""

    def packed(path: str, chunks: tuple[str, ...], lengths: tuple[int, ...]) -> PackedFile:
        item = TreeItem(path, "file", 0o644, 0, 0, "/src/" + path, "", sum(lengths))
        return PackedFile(item, "f" * 64, chunks, lengths, "runtime", b"", b"", NO_FACTS, (0, 0, 0))

    files = [
        packed("a", ("1",), (100,)),
        packed("b", ("2",), (200,)),
        packed("c", ("3", "4", "1"), (300, 400, 100)),  # 4 is not compressed yet; 1 is in the archive
        packed("d", ("5",), (500,)),
        packed("e", ("6",), (600,)),
    ]
    early = {
        "1": ("s1", 0, 10),
        "2": ("s1", 10, 20),
        "3": ("s1", 30, 30),
        "5": ("s1", 60, 50),
        "6": ("s2", 0, 60),
    }
    assert list(ccs_build.object_plan(files, early)) == [
        SpooledRun("s1", 0, 60, 600),
        ObjectRun("/src/c", (0, 0, 0), (("4", 300, 400),)),
        SpooledRun("s1", 60, 50, 500),
        SpooledRun("s2", 0, 60, 600),
    ]


def test_a_flush_requested_while_another_runs_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leaving BackgroundSync waits for every flush requested before, even one made while the
    previous flush was still running."""
    calls: list[float] = []

    def slow_fdatasync(fd: int) -> None:
        time.sleep(0.2 if not calls else 0)
        calls.append(time.monotonic())

    monkeypatch.setattr(fsutil.os, "fdatasync", slow_fdatasync)
    with fsutil.BackgroundSync(0) as syncer:
        syncer.request()
        time.sleep(0.05)  # the first flush is running now
        last_request = time.monotonic()
        syncer.request()
    assert len(calls) == 2
    assert calls[-1] >= last_request
