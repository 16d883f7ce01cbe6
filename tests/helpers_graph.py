"""Fixture recipe trees for the graph tests: small real C projects, one shared library each, that
use their dependencies through pkg-config. Tarballs are made here, deterministic, beside the recipes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from helpers_cook import make_tarball, sha256

CONFIGURE = """#!/bin/sh
# Records the prefix and an optional greeting for the Makefile.
prefix=/usr
greeting=hello
for arg in "$@"; do
    case "$arg" in
        --prefix=*) prefix="${arg#--prefix=}" ;;
        --greeting=*) greeting="${arg#--greeting=}" ;;
        *) echo "configure: unknown option $arg" >&2; exit 1 ;;
    esac
done
printf 'PREFIX = %s\\nGREETING = %s\\n' "$prefix" "$greeting" > config.mk
"""

MAKEFILE = """NAME = {name}
DEPS = {deps}
-include config.mk
PREFIX ?= /usr
CC ?= cc
ifneq ($(strip $(DEPS)),)
DEP_CFLAGS := $(shell pkg-config --cflags $(DEPS))
DEP_LIBS := $(shell pkg-config --libs $(DEPS))
endif
LINK = {link}
# NAME_CHAIN is this library's configured greeting followed by its dependencies' chains, so a
# configure change in a library changes the code of everything built on it, however deep.
CHAIN_DEPS = $(foreach d,$(DEPS), " " $(d)_CHAIN)

all: $(NAME).h lib$(NAME).so.1 $(NAME)-tool $(NAME).pc

$(NAME).h: config.mk
\tprintf '#ifndef $(NAME)_H\\n#define $(NAME)_H\\n' > $@
\tfor d in $(DEPS); do printf '#include <%s.h>\\n' $$d >> $@; done
\tprintf '#define $(NAME)_CHAIN "$(GREETING)"%s\\n' '$(CHAIN_DEPS)' >> $@
\tprintf 'int $(NAME)_value(void);\\nconst char *$(NAME)_chain(void);\\n#endif\\n' >> $@

lib$(NAME).so.1: lib.c $(NAME).h
\t$(CC) -O2 -fPIC -shared -Wl,-soname,lib$(NAME).so.1 -I. $(DEP_CFLAGS) \\
\t\t-o $@ lib.c $(DEP_LIBS) $(LINK)
\tln -sf lib$(NAME).so.1 lib$(NAME).so

$(NAME)-tool: main.c lib$(NAME).so.1
\t$(CC) -O2 -I. $(DEP_CFLAGS) -o $@ main.c -L. -l$(NAME) $(DEP_LIBS)

$(NAME).pc:
\tprintf 'prefix=$(PREFIX)\\nlibdir=$${{prefix}}/lib\\nincludedir=$${{prefix}}/include\\n\\n' > $@
\tprintf 'Name: $(NAME)\\nDescription: $(NAME)\\nVersion: 1.0\\nRequires: $(DEPS)\\n' >> $@
\tprintf 'Libs: -L$${{libdir}} -l$(NAME)\\nCflags: -I$${{includedir}}\\n' >> $@

check: $(NAME)-tool
\tLD_LIBRARY_PATH=. ./$(NAME)-tool | grep -q '$(NAME)'

install: all
\tinstall -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
\tinstall -m 755 $(NAME)-tool $(DESTDIR)$(PREFIX)/bin/$(NAME)-tool
\tinstall -m 755 lib$(NAME).so.1 $(DESTDIR)$(PREFIX)/lib/lib$(NAME).so.1
\tln -sf lib$(NAME).so.1 $(DESTDIR)$(PREFIX)/lib/lib$(NAME).so
\tinstall -m 644 $(NAME).h $(DESTDIR)$(PREFIX)/include/$(NAME).h
\tinstall -m 644 $(NAME).pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/$(NAME).pc

.PHONY: all check install
"""


def _lib_c(name: str, deps: Sequence[str]) -> str:
    includes = "".join(f"#include <{d}.h>\n" for d in deps)
    calls = "".join(f" + {d}_value()" for d in deps)
    return (
        f'#include <stdio.h>\n{includes}#include "{name}.h"\n'
        f"int {name}_value(void) {{ return {len(name)}{calls}; }}\n"
        f"const char *{name}_chain(void) {{ return {name}_CHAIN; }}\n"
    )


def _main_c(name: str) -> str:
    return (
        f'#include <stdio.h>\n#include "{name}.h"\n'
        f'int main(void) {{ printf("{name}: %s %d\\n", {name}_chain(), {name}_value()); return 0; }}\n'
    )


def make_project(directory: Path, name: str, deps: Sequence[str], link: str = "") -> Path:
    """A tarball NAME-1.0.tar.gz of a C project building libNAME (using DEPS) and NAME-tool."""
    src = directory / f".src-{name}"
    src.mkdir(parents=True, exist_ok=True)
    (src / "configure").write_text(CONFIGURE)
    (src / "configure").chmod(0o755)
    (src / "Makefile").write_text(MAKEFILE.format(name=name, deps=" ".join(deps), link=link))
    (src / "lib.c").write_text(_lib_c(name, deps))
    (src / "main.c").write_text(_main_c(name))
    return make_tarball(src, directory / f"{name}-1.0.tar.gz", f"{name}-1.0")


STEPS = {
    "configure": "./configure --prefix=/usr",
    "make": "make",
    "check": "make check",
    "install": "make install",
}


def write_graph_recipe(
    directory: Path,
    name: str,
    requires: Sequence[str] = (),
    *,
    steps: Mapping[str, str] | None = None,
    link: str = "",
    uses: Sequence[str] | None = None,
    comment: str = "",
) -> Path:
    """NAME.recipe.toml and its tarball in DIRECTORY. USES (default: REQUIRES) are the libraries
    the code uses through pkg-config; LINK adds raw linker flags (to use a library undeclared)."""
    tarball = make_project(directory, name, requires if uses is None else uses, link)
    lines = [
        "[package]",
        f'name = "{name}"',
        'version = "1.0"',
        f'summary = "{name}, a test library"',
        'license = "MIT"',
        "",
        "[source]",
        f'archive = "{tarball.name}"',
        f'checksum = "{sha256(tarball)}"',
        "",
        "[build]",
        f"requires = [{', '.join(repr(r).replace(chr(39), chr(34)) for r in requires)}]",
    ]
    if comment:
        lines.append(f"# {comment}")
    for step, script in (STEPS if steps is None else steps).items():
        lines.append(f"{step} = '{script}'")
    path = directory / f"{name}.recipe.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


# Eight recipes: a chain (base <- zmath <- zcalc), a diamond (base <- left, right <- top), and an
# application over the diamond and a lone library.
TREE: dict[str, tuple[str, ...]] = {
    "base": (),
    "zmath": ("base",),
    "zcalc": ("zmath",),
    "left": ("base",),
    "right": ("base",),
    "top": ("left", "right"),
    "kit": (),
    "app": ("top", "kit"),
}


def write_tree(directory: Path, tree: Mapping[str, Sequence[str]] = TREE) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, requires in tree.items():
        write_graph_recipe(directory, name, requires)
    return directory
