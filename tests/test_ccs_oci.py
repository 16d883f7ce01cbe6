"""OCI export: skopeo and umoci accept the image, and its files are the package's."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path

import pytest

from conary.ccs import PackageMeta, build_package, open_package
from conary.ccs.keys import new_signing_key
from helpers_ccs import make_elf_tree

KEY = new_signing_key()


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("pkgs")
    tree = make_elf_tree(tmp_path_factory.mktemp("elf") / "root")
    other = tmp_path_factory.mktemp("other")
    (other / "usr/share/other").mkdir(parents=True)
    (other / "usr/share/other/file.txt").write_text("other package\n")
    (other / "usr/share/doc/other").mkdir(parents=True)
    (other / "usr/share/doc/other/README").write_text("not default\n")
    return [
        build_package(
            tree,
            PackageMeta("zlib", "1", arch="x86_64"),
            output_dir=out,
            signing_key=KEY,
            source_date_epoch=5,
        ),
        build_package(
            other,
            PackageMeta("other", "2", arch="x86_64"),
            output_dir=out,
            signing_key=KEY,
            source_date_epoch=7,
        ),
    ]


@pytest.fixture(scope="module")
def image(packages: list[Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conary.ccs import export_oci

    return export_oci(packages, tmp_path_factory.mktemp("img") / "image.tar")


def _expected(packages: list[Path]) -> dict[str, tuple]:
    files: dict[str, tuple] = {}
    for path in packages:
        with open_package(path) as pkg:
            for entry in pkg.files():
                if entry.type == "file":
                    files[entry.path] = ("file", entry.mode, entry.sha256)
                elif entry.type == "symlink":
                    files[entry.path] = ("symlink", entry.target)
                else:
                    files[entry.path] = ("dir", entry.mode)
    return files


def _actual(root: Path) -> dict[str, tuple]:
    files: dict[str, tuple] = {}
    for dirpath, dirs, names in os.walk(root):
        for name in dirs + names:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            st = full.lstat()
            if stat.S_ISLNK(st.st_mode):
                files[rel] = ("symlink", os.readlink(full))
            elif stat.S_ISDIR(st.st_mode):
                files[rel] = ("dir", stat.S_IMODE(st.st_mode))
            else:
                files[rel] = ("file", stat.S_IMODE(st.st_mode), hashlib.sha256(full.read_bytes()).hexdigest())
    return files


def test_skopeo_inspects_the_archive(image: Path) -> None:
    r = subprocess.run(["skopeo", "inspect", f"oci-archive:{image}"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["Architecture"] == "amd64" and info["Os"] == "linux"
    assert len(info["Layers"]) == 1
    r = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{image}"], capture_output=True, text=True)
    manifest = json.loads(r.stdout)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"


def test_umoci_unpack_matches_package_files(image: Path, packages: list[Path], tmp_path: Path) -> None:
    layout = tmp_path / "layout"
    with tarfile.open(image) as tar:
        tar.extractall(layout, filter="tar")
    bundle = tmp_path / "bundle"
    r = subprocess.run(
        ["umoci", "unpack", "--image", f"{layout}:latest", str(bundle)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    actual = _actual(bundle / "rootfs")
    expected = _expected(packages)
    # the layer also carries parent directories the packages did not list
    assert {p: v for p, v in actual.items() if p in expected} == expected
    assert set(actual) - set(expected) <= {"usr/share/doc"} | {p for p in actual if actual[p][0] == "dir"}
    assert "usr/share/doc/other/README" not in actual  # doc is not a default component
    assert "usr/lib/libz.so" not in actual  # devel neither


def test_export_is_deterministic_and_cli_works(
    packages: list[Path], image: Path, tmp_path: Path, cli
) -> None:
    r = cli("ccs", "export", *packages, "--format", "oci", "--output", tmp_path / "again.tar")
    assert r.code == 0, r.err
    assert (tmp_path / "again.tar").read_bytes() == image.read_bytes()
    with tarfile.open(image) as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile("index.json").read())
    assert {"oci-layout", "index.json"} <= set(names)
    assert index["manifests"][0]["platform"] == {"architecture": "amd64", "os": "linux"}
