"""`conary import deb`: .deb files built here by dpkg-deb (and by hand, for what dpkg-deb will not
write) convert into CCS packages whose files equal what `dpkg-deb -x` extracts."""

from __future__ import annotations

import lzma
import os
import tarfile
from pathlib import Path

import pytest

from conary.ccs import Dependency, generate_keypair, open_package
from conary.debian import DebFile, import_deb, split_version
from conary.debian.errors import DebFormatError
from conary.debian.relations import parse_relations, provides, requirements
from helpers_deb import ar_archive, build_deb, ccs_tree, dpkg_tree, tar_bytes

CONTROL = """\
Package: demo
Version: 1:2.5~rc1-3+deb12u1
Architecture: amd64
Maintainer: Nobody <nobody@example.org>
Pre-Depends: libc6 (>= 2.34)
Depends: libfoo1 (>> 1.0), awk | mawk, python3:any, tzdata
Provides: demo-tools (= 2.5), virtual-demo
Homepage: https://example.org/demo
Description: a demonstration package
 It has a long description.
 .
 With two paragraphs.
"""


@pytest.fixture
def key(tmp_path: Path) -> Path:
    return generate_keypair(tmp_path / "key")[0]


def _tree(root: Path) -> Path:
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/demo").write_bytes(b"#!/bin/sh\necho demo\n")
    os.chmod(root / "usr/bin/demo", 0o755)
    (root / "usr/bin/demo-suid").write_bytes(b"suid\n")
    os.chmod(root / "usr/bin/demo-suid", 0o4755)
    (root / "usr/bin/demo-link").symlink_to("demo")
    (root / "etc/demo").mkdir(parents=True)
    (root / "etc/demo/demo.conf").write_text("key = value\n")
    (root / "usr/share/doc/demo").mkdir(parents=True)
    (root / "usr/share/doc/demo/README").write_text("read me\n" * 100)
    (root / "usr/lib/demo").mkdir(parents=True)
    (root / "usr/lib/demo/big.bin").write_bytes(os.urandom(300_000))
    os.link(root / "usr/lib/demo/big.bin", root / "usr/lib/demo/big-again.bin")
    os.chmod(root / "usr/lib/demo", 0o750)
    return root


@pytest.mark.parametrize("compression", ["xz", "zstd", "gzip", "none"])
def test_files_equal_dpkg_deb_x(tmp_path: Path, key: Path, compression: str) -> None:
    deb = build_deb(
        _tree(tmp_path / "pkg"),
        tmp_path / "demo.deb",
        CONTROL,
        compression=compression,
        scripts={"postinst": "#!/bin/sh\nupdate-alternatives --install /usr/bin/x x /usr/bin/demo 1\n"},
        conffiles=["/etc/demo/demo.conf"],
    )
    result = import_deb(deb, tmp_path / "out", key)
    tree = ccs_tree(result.path)
    assert tree == dpkg_tree(deb, tmp_path / "x")
    assert tree["usr/bin/demo-suid"][1] == 0o4755
    assert tree["usr/lib/demo"][1] == 0o750
    assert tree["usr/lib/demo/big.bin"] == tree["usr/lib/demo/big-again.bin"]


def test_identity_requirements_and_provenance(tmp_path: Path, key: Path) -> None:
    deb = build_deb(
        _tree(tmp_path / "pkg"),
        tmp_path / "demo.deb",
        CONTROL,
        scripts={"postinst": "#!/bin/sh\necho configured\n", "prerm": "#!/bin/sh\n"},
        conffiles=["/etc/demo/demo.conf"],
    )
    result = import_deb(deb, tmp_path / "out", key)
    assert result.path.name == "demo-2.5~rc1-3+deb12u1.x86_64.ccs"
    assert result.warning == (
        "demo: maintainer scripts not run: postinst, prerm (recorded in the package's provenance)"
    )
    with open_package(result.path, None) as pkg:
        m = pkg.manifest
        assert (m.name, m.version, m.release, m.arch) == ("demo", "2.5~rc1", "3+deb12u1", "x86_64")
        assert m.metadata["summary"] == "a demonstration package"
        assert m.metadata["description"] == "It has a long description.\n\nWith two paragraphs."
        assert m.metadata["homepage"] == "https://example.org/demo"
        requires = set(m.requires)
        assert {
            Dependency("package", "libc6", ">= 2.34"),
            Dependency("package", "libfoo1", ">> 1.0"),
            Dependency("package", "python3"),
            Dependency("package", "tzdata"),
        } <= requires
        # the tree's `#!/bin/sh` script is scanned, but Debian's relations are the contract: no
        # file or command requirement is added from a `#!` line
        assert not {d for d in requires if d.kind in ("file", "binary")}
        # an alternative group has no CCS form: it is kept in the provenance only
        assert not {d for d in requires if d.name in ("awk", "mawk")}
        assert Dependency("package", "demo-tools", "2.5") in m.provides
        assert Dependency("package", "virtual-demo") in m.provides
        assert m.provenance["debian.alternatives_not_required"] == ["awk | mawk"]
        assert "debian.requirements_omitted" not in m.provenance
        assert m.provenance["debian.control"]["Version"] == "1:2.5~rc1-3+deb12u1"
        assert m.provenance["debian.scripts_not_run"]["postinst"] == "#!/bin/sh\necho configured\n"
        assert m.provenance["debian.conffiles"] == ["/etc/demo/demo.conf"]
        by_path = {f.path: f for f in m.files}
        assert by_path["etc/demo/demo.conf"].config and by_path["etc/demo/demo.conf"].component == "config"
        assert by_path["usr/share/doc/demo/README"].component == "doc"
        assert by_path["usr/bin/demo"].component == "runtime"
        assert not m.scriptlets


