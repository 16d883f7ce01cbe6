"""MANIFEST.sig: an Ed25519 signature over the exact MANIFEST bytes, with the signer's key.

MANIFEST.sig is canonical CBOR: {"format": 1, "algorithm": "ed25519", "key_id": <16 hex>,
"public_key": <32 bytes>, "signature": <64 bytes>}.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cbor2

from conary.ccs.errors import CcsVerifyError
from conary.ccs.keys import PublicKey, SigningKey, as_signing_key, key_id_of
from conary.ccs.tarfmt import end_of_archive, make_header, padding
from conary.fsutil import atomic_writer

SIGNATURE_KEYS = frozenset({"format", "algorithm", "key_id", "public_key", "signature"})


@dataclass(frozen=True)
class Signature:
    key_id: str
    public_key: PublicKey
    signature: bytes


def encode_signature(key: SigningKey, manifest: bytes) -> bytes:
    public = key.public_key
    return cbor2.dumps(
        {
            "format": 1,
            "algorithm": "ed25519",
            "key_id": public.key_id,
            "public_key": public.raw,
            "signature": key.sign(manifest),
        },
        canonical=True,
    )


def _bad(what: str) -> CcsVerifyError:
    return CcsVerifyError(what, where="MANIFEST.sig")


def decode_signature(data: bytes) -> Signature:
    try:
        raw = cbor2.loads(data, allow_indefinite=False, allow_duplicate_keys=False, max_depth=2)
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError) as err:
        raise _bad(f"signature record is not valid CBOR: {err}")
    if not isinstance(raw, dict) or set(raw) != SIGNATURE_KEYS:
        raise _bad("signature record does not have the format-1 keys")
    if raw["format"] != 1 or raw["algorithm"] != "ed25519":
        raise _bad(f"unsupported signature format {raw['format']!r} / algorithm {raw['algorithm']!r}")
    public, sig, key_id = raw["public_key"], raw["signature"], raw["key_id"]
    if not isinstance(public, bytes) or len(public) != 32:
        raise _bad("public key must be 32 bytes")
    if not isinstance(sig, bytes) or len(sig) != 64:
        raise _bad("signature must be 64 bytes")
    if not isinstance(key_id, str) or key_id != key_id_of(public):
        raise _bad(f"key id {key_id!r} does not match the embedded public key ({key_id_of(public)})")
    if cbor2.dumps(raw, canonical=True) != data:
        raise _bad("signature record is not in canonical CBOR form")
    return Signature(key_id, PublicKey(public), sig)


def check_signature(
    manifest: bytes, signature_bytes: bytes, trusted_keys: Sequence[PublicKey] | None
) -> Signature:
    """Verify MANIFEST.sig over the MANIFEST bytes; with trusted_keys, the signer must be one of them."""
    sig = decode_signature(signature_bytes)
    if trusted_keys is not None:
        trusted = {k.key_id: k for k in trusted_keys}
        if sig.key_id not in trusted or trusted[sig.key_id].raw != sig.public_key.raw:
            raise CcsVerifyError(
                f"signed by untrusted key {sig.key_id}",
                where="MANIFEST.sig",
                hint="trusted keys: " + (", ".join(sorted(trusted)) or "none"),
            )
    if not sig.public_key.verify(manifest, sig.signature):
        raise CcsVerifyError(
            f"signature does not match MANIFEST (key {sig.key_id}): the manifest or signature was altered",
            where="MANIFEST.sig",
        )
    return sig


def resign_package(
    path: str | os.PathLike[str],
    key: SigningKey | str | os.PathLike[str],
    trusted_keys: Sequence[PublicKey] | None = None,
) -> str:
    """Replace MANIFEST.sig with a signature by *key*, atomically. Returns the new key id.

    The package is verified first (against trusted_keys if given), so a corrupt package is never
    blessed with a fresh signature.
    """
    from conary.ccs.reader import open_package  # breaks a cycle: reader imports this module

    path = Path(path)
    key = as_signing_key(key)
    with open_package(path, trusted_keys) as package:
        members = package.members
        epoch = package.manifest.source_date_epoch
        manifest_bytes = package.manifest_bytes
        fd = package.fileno()
        last = members[-1]
        objects_start = members[2].header_offset if len(members) > 2 else None
        objects_end = last.data_offset + last.size + len(padding(last.size))
        new_sig = encode_signature(key, manifest_bytes)
        with atomic_writer(path, 0o644) as out:
            head = (
                make_header("MANIFEST", len(manifest_bytes), epoch)
                + manifest_bytes
                + padding(len(manifest_bytes))
            )
            head += make_header("MANIFEST.sig", len(new_sig), epoch) + new_sig + padding(len(new_sig))
            out.write(head)
            written = len(head)
            if objects_start is not None:
                pos = objects_start
                while pos < objects_end:
                    block = os.pread(fd, min(1 << 20, objects_end - pos), pos)
                    if not block:
                        raise CcsVerifyError("package changed while it was being re-signed", where=str(path))
                    out.write(block)
                    pos += len(block)
                written += objects_end - objects_start
            out.write(end_of_archive(written))
    return key.key_id
