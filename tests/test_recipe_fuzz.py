"""Random TOML, random documents and mutated real recipes: only our own error type ever escapes."""

from __future__ import annotations

import datetime
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conary.recipe import MacroContext, RecipeError, check_text, loads_recipe
from conary.recipe.schema import SCHEMA, Field

VALID = Path(__file__).parent / "data" / "recipes" / "valid"
VALID_TEXTS = [p.read_text() for p in sorted(VALID.rglob("*.toml"))]
VALID_DOCS = [tomllib.loads(t) for t in VALID_TEXTS]


def _vocabulary(spec: dict[str, Field]) -> set[str]:
    words = set(spec)
    for field in spec.values():
        if field.spec:
            words |= _vocabulary(field.spec)
    return words


KEYS = sorted(_vocabulary(SCHEMA) | {"x", "CFLAGS", "prefix", "jobs", "debian", ""})
MACRO_TEXT = st.sampled_from(
    [
        "%(name)s",
        "%(version)s",
        "%(jobs)s",
        "%(nope)s",
        "%%",
        "%(",
        "%(a)",
        "%(a)s",
        "%",
        "sha256:",
        "md5:" + "a" * 32,
    ]
)
TEXT = st.one_of(
    st.text(max_size=20),
    st.lists(st.one_of(MACRO_TEXT, st.text(max_size=5)), max_size=5).map("".join),
    st.sampled_from(
        ["sha256:" + "a" * 64, "sha512:" + "b" * 128, "stage0", "final", "/usr/include/**", "../x"]
    ),
)
SCALARS = st.one_of(
    TEXT,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.booleans(),
    st.floats(allow_nan=True),
    st.datetimes(min_value=datetime.datetime(1900, 1, 1), max_value=datetime.datetime(2100, 1, 1)),
    st.dates(),
)
KEY = st.one_of(st.sampled_from(KEYS), st.text(min_size=1, max_size=8))


def _values() -> st.SearchStrategy[Any]:
    return st.recursive(
        SCALARS,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(KEY, inner, max_size=5),
        ),
        max_leaves=20,
    )


VALUES = _values()
DOCUMENTS = st.dictionaries(
    st.sampled_from([*SCHEMA, "packages", "extra"]),
    st.one_of(st.dictionaries(KEY, VALUES, max_size=8), VALUES),
    max_size=9,
)


def _load(text: str, path: str = "fuzz.toml") -> None:
    """Load *text*; it must either give a Recipe that expands, or raise RecipeError."""
    result = check_text(text, path)
    for problem in result.problems:
        assert problem.severity in ("error", "warning") and problem.message
    try:
        recipe = loads_recipe(text, path)
    except RecipeError as err:
        assert err.exit_code == 2 and err.problems
        return
    assert result.recipe == recipe
    for ctx in (MacroContext(), MacroContext(destdir="/d", jobs=3, target="t", sysroot="/s", stage="stage1")):
        expanded = recipe.expand(ctx)
        assert expanded.expanded
        expanded.to_dict()


def _mutate(doc: Any, data: st.DataObject, depth: int = 0) -> Any:
    """Apply one random change somewhere in a parsed recipe document."""
    if isinstance(doc, dict) and doc and depth < 4:
        key = data.draw(st.sampled_from(sorted(doc)))
        action = data.draw(st.sampled_from(["descend", "delete", "replace", "rename", "add"]))
        out = dict(doc)
        if action == "descend":
            out[key] = _mutate(doc[key], data, depth + 1)
        elif action == "delete":
            del out[key]
        elif action == "replace":
            out[key] = data.draw(VALUES)
        elif action == "rename":
            out[data.draw(KEY)] = out.pop(key)
        else:
            out[data.draw(KEY)] = data.draw(VALUES)
        return out
    if isinstance(doc, list) and doc and depth < 4:
        index = data.draw(st.integers(0, len(doc) - 1))
        out_list = list(doc)
        if data.draw(st.booleans()):
            out_list[index] = _mutate(doc[index], data, depth + 1)
        else:
            out_list.append(data.draw(VALUES))
        return out_list
    return data.draw(VALUES)


def _dump(doc: dict[str, Any]) -> str | None:
    try:
        return tomli_w.dumps(doc)
    except (TypeError, ValueError):
        return None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_random_text(text: str) -> None:
    _load(text)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(["[package]", "[source]", "[[source.additional]]", "[build]", "\n"]), max_size=6
    ),
    st.text(max_size=80),
)
def test_random_text_with_recipe_headers(headers: list[str], tail: str) -> None:
    _load("\n".join(headers) + "\n" + tail)


@pytest.mark.slow
@settings(max_examples=150, deadline=None)
@given(DOCUMENTS)
def test_random_documents(doc: dict[str, Any]) -> None:
    text = _dump(doc)
    if text is not None:
        _load(text)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_valid_recipes(data: st.DataObject) -> None:
    doc = data.draw(st.sampled_from(VALID_DOCS))
    for _ in range(data.draw(st.integers(1, 3))):
        doc = _mutate(doc, data)
    text = _dump(doc) if isinstance(doc, dict) else None
    if text is not None:
        _load(text, "glibc.toml")


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_text_mutations_of_valid_recipes(data: st.DataObject) -> None:
    text = data.draw(st.sampled_from(VALID_TEXTS))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(text)))
        cut = data.draw(st.integers(0, 12))
        insert = data.draw(
            st.one_of(
                st.just(""), MACRO_TEXT, st.text(max_size=4), st.sampled_from(['"', "[", "]", "=", "\n"])
            )
        )
        text = text[:at] + insert + text[at + cut :]
    _load(text)


@pytest.mark.slow
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_cli_check_never_shows_a_traceback(cli, data: st.DataObject) -> None:
    text = data.draw(st.sampled_from(VALID_TEXTS))
    if data.draw(st.booleans()):
        doc = _mutate(tomllib.loads(text), data)
        text = (_dump(doc) if isinstance(doc, dict) else None) or text
    else:
        at = data.draw(st.integers(0, len(text)))
        text = text[:at] + data.draw(st.text(max_size=6)) + text[at + data.draw(st.integers(0, 20)) :]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mutant.toml"
        path.write_text(text)
        for args in (("recipe", "check", path), ("recipe", "check", "--json", tmp), ("recipe", "show", path)):
            r = cli(*args)
            assert "Traceback" not in r.err and "internal error" not in r.err, (args, r.err)
            assert r.code in (0, 1, 2)
