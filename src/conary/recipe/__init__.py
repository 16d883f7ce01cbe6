"""The recipe format: the Recipe model, loading and validation, %(macro)s expansion.

    recipe = load_recipe("recipes/hello.toml")          # raises RecipeError (exit 2) on errors
    recipe, problems = check_file("recipes/hello.toml")  # every problem; recipe None on errors
    ready = recipe.expand(MacroContext(destdir="/destdir", jobs=2, stage="final"))

See docs/recipe-format.md for the format itself.
"""

from __future__ import annotations

from conary.recipe.check import CheckReport, check_paths, recipe_files
from conary.recipe.checksum import ChecksumSyntaxError, parse_checksum
from conary.recipe.loader import (
    CheckResult,
    check_file,
    check_path,
    check_text,
    expected_name,
    load_recipe,
    loads_recipe,
)
from conary.recipe.macros import (
    BUILTINS,
    MacroContext,
    MacroError,
    TargetMacros,
    expand_recipe,
    host_triple,
    machine_name,
    native_target,
)
from conary.recipe.model import (
    COMPONENT_NAMES,
    CROSS_STAGES,
    CROSS_TOOLS,
    STEP_NAMES,
    AdditionalSource,
    Build,
    Checksum,
    Components,
    Cross,
    DeviationChange,
    Deviations,
    Package,
    Patch,
    Recipe,
    SanityCheck,
    Source,
)
from conary.recipe.problems import Problem, RecipeError

__all__ = [
    "BUILTINS",
    "COMPONENT_NAMES",
    "CROSS_STAGES",
    "CROSS_TOOLS",
    "STEP_NAMES",
    "AdditionalSource",
    "Build",
    "CheckReport",
    "CheckResult",
    "Checksum",
    "ChecksumSyntaxError",
    "Components",
    "Cross",
    "DeviationChange",
    "Deviations",
    "MacroContext",
    "MacroError",
    "Package",
    "Patch",
    "Problem",
    "Recipe",
    "RecipeError",
    "SanityCheck",
    "Source",
    "TargetMacros",
    "check_file",
    "check_path",
    "check_paths",
    "check_text",
    "expand_recipe",
    "expected_name",
    "host_triple",
    "load_recipe",
    "loads_recipe",
    "machine_name",
    "native_target",
    "parse_checksum",
    "recipe_files",
]
