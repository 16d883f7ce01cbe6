"""`conary recipe check|show|bump`: validate recipes, print one expanded, move one to a new version."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from conary.cli import output
from conary.cook.bump import plan_bump_from_debian, write_bump
from conary.errors import InputError
from conary.recipe import MacroContext, Recipe, check_paths, load_recipe

BUMP_DESCRIPTION = """\
Rewrite RECIPE's version and checksum (and its archive URL, where the URL names the version) to the
tarball Debian ships now, and print the change as a diff. Only those values change: comments,
order and layout stay as written. The file is replaced atomically.

The Debian source package is the recipe's source.debian, else its package name. bump downloads the
package with apt (through a private apt state derived from the machine's apt sources) and takes the
orig tarball's digest, so a file that Debian's index lists but its pool lacks is reported here. The
tarball also goes into the source cache, so the next cook does not fetch it again.

A checksum mismatch from the Debian provider during a cook names this command."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "recipe",
        help="check and show recipes",
        description="Validate recipe files and print recipes with their macros expanded.",
    )
    p.set_defaults(func=lambda _args: _usage(p))
    sub = p.add_subparsers(dest="recipe_command", metavar="SUBCOMMAND", parser_class=type(p))

    check = sub.add_parser(
        "check",
        help="validate recipe files and directories",
        description=(
            "Validate recipes. Directories are searched recursively for *.toml; TOML files there "
            "without a [package] table (such as versions.toml) are skipped. Exits 1 if any error."
        ),
    )
    check.add_argument("paths", nargs="+", metavar="PATH", help="recipe file or directory")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(func=_check)

    show = sub.add_parser(
        "show",
        help="print a recipe with its macros expanded",
        description="Print a recipe with every %(macro)s expanded for the given build context.",
    )
    show.add_argument("recipe", metavar="RECIPE", help="recipe file")
    show.add_argument("--json", action="store_true", help="print the full model as JSON")
    show.add_argument("--raw", action="store_true", help="do not expand macros")
    show.add_argument("--destdir", default="/destdir", help="value of %%(destdir)s (default: /destdir)")
    show.add_argument("--jobs", type=int, default=None, help="value of %%(jobs)s (default: CPU count)")
    show.add_argument("--target", default=None, help="value of %%(target)s (default: the build triple)")
    show.add_argument("--sysroot", default="/", help="value of %%(sysroot)s (default: /)")
    show.add_argument("--stage", default=None, help="value of %%(stage)s (default: cross.stage or final)")
    show.set_defaults(func=_show)

    bump = sub.add_parser(
        "bump",
        help="move a recipe to the version and checksum Debian ships",
        description=BUMP_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bump.add_argument("recipe", metavar="RECIPE", type=Path, help="recipe file to rewrite")
    bump.add_argument(
        "--from-debian",
        action="store_true",
        help="take the new version from Debian's source archive (the one source bump knows)",
    )
    bump.add_argument(
        "--suite",
        metavar="SUITE",
        help="look in this Debian suite (e.g. trixie, sid) through the machine's archive, instead of "
        "the machine's own suites",
    )
    bump.add_argument("--dry-run", action="store_true", help="print the diff without writing the file")
    bump.add_argument(
        "--source-cache",
        type=Path,
        metavar="DIR",
        help="source cache that receives the new tarball (default: as for conary cook)",
    )
    bump.set_defaults(func=_bump)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _check(args: argparse.Namespace) -> int:
    report = check_paths(args.paths)
    if args.json:
        output.emit_json(report.to_dict())
    else:
        for problem in report.problems:
            print(problem.render())
        print(report.summary())
    return 0 if report.ok else 1


def _show(args: argparse.Namespace) -> int:
    recipe = load_recipe(args.recipe)
    if not args.raw:
        stage = args.stage or (recipe.cross.stage if recipe.cross and recipe.cross.stage else "final")
        context = MacroContext(
            destdir=args.destdir, jobs=args.jobs, target=args.target, sysroot=args.sysroot, stage=stage
        )
        recipe = recipe.expand(context)
    if args.json:
        output.emit_json(recipe.to_dict())
    else:
        print(render_recipe(recipe))
    return 0


def _bump(args: argparse.Namespace) -> int:
    if not args.from_debian:
        raise InputError(
            "bump needs to know where the new version comes from", where="conary recipe bump",
            hint="give --from-debian",
        )  # fmt: skip
    plan = plan_bump_from_debian(args.recipe, suite=args.suite, cache_dir=args.source_cache)
    where = f"Debian's {plan.package} {plan.debian_version}" + (f" in {plan.suite}" if plan.suite else "")
    if not plan.changed:
        output.notice(f"{args.recipe} already pins {where} ({plan.tarball}, {plan.checksum})")
        return 0
    sys.stdout.write(plan.diff())
    if args.dry_run:
        output.notice(f"not written (--dry-run): {plan.old_version} -> {plan.new_version} from {where}")
        return 0
    write_bump(plan)
    output.notice(f"bumped {args.recipe}: {plan.old_version} -> {plan.new_version} from {where}")
    return 0


def render_recipe(recipe: Recipe) -> str:
    """A readable, sectioned text form of *recipe*."""
    lines: list[str] = []
    pkg = recipe.package
    lines.append(f"{pkg.name} {pkg.version}-{pkg.release}  ({recipe.path})")
    for key in ("summary", "license", "homepage"):
        if (value := getattr(pkg, key)) is not None:
            lines.append(f"  {key}: {value}")
    if pkg.description:
        _block(lines, "description", pkg.description)

    src = recipe.source
    lines += ["", "[source]"]
    for key in ("archive", "checksum", "path", "signature", "debian", "extract_dir"):
        if (value := getattr(src, key)) is not None:
            lines.append(f"  {key}: {value}")
    if not src.extract:
        lines.append("  extract: false")
    for extra in src.additional:
        into = f" -> {extra.extract_to}" if extra.extract_to else ""
        kept = "" if extra.extract else " (not extracted)"
        lines.append(f"  additional: {extra.url}{into}{kept}")
        lines.append(f"    checksum: {extra.checksum}")

    if recipe.patches:
        lines += ["", "[patches]"]
        for patch in recipe.patches:
            digest = f", {patch.checksum}" if patch.checksum else ""
            lines.append(f"  {patch.file} (-p{patch.strip}{digest})")

    b = recipe.build
    lines += ["", "[build]"]
    for key in ("requires", "makedepends"):
        if values := getattr(b, key):
            lines.append(f"  {key}: {', '.join(values)}")
    for key in ("workdir", "jobs", "stage"):
        if (value := getattr(b, key)) is not None:
            lines.append(f"  {key}: {value}")
    for key in ("chroot", "check_optional"):
        if getattr(b, key):
            lines.append(f"  {key}: true")
    if b.environment:
        lines.append("  environment:")
        lines += [f"    {k}={v}" for k, v in b.environment]
    for name, script in b.steps():
        _block(lines, name, script)
    if b.sanity_check is not None:
        _block(lines, "sanity_check", b.sanity_check.script)

    if recipe.cross is not None:
        lines += ["", "[cross]"]
        for key, value in vars(recipe.cross).items():
            if value is not None:
                lines.append(f"  {key}: {value}")

    comps = [(k, v) for k, v in vars(recipe.components).items() if v]
    if comps:
        lines += ["", "[components]"]
        lines += [f"  {k}: {', '.join(v)}" for k, v in comps]

    if recipe.variables:
        lines += ["", "[variables]"]
        lines += [f"  {k} = {v}" for k, v in recipe.variables]

    dev = recipe.deviations
    if dev is not None:
        lines += ["", "[deviations]"]
        for key in ("lfs_section", "lfs_url"):
            if (value := getattr(dev, key)) is not None:
                lines.append(f"  {key}: {value}")
        for change in dev.changes:
            lines.append(f"  {change.flag}: {change.reason}")
            if change.lfs is not None:
                lines.append(f"    lfs: {change.lfs}")
            if change.conary is not None:
                lines.append(f"    conary: {change.conary}")
    return "\n".join(lines)


def _block(lines: list[str], title: str, text: str) -> None:
    lines.append(f"  {title}:")
    lines += [f"    | {line}".rstrip() for line in text.strip("\n").splitlines()]
