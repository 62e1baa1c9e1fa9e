"""Block images the simulated VM sees: the provisioning DVD and the resource disk.

Images are built as plain files (no loop device, no mount): pycdlib writes the
ISO 9660 + Joliet + UDF 2.60 DVD; the resource disk is a sparse file with an
MBR and one NTFS partition made by mkntfs/ntfscp from the image layer.
NTFS templates are cached, so a boot only copies a sparse file.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import struct
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Mapping

SECTOR = 512
PART_START = 2048  # sectors: 1 MiB alignment, as Azure's disks have

DATALOSS_TEXT = (
    "WARNING: THIS IS A TEMPORARY DISK.\r\n\r\n"
    "Any data stored on this drive is SUBJECT TO LOSS and THERE IS NO WAY TO "
    "RECOVER IT.\r\n\r\nPlease do not use this disk for storing any personal or "
    "application data.\r\n"
)


def build_iso(path: Path, files: Mapping[str, bytes]) -> Path:
    """Write an ISO 9660 + Joliet + UDF 2.60 image holding ``files`` at its root."""
    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, udf="2.60", vol_ident="rd_rdfe_stable")
    for name, data in files.items():
        iso9660 = "/" + name.upper().replace("-", "_") + ";1"
        iso.add_fp(io.BytesIO(data), len(data), iso9660, joliet_path="/" + name,
                   udf_path="/" + name)
    iso.write(str(path))
    iso.close()
    return path


def mbr(disk_sectors: int, part_type: int = 0x07, start: int = PART_START) -> bytes:
    """A 512-byte MBR with one partition from ``start`` to the end of the disk."""
    count = disk_sectors - start
    entry = struct.pack("<B3sB3sII", 0x00, b"\xfe\xff\xff", part_type, b"\xfe\xff\xff",
                        start, count)
    sig = os.urandom(4)
    return b"\x00" * 440 + sig + b"\x00\x00" + entry + b"\x00" * 48 + b"\x55\xaa"


def _copy_sparse(src: Path, dst_fh: Any, offset: int) -> None:
    """Copy ``src`` into ``dst_fh`` at ``offset``, skipping its holes."""
    with open(src, "rb") as fh:
        fd = fh.fileno()
        end = os.fstat(fd).st_size
        pos = 0
        while pos < end:
            try:
                data_start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(fd, data_start, os.SEEK_HOLE)
            os.lseek(fd, data_start, os.SEEK_SET)
            remaining = hole - data_start
            dst_fh.seek(offset + data_start)
            while remaining:
                chunk = os.read(fd, min(remaining, 1 << 20))
                dst_fh.write(chunk)
                remaining -= len(chunk)
            pos = hole


def _run(cmd: list[str], env: Mapping[str, str]) -> None:
    proc = subprocess.run(cmd, env=dict(env), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.strip()}")


def template_key(spec: Mapping[str, Any]) -> str:
    text = repr((spec.get("size_mib"), spec.get("format"), tuple(spec.get("files", ()))))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


MSR_TYPE = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
BASIC_DATA_TYPE = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"
MSR_SECTORS = 16 << 11  # 16 MiB, after the 1 MiB alignment gap


def _gpt(disk: Path, env: Mapping[str, str]) -> list[tuple[int, int]]:
    """Write a GPT with an MS-reserved and a basic-data partition (as Azure's
    Gen2 resource disk has); return their (start, sectors)."""
    script = (f"label: gpt\nstart={PART_START}, size={MSR_SECTORS}, type={MSR_TYPE}\n"
              f"type={BASIC_DATA_TYPE}\n")
    proc = subprocess.run(["sfdisk", "--quiet", str(disk)], input=script, text=True,
                          capture_output=True, env=dict(env))
    if proc.returncode != 0:
        raise RuntimeError(f"sfdisk failed ({proc.returncode}): {proc.stderr.strip()}")
    dump = subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True,
                          env=dict(env), check=True).stdout
    import json

    return [(p["start"], p["size"]) for p in json.loads(dump)["partitiontable"]["partitions"]]


def _ntfs(part: Path, start: int, files: Any, tmpdir: Path, env: Mapping[str, str]) -> None:
    _run(["mkntfs", "--quick", "--force", "--label", "Temporary Storage",
          "--partition-start", str(start), "--sector-size", "512",
          "--heads", "255", "--sectors-per-track", "63", str(part)], env)
    for name in files:
        src = tmpdir / "payload"
        text = DATALOSS_TEXT if name.lower().startswith("dataloss") else (
            f"user data in {name}\n")
        src.write_text(text)
        _run(["ntfscp", "--force", str(part), str(src), name], env)


def build_resource_disk(spec: Mapping[str, Any], dest: Path, cache: Path,
                        env: Mapping[str, str]) -> Path:
    """Create the resource disk image ``dest`` (sparse) from a cached template.

    Formats: ``ntfs`` (MBR, one NTFS partition: Azure's Gen1 shape), ``gpt``
    (GPT, MS-reserved + NTFS: Azure's Gen2 shape), ``gpt_used_msr`` (the same
    with an ext4 file system in the MS-reserved partition), ``ext4``, ``none``.
    """
    cache.mkdir(parents=True, exist_ok=True)
    template = cache / f"resource-{template_key(spec)}.img"
    if not template.exists():
        size = int(spec["size_mib"]) << 20
        sectors = size // SECTOR
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            tmpdir = Path(tmp)
            disk = tmpdir / "disk.img"
            fmt = spec.get("format", "ntfs")
            with open(disk, "wb") as fh:
                fh.truncate(size)
                if fmt in ("ntfs", "ext4"):
                    fh.write(mbr(sectors, 0x07 if fmt == "ntfs" else 0x83))
            layout: list[tuple[str, int, int]] = []  # (file system, start, sectors)
            if fmt in ("ntfs", "ext4"):
                layout = [(fmt, PART_START, sectors - PART_START)]
            elif fmt in ("gpt", "gpt_used_msr"):
                (msr, msr_len), (data, data_len) = _gpt(disk, env)
                if fmt == "gpt_used_msr":
                    layout.append(("ext4", msr, msr_len))
                layout.append(("ntfs", data, data_len))
            for fs, start, count in layout:
                part = tmpdir / "part.img"
                with open(part, "wb") as fh:
                    fh.truncate(count * SECTOR)
                if fs == "ntfs":
                    _ntfs(part, start, spec.get("files", []), tmpdir, env)
                else:
                    _run(["mkfs.ext4", "-q", "-F", "-L", "AzureResource", str(part)], env)
                with open(disk, "r+b") as fh:
                    _copy_sparse(part, fh, start * SECTOR)
                part.unlink()
            os.replace(disk, template)
    subprocess.run(["cp", "--sparse=always", str(template), str(dest)], check=True)
    return dest


def refresh_resource_disk(spec: Mapping[str, Any], device: str, cache: Path,
                          env: Mapping[str, str], scratch: Path) -> None:
    """Overwrite ``device`` with a fresh copy of the template (a redeploy)."""
    fresh = build_resource_disk(spec, scratch, cache, env)
    with open(device, "r+b") as dev:
        # A fresh disk reads as zeros: drop the old signatures at both ends
        # (the GPT backup header lives in the last sectors) first.
        end = dev.seek(0, os.SEEK_END)
        for offset in (0, max(0, end - (1 << 20))):
            dev.seek(offset)
            dev.write(b"\x00" * (1 << 20))
        dev.seek(0)
        _copy_sparse(fresh, dev, 0)
        dev.flush()
        os.fsync(dev.fileno())
    fresh.unlink()
    shutil.rmtree(scratch.parent / "unused", ignore_errors=True)
