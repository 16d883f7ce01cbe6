"""Bad input: one precise error line, a nonzero exit, no package in the output dir, no cache entry."""

from __future__ import annotations

import functools
import http.server
import io
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers_cook import TINYPROJ, make_tarball, sha256, tiny_recipe, write_recipe

WRONG = "sha256:" + "0" * 64


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("CONARY_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    return tmp_path


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An HTTP server on 127.0.0.1 serving a directory (nothing outside the test is contacted)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _cook(cli, env: Path, recipe: Path, *extra: str):  # type: ignore[no-untyped-def]
    return cli("cook", "--output", env / "dist", "--source-cache", env / "cache", *extra, recipe)


def _error_line(result) -> str:  # type: ignore[no-untyped-def]
    assert result.code != 0
    assert "Traceback" not in result.err
    lines = result.err.strip().splitlines()
    assert lines[-1].startswith("conary: error: ")
    return lines[-1]


def _assert_clean(env: Path) -> None:
    dist = env / "dist"
    assert not dist.exists() or list(dist.iterdir()) == []
    cache = env / "cache"
    if cache.exists():
        entries = [p for p in cache.rglob("*") if p.is_file() and ".locks" not in p.parts]
        assert entries == [] or all(sha256(p).split(":")[1] == p.name for p in entries)
        assert not (cache / "sha256" / WRONG.split(":")[1]).exists()


def test_checksum_mismatch(cli, env: Path) -> None:
    tarball = make_tarball(TINYPROJ, env / "tinyproj-1.0.tar.gz", "tinyproj-1.0")
    recipe = write_recipe(env, "tinyproj", tarball.name, WRONG)
    line = _error_line(_cook(cli, env, recipe))
    actual = sha256(tarball)
    assert line == (
        f"conary: error: checksum mismatch for {tarball}: expected {WRONG}, got {actual}; also tried: cache, "
        f"{tarball} (checksum mismatch at {tarball}: got {actual}) (hint: the source changed or is corrupt; "
        "check it, and update the recipe's checksum only if the new bytes are trusted (--skip-verify "
        "builds from them as they are, and says so))"
    )
    _assert_clean(env)


def test_404_from_a_local_http_mirror(cli, env: Path, http_root: tuple[str, Path]) -> None:
    base, _root = http_root
    recipe = write_recipe(env, "tinyproj", f"{base}/tinyproj-1.0.tar.gz", WRONG)
    result = _cook(cli, env, recipe, "--mirror", f"{base}/mirror")
    line = _error_line(result)
    assert line.startswith(f"conary: error: tinyproj-1.0.tar.gz: {WRONG} not found: tried cache, ")
    assert f"{base}/mirror" in line and "404" in line
    assert f"{base}/tinyproj-1.0.tar.gz" in line
    _assert_clean(env)


def test_unreachable_url(cli, env: Path) -> None:
    url = "http://127.0.0.1:1/tinyproj-1.0.tar.gz"
    recipe = write_recipe(env, "tinyproj", url, WRONG)
    line = _error_line(_cook(cli, env, recipe))
    assert line == (
        f"conary: error: tinyproj-1.0.tar.gz: {WRONG} not found: tried cache, {url} (unreachable: "
        "Connection refused) (hint: add a mirror with --mirror, or run 'conary cook --fetch-only' on a "
        "networked machine)"
    )
    _assert_clean(env)


def test_archive_with_dotdot_entries(cli, env: Path) -> None:
    archive = env / "evil-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in (("evil-1.0/README", b"hi\n"), ("evil-1.0/../../escaped", b"gotcha\n")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    recipe = write_recipe(env, "evil", archive.name, sha256(archive))
    line = _error_line(_cook(cli, env, recipe))
    assert line == "conary: error: evil-1.0.tar.gz: member 'evil-1.0/../../escaped' has a '..' component"
    assert not (env / "escaped").exists()
    _assert_clean(env)
    # Nothing was built, so no work directory is left behind either.
    assert list((env / "xdg-cache" / "conary" / "work").iterdir()) == []


def test_failing_configure_names_step_exit_code_and_log(cli, env: Path) -> None:
    steps = {
        "configure": "echo checking for a working compiler\necho 'error: no frobnicator' >&2\nexit 3",
        "install": "make install",
    }
    recipe = tiny_recipe(env, steps=steps)
    result = _cook(cli, env, recipe)
    line = _error_line(result)
    lines = result.err.strip().splitlines()
    kept = next(x for x in lines if x.startswith("conary: work directory kept at "))
    work = Path(kept.removeprefix("conary: work directory kept at "))
    log = work / "logs" / "configure.log"
    assert line == (
        f"conary: error: cook tinyproj-1.0-1: step 'configure' failed with exit code 3 (log: {log}) "
        "(hint: the last lines of the log are shown above; rerun with --verbose for live output)"
    )
    # The log's tail is shown above the error line.
    assert "error: no frobnicator" in lines
    assert "checking for a working compiler" in lines
    assert log.read_text() == "checking for a working compiler\nerror: no frobnicator\n"
    _assert_clean(env)


def test_failing_check_fails_unless_optional(cli, env: Path) -> None:
    steps = {"check": "exit 1", "install": "mkdir -p $DESTDIR/usr/share/t && echo x > $DESTDIR/usr/share/t/x"}
    recipe = tiny_recipe(env, steps=steps)
    line = _error_line(_cook(cli, env, recipe))
    assert "step 'check' failed with exit code 1" in line
    _assert_clean(env)

    optional = tiny_recipe(env, steps={**steps, "check_optional": "true"}, name="tinyopt")
    text = optional.read_text().replace("check_optional = '''\ntrue\n'''", "check_optional = true")
    optional.write_text(text)
    result = _cook(cli, env, optional)
    assert result.code == 0, result.err
    assert (
        "conary: warning: tinyopt: check step failed with exit code 1; ignored (check_optional)" in result.err
    )


def test_failing_sanity_check_fails_the_cook(cli, env: Path) -> None:
    extra = "\n[build.sanity_check]\nscript = 'test -x /destdir/usr/bin/missing'\n"
    recipe = tiny_recipe(env, extra=extra)
    line = _error_line(_cook(cli, env, recipe))
    assert "step 'sanity_check' failed with exit code 1" in line
    _assert_clean(env)


def test_missing_patch(cli, env: Path) -> None:
    extra = f'\n[patches]\nfiles = [{{ file = "fix-build.patch", checksum = "{WRONG}" }}]\n'
    recipe = tiny_recipe(env, extra=extra)
    line = _error_line(_cook(cli, env, recipe))
    assert line == (
        f"conary: error: patches.files[0].file: patch file 'fix-build.patch' not found (looked in {env}) "
        "(hint: add the patch next to the recipe or fix the path)"
    )
    _assert_clean(env)


def test_unknown_archive_type(cli, env: Path) -> None:
    archive = env / "notes-1.0.tar.gz"
    archive.write_bytes(b"these are plain notes, not an archive\n")
    recipe = write_recipe(env, "notes", archive.name, sha256(archive))
    line = _error_line(_cook(cli, env, recipe))
    assert line == (
        "conary: error: notes-1.0.tar.gz: unknown archive type (first bytes: 74 68 65 73 65 20 61 72) "
        "(hint: supported: tar.gz, tar.xz, tar.bz2, tar.zst, tar.lz, tar, zip; set extract = false to copy "
        "the file as is)"
    )
    _assert_clean(env)
