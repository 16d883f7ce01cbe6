"""Scriptlets run in the documented order around the file changes of a changeset."""

from __future__ import annotations

from pathlib import Path

from helpers_runtime import build, make_keys, new_root
from helpers_runtime_repo import make_shell_root

# Each scriptlet records whether the package's file is on disk when it runs.
PROBE = (
    '[ -e /usr/bin/probe ] && echo "{kind}: present" >> /var/log-order '
    '|| echo "{kind}: absent" >> /var/log-order\n'
)
SCRIPTS = {
    kind: PROBE.format(kind=kind) for kind in ("pre_install", "post_install", "pre_remove", "post_remove")
}


def test_scriptlet_order_around_files(tmp_path: Path, cli) -> None:
    keys = make_keys(tmp_path / "keys")
    root = tmp_path / "root"
    make_shell_root(root)
    new_root(root, keys)
    pkg = build(
        tmp_path, keys, "probe", "1", {"usr/bin/probe": ("file", b"probe\n", 0o755)}, scriptlets=SCRIPTS
    )
    r = cli("--root", root, "install", "--sandbox=never", "--nodeps", pkg)
    assert r.code == 0, r.err
    assert (root / "var/log-order").read_text() == "pre_install: absent\npost_install: present\n"
    r = cli("--root", root, "remove", "--sandbox=never", "probe")
    assert r.code == 0, r.err
    assert (root / "var/log-order").read_text().splitlines()[2:] == [
        "pre_remove: present",
        "post_remove: absent",
    ]


def test_failing_pre_scriptlet_aborts_the_changeset(tmp_path: Path, cli) -> None:
    keys = make_keys(tmp_path / "keys")
    root = tmp_path / "root"
    make_shell_root(root)
    new_root(root, keys)
    pkg = build(tmp_path, keys, "nope", "1", {"usr/bin/nope": b"x\n"}, scriptlets={"pre_install": "exit 3\n"})
    r = cli("--root", root, "install", "--sandbox=never", pkg)
    assert r.code == 1
    assert not (root / "usr/bin/nope").exists()
    assert cli("--root", root, "list", "--json").out.strip() == "[]"
    assert list((root / "var/lib/conary/journal").glob("*.json")) == []
