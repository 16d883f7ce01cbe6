"""CCS packages (format 1): build, sign, verify, read, extract and export them.

Public API; the format itself is specified in docs/ccs-format.md.

    build_package(tree, meta, *, output_dir, signing_key, ...) -> Path
    open_package(path, trusted_keys=None) -> Package       # verifies everything first
    Package.manifest / .signer_key_id / .iter_file_data(entry) / .read_object(id) / .extract(dest)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conary.ccs.build import build_package, package_file_name
    from conary.ccs.components import (
        BUILTIN_COMPONENTS,
        DEFAULT_ON,
        ComponentRules,
        classify_component,
        glob_matches,
        is_default_component,
    )
    from conary.ccs.deps import elf_abi, scan_dependencies, soname_dependency
    from conary.ccs.errors import CcsError, CcsInputError, CcsVerifyError
    from conary.ccs.keys import (
        PublicKey,
        SigningKey,
        default_key_path,
        ensure_default_key,
        generate_keypair,
        key_id_of,
        load_public_key,
        load_signing_key,
        new_signing_key,
    )
    from conary.ccs.limits import Limits
    from conary.ccs.manifest import decode_manifest, encode_manifest
    from conary.ccs.merkle import component_root, content_root
    from conary.ccs.model import (
        DEPENDENCY_KINDS,
        FORMAT_VERSION,
        SCRIPTLET_NAMES,
        Component,
        Dependency,
        FileEntry,
        Manifest,
        PackageMeta,
    )
    from conary.ccs.oci import export_oci
    from conary.ccs.reader import Package, open_package
    from conary.ccs.sign import resign_package
    from conary.ccs.spec import BuildSpec, load_build_spec

# What each public name is, and the module that defines it. Names load on first use (PEP 562):
# the installer runtime needs the reader, not the packer, ELF scanner or OCI writer, and
# `conary remove` should not pay for importing those.
_PUBLIC = {
    "BUILTIN_COMPONENTS": "conary.ccs.components",
    "BuildSpec": "conary.ccs.spec",
    "CcsError": "conary.ccs.errors",
    "CcsInputError": "conary.ccs.errors",
    "CcsVerifyError": "conary.ccs.errors",
    "Component": "conary.ccs.model",
    "ComponentRules": "conary.ccs.components",
    "DEFAULT_ON": "conary.ccs.components",
    "DEPENDENCY_KINDS": "conary.ccs.model",
    "Dependency": "conary.ccs.model",
    "FORMAT_VERSION": "conary.ccs.model",
    "FileEntry": "conary.ccs.model",
    "Limits": "conary.ccs.limits",
    "Manifest": "conary.ccs.model",
    "Package": "conary.ccs.reader",
    "PackageMeta": "conary.ccs.model",
    "PublicKey": "conary.ccs.keys",
    "SCRIPTLET_NAMES": "conary.ccs.model",
    "SigningKey": "conary.ccs.keys",
    "build_package": "conary.ccs.build",
    "classify_component": "conary.ccs.components",
    "component_root": "conary.ccs.merkle",
    "content_root": "conary.ccs.merkle",
    "decode_manifest": "conary.ccs.manifest",
    "default_key_path": "conary.ccs.keys",
    "elf_abi": "conary.ccs.deps",
    "encode_manifest": "conary.ccs.manifest",
    "ensure_default_key": "conary.ccs.keys",
    "export_oci": "conary.ccs.oci",
    "generate_keypair": "conary.ccs.keys",
    "glob_matches": "conary.ccs.components",
    "is_default_component": "conary.ccs.components",
    "key_id_of": "conary.ccs.keys",
    "load_build_spec": "conary.ccs.spec",
    "load_public_key": "conary.ccs.keys",
    "load_signing_key": "conary.ccs.keys",
    "new_signing_key": "conary.ccs.keys",
    "open_package": "conary.ccs.reader",
    "package_file_name": "conary.ccs.build",
    "resign_package": "conary.ccs.sign",
    "scan_dependencies": "conary.ccs.deps",
    "soname_dependency": "conary.ccs.deps",
}

__all__ = [
    "BUILTIN_COMPONENTS",
    "DEFAULT_ON",
    "DEPENDENCY_KINDS",
    "FORMAT_VERSION",
    "SCRIPTLET_NAMES",
    "BuildSpec",
    "CcsError",
    "CcsInputError",
    "CcsVerifyError",
    "Component",
    "ComponentRules",
    "Dependency",
    "FileEntry",
    "Limits",
    "Manifest",
    "Package",
    "PackageMeta",
    "PublicKey",
    "SigningKey",
    "build_package",
    "classify_component",
    "component_root",
    "content_root",
    "decode_manifest",
    "default_key_path",
    "elf_abi",
    "encode_manifest",
    "ensure_default_key",
    "export_oci",
    "generate_keypair",
    "glob_matches",
    "is_default_component",
    "key_id_of",
    "load_build_spec",
    "load_public_key",
    "load_signing_key",
    "new_signing_key",
    "open_package",
    "package_file_name",
    "resign_package",
    "scan_dependencies",
    "soname_dependency",
]


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_PUBLIC})
