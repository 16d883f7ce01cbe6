"""Which protections a sandbox really has: run a probe inside it and read what the kernel reports.

Nothing here is taken from the spec on trust: capabilities, no_new_privs and seccomp come from the
probe's /proc/self/status, the id map from its uid_map, the mount flags from its mountinfo, the
limits from its /proc/self/limits and, when cgroup v2 is in force, its group from /proc/self/cgroup.
"""

from __future__ import annotations

import subprocess
import tempfile
from dataclasses import dataclass

from conary.sandbox import cgroup
from conary.sandbox.privileges import KEPT_CAPABILITIES, KEPT_MASK
from conary.sandbox.runner import run
from conary.sandbox.spec import SandboxSpec

_PROBE = (
    "cat /proc/self/status; echo '--- uid_map'; cat /proc/self/uid_map; echo '--- mountinfo'; "
    "cat /proc/self/mountinfo; echo '--- limits'; cat /proc/self/limits; "
    "echo '--- cgroup'; cat /proc/self/cgroup"
)


@dataclass(frozen=True)
class Protection:
    name: str
    on: bool
    reason: str


def _sections(text: str) -> dict[str, list[str]]:
    sections: dict[str, list[str]] = {"status": []}
    current = "status"
    for line in text.splitlines():
        if line.startswith("--- "):
            current = line[4:]
            sections[current] = []
        else:
            sections[current].append(line)
    return sections


def _status(lines: list[str]) -> dict[str, str]:
    return {k: v.strip() for k, _, v in (line.partition(":") for line in lines)}


def _cap_names(mask: int) -> str:
    names = [KEPT_CAPABILITIES.get(bit, f"cap{bit}") for bit in range(64) if mask >> bit & 1]
    return " ".join(names) or "none"


def limits_mechanism(support: cgroup.Support) -> str:
    """The mechanism that bounds a step's memory and processes: "cgroup v2" or "rlimits"."""
    return "cgroup v2" if support.usable else "rlimits"


def protections(spec: SandboxSpec, support: cgroup.Support | None = None) -> list[Protection]:
    """Run the probe in *spec* and report each protection as on or off, with the reason. *support*
    is what cgroup.detect() says (asked here when not given)."""
    if support is None:
        support = cgroup.detect()
    with tempfile.TemporaryFile() as out:
        code = run(spec, ["sh", "-c", _PROBE], stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if code != 0:
        return [Protection("sandbox", False, f"the probe exited {code}: {text.strip()[-200:]}")]
    sections = _sections(text)
    status = _status(sections["status"])
    found: list[Protection] = []

    uid_map = " ".join(sections.get("uid_map", [""])[0].split())
    inside, outside, count = [*uid_map.split(), "", "", ""][:3]
    if outside == "0":
        found.append(Protection("user namespace", False, f"uid 0 inside is host root (uid_map {uid_map})"))
    else:
        last = int(outside) + int(count) - 1
        span = f"host uid {outside}" if count == "1" else f"host uids {outside}-{last}"
        found.append(Protection("user namespace", True, f"uid {inside} inside is {span}"))

    cap_eff = int(status.get("CapEff", "0"), 16)
    cap_bnd = int(status.get("CapBnd", "0"), 16)
    caps_on = cap_eff & ~KEPT_MASK == 0 and cap_bnd & ~KEPT_MASK == 0
    found.append(
        Protection(
            "capabilities",
            caps_on,
            f"CapEff {cap_eff:016x}: {_cap_names(cap_eff)}"
            + ("" if caps_on else f"; beyond the documented set: {cap_eff & ~KEPT_MASK:x}"),
        )
    )
    nnp = status.get("NoNewPrivs") == "1"
    found.append(Protection("no_new_privs", nnp, f"NoNewPrivs {status.get('NoNewPrivs', '?')}"))
    filtered = status.get("Seccomp") == "2"
    found.append(
        Protection("seccomp", filtered, f"Seccomp {status.get('Seccomp', '?')} (2 = a filter is loaded)")
    )

    binds = [line.split() for line in sections.get("mountinfo", []) if len(line.split()) > 5]
    # /dev holds the bound device nodes (null, zero, ...), which nodev would break; its tmpfs is nosuid.
    unsafe = [
        f[4]
        for f in binds
        if f[4] != "/dev" and not f[4].startswith("/dev/") and not {"nosuid", "nodev"} <= set(f[5].split(","))
    ]
    found.append(
        Protection(
            "nosuid,nodev",
            not unsafe,
            f"missing on {' '.join(unsafe)}" if unsafe else "every mount but /dev's nodes is nosuid,nodev",
        )
    )
    found.append(
        Protection(
            "death signal",
            True,
            "the sandbox's outer process and its init die with their parent (PR_SET_PDEATHSIG), "
            "and the init's death ends its whole PID namespace",
        )
    )

    limits = {line[:26].strip(): line[26:].split() for line in sections.get("limits", [])[1:]}
    group = cgroup.own_cgroup("\n".join(sections.get("cgroup", [])))
    in_step_group = group is not None and cgroup.STEP_PREFIX in group.rsplit("/", 1)[-1]
    for name, row, rlimit, knob, value in (
        ("memory limit", "Max address space", "RLIMIT_AS", "memory.max", spec.limits.memory),
        ("process limit", "Max processes", "RLIMIT_NPROC", "pids.max", spec.limits.pids),
    ):
        soft = (limits.get(row) or ["?"])[0]
        if support.usable:
            # The group is gone when the probe ends: what is read from inside is that the probe ran in
            # a step group of its own (the value is the one the group was given).
            if value is None or not in_step_group:
                where = f"the probe ran in {group}" if group else "the probe's cgroup is unknown"
                found.append(Protection(name, False, f"no {knob}: {where} ({support.reason})"))
            else:
                found.append(
                    Protection(name, True, f"{value} by cgroup v2 {knob} of {group} ({support.reason})")
                )
        elif soft == "unlimited":
            found.append(
                Protection(name, False, f"unlimited: no {rlimit} set (cgroup v2 not used: {support.reason})")
            )
        else:
            found.append(Protection(name, True, f"{soft} by {rlimit} (cgroup v2 not used: {support.reason})"))
    return found
