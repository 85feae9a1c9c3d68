"""Whether a checkpoint file its reader refused was cut short, read from the file's own structure
(the zip archive's end record, the pickles' STOP opcodes, the safetensors header) without
unpickling anything. torch and safetensors report a truncated file as `failed finding central
directory`, `struct.error`, an untrusted half class name or `incomplete metadata`, none of which
says that the copy or the download simply did not finish.
"""
from __future__ import annotations

import json
import pickletools
import re
import zipfile
from pathlib import Path

ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = b"\x80"  # how torch's legacy format (a pickle, protocol >= 2) starts
LEGACY_PICKLES = 5  # torch's pre-1.6 format: magic, protocol, sys info, the object, storage keys
SAFETENSORS_MAX_HEADER = 100_000_000  # the format's own limit; a larger length is garbage


def kind_of(path: Path) -> str:
    return "safetensors file" if path.suffix == ".safetensors" else "PyTorch checkpoint"


def starts_like_torch(path: Path) -> bool:
    """A zip archive (torch >= 1.6) or a pickle of protocol >= 2 (the legacy format)."""
    with path.open("rb") as f:
        head = f.read(4)
    return head == ZIP_MAGIC or head[:1] == PICKLE_PROTO


def torch_truncation(path: Path, error: BaseException | None = None) -> str | None:
    """How a torch.save file is truncated ('1234 bytes, and the end of its zip archive is
    missing'), or None when it is whole or damaged in another way."""
    size = path.stat().st_size
    if size == 0:
        return "it is empty: 0 bytes"
    short = re.search(r"unexpected EOF, expected (\d+) more bytes", str(error or ""))
    if short:  # legacy format: torch knows the storage sizes
        return f"{size} bytes, {short.group(1)} bytes short of its last tensor"
    with path.open("rb") as f:
        head = f.read(4)
        if head == ZIP_MAGIC:
            if zipfile.is_zipfile(path):
                return None
            return f"{size} bytes, and the end of its zip archive is missing"
        if head[:1] != PICKLE_PROTO:
            return None  # neither format: not a torch file at all
        f.seek(0)
        for _ in range(LEGACY_PICKLES):
            try:
                for _ in pickletools.genops(f):
                    pass
            except ValueError:  # a cut-off pickle leaves the reader at the end of the file
                return f"{size} bytes; its pickled data stops early" if f.tell() >= size else None
    return None


def safetensors_truncation(path: Path) -> str | None:
    """How a .safetensors file is truncated, judged by the data its header lists; None when whole
    or damaged in another way."""
    size = path.stat().st_size
    if size < 8:
        return f"{size} bytes, shorter than the 8-byte header length"
    with path.open("rb") as f:
        header_size = int.from_bytes(f.read(8), "little")
        if header_size > SAFETENSORS_MAX_HEADER:
            return None
        if 8 + header_size > size:
            return f"{size} bytes, but its header alone is {8 + header_size}"
        try:
            header = json.loads(f.read(header_size))
            end = max((entry["data_offsets"][1] for name, entry in header.items()
                       if name != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError):
            return None
    expected = 8 + header_size + int(end)
    return f"{size} bytes of the {expected} its header lists" if size < expected else None
