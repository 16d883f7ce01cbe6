"""Image definitions, repart templates, kernel command lines; what is refused before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from conary.ccs import PackageMeta, build_package, generate_keypair, load_signing_key
from conary.errors import InputError
from conary.image import kernel_cmdline, load_definition, loads_definition
from conary.image.definition import parse_size
from conary.image.templates import RenderContext, render_definitions
from conary.targets import known_targets, load_target

MINIMAL = Path(__file__).resolve().parent.parent / "images" / "minimal.image.toml"


def test_minimal_definition_loads() -> None:
    d = load_definition(MINIMAL)
    assert d.name == "minimal"
    assert d.packages == ("busybox", "minimal-init", "linux")
    assert (d.format, d.filesystem, d.size) == ("raw", "ext4", 256 * 1024**2)


def test_files_from_content_and_source(tmp_path: Path) -> None:
    (tmp_path / "motd").write_text("hi\n")
    d = loads_definition(
        'name = "x"\n[[files]]\npath = "/etc/motd"\nsource = "motd"\n'
        '[[files]]\npath = "/usr/bin/hello"\ncontent = "#!/bin/sh\\necho hi\\n"\nmode = "0755"\n',
        tmp_path / "x.image.toml",
    )
    assert [(f.path, f.content, f.mode) for f in d.files] == [
        ("/etc/motd", b"hi\n", 0o644),
        ("/usr/bin/hello", b"#!/bin/sh\necho hi\n", 0o755),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('name = "x"\nformat = "vmdk"', "format must be one of raw, qcow2"),
        ('name = "x"\nfilesystem = "xfs"', "filesystem must be one of ext4, erofs"),
        ('name = "x"\nsize = "lots"', "invalid size"),
        ('name = "x"\nsize = "12K"', "below 1M"),
        ('name = "x"\npackages = "busybox"', "packages must be a list"),
        ('name = "x"\ncolour = "red"', "unknown key 'colour'"),
        ('name = "bad name"', "name 'bad name'"),
        ('name = "x"\n[[files]]\npath = "etc/motd"\ncontent = ""', "must be absolute"),
        ('name = "x"\n[[files]]\npath = "/etc/../x"\ncontent = ""', "must be absolute"),
        ('name = "x"\n[[files]]\npath = "/etc/motd"', "exactly one of content and source"),
        ('name = "x"\n[[files]]\npath = "/a"\ncontent = ""\nmode = "999"', "not octal"),
        ('name = "x"\n[[files]]\npath = "/a"\ncontent = ""\n[[files]]\npath = "/a"\ncontent = ""', "twice"),
        ("name = [", "not valid TOML"),
    ],
)
def test_bad_definitions_name_the_problem(text: str, message: str) -> None:
    with pytest.raises(InputError) as err:
        loads_definition(text, Path("bad.image.toml"))
    assert message in str(err.value)
    assert "bad.image.toml" in (err.value.where or "")


def test_sizes() -> None:
    assert parse_size("64M", where="x") == 64 * 1024**2
    assert parse_size("1G", where="x") == 1024**3
    assert parse_size(2 * 1024**2, where="x") == 2 * 1024**2


@pytest.mark.parametrize("arch", known_targets())
def test_templates_render_the_targets_partition_types(arch: str, tmp_path: Path) -> None:
    target = load_target(arch)
    context = RenderContext(target, "ext4", "/image/esp.img", "/image/root.img", f"root-{arch}")
    written = render_definitions(tmp_path, context)
    assert [p.name for p in written] == ["00-esp.conf", "10-root.conf"]
    esp, root = (p.read_text() for p in written)
    assert "Type=esp\n" in esp and "CopyBlocks=/image/esp.img\n" in esp
    assert f"Type={target.image.root_partition_type}\n" in root
    assert f"Label=root-{arch}\n" in root and "CopyBlocks=/image/root.img\n" in root


def test_kernel_cmdline_finds_root_by_label_and_uses_the_console() -> None:
    d = loads_definition('name = "x"\ncmdline = "loglevel=4"')
    line = kernel_cmdline(d, load_target("aarch64"))
    assert line.split() == [
        "root=PARTLABEL=root-aarch64",
        "rootfstype=ext4",
        "rootwait",
        "rw",
        "console=ttyAMA0",
        "panic=-1",
        "loglevel=4",
    ]
    erofs = loads_definition('name = "x"\nfilesystem = "erofs"')
    assert " ro " in kernel_cmdline(erofs, load_target("riscv64"))


def test_missing_package_fails_before_anything_is_written(tmp_path: Path, cli) -> None:
    """The definition names busybox, minimal-init and linux; only busybox is given."""
    key, pub = generate_keypair(tmp_path / "key")
    tree = tmp_path / "tree"
    (tree / "bin").mkdir(parents=True)
    (tree / "bin" / "busybox").write_bytes(b"not really busybox\n")
    dist = tmp_path / "dist"
    build_package(
        tree, PackageMeta("busybox", "1", "1", "x86_64"), output_dir=dist, signing_key=load_signing_key(key)
    )
    out = tmp_path / "out"
    out.mkdir()
    result = cli("image", "build", MINIMAL, "--packages", dist, "--trust", pub, "-o", out / "disk.raw")
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result.err
    assert "minimal-init, linux not among the given packages" in lines[0]
    assert "minimal.image.toml: packages" in lines[0]
    assert list(out.iterdir()) == []


def test_unsigned_by_a_trusted_key_is_refused_before_anything_is_written(tmp_path: Path, cli) -> None:
    key, _ = generate_keypair(tmp_path / "key")
    _, other = generate_keypair(tmp_path / "other")
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "f").write_text("x")
    dist = tmp_path / "dist"
    build_package(
        tree, PackageMeta("busybox", "1", "1", "x86_64"), output_dir=dist, signing_key=load_signing_key(key)
    )
    out = tmp_path / "out"
    out.mkdir()
    result = cli("image", "build", MINIMAL, "--packages", dist, "--trust", other, "-o", out / "disk.raw")
    assert result.code != 0
    assert len(result.err.strip().splitlines()) == 1, result.err
    assert list(out.iterdir()) == []


def test_an_image_takes_what_its_packages_require_from_the_given_ones(tmp_path: Path) -> None:
    """app needs libfoo (by soname) and libfoo needs libc; unused is offered and left out."""
    from conary.ccs import Dependency
    from conary.ccs.keys import load_public_key
    from conary.image.build import select_packages

    key, pub = generate_keypair(tmp_path / "key")
    dist = tmp_path / "dist"

    def package(name: str, provides: list[Dependency], requires: list[Dependency]) -> None:
        tree = tmp_path / "trees" / name
        (tree / "usr/share" / name).mkdir(parents=True)
        (tree / "usr/share" / name / "README").write_text(name)
        build_package(
            tree, PackageMeta(name, "1", "1", "x86_64"), output_dir=dist, signing_key=load_signing_key(key),
            extra_provides=provides, extra_requires=requires,
        )  # fmt: skip

    package("app", [], [Dependency("soname", "libfoo.so.1")])
    package("libfoo", [Dependency("soname", "libfoo.so.1")], [Dependency("package", "libc")])
    package("libc", [], [])
    package("unused", [], [])
    definition = loads_definition('name = "x"\npackages = ["app"]\n')
    chosen = select_packages(definition, [dist], [load_public_key(pub)])
    assert [p.name for p in chosen] == ["app", "libfoo", "libc"]
    # EXTRA names (a bootstrap stage's image_packages) come after the definition's.
    chosen = select_packages(definition, [dist], [load_public_key(pub)], ["unused"])
    assert [p.name for p in chosen] == ["app", "unused", "libfoo", "libc"]
