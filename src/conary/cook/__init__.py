"""`conary cook`: fetch → verify → unpack → patch → steps in the hermetic sandbox → signed .ccs.

    from conary.cook import CookOptions, cook_recipe
    result = cook_recipe("recipes/hello.recipe.toml", CookOptions(output_dir=Path("dist")))
    result.package_path      # dist/hello-2.10-1.x86_64.ccs

See docs/cook.md for the step environment, the sandbox layout and reproducibility.
"""

from __future__ import annotations

from conary.cook.environment import BUILD_DIR, DEST_DIR, step_environment
from conary.cook.errors import CookError, StepError
from conary.cook.patch import PatchError, PatchSpec
from conary.cook.pipeline import (
    CookOptions,
    CookResult,
    FetchedSource,
    cook_recipe,
    default_work_root,
    fetch_only,
    fetch_sources,
    source_items,
    unverified_warning,
)
from conary.cook.unpack import FORMATS, UnpackError, UnpackResult, detect_format, unpack

__all__ = [
    "BUILD_DIR",
    "DEST_DIR",
    "FORMATS",
    "CookError",
    "CookOptions",
    "CookResult",
    "FetchedSource",
    "PatchError",
    "PatchSpec",
    "StepError",
    "UnpackError",
    "UnpackResult",
    "cook_recipe",
    "default_work_root",
    "detect_format",
    "fetch_only",
    "fetch_sources",
    "source_items",
    "step_environment",
    "unpack",
    "unverified_warning",
]
