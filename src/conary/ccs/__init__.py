"""CCS packages (format 1): build, sign, verify, read, extract and export them.

Public API; the format itself is specified in docs/ccs-format.md.

    build_package(tree, meta, *, output_dir, signing_key, ...) -> Path
    open_package(path, trusted_keys=None) -> Package       # verifies everything first
    Package.manifest / .signer_key_id / .iter_file_data(entry) / .read_object(id) / .extract(dest)
"""

from __future__ import annotations

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
