"""The dependency scan's ELF reader agrees with pyelftools' full parse on the host's real ELF files.

The reader uses struct for speed (pyelftools costs about 3 ms per file, most of a package's pack
time for a library-heavy tree); pyelftools is the reference it must match, field by field.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

from conary.ccs.elfinfo import ELF_MAGIC, ElfInfo, abi_name, parse_elf


def reference(path: Path) -> ElfInfo:
    """The same facts as pyelftools reads them."""
    with open(path, "rb") as handle:
        elf = ELFFile(handle)
        soname, needed = "", []
        for section in elf.iter_sections():
            if isinstance(section, DynamicSection):
                for tag in section.iter_tags():
                    if tag.entry.d_tag == "DT_NEEDED" and tag.needed not in needed:
                        needed.append(tag.needed)
                    elif tag.entry.d_tag == "DT_SONAME":
                        soname = tag.soname
        interpreter = next(
            (seg.get_interp_name() for seg in elf.iter_segments() if seg["p_type"] == "PT_INTERP"), ""
        )
        build_id = ""
        for segment in elf.iter_segments():
            if segment["p_type"] == "PT_NOTE":
                for note in segment.iter_notes():
                    if note["n_type"] == "NT_GNU_BUILD_ID" and not build_id:
                        build_id = note["n_desc"]
        debug = elf.get_section_by_name(".debug_info")
        return ElfInfo(
            abi=abi_name(elf["e_machine"], elf.elfclass),
            elf_type=elf["e_type"],
            soname=soname,
            needed=tuple(needed),
            interpreter=interpreter,
            build_id=build_id,
            has_debug_info=debug is not None and debug["sh_type"] != "SHT_NOBITS" and debug["sh_size"] > 0,
        )


def host_elf_files(limit: int) -> list[Path]:
    found: list[Path] = []
    for top in ("/usr/lib/x86_64-linux-gnu", "/usr/bin", "/usr/sbin", "/usr/lib/gcc"):
        for dirpath, dirs, names in os.walk(top):
            dirs.sort()
            for name in sorted(names):
                path = Path(dirpath) / name
                if path.is_symlink() or not path.is_file() or path.stat().st_size > 64 << 20:
                    continue
                with open(path, "rb") as handle:
                    if handle.read(4) == ELF_MAGIC:
                        found.append(path)
                if len(found) >= limit:
                    return found
    return found


def test_reader_matches_pyelftools_on_host_files() -> None:
    files = host_elf_files(300)
    assert len(files) >= 100, "expected a Debian host with shared libraries and binaries"
    kinds = set()
    for path in files:
        expected = reference(path)
        assert parse_elf(path.read_bytes()) == expected, path
        kinds.add((expected.elf_type, bool(expected.soname), bool(expected.interpreter)))
    # shared libraries with a SONAME and executables with an interpreter were both compared
    assert ("ET_DYN", True, False) in kinds
    assert any(interp for _, _, interp in kinds)


def test_reader_matches_pyelftools_on_debug_binary(tmp_path: Path) -> None:
    source = tmp_path / "main.c"
    source.write_text("#include <zlib.h>\nint main(void){return zlibVersion()[0] == 0;}\n")
    binary = tmp_path / "main"
    subprocess.run(["gcc", "-g", "-o", str(binary), str(source), "-lz"], check=True)
    info = parse_elf(binary.read_bytes())
    assert info == reference(binary)
    assert info is not None and info.has_debug_info and "libz.so.1" in info.needed and info.build_id


@pytest.mark.parametrize("data", [b"", b"\x7fELF", b"\x7fELF" + bytes(60), b"\x7fELF\x03\x01" + bytes(200)])
def test_reader_rejects_what_is_not_elf(data: bytes) -> None:
    assert parse_elf(data) is None
