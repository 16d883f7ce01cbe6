"""Facts about an ELF file that packaging needs: ABI, SONAME, NEEDED, interpreter, build-id, debug info.

Everything is read with struct; pyelftools supplies the names (machine, file type) only. Its
construct-based parsing costs far more per file than struct, and it runs holding the GIL, which
the packer's worker threads need for everything else.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

from elftools.elf.enums import ENUM_D_TAG, ENUM_E_MACHINE, ENUM_E_TYPE, ENUM_P_TYPE_BASE

ELF_MAGIC = b"\x7fELF"

# value -> name; where two names share a value the later one wins, as in pyelftools' own decoding
_MACHINE_NAMES = {v: k for k, v in ENUM_E_MACHINE.items() if isinstance(v, int)}
_TYPE_NAMES = {v: k for k, v in ENUM_E_TYPE.items() if isinstance(v, int)}
_ABI = {
    ("EM_X86_64", 64): "x86-64",
    ("EM_X86_64", 32): "x32",
    ("EM_386", 32): "i386",
    ("EM_AARCH64", 64): "aarch64",
    ("EM_ARM", 32): "arm",
    ("EM_RISCV", 64): "riscv64",
    ("EM_RISCV", 32): "riscv32",
    ("EM_PPC64", 64): "ppc64",
    ("EM_S390", 64): "s390x",
}
_PT_LOAD = ENUM_P_TYPE_BASE["PT_LOAD"]
_PT_DYNAMIC = ENUM_P_TYPE_BASE["PT_DYNAMIC"]
_PT_INTERP = ENUM_P_TYPE_BASE["PT_INTERP"]
_PT_NOTE = ENUM_P_TYPE_BASE["PT_NOTE"]
_DT_NULL = ENUM_D_TAG["DT_NULL"]
_DT_NEEDED = ENUM_D_TAG["DT_NEEDED"]
_DT_SONAME = ENUM_D_TAG["DT_SONAME"]
_DT_STRTAB = ENUM_D_TAG["DT_STRTAB"]
_DT_STRSZ = ENUM_D_TAG["DT_STRSZ"]
_NT_GNU_BUILD_ID = 3


@dataclass(frozen=True)
class ElfInfo:
    abi: str  # e.g. "x86-64"
    elf_type: str  # ET_EXEC, ET_DYN, ET_REL, ...
    soname: str
    needed: tuple[str, ...]
    interpreter: str
    build_id: str  # hex, "" when absent
    has_debug_info: bool


@dataclass(frozen=True)
class _Header:
    e_type: int
    e_machine: int
    e_phoff: int
    e_shoff: int
    e_phentsize: int
    e_phnum: int
    e_shentsize: int
    e_shnum: int
    e_shstrndx: int


@lru_cache(maxsize=4)
def _header_struct(little_endian: bool, elfclass: int) -> struct.Struct:
    """Elf32_Ehdr / Elf64_Ehdr (52 / 64 bytes), e_ident included as 16 pad bytes."""
    addr = "Q" if elfclass == 64 else "I"
    return struct.Struct(("<" if little_endian else ">") + "16xHHI" + addr * 3 + "IHHHHHH")


def _read_header(buf: bytes | memoryview, little_endian: bool, elfclass: int) -> _Header | None:
    layout = _header_struct(little_endian, elfclass)
    if len(buf) < layout.size:
        return None
    e_type, machine, _version, _entry, phoff, shoff, _flags, _ehsize, *rest = layout.unpack_from(buf)
    return _Header(e_type, machine, phoff, shoff, *rest)


def abi_name(machine: str | int, elfclass: int) -> str:
    name = machine if isinstance(machine, str) else _MACHINE_NAMES.get(machine, f"machine{machine}")
    return _ABI.get((name, elfclass), f"{name.removeprefix('EM_').lower()}-{elfclass}")


def _cstr(buf: bytes | memoryview, offset: int, limit: int) -> str:
    if offset < 0 or offset >= limit:
        return ""
    end = bytes(buf[offset : min(limit, offset + 4096)]).find(b"\0")
    raw = bytes(buf[offset : offset + end]) if end >= 0 else b""
    return raw.decode("utf-8", "replace")


def parse_elf(buf: bytes | memoryview) -> ElfInfo | None:
    """Read an ELF image held in memory; None if it is not a well-formed ELF file."""
    if len(buf) < 52 or bytes(buf[:4]) != ELF_MAGIC:
        return None
    ei_class, ei_data = buf[4], buf[5]
    if ei_class not in (1, 2) or ei_data not in (1, 2):
        return None
    elfclass = 32 if ei_class == 1 else 64
    little = ei_data == 1
    header = _read_header(buf, little, elfclass)
    if header is None:
        return None
    end = "<" if little else ">"
    size = len(buf)
    elf_type = _TYPE_NAMES.get(header.e_type, str(header.e_type))

    # program headers
    loads: list[tuple[int, int, int]] = []
    dynamic: tuple[int, int] | None = None
    interpreter = ""
    build_id = ""
    phoff, phentsize, phnum = header.e_phoff, header.e_phentsize, header.e_phnum
    phdr = struct.Struct(end + ("IIQQQQQQ" if elfclass == 64 else "IIIIIIII"))
    if phnum and phentsize >= phdr.size and phoff + phnum * phentsize <= size:
        for i in range(phnum):
            fields = phdr.unpack_from(buf, phoff + i * phentsize)
            if elfclass == 64:
                p_type, _flags, p_offset, p_vaddr, _paddr, p_filesz = fields[:6]
            else:
                p_type, p_offset, p_vaddr, _paddr, p_filesz = fields[:5]
            if p_offset + p_filesz > size:
                continue
            if p_type == _PT_LOAD:
                loads.append((p_vaddr, p_offset, p_filesz))
            elif p_type == _PT_DYNAMIC:
                dynamic = (p_offset, p_filesz)
            elif p_type == _PT_INTERP:
                interpreter = _cstr(buf, p_offset, p_offset + p_filesz)
            elif p_type == _PT_NOTE:
                build_id = build_id or _note_build_id(buf, p_offset, p_filesz, end)

    soname = ""
    needed: list[str] = []
    if dynamic is not None:
        dyn = struct.Struct(end + ("qQ" if elfclass == 64 else "iI"))
        entries: list[tuple[int, int]] = []
        for pos in range(dynamic[0], dynamic[0] + dynamic[1] - dyn.size + 1, dyn.size):
            tag, val = dyn.unpack_from(buf, pos)
            if tag == _DT_NULL:
                break
            entries.append((tag, val))
        strtab = next((v for t, v in entries if t == _DT_STRTAB), None)
        strsz = next((v for t, v in entries if t == _DT_STRSZ), 0)
        str_off = _vaddr_to_offset(loads, strtab) if strtab is not None else None
        if str_off is not None:
            limit = min(size, str_off + strsz) if strsz else size
            for tag, val in entries:
                if tag == _DT_NEEDED:
                    name = _cstr(buf, str_off + val, limit)
                    if name and name not in needed:
                        needed.append(name)
                elif tag == _DT_SONAME:
                    soname = _cstr(buf, str_off + val, limit)

    has_debug = _has_debug_sections(buf, header, elfclass, end)
    return ElfInfo(
        abi=abi_name(header.e_machine, elfclass),
        elf_type=elf_type,
        soname=soname,
        needed=tuple(needed),
        interpreter=interpreter,
        build_id=build_id,
        has_debug_info=has_debug,
    )


def _vaddr_to_offset(loads: list[tuple[int, int, int]], vaddr: int) -> int | None:
    for p_vaddr, p_offset, p_filesz in loads:
        if p_vaddr <= vaddr < p_vaddr + p_filesz:
            return vaddr - p_vaddr + p_offset
    return None


def _note_build_id(buf: bytes | memoryview, offset: int, length: int, end: str) -> str:
    pos, stop = offset, offset + length
    note = struct.Struct(end + "III")
    while pos + note.size <= stop:
        namesz, descsz, ntype = note.unpack_from(buf, pos)
        name_start = pos + note.size
        desc_start = name_start + ((namesz + 3) & ~3)
        desc_end = desc_start + descsz
        if desc_end > stop:
            break
        if ntype == _NT_GNU_BUILD_ID and bytes(buf[name_start : name_start + namesz]) == b"GNU\0" and descsz:
            return bytes(buf[desc_start:desc_end]).hex()
        pos = desc_start + ((descsz + 3) & ~3)
    return ""


def _has_debug_sections(buf: bytes | memoryview, header: _Header, elfclass: int, end: str) -> bool:
    shoff, shentsize, shnum, shstrndx = header.e_shoff, header.e_shentsize, header.e_shnum, header.e_shstrndx
    shdr = struct.Struct(end + ("IIQQQQIIQQ" if elfclass == 64 else "IIIIIIIIII"))
    size = len(buf)
    if not shnum or shentsize < shdr.size or shoff + shnum * shentsize > size or shstrndx >= shnum:
        return False
    sections = [shdr.unpack_from(buf, shoff + i * shentsize) for i in range(shnum)]
    str_offset, str_size = sections[shstrndx][4], sections[shstrndx][5]
    if str_offset + str_size > size:
        return False
    names = bytes(buf[str_offset : str_offset + str_size])
    for sec in sections:
        start = sec[0]
        name = names[start : names.find(b"\0", start)] if start < len(names) else b""
        if name in (b".debug_info", b".zdebug_info"):
            return sec[5] > 0 and sec[1] != 8  # SHT_NOBITS means the data lives elsewhere
    return False


def read_elf(path: str) -> ElfInfo | None:
    with open(path, "rb") as handle:
        return parse_elf(handle.read())
