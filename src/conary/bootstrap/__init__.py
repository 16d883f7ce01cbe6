"""`conary bootstrap`: profiles, stages, the seed, the pipeline driver, status and resume.

    from conary.bootstrap import load_profile, dry_run
    from conary.targets import load_target
    report = dry_run(load_profile("minimal"), load_target("aarch64"))
    report.ok, report.missing()

See docs/bootstrap.md.
"""

from __future__ import annotations

from conary.bootstrap.config import (
    CONFIG_NAME,
    DEFAULT_WORK,
    BootstrapConfig,
    config_path,
    load_config,
    save_config,
)
from conary.bootstrap.dryrun import DryRunOptions, DryRunReport, PackagePlan, SourcePlan, StagePlan, dry_run
from conary.bootstrap.host import Prerequisite, prerequisites
from conary.bootstrap.profile import (
    STAGE_NAMES,
    Profile,
    SeedSpec,
    StageSpec,
    known_profiles,
    load_profile,
    profiles_dir,
)
from conary.bootstrap.seed import SEED_HOST, SEED_LOCK, SEED_MODES, SeedPlan, seed_packages, seed_plan

__all__ = [
    "CONFIG_NAME",
    "DEFAULT_WORK",
    "SEED_HOST",
    "SEED_LOCK",
    "SEED_MODES",
    "STAGE_NAMES",
    "BootstrapConfig",
    "DryRunOptions",
    "DryRunReport",
    "PackagePlan",
    "Prerequisite",
    "Profile",
    "SeedPlan",
    "SeedSpec",
    "SourcePlan",
    "StagePlan",
    "StageSpec",
    "config_path",
    "dry_run",
    "known_profiles",
    "load_config",
    "load_profile",
    "prerequisites",
    "profiles_dir",
    "save_config",
    "seed_packages",
    "seed_plan",
]
