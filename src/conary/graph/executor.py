"""The executor: cook one package, given its key, its recipe and its build root.

This is the only place the graph calls into cook. Everything an executor needs arrives in a
CookJob, and what it leaves is one .ccs file; the checkpoint store and the package repository are
the only shared state. Another engine (a build farm, a remote queue) can take over the cooks by
implementing `Executor.cook`, without a change to the graph.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from conary.cook import CookOptions, cook_recipe
from conary.graph.roots import BuildRoot
from conary.recipe import TargetMacros


@dataclass(frozen=True)
class CookJob:
    name: str
    key: str  # the derivation key (sha256 hex); recorded in the package's provenance
    recipe: Path
    root: BuildRoot
    workdir: Path  # empty or missing; its logs/ stays after the cook
    output_dir: Path  # where the .ccs goes (a private directory: the caller moves it into the repo)
    jobs: int | None = None  # parallel jobs inside this package's build (MAKEFLAGS)
    target: TargetMacros | None = None  # the machine built for; None: this machine


class Executor(Protocol):
    def cook(self, job: CookJob, on_step: Callable[[str], None]) -> Path:
        """Build *job* and return the .ccs it wrote. Raises ConaryError when the build fails."""
        ...


@dataclass(frozen=True)
class LocalExecutor:
    """Cooks on this machine with `conary cook`'s pipeline, in the hermetic sandbox."""

    source_cache: Path | None = None
    mirrors: tuple[str, ...] = ()
    offline: bool = False
    signing_key: Path | None = None
    skip_verify: bool = False

    def cook(self, job: CookJob, on_step: Callable[[str], None]) -> Path:
        options = CookOptions(
            output_dir=job.output_dir,
            source_cache=self.source_cache,
            mirrors=self.mirrors,
            offline=self.offline,
            skip_verify=self.skip_verify,
            jobs=job.jobs,
            workdir=job.workdir,
            key=self.signing_key,
            extra_provenance={"derivation_key": job.key},
            progress=lambda text: on_step(text.split(": ", 1)[-1]),
            **root_options(job.root),
            target=job.target,
        )
        return cook_recipe(job.recipe, options).package_path


def root_options(root: BuildRoot) -> dict[str, object]:
    """The build root as CookOptions fields: the layers, top first, and the host under them."""
    return {"sysroots": root.layers, "host_seed": root.host_seed}