def test_output_is_byte_identical_across_runs(tmp_path: Path, key: Path) -> None:
    deb = build_deb(_tree(tmp_path / "pkg"), tmp_path / "demo.deb", CONTROL)
    first = import_deb(deb, tmp_path / "a", key).path.read_bytes()
    os.utime(deb, (0, 0))  # the .deb's own mtime plays no part
    second = import_deb(deb, tmp_path / "b", key, workers=2).path.read_bytes()
    assert first == second


def test_owners_come_from_the_tar_headers(tmp_path: Path, key: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("keeping non-root owners needs root (CI runs as root)")
    control = tar_bytes([(tarfile.TarInfo("./control"), b"Package: own\nVersion: 1\nArchitecture: all\n")])
    files = []
    directory = tarfile.TarInfo("./var/games")
    directory.type, directory.mode, directory.uid, directory.gid = tarfile.DIRTYPE, 0o2775, 0, 60
    files.append((directory, None))
    score = tarfile.TarInfo("./var/games/score")
    score.mode, score.uid, score.gid = 0o664, 5, 60
    files.append((score, b"0\n"))
    deb = tmp_path / "own.deb"
    deb.write_bytes(
        ar_archive(
            [
                ("debian-binary", b"2.0\n"),
                ("control.tar", control),
                ("data.tar.xz", lzma.compress(tar_bytes(files))),
            ]
        )
    )
    result = import_deb(deb, tmp_path / "out", key)
    tree = ccs_tree(result.path)
    assert tree == dpkg_tree(deb, tmp_path / "x")
    assert tree["var/games"][:4] == ("dir", 0o2775, 0, 60)
    assert tree["var/games/score"][:4] == ("file", 0o664, 5, 60)
    assert result.path.name == "own-1-0.noarch.ccs"


def _deb_with_data(tmp_path: Path, entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    control = tar_bytes([(tarfile.TarInfo("./control"), b"Package: bad\nVersion: 1\nArchitecture: all\n")])
    deb = tmp_path / "bad.deb"
    deb.write_bytes(
        ar_archive([("debian-binary", b"2.0\n"), ("control.tar", control), ("data.tar", tar_bytes(entries))])
    )
    return deb


def _symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([(tarfile.TarInfo("./../escape"), b"x")], "unsafe path './../escape'"),
        ([(tarfile.TarInfo("/etc/passwd"), b"x")], "unsafe path '/etc/passwd'"),
        (
            [(_symlink("./usr", "/tmp"), None), (tarfile.TarInfo("./usr/bin/x"), b"x")],
            "usr/bin/x lies below a symlink",
        ),
    ],
)
def test_unsafe_members_are_refused(tmp_path: Path, key: Path, entries: list, message: str) -> None:
    deb = _deb_with_data(tmp_path, entries)
    with pytest.raises(DebFormatError, match=message):
        import_deb(deb, tmp_path / "out", key)
    assert not list((tmp_path / "out").glob("*.ccs"))


def test_a_device_node_is_refused_with_its_name(tmp_path: Path, key: Path) -> None:
    node = tarfile.TarInfo("./dev/null")
    node.type = tarfile.CHRTYPE
    with pytest.raises(DebFormatError, match="dev/null is a device"):
        import_deb(_deb_with_data(tmp_path, [(node, None)]), tmp_path / "out", key)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not an archive", "not a Debian package"),
        (ar_archive([("control.tar", b"")]), "first member is not debian-binary"),
        (ar_archive([("debian-binary", b"2.0\n"), ("control.tar.gz", b"junk")]), "missing control.tar or"),
        (ar_archive([("debian-binary", b"3.0\n")]), "unsupported .deb format version"),
        (ar_archive([("debian-binary", b"2.0\n"), ("data.tar.xz", b"x")])[:-5], "truncated"),
    ],
)
def test_malformed_packages_give_one_line(tmp_path: Path, data: bytes, message: str, cli, key: Path) -> None:
    deb = tmp_path / "broken.deb"
    deb.write_bytes(data)
    with pytest.raises(DebFormatError, match=message):
        DebFile(deb).control()
    result = cli("import", "deb", deb, "--output", tmp_path / "out", "--key", key)
    assert result.code == 2
    assert result.err.count("\n") == 1 and str(deb) in result.err and "Traceback" not in result.err


