"""`conary ccs`: keygen, build, sign, verify, inspect, extract and export CCS packages."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from conary.ccs import (
    FileEntry,
    Package,
    build_package,
    ensure_default_key,
    export_oci,
    generate_keypair,
    load_public_key,
    load_signing_key,
    open_package,
    resign_package,
)
from conary.ccs.build import DEFAULT_COMPRESSION_LEVEL
from conary.ccs.errors import CcsInputError
from conary.ccs.keys import default_key_path
from conary.ccs.spec import load_build_spec
from conary.cli import output
from conary.errors import InputError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "ccs",
        help="build, sign, verify, inspect, extract and export CCS packages",
        description="Work with CCS packages (format 1, see docs/ccs-format.md).",
    )
    sub = p.add_subparsers(dest="ccs_command", metavar="ACTION", parser_class=type(p))
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])

    k = sub.add_parser(
        "keygen",
        help="create an Ed25519 signing key (KEY, KEY.pub)",
        description="Create an Ed25519 key pair: the secret key KEY (mode 0600) and the public key "
        "KEY.pub, which others pass to 'ccs verify --trust' or 'conary key add'.",
    )
    k.add_argument(
        "--output", "-o", required=True, metavar="KEY", help="secret key path; KEY.pub is written too"
    )
    k.set_defaults(func=_keygen)

    b = sub.add_parser(
        "build",
        help="build a .ccs from DIR/ccs.toml and a file tree",
        description="Build a package from DIR/ccs.toml and the tree DIR/root (or --source). "
        "SOURCE_DATE_EPOCH (default 0) stamps the archive.",
    )
    b.add_argument("dir", metavar="DIR", help="directory holding ccs.toml")
    b.add_argument("--source", metavar="TREE", help="file tree to pack (default: DIR/root)")
    b.add_argument(
        "--output", "-o", metavar="OUTDIR", help="where the .ccs goes (default: current directory)"
    )
    b.add_argument("--key", metavar="KEY", help="signing key (default: the user's default key)")
    b.add_argument("--no-split-debug", action="store_true", help="keep debug info in the binaries")
    b.add_argument("--level", type=int, default=None, metavar="N", help="zstd level for objects")
    b.set_defaults(func=_build)

    s = sub.add_parser(
        "sign",
        help="replace a package's signature (atomically)",
        description="Verify PKG, then sign its manifest with KEY in place of its signature. The file is "
        "replaced atomically; its content and content_root do not change.",
    )
    s.add_argument("package", metavar="PKG", help="the .ccs file to re-sign")
    s.add_argument("--key", required=True, metavar="KEY", help="secret key to sign with")
    s.set_defaults(func=_sign)

    v = sub.add_parser(
        "verify",
        help="verify a package completely; exit 0 if valid",
        description="Verify PKG completely: archive structure and budgets, the signature, the manifest, "
        "and every object's and file's digest and size. Exit 0 if valid, 1 naming the first flaw.\n\n"
        "Without --trust, no key is trusted: the signature is checked against the public key the "
        "package carries, which proves the package is intact and names its signer (the key id "
        "printed), not that the signer is anyone you trust. With --trust, the signer must be one of "
        "the given public keys. (Installing into a root checks the keys that root trusts, see "
        "'conary key list'.)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    v.add_argument("package", metavar="PKG", help="the .ccs file to verify")
    v.add_argument(
        "--trust",
        action="append",
        metavar="PUBKEY",
        help="accept only signers among these public keys (repeatable; default: any signer, checked "
        "against the key inside the package)",
    )
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(func=_verify)

    i = sub.add_parser(
        "inspect",
        help="show a package's identity, components, files and dependencies",
        description="Verify PKG, then show its name, version, signer, content root and components; "
        "--files and --deps add the file list and the provides and requires.",
    )
    i.add_argument("package", metavar="PKG", help="the .ccs file to show")
    i.add_argument("--files", action="store_true", help="list files")
    i.add_argument("--deps", action="store_true", help="list provides and requires")
    i.add_argument("--json", action="store_true", help="print JSON")
    i.set_defaults(func=_inspect)

    x = sub.add_parser(
        "extract",
        help="verify, then write a package's files below DEST",
        description="Verify PKG completely, then write the files of its default components (or of "
        "--component) below DEST, and say how many files and bytes were written. Nothing is written "
        "when the package fails verification or its declared size does not fit in DEST's free space; "
        "an existing file in DEST is never replaced and a symlink in DEST is never followed. Files are "
        "written without their setuid/setgid bits (the count is reported) unless --preserve-setuid is "
        "given with a --trust key that signed the package.",
    )
    x.add_argument("package", metavar="PKG", help="the .ccs file to extract")
    x.add_argument("dest", metavar="DEST", help="directory to write into (created if missing)")
    x.add_argument(
        "--component", action="append", metavar="NAME", help="extract only this component (repeatable)"
    )
    x.add_argument(
        "--trust", action="append", metavar="PUBKEY", help="accept only these signers (repeatable)"
    )
    x.add_argument(
        "--preserve-setuid",
        action="store_true",
        help="keep setuid/setgid bits; needs --trust (the signer must be one of those keys)",
    )
    x.add_argument("--quiet", "-q", action="store_true", help="print nothing on success")
    x.set_defaults(func=_extract)

    e = sub.add_parser(
        "export",
        help="export packages as an OCI image archive",
        description="Verify each PKG, then write one OCI image archive (a tar in the OCI image layout) "
        "whose single layer holds the files of all the packages, for container tools such as podman "
        "or skopeo. The archive is written atomically.",
    )
    e.add_argument("packages", nargs="+", metavar="PKG", help="the .ccs files to put in the image")
    e.add_argument("--format", choices=["oci"], default="oci", help="image format (oci)")
    e.add_argument("--output", "-o", required=True, metavar="IMAGE.tar", help="the image archive to write")
    e.add_argument("--tag", default="latest", help="reference name inside the archive (default: latest)")
    e.add_argument("--arch", help="image architecture when the packages are all noarch")
    e.set_defaults(func=_export)


def _keygen(args: argparse.Namespace) -> int:
    private, public = generate_keypair(args.output)
    print(f"{private}\n{public}")
    output.notice(f"key id {load_public_key(public).key_id}")
    return 0


def _epoch() -> int:
    raw = os.environ.get("SOURCE_DATE_EPOCH", "0").strip() or "0"
    try:
        value = int(raw)
    except ValueError:
        raise CcsInputError(f"SOURCE_DATE_EPOCH={raw!r} is not an integer")
    return value


def _build(args: argparse.Namespace) -> int:
    spec = load_build_spec(args.dir)
    tree = Path(args.source) if args.source else Path(args.dir) / "root"
    if args.key:
        key = load_signing_key(args.key)
    else:
        key, created = ensure_default_key()
        if created:
            output.notice(f"created signing key {default_key_path()} (key id {key.key_id})")
    with output.byte_progress({"survey": "reading", "compress": "compressing"}) as progress:
        path = build_package(
            tree,
            spec.meta,
            output_dir=Path(args.output or "."),
            signing_key=key,
            component_rules=spec.components,
            scriptlets=spec.scriptlets,
            provenance=spec.provenance,
            source_date_epoch=_epoch(),
            split_debug=not args.no_split_debug,
            compression_level=DEFAULT_COMPRESSION_LEVEL if args.level is None else args.level,
            progress=progress,
        )
    print(path)
    return 0


def _sign(args: argparse.Namespace) -> int:
    key_id = resign_package(args.package, args.key)
    output.notice(f"signed {args.package} with key {key_id}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    # A failed check raises CcsVerifyError: one line naming the flaw, exit status 1.
    trusted = [load_public_key(p) for p in args.trust] if args.trust else None
    with open_package(args.package, trusted) as pkg:
        if args.json:
            output.emit_json(
                {
                    "ok": True,
                    "package": str(args.package),
                    "nevra": pkg.nevra,
                    "signer": pkg.signer_key_id,
                    "trusted": trusted is not None,
                    "content_root": pkg.manifest.content_root,
                }
            )
        else:
            print(f"OK {pkg.nevra} signed by {pkg.signer_key_id}")
    return 0


def inspect_data(pkg: Package) -> dict[str, Any]:
    m = pkg.manifest
    return {
        "name": m.name,
        "version": m.version,
        "release": m.release,
        "arch": m.arch,
        "nevra": m.nevra,
        "metadata": dict(m.metadata),
        "signer": pkg.signer_key_id,
        "components": {
            c.name: {
                "default": c.default,
                "files": len(m.files_in(c.name)),
                "size": sum(f.size for f in m.files_in(c.name)),
                "root": c.root,
            }
            for c in m.components
        },
        "files": [
            {
                "path": f.path,
                "type": f.type,
                "mode": f.mode,
                "size": f.size,
                "sha256": f.sha256,
                "component": f.component,
                **({"target": f.target} if f.target else {}),
                **({"config": True} if f.config else {}),
            }
            for f in m.files
        ],
        "provides": [{"kind": d.kind, "name": d.name, "version": d.version} for d in m.provides],
        "requires": [{"kind": d.kind, "name": d.name, "version": d.version} for d in m.requires],
        "scriptlets": sorted(m.scriptlets),
        "content_root": m.content_root,
    }


def _inspect(args: argparse.Namespace) -> int:
    with open_package(args.package) as pkg:
        data = inspect_data(pkg)
    if args.json:
        output.emit_json(data)
        return 0
    print(f"{data['nevra']}  (signed by {data['signer']})")
    if data["metadata"].get("summary"):
        print(f"  {data['metadata']['summary']}")
    print(f"  content_root {data['content_root']}")
    for name, comp in data["components"].items():
        flag = "default" if comp["default"] else "optional"
        print(f"  :{name:<10} {flag:<8} {comp['files']:>6} entries {comp['size']:>12} bytes")
    if args.files:
        for f in data["files"]:
            extra = f" -> {f['target']}" if f["type"] == "symlink" else ""
            print(f"  {f['mode']:04o} {f['size']:>10} {f['component']:<9} {f['path']}{extra}")
    if args.deps:
        for key in ("provides", "requires"):
            for d in data[key]:
                version = f" {d['version']}" if d["version"] else ""
                print(f"  {key[:-1]:<8} {d['kind']}({d['name']}){version}")
    return 0


def _extract(args: argparse.Namespace) -> int:
    if args.preserve_setuid and not args.trust:
        raise InputError(
            "--preserve-setuid needs a trusted signer",
            where="ccs extract",
            hint="name the signer's public key with --trust KEY.pub",
        )
    # With --trust, open_package refuses any other signer; without it the signer is not trusted.
    trusted = [load_public_key(p) for p in args.trust] if args.trust else None
    with open_package(args.package, trusted) as pkg:
        written = pkg.files(args.component)
        done = pkg.extract(Path(args.dest), args.component, preserve_setid=args.preserve_setuid)
    if done.setid_cleared:
        output.notice(
            f"cleared the setuid/setgid bits of {done.setid_cleared} file(s): the signer "
            f"{pkg.signer_key_id} is not trusted (to keep them: --trust KEY.pub --preserve-setuid)"
            if not args.trust
            else f"cleared the setuid/setgid bits of {done.setid_cleared} file(s) "
            "(to keep them: --preserve-setuid)"
        )
    if not args.quiet:
        print(_extract_summary(done.files, done.bytes, written, args.dest))
    return 0


def _extract_summary(files: int, size: int, entries: Sequence[FileEntry], dest: str) -> str:
    """``wrote 12 files (34,567 bytes), 3 directories and 1 symlink to DEST``."""
    count = {kind: sum(1 for e in entries if e.type == kind) for kind in ("dir", "symlink")}
    count["file"] = files

    def many(n: int, word: str, plural: str) -> str:
        return f"{n} {word if n == 1 else plural}"

    regular = many(count["file"], "file", "files") + f" ({size:,} byte{'' if size == 1 else 's'})"
    dirs = many(count["dir"], "directory", "directories")
    links = many(count["symlink"], "symlink", "symlinks")
    return f"wrote {regular}, {dirs} and {links} to {dest}"


def _export(args: argparse.Namespace) -> int:
    path = export_oci(args.packages, Path(args.output), arch=args.arch, tag=args.tag)
    print(path)
    return 0
