"""Helpers for the repository, trigger and scriptlet tests: real roots, packages and servers."""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")


def busybox() -> str:
    """The host's static busybox (Debian package busybox-static, installed by scripts/setup)."""
    for path in BUSYBOX_CANDIDATES:
        if os.path.exists(path):
            return path
    raise AssertionError("busybox not found: apt-get install busybox-static")


def make_shell_root(root: Path) -> Path:
    """A minimal root that can run shell scriptlets: static busybox as /bin/sh and its applets."""
    for name in ("bin", "dev", "proc", "tmp", "etc", "usr/bin", "usr/lib", "usr/sbin", "var/lib"):
        (root / name).mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox(), root / "bin/busybox")
    for applet in ("sh", "echo", "cat", "wget", "nc", "ls", "touch", "mkdir", "sleep"):
        os.symlink("busybox", root / "bin" / applet)
    return root


def tree_snapshot(root: Path) -> dict[str, tuple[str, int, str]]:
    """Every path under ROOT with its type, mode and content digest (or link target)."""
    import hashlib

    snap = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            st = path.lstat()
            if path.is_symlink():
                snap[rel] = ("link", st.st_mode, os.readlink(path))
            elif path.is_dir():
                snap[rel] = ("dir", st.st_mode, "")
            else:
                snap[rel] = ("file", st.st_mode, hashlib.sha256(path.read_bytes()).hexdigest())
    return snap


def compile_libfoo(workdir: Path) -> tuple[Path, Path]:
    """Compile a real shared library libfoo.so.1 and a program `app` linked against it."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "foo.c").write_text("int foo(void) { return 42; }\n")
    (workdir / "app.c").write_text(
        '#include <stdio.h>\nint foo(void);\nint main(void){printf("%d\\n", foo());}\n'
    )
    lib = workdir / "libfoo.so.1"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-Wl,-soname,libfoo.so.1", "-o", str(lib), str(workdir / "foo.c")],
        check=True,
    )
    (workdir / "libfoo.so").unlink(missing_ok=True)
    os.symlink("libfoo.so.1", workdir / "libfoo.so")
    app = workdir / "app"
    subprocess.run(["gcc", "-o", str(app), str(workdir / "app.c"), f"-L{workdir}", "-lfoo"], check=True)
    return lib, app


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def http_server(directory: Path) -> Iterator[str]:
    """Serve DIRECTORY on 127.0.0.1 at a random port; yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def tcp_listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on 127.0.0.1 that records every connection it accepts; yields (port, log)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.settimeout(0.2)
    accepted: list[bytes] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    accepted.append(conn.recv(1024))
                    conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                except OSError:
                    accepted.append(b"")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join()
        sock.close()


HOST_LIBDIR = "usr/lib/x86_64-linux-gnu"
LOADER = "ld-linux-x86-64.so.2"


def _tree(base: Path, files: dict[str, Path | str], links: dict[str, str] | None = None) -> Path:
    for rel, source in files.items():
        dest = base / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, Path):
            shutil.copy2(source, dest)
        else:
            dest.write_text(source)
    for rel, target in (links or {}).items():
        dest = base / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(target, dest)
    return base


def build_test_packages(
    workdir: Path, signing_key: Path, *, app_scriptlets: dict[str, str] | None = None
) -> dict:
    """Build real, signed packages: `hostlibc` (the host's libc and loader), `libfoo` (a compiled
    libfoo.so.1) and `app` (a program linked against it, so its manifest requires the soname).

    Returns {name: path of the .ccs}. The output directory is WORKDIR/repo.
    """
    from conary.ccs import PackageMeta, build_package

    lib, app = compile_libfoo(workdir / "src")
    out = workdir / "repo"
    out.mkdir(parents=True, exist_ok=True)
    libc = _tree(
        workdir / "tree-hostlibc",
        {
            f"{HOST_LIBDIR}/libc.so.6": Path("/lib/x86_64-linux-gnu/libc.so.6"),
            f"{HOST_LIBDIR}/{LOADER}": Path(f"/lib/x86_64-linux-gnu/{LOADER}"),
        },
        {f"lib64/{LOADER}": f"/{HOST_LIBDIR}/{LOADER}"},
    )
    foo = _tree(workdir / "tree-libfoo", {"usr/lib/libfoo.so.1": lib}, {"usr/lib/libfoo.so": "libfoo.so.1"})
    prog = _tree(workdir / "tree-app", {"usr/bin/app": app})
    built = {
        "hostlibc": build_package(
            libc, PackageMeta("hostlibc", "2.36"), output_dir=out, signing_key=signing_key, split_debug=False
        ),
        "libfoo": build_package(
            foo, PackageMeta("libfoo", "1.0"), output_dir=out, signing_key=signing_key, split_debug=False
        ),
        "app": build_package(
            prog,
            PackageMeta("app", "1.0"),
            output_dir=out,
            signing_key=signing_key,
            split_debug=False,
            scriptlets=app_scriptlets,
        ),
    }
    return built