def test_corrupt_compressed_member_is_one_error(tmp_path: Path, key: Path) -> None:
    control = tar_bytes([(tarfile.TarInfo("./control"), b"Package: c\nVersion: 1\nArchitecture: all\n")])
    good = lzma.compress(tar_bytes([(tarfile.TarInfo("./a"), b"a" * 10000)]))
    deb = tmp_path / "corrupt.deb"
    deb.write_bytes(
        ar_archive([("debian-binary", b"2.0\n"), ("control.tar", control), ("data.tar.xz", good[:40])])
    )
    with pytest.raises(DebFormatError, match=r"unreadable data\.tar\.xz"):
        import_deb(deb, tmp_path / "out", key)


def test_cli_converts_several_and_warns_once_per_package(tmp_path: Path, key: Path, cli) -> None:
    with_scripts = build_deb(
        _tree(tmp_path / "a"), tmp_path / "a.deb", CONTROL, scripts={"postinst": "#!/bin/sh\n"}
    )
    plain = build_deb(
        _tree(tmp_path / "b"), tmp_path / "b.deb", CONTROL.replace("Package: demo", "Package: plain")
    )
    result = cli("import", "deb", with_scripts, plain, "--output", tmp_path / "out", "--key", key)
    assert result.code == 0, result.err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.ccs")) == [
        "demo-2.5~rc1-3+deb12u1.x86_64.ccs",
        "plain-2.5~rc1-3+deb12u1.x86_64.ccs",
    ]
    assert result.err.count("maintainer scripts not run") == 1
    assert "demo: maintainer scripts not run: postinst" in result.err


def test_versions_and_relations() -> None:
    assert split_version("1:2.36-9+deb12u4") == ("1", "2.36", "9+deb12u4")
    assert split_version("5.2.15") == ("", "5.2.15", "0")
    assert split_version("1.0-1-2") == ("", "1.0-1", "2")
    groups = parse_relations("a (>= 1), b:any | c (<< 2) [amd64], d <!nocheck>, e (< 3)")
    assert [[r.name for r in g] for g in groups] == [["a"], ["b", "c"], ["d"], ["e"]]
    assert groups[3][0].op == "<="
    kept, dropped = requirements("a (>= 1)", "b | c")
    assert kept == [Dependency("package", "a", ">= 1")] and dropped == ["b | c"]
    assert provides("x (= 1.2), y") == [Dependency("package", "x", "1.2"), Dependency("package", "y")]


def test_control_fields_are_read_from_each_compression(tmp_path: Path) -> None:
    for compression in ("xz", "zstd", "gzip"):
        deb = build_deb(_tree(tmp_path / compression), tmp_path / f"{compression}.deb", CONTROL,
                        compression=compression)  # fmt: skip
        control = DebFile(deb).control()
        assert (control.package, control.version, control.architecture) == (
            "demo",
            "1:2.5~rc1-3+deb12u1",
            "amd64",
        )


def _elf_for(machine: int) -> bytes:
    """The host's /bin/true (x86-64, with an interpreter), relabelled as another machine's program."""
    data = bytearray(Path("/bin/true").read_bytes())
    data[18:20] = machine.to_bytes(2, "little")
    return bytes(data)


def test_a_cross_package_does_not_require_its_target_interpreter(tmp_path: Path, key: Path) -> None:
    control = "Package: libc6-arm64-cross\nVersion: 2.36-8cross1\nArchitecture: all\nDescription: cross\n"
    cross = tmp_path / "cross"
    (cross / "usr/aarch64-linux-gnu/lib").mkdir(parents=True)
    (cross / "usr/aarch64-linux-gnu/lib/libc.so.6").write_bytes(_elf_for(183))  # EM_AARCH64
    native = tmp_path / "native"
    (native / "usr/bin").mkdir(parents=True)
    (native / "usr/bin/true").write_bytes(Path("/bin/true").read_bytes())
    os.chmod(native / "usr/bin/true", 0o755)
    with open_package(
        import_deb(build_deb(cross, tmp_path / "c.deb", control), tmp_path / "o", key).path
    ) as pkg:
        assert not [d for d in pkg.manifest.requires if d.kind == "interpreter"]
    plain = control.replace("libc6-arm64-cross", "native-tool")
    with open_package(
        import_deb(build_deb(native, tmp_path / "n.deb", plain), tmp_path / "o", key).path
    ) as pkg:
        assert [d.kind for d in pkg.manifest.requires if d.kind == "interpreter"] == ["interpreter"]


def test_omitted_packages_are_not_required_and_are_recorded(tmp_path: Path, key: Path) -> None:
    deb = build_deb(_tree(tmp_path / "pkg"), tmp_path / "demo.deb", CONTROL)
    result = import_deb(deb, tmp_path / "out", key, omit=["tzdata", "python3"])
    with open_package(result.path, None) as pkg:
        names = {d.name for d in pkg.manifest.requires if d.kind == "package"}
        assert {"libc6", "libfoo1"} <= names
        assert not names & {"tzdata", "python3"}
        assert pkg.manifest.provenance["debian.requirements_omitted"] == [
            "package(python3)",
            "package(tzdata)",
        ]
