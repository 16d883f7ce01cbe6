"""Triggers fire once per changeset on matching paths, only with their handler, chrooted in the root."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from tests.helpers_runtime_repo import compile_libfoo, make_shell_root

from conary.runtime.triggers import (
    BUILTIN_TRIGGERS,
    TriggerError,
    disabled_triggers,
    get_trigger,
    plan_triggers,
    run_triggers,
    set_enabled,
    trigger_status,
)


def _host_ldconfig() -> str:
    for path in ("/usr/sbin/ldconfig", "/sbin/ldconfig"):
        if os.path.exists(path):
            return path
    raise AssertionError("the host has no ldconfig (package libc-bin)")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_shell_root(tmp_path / "root")


def _install_lib(root: Path, tmp_path: Path) -> str:
    lib, _ = compile_libfoo(tmp_path / "build")
    shutil.copy2(lib, root / "usr/lib/libfoo.so.1.0")
    return "usr/lib/libfoo.so.1.0"


def test_real_ldconfig_builds_the_cache_in_the_root(root: Path, tmp_path: Path) -> None:
    shutil.copy2(_host_ldconfig(), root / "usr/sbin/ldconfig")
    changed = {"/" + _install_lib(root, tmp_path), "/usr/share/doc/libfoo/README"}
    assert run_triggers(root, changed, "always") == ["ldconfig"]
    cache = root / "etc/ld.so.cache"
    assert cache.is_file()
    assert b"libfoo.so.1" in cache.read_bytes()
    # ldconfig made the soname link inside the root, proving it scanned the root's /usr/lib.
    assert os.readlink(root / "usr/lib/libfoo.so.1") == "libfoo.so.1.0"


def test_trigger_is_skipped_without_its_handler(root: Path, tmp_path: Path) -> None:
    changed = {_install_lib(root, tmp_path)}
    assert run_triggers(root, changed, "always") == []
    assert not (root / "etc/ld.so.cache").exists()


def _recording_handler(root: Path, relative: str) -> Path:
    log = root / "trigger.log"
    handler = root / relative
    handler.parent.mkdir(parents=True, exist_ok=True)
    handler.write_text(f'#!/bin/sh\necho "{relative} $*" >> /trigger.log\n')
    handler.chmod(0o755)
    return log


def test_fires_once_per_changeset_not_per_file(root: Path) -> None:
    log = _recording_handler(root, "sbin/ldconfig")
    changed = {f"usr/lib/libx{i}.so.{i}" for i in range(5)} | {"lib/x86_64-linux-gnu/liby.so.2"}
    assert run_triggers(root, changed, "never") == ["ldconfig"]
    assert log.read_text().splitlines() == ["sbin/ldconfig "]
    # A second changeset fires it again, once.
    assert run_triggers(root, {"etc/ld.so.conf.d/extra.conf"}, "always") == ["ldconfig"]
    assert len(log.read_text().splitlines()) == 2


def test_unmatched_paths_fire_nothing(root: Path) -> None:
    log = _recording_handler(root, "usr/sbin/ldconfig")
    assert (
        run_triggers(root, {"usr/bin/tool", "usr/lib/libfoo.a", "usr/share/doc/x.so.txt/y"}, "always") == []
    )
    assert not log.exists()


def test_several_triggers_each_once_in_fixed_order(root: Path) -> None:
    log = _recording_handler(root, "usr/sbin/depmod")
    _recording_handler(root, "usr/bin/systemctl")
    _recording_handler(root, "usr/bin/gtk-update-icon-cache")
    for directory in ("usr/lib/modules/6.1.0-test", "usr/lib/modules/6.16.1", "usr/share/icons/hicolor"):
        (root / directory).mkdir(parents=True)
    changed = {
        "usr/lib/modules/6.1.0-test/kernel/a.ko",
        "usr/lib/modules/6.1.0-test/kernel/b.ko",
        "usr/lib/modules/6.16.1/kernel/c.ko",
        "usr/lib/systemd/system/foo.service",
        "usr/share/icons/hicolor/48x48/apps/foo.png",
    }
    assert run_triggers(root, changed, "always") == [
        "depmod",
        "gtk-update-icon-cache",
        "systemctl-daemon-reload",
    ]
    assert log.read_text().splitlines() == [
        "usr/sbin/depmod -a 6.1.0-test",
        "usr/sbin/depmod -a 6.16.1",
        "usr/bin/gtk-update-icon-cache -q -t -f /usr/share/icons/hicolor",
        "usr/bin/systemctl daemon-reload",
    ]


def test_disabled_trigger_does_not_run(root: Path) -> None:
    log = _recording_handler(root, "usr/sbin/ldconfig")
    set_enabled(root, "ldconfig", False)
    assert disabled_triggers(root) == {"ldconfig"}
    assert "disabled" in (root / "etc/conary/triggers.toml").read_text()
    assert run_triggers(root, {"usr/lib/libz.so.1"}, "always") == []
    assert not log.exists()
    set_enabled(root, "ldconfig", True)
    assert run_triggers(root, {"usr/lib/libz.so.1"}, "always") == ["ldconfig"]


def test_failing_handler_raises_after_running_the_others(root: Path) -> None:
    failing = root / "usr/sbin/ldconfig"
    failing.write_text("#!/bin/sh\necho cache is broken\nexit 4\n")
    failing.chmod(0o755)
    log = _recording_handler(root, "usr/bin/fc-cache")
    with pytest.raises(TriggerError) as err:
        run_triggers(root, {"usr/lib/libz.so.1", "usr/share/fonts/truetype/a.ttf"}, "always")
    assert "trigger ldconfig failed with exit code 4" in err.value.render()
    assert "cache is broken" in err.value.render()
    assert log.read_text() == "usr/bin/fc-cache -s\n"


def test_handler_found_through_a_symlink_inside_the_root(root: Path) -> None:
    # Merged /usr: /sbin -> usr/sbin; the absolute link target must be taken inside the root.
    _recording_handler(root, "usr/sbin/ldconfig")
    (root / "sbin").symlink_to("/usr/sbin")
    status = {s.name: s for s in trigger_status(root)}
    assert status["ldconfig"].handler == "/usr/sbin/ldconfig"
    assert status["depmod"].handler is None
    (root / "usr/sbin/ldconfig").unlink()
    assert get_trigger("ldconfig").handler_in(root) is None


def test_every_builtin_has_patterns_and_handlers() -> None:
    names = [t.name for t in BUILTIN_TRIGGERS]
    assert names == [
        "ldconfig",
        "depmod",
        "systemd-sysusers",
        "systemd-tmpfiles",
        "update-mime-database",
        "update-desktop-database",
        "glib-compile-schemas",
        "gtk-update-icon-cache",
        "fc-cache",
        "systemctl-daemon-reload",
    ]
    for trigger in BUILTIN_TRIGGERS:
        assert trigger.patterns and trigger.handlers


@pytest.mark.parametrize(
    ("path", "trigger"),
    [
        ("usr/lib/sysusers.d/foo.conf", "systemd-sysusers"),
        ("usr/lib/tmpfiles.d/foo.conf", "systemd-tmpfiles"),
        ("usr/share/mime/packages/foo.xml", "update-mime-database"),
        ("usr/share/applications/foo.desktop", "update-desktop-database"),
        ("usr/share/glib-2.0/schemas/org.foo.gschema.xml", "glib-compile-schemas"),
        ("usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "fc-cache"),
        ("usr/lib/x86_64-linux-gnu/libfoo.so.1.2.3", "ldconfig"),
    ],
)
def test_patterns_match(root: Path, path: str, trigger: str) -> None:
    t = get_trigger(trigger)
    _recording_handler(root, t.handlers[0])
    assert [p.trigger.name for p in plan_triggers(root, {path})] == [trigger]


def test_patterns_do_not_overmatch() -> None:
    assert get_trigger("update-desktop-database").matches({"usr/share/applications/foo.txt"}) == []
    assert get_trigger("ldconfig").matches({"usr/lib/python3/dist-packages/x.so"}) == []
    assert get_trigger("systemd-sysusers").matches({"usr/lib/sysusers.d/sub/x.conf"}) == []


def test_depmod_skips_a_kernel_the_changeset_removed(root: Path) -> None:
    log = _recording_handler(root, "usr/sbin/depmod")
    (root / "usr/lib/modules/6.16.1").mkdir(parents=True)
    changed = {"usr/lib/modules/6.1.0-gone/kernel/a.ko", "usr/lib/modules/6.16.1/kernel/c.ko"}
    assert run_triggers(root, changed, "always") == ["depmod"]
    assert log.read_text().splitlines() == ["usr/sbin/depmod -a 6.16.1"]
    assert run_triggers(root, {"usr/lib/modules/6.1.0-gone/modules.dep"}, "always") == []
