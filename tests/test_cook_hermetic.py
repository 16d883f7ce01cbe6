"""The hermetic sandbox, probed from inside a real cook step.

The recipe's install step tries each escape and writes what happened into DESTDIR; the test reads
the results back out of the signed package. The step itself also fails the cook if a probe file
cannot be written, so a broken sandbox cannot pass by writing nothing.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from helpers_cook import tiny_recipe

SECRET = "conary-test-secret-value-6a1f"

PROBE = r"""
p=/destdir/probe
mkdir -p $p
# 1. the host's 127.0.0.1 (a server the test runs) must be unreachable
if python3 -c "import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)" 2>$p/tcp.err
then echo connected > $p/tcp; else echo refused > $p/tcp; fi
# 2. name resolution must fail
if python3 -c "import socket; socket.getaddrinfo('deb.debian.org', 80)" 2>$p/dns.err
then echo resolved > $p/dns; else echo failed > $p/dns; fi
# 3. /proc lists only the sandbox's processes
ls /proc | grep -E '^[0-9]+$' | sort -n > $p/pids
tr '\0' ' ' < /proc/1/cmdline > $p/init-cmdline
# 4. writes outside /build, /destdir and /tmp fail
for d in / /usr /usr/bin /etc /var /opt; do
  if touch "$d/conary-probe" 2>/dev/null; then echo "$d" >> $p/writable; fi
done
touch $p/writable
echo ok > /build/conary-probe && echo ok > /tmp/conary-probe
# 5. /root and /home are invisible
for d in /root /home; do if [ -e "$d" ]; then echo "$d" >> $p/visible; fi; done
touch $p/visible
# 6. the hostname is the sandbox's
cat /proc/sys/kernel/hostname > $p/hostname
# 7. the environment is only the step's
env | sort > $p/env
id -u > $p/uid
"""


class _Listener:
    """A TCP server on the host's 127.0.0.1 that records whether anyone connected."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(5)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        """True once *count* connections were accepted; False if *timeout* seconds pass first."""
        deadline = time.monotonic() + timeout
        while self.connections < count:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()


@pytest.fixture
def listener():  # type: ignore[no-untyped-def]
    server = _Listener()
    yield server
    server.close()


def test_build_steps_cannot_reach_the_host(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listener
) -> None:
    from conary.ccs import open_package

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("CONARY_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("CONARY_COOK_TEST_SECRET", SECRET)
    # The server is reachable from the host, so a refusal inside can only come from the sandbox.
    socket.create_connection(("127.0.0.1", listener.port), timeout=5).close()
    assert listener.wait_for(1)

    recipe = tiny_recipe(tmp_path, steps={"install": PROBE.format(port=listener.port)}, name="probe")
    r = cli("cook", "--output", tmp_path / "dist", "--source-cache", tmp_path / "cache", recipe)
    assert r.code == 0, r.err
    (path,) = (tmp_path / "dist").glob("*.ccs")
    root = tmp_path / "root"
    open_package(path).extract(root)
    probe = root / "probe"

    def read(name: str) -> str:
        return (probe / name).read_text().strip()

    assert read("tcp") == "refused"
    assert not listener.wait_for(2, timeout=1.0)  # still only the host's own connection
    assert read("dns") == "failed"
    pids = [int(x) for x in read("pids").split()]
    assert pids[0] == 1 and len(pids) < 10, pids
    assert Path("/proc/1/cmdline").read_bytes().replace(b"\0", b" ").decode().strip() != read("init-cmdline")
    assert read("writable") == ""
    assert read("visible") == ""
    assert read("hostname") == "conary-sandbox"
    assert read("hostname") != socket.gethostname()
    env = read("env")
    assert SECRET not in env
    assert "CONARY_COOK_TEST_SECRET" not in env
    names = {line.split("=", 1)[0] for line in env.splitlines()}
    assert {"DESTDIR", "MAKEFLAGS", "SOURCE_DATE_EPOCH", "LC_ALL", "TZ", "PATH", "CFLAGS"} <= names
    assert "DESTDIR=/destdir" in env.splitlines()
    assert "LC_ALL=C" in env.splitlines() and "TZ=UTC" in env.splitlines()
    # Host paths are never seen by the step.
    assert str(tmp_path) not in env


# The secret is assembled by a shell builtin into a file, so no probe's own argv contains it.
LEAK_PROBE = r"""
printf '%s-%s\n' sekrit 6a1f > /tmp/pattern
found=0
for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do
  if tr '\0' '\n' < "$f" | grep -qF -f /tmp/pattern; then echo "secret visible in $f"; found=1; fi
done
test "$found" = 0
"""


def test_the_packagers_exported_environment_is_not_visible(conary_bin, tmp_path: Path) -> None:
    """A secret exported in the shell that runs `conary cook` is in no /proc/*/environ nor cmdline."""
    steps = {"install": LEAK_PROBE}
    recipe = tiny_recipe(tmp_path, steps=steps, name="leak")
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "CONARY_KEY_DIR": str(tmp_path / "keys"),
        "CONARY_DEPLOY_TOKEN": "sekrit-6a1f",
    }
    r = conary_bin(
        "cook", "--output", tmp_path / "dist", "--source-cache", tmp_path / "cache", recipe, env=env
    )
    assert r.returncode == 0, r.stderr
    assert list((tmp_path / "dist").glob("*.ccs"))
