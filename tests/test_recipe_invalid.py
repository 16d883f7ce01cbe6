"""Each malformed recipe in tests/data/recipes/invalid/ reports exactly the error it was written for."""

from __future__ import annotations

from pathlib import Path

import pytest

from conary.errors import InputError
from conary.recipe import RecipeError, check_file, load_recipe

INVALID = Path(__file__).parent / "data" / "recipes" / "invalid"

# (file stem, key path, message): the one error each file must produce, word for word.
SINGLE_ERROR_CASES = [
    (
        "debian-name",
        "source.debian",
        "'XZ Utils' is not a Debian source package name, optionally =VERSION (e.g. 'xz-utils')",
    ),
    (
        "additional-checksum",
        "source.additional[1].checksum",
        "sha512 checksum must have 128 hex digits, got 64",
    ),
    ("archive-and-path", "source.path", "give either source.archive or source.path, not both"),
    (
        "checksum-algorithm",
        "source.checksum",
        "unknown checksum algorithm 'sha1' (did you mean 'sha512'?): expected sha256, sha512 or md5",
    ),
    ("checksum-length", "source.checksum", "sha256 checksum must have 64 hex digits, got 63"),
    (
        "checksum-no-algorithm",
        "source.checksum",
        "checksum '50d858e0985ecc7f60418...' has no algorithm: write it as 'sha256:<64 hex digits>'",
    ),
    ("checksum-non-hex", "source.checksum", "sha256 checksum has a non-hex character 'g' at position 5"),
    ("chroot-type", "build.chroot", "expected a boolean, got a string"),
    (
        "component-relative",
        "components.devel[0]",
        "'usr/include/**' must be an absolute path glob such as '/usr/include/**'",
    ),
    (
        "cross-stage",
        "cross.stage",
        "invalid stage 'stage3' (did you mean 'stage2'?): expected one of stage0, stage1, stage2, final",
    ),
    ("deviation-reason", "deviations.changes[0].reason", "missing required key 'reason'"),
    ("env-name", "build.environment.CC FLAGS", "'CC FLAGS' is not a valid environment variable name"),
    (
        "extract-to-parent",
        "source.additional[0].extract_to",
        "must not leave the build tree with '..', got '../outside'",
    ),
    ("jobs-type", "build.jobs", "expected an integer, got a string"),
    ("jobs-zero", "build.jobs", "jobs must be 1 or more, got 0"),
    ("timeout-zero", "build.timeout", "timeout must be 1 second or more, got 0"),
    ("macro-cycle", "variables.a", "macro cycle: a -> b -> a"),
    ("malformed-macro", "source.archive", "malformed macro '%(version)': write it as %(version)s"),
    (
        "missing-checksum",
        "source.checksum",
        "missing checksum: an archive needs one, e.g. 'sha256:<64 hex digits>'",
    ),
    ("missing-name", "package.name", "missing required key 'name'"),
    ("missing-source-section", "source", "missing required section [source]"),
    ("no-source", "source", "missing source: give source.archive (with source.checksum) or source.path"),
    (
        "package-name",
        "package.name",
        "invalid package name 'Hello World': use letters, digits and . _ + - "
        "(starting with a letter or digit)",
    ),
    ("patch-strip", "patches.files[0].strip", "strip must be 0 or more, got -1"),
    (
        "patch-url-checksum",
        "patches.files[0].checksum",
        "missing checksum: a patch fetched from a URL needs one",
    ),
    ("path-checksum", "source.checksum", "a checksum applies to source.archive, not to a local source.path"),
    (
        "script-file",
        "build.script_file",
        "unsupported key 'script_file': Lua build scripts are not supported; write the steps inline",
    ),
    ("step-type", "build.configure", "expected a string, got an array"),
    ("toml-syntax", "", "TOML syntax error: Expected '=' after a key in a key/value pair"),
    ("top-level-key", "summary", "unknown key 'summary' (it belongs in [package])"),
    ("undefined-macro", "build.configure", "undefined macro %(prefx)s (did you mean %(prefix)s?)"),
    ("unknown-key", "build.configur", "unknown key 'configur' (did you mean 'configure'?)"),
    ("unknown-section", "variabels", "unknown section 'variabels' (did you mean 'variables'?)"),
    (
        "url-scheme",
        "source.archive",
        "unsupported URL scheme 'git' (expected one of: http, https, ftp, file)",
    ),
    ("variable-type", "variables.jobs", "expected a string, got an integer"),
    (
        "version-space",
        "package.version",
        "version must be non-empty and contain no whitespace, got '1.0 beta'",
    ),
    ("workdir-absolute", "build.workdir", "must be a relative path inside the build tree, got '/build'"),
]


def _errors(path: Path) -> list[tuple[str, str]]:
    recipe, problems = check_file(path)
    assert recipe is None
    return [(p.key_path, p.message) for p in problems if p.severity == "error"]


@pytest.mark.parametrize(
    ("stem", "key_path", "message"), SINGLE_ERROR_CASES, ids=[c[0] for c in SINGLE_ERROR_CASES]
)
def test_invalid_recipe_reports_exact_error(stem: str, key_path: str, message: str) -> None:
    assert _errors(INVALID / f"{stem}.toml") == [(key_path, message)]


def test_every_invalid_file_has_a_case() -> None:
    covered = {c[0] for c in SINGLE_ERROR_CASES} | {"many-errors", "sanity-script"}
    assert {p.stem for p in INVALID.glob("*.toml")} == covered
    assert len(covered) >= 20


def test_toml_syntax_error_names_line_and_column() -> None:
    _, problems = check_file(INVALID / "toml-syntax.toml")
    (problem,) = problems
    assert (problem.line, problem.column) == (6, 9)
    assert problem.render() == (
        f"{INVALID / 'toml-syntax.toml'}: error: line 6, column 9: "
        "TOML syntax error: Expected '=' after a key in a key/value pair"
    )


def test_all_problems_of_a_file_are_collected() -> None:
    assert _errors(INVALID / "many-errors.toml") == [
        ("package.licence", "unknown key 'licence' (did you mean 'license'?)"),
        ("source.checksum", "md5 checksum must have 32 hex digits, got 31"),
        ("cross.cc", "expected a string, got an integer"),
        ("build.jobs", "jobs must be 1 or more, got -2"),
        ("build.install", "undefined macro %(prefix)s"),
    ]


def test_unknown_key_and_missing_key_in_one_table() -> None:
    assert _errors(INVALID / "sanity-script.toml") == [
        ("build.sanity_check.command", "unknown key 'command' (expected one of: script)"),
        ("build.sanity_check.script", "missing required key 'script'"),
    ]


def test_load_recipe_raises_input_error_carrying_problems() -> None:
    path = INVALID / "many-errors.toml"
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    err = caught.value
    assert isinstance(err, InputError) and err.exit_code == 2
    assert len([p for p in err.problems if p.severity == "error"]) == 5
    assert err.where == f"{path}: package.licence"
    assert err.what == "unknown key 'licence' (did you mean 'license'?) (and 4 more errors)"
