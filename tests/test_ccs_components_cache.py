"""The component rules with the per-directory cache give exactly what the rules give on whole paths."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from conary.ccs.components import classify_component, classify_whole_path

# path parts the rules care about, and some they do not
PARTS = [
    "etc", "usr", "local", "lib", "lib32", "lib64", "libx32", "x86_64-linux-gnu", "aarch64-linux-gnu",
    "include", "share", "doc", "man", "info", "pkgconfig", "cmake", "aclocal", "aclocal-1.16", "debug",
    ".build-id", "bin", "sbin", "python3", "zlib", "foo.h", "bar.hpp", "x.inc", "libz.a", "libz.la",
    "zlib.pc", "Foo.cmake", "libz.so", "libz.so.1", "libz.so.1.2.13", "x.debug", "README", "docs",
    "etcetera", "includes", "manual", "libfoo.so.abi", "ld-linux-x86-64.so.2",
]  # fmt: skip


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.sampled_from(PARTS), min_size=1, max_size=6), st.booleans(), st.booleans())
def test_cached_rules_equal_whole_path_rules(parts: list[str], is_symlink: bool, slash: bool) -> None:
    path = ("/" if slash else "") + "/".join(parts)
    assert classify_component(path, is_symlink=is_symlink) == classify_whole_path(path, is_symlink=is_symlink)


def test_every_component_is_reached() -> None:
    cases = {
        "etc/zlib.conf": "config",
        "usr/lib/debug/.build-id/ab/cd.debug": "debuginfo",
        "usr/include/zlib.h": "devel",
        "usr/lib/x86_64-linux-gnu/pkgconfig/zlib.pc": "devel",
        "usr/share/doc/zlib/README": "doc",
        "usr/lib/x86_64-linux-gnu/libz.so.1": "lib",
        "usr/bin/zpipe": "runtime",
        "usr/share/doc/zlib/zlib.h": "devel",  # devel's rule comes before doc's
        "usr/include": "devel",  # a directory a rule names
    }
    for path, component in cases.items():
        assert classify_component(path) == component == classify_whole_path(path), path
