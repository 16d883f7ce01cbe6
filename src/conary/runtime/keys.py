"""The keys a root trusts: packages and repository indexes install only if one of them signed them.

Trusted public keys live as one file each in ``<root>/etc/conary/keys/<key id>.pub``, in the CCS
public key format (``conary-ed25519-public <hex> <key id>``). The directory is the whole state:
adding a key copies its file there atomically, removing one deletes it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from conary.ccs import CcsError, PublicKey, load_public_key
from conary.errors import ConaryError, InputError
from conary.fsutil import atomic_write_bytes, fsync_dir

KEYS_DIR = Path("etc/conary/keys")


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    path: Path
    key: PublicKey


def keys_dir(root: str | os.PathLike[str]) -> Path:
    return Path(root) / KEYS_DIR


def _key_files(root: str | os.PathLike[str]) -> list[Path]:
    directory = keys_dir(root)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.name.endswith(".pub") and not p.name.startswith("."))


def list_keys(root: str | os.PathLike[str]) -> list[TrustedKey]:
    """Every trusted key of ROOT, sorted by key id. A malformed key file is an error, not skipped."""
    found = []
    for path in _key_files(root):
        try:
            key = load_public_key(path)
        except CcsError as err:
            raise ConaryError(
                f"unreadable trusted key: {err.what}",
                where=str(path),
                hint="remove the file or replace it with a valid public key",
            )
        if path.name != f"{key.key_id}.pub":
            raise ConaryError(
                f"trusted key file is named for another key (its key id is {key.key_id})",
                where=str(path),
                hint=f"rename it to {key.key_id}.pub or remove it",
            )
        found.append(TrustedKey(key.key_id, path, key))
    return found


def trusted_keys(root: str | os.PathLike[str]) -> list[PublicKey]:
    """The public keys ROOT trusts, as objects ``conary.ccs.open_package`` accepts."""
    return [entry.key for entry in list_keys(root)]


def add_key(
    root: str | os.PathLike[str], pubkey_path: str | os.PathLike[str], *, dry_run: bool = False
) -> str:
    """Trust the public key in PUBKEY_PATH (a secret key file gives its public half). Returns its id."""
    try:
        key = load_public_key(pubkey_path)
    except CcsError as err:
        raise InputError(err.what, where=err.where or str(pubkey_path), hint=err.hint)
    if dry_run:
        return key.key_id
    atomic_write_bytes(keys_dir(root) / f"{key.key_id}.pub", key.to_text().encode("ascii"), mode=0o644)
    return key.key_id


def remove_key(root: str | os.PathLike[str], key_id: str, *, dry_run: bool = False) -> str:
    """Stop trusting KEY_ID (a full id or an unambiguous prefix of at least 4 hex digits).

    Returns the full id of the key removed (or that would be, under DRY_RUN)."""
    key_id = key_id.strip().lower()
    matches = [entry for entry in list_keys(root) if entry.key_id.startswith(key_id)]
    if len(key_id) < 4 or not matches:
        raise InputError(
            f"no trusted key with id {key_id!r}",
            where=str(keys_dir(root)),
            hint="see 'conary key list' for the ids",
        )
    if len(matches) > 1:
        ids = ", ".join(m.key_id for m in matches)
        raise InputError(f"key id prefix {key_id!r} is ambiguous ({ids})", hint="give the full key id")
    if not dry_run:
        matches[0].path.unlink()
        fsync_dir(matches[0].path.parent)
    return matches[0].key_id


def describe_trust(root: str | os.PathLike[str]) -> str:
    """A short phrase naming which keys ROOT trusts, for error messages."""
    ids = [entry.key_id for entry in list_keys(root)]
    return f"trusted keys: {', '.join(ids)}" if ids else "no keys are trusted yet"
