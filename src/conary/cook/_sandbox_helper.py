"""Run build steps in the sandbox from a process that carries nothing of the cook's own.

The sandbox's PID 1 is a fork of the process that calls `conary.sandbox.run`, and a build step can
read PID 1's /proc/1/environ and /proc/1/cmdline. Forked from the cook itself, those would show the
packager's environment (tokens, passwords) and command line. So a cook starts this module once, with
an empty environment (PYTHONPATH aside) and a fixed command line, and sends it one request per step
over a Unix socket: a JSON line plus the step's log descriptor (SCM_RIGHTS). The reply is a JSON line
with the exit code, or the error that kept the sandbox from starting.

Usage (internal): PYTHONPATH=<dir of conary> python -s -m conary.cook._sandbox_helper SOCKFD
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

_MAX_REQUEST = 1 << 22


def _receive(sock: socket.socket) -> tuple[dict | None, int | None]:  # type: ignore[type-arg]
    data, fds, _flags, _addr = socket.recv_fds(sock, _MAX_REQUEST, 1)
    if not data:
        return None, None
    while not data.endswith(b"\n"):
        more = sock.recv(_MAX_REQUEST)
        if not more:
            break
        data += more
    return json.loads(data), (fds[0] if fds else None)


def _run(request: dict, log_fd: int) -> dict:  # type: ignore[type-arg]
    from conary import sandbox

    try:
        spec = sandbox.build_spec(
            request["build"],
            request["dest"],
            sysroot=request["sysroot"],
            env=request["env"],
            cwd=request["cwd"],
        )
        code = sandbox.run(spec, request["argv"], stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd)
        return {"code": code}
    except Exception as err:  # reported to the cook, which raises it as one line
        what = getattr(err, "what", None) or f"{type(err).__name__}: {err}"
        return {
            "error": {"what": what, "where": getattr(err, "where", None), "hint": getattr(err, "hint", None)}
        }


def main() -> int:
    sock = socket.socket(fileno=int(sys.argv[1]))
    import conary.sandbox  # noqa: F401  (import before the first request, not during a step)

    while True:
        request, log_fd = _receive(sock)
        if request is None:
            return 0
        if log_fd is None:
            reply = {
                "error": {"what": "no log descriptor received", "where": "cook sandbox helper", "hint": None}
            }
        else:
            try:
                reply = _run(request, log_fd)
            finally:
                os.close(log_fd)
        sock.sendall(json.dumps(reply).encode() + b"\n")


if __name__ == "__main__":
    sys.exit(main())
