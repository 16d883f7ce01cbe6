"""`install NAME --nodeps` applies to installs by name: the requested package alone is chosen,
fetched and installed, even when nothing in the repositories provides what it requires."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from tests.helpers_runtime_repo import build_test_packages, make_shell_root

from conary.ccs import generate_keypair


@pytest.fixture(scope="module")
def lonely_repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A repository holding only `app`, which requires libfoo.so.1 and a C library nobody provides."""
    base = tmp_path_factory.mktemp("nodeps")
    secret, public = generate_keypair(base / "publisher")
    built = build_test_packages(base, secret)
    repo = base / "only-app"
    repo.mkdir()
    shutil.copy2(built["app"], repo)
    return repo, secret, public


def test_install_by_name_with_nodeps_installs_only_the_request(cli, lonely_repo, tmp_path: Path) -> None:
    repo, secret, public = lonely_repo
    assert cli("repo", "index", repo, "--key", secret).code == 0
    root = make_shell_root(tmp_path / "root")
    assert cli("--root", root, "system", "init").code == 0
    assert cli("--root", root, "key", "add", public).code == 0
    assert cli("--root", root, "repo", "add", "local", repo).code == 0

    r = cli("--root", root, "install", "app")
    assert r.code == 1
    assert "nothing provides" in r.err

    r = cli("--root", root, "install", "app", "--nodeps")
    assert r.code == 0, r.err
    listed = json.loads(cli("--root", root, "list", "--json").out)
    assert [p["name"] for p in listed] == ["app"]
    assert (root / "usr/bin/app").is_file()
