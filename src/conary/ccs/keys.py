"""Ed25519 signing keys: generation, key files, key ids and the user's default key.

Key files are one line of text each:

    KEY      conary-ed25519-secret <64 hex: the 32-byte seed>
    KEY.pub  conary-ed25519-public <64 hex: the 32-byte public key> <key id>

The key id is the first 16 hex digits of sha256 over the raw 32-byte public key.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.signing

from conary.ccs.errors import CcsError
from conary.fsutil import atomic_write_bytes

SECRET_TAG = "conary-ed25519-secret"
PUBLIC_TAG = "conary-ed25519-public"


def key_id_of(public_key: bytes) -> str:
    """The id that names a public key: the first 16 hex digits of sha256(raw public key)."""
    return hashlib.sha256(public_key).hexdigest()[:16]


@dataclass(frozen=True)
class PublicKey:
    raw: bytes  # 32 bytes

    @property
    def key_id(self) -> str:
        return key_id_of(self.raw)

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            nacl.signing.VerifyKey(self.raw).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            return False
        return True

    def to_text(self) -> str:
        return f"{PUBLIC_TAG} {self.raw.hex()} {self.key_id}\n"


@dataclass(frozen=True)
class SigningKey:
    seed: bytes  # 32 bytes

    @property
    def public_key(self) -> PublicKey:
        return PublicKey(bytes(nacl.signing.SigningKey(self.seed).verify_key))

    @property
    def key_id(self) -> str:
        return self.public_key.key_id

    def sign(self, message: bytes) -> bytes:
        return nacl.signing.SigningKey(self.seed).sign(message).signature

    def to_text(self) -> str:
        return f"{SECRET_TAG} {self.seed.hex()}\n"


def new_signing_key() -> SigningKey:
    return SigningKey(bytes(nacl.signing.SigningKey.generate()))


def generate_keypair(path: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Write a new secret key to PATH (mode 0600) and its public key to PATH.pub. Never overwrites."""
    private = Path(path)
    public = private.with_name(private.name + ".pub")
    for existing in (private, public):
        if existing.exists() or existing.is_symlink():
            raise CcsError(
                "refusing to overwrite an existing key file",
                where=str(existing),
                hint="choose another --output or remove the old key first",
            )
    key = new_signing_key()
    atomic_write_bytes(private, key.to_text().encode(), mode=0o600)
    atomic_write_bytes(public, key.public_key.to_text().encode(), mode=0o644)
    return private, public


def _read_key_line(path: Path, tag: str) -> list[str]:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise CcsError("key file not found", where=str(path), hint="create one with 'conary ccs keygen'")
    except UnicodeDecodeError:
        raise CcsError("not a Conary key file (not ASCII text)", where=str(path))
    fields = text.split()
    if not fields or fields[0] != tag:
        raise CcsError(f"not a Conary key file (expected it to start with '{tag}')", where=str(path))
    return fields


def _hex32(value: str, path: Path) -> bytes:
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise CcsError("malformed key: expected 64 hex digits", where=str(path))
    return raw


def load_signing_key(path: str | os.PathLike[str]) -> SigningKey:
    path = Path(path)
    fields = _read_key_line(path, SECRET_TAG)
    if len(fields) != 2:
        raise CcsError("malformed secret key file", where=str(path))
    return SigningKey(_hex32(fields[1], path))


def load_public_key(path: str | os.PathLike[str]) -> PublicKey:
    """Load KEY.pub; a secret key file is accepted too (its public half is used)."""
    path = Path(path)
    try:
        head = path.read_bytes()[: len(SECRET_TAG)]
    except FileNotFoundError:
        raise CcsError("key file not found", where=str(path))
    if head == SECRET_TAG.encode():
        return load_signing_key(path).public_key
    fields = _read_key_line(path, PUBLIC_TAG)
    if len(fields) not in (2, 3):
        raise CcsError("malformed public key file", where=str(path))
    key = PublicKey(_hex32(fields[1], path))
    if len(fields) == 3 and fields[2] != key.key_id:
        raise CcsError(f"key id {fields[2]} does not match the key (it is {key.key_id})", where=str(path))
    return key


def as_signing_key(key: SigningKey | str | os.PathLike[str]) -> SigningKey:
    return key if isinstance(key, SigningKey) else load_signing_key(key)


def as_public_key(key: PublicKey | SigningKey | bytes | str | os.PathLike[str]) -> PublicKey:
    if isinstance(key, PublicKey):
        return key
    if isinstance(key, SigningKey):
        return key.public_key
    if isinstance(key, bytes):
        if len(key) != 32:
            raise CcsError("a raw Ed25519 public key is 32 bytes")
        return PublicKey(key)
    return load_public_key(key)


def default_key_dir() -> Path:
    """$CONARY_KEY_DIR, else $XDG_CONFIG_HOME/conary/keys, else ~/.config/conary/keys."""
    if os.environ.get("CONARY_KEY_DIR"):
        return Path(os.environ["CONARY_KEY_DIR"])
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "conary" / "keys"


def default_key_path() -> Path:
    return default_key_dir() / "default"


def ensure_default_key() -> tuple[SigningKey, bool]:
    """Load the user's default key, creating it on first use. Returns (key, created)."""
    path = default_key_path()
    if path.exists():
        return load_signing_key(path), False
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    generate_keypair(path)
    return load_signing_key(path), True
