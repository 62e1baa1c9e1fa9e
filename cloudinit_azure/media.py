"""Find and read the provisioning media that carries ``ovf-env.xml``.

Azure attaches a small UDF (plus ISO 9660/Joliet) DVD. Mounting it needs the
``udf`` or ``iso9660`` kernel driver, which some kernels lack and hardened
images blacklist, so a device can also be read straight from its image with
pycdlib; a mount is only tried when the adapter supplies one.

Everything that touches the machine takes the root path, device path or
runner as a parameter.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Optional, Union

from cloudinit_azure import atomic
from cloudinit_azure.report import (
    MediaError,
    MediaUnreadableError,
    NoMediaError,
    OvfNotFoundError,
    OvfTooLargeError,
)
from cloudinit_azure.runner import CommandError, Runner

if TYPE_CHECKING:  # pycdlib is imported on first use: seed, cache and mount need none
    import pycdlib

LOG = logging.getLogger(__name__)

OVF_NAME = "ovf-env.xml"
SEED_DIR = "var/lib/cloud/seed/azure"
CACHE_DIR = "var/lib/waagent"
DEFAULT_DEVICE = "dev/sr0"
MEDIA_TYPES = ("udf", "iso9660")
# A real ovf-env.xml is a few KiB (custom data is at most 64 KiB base64); a
# larger "file" is a damaged directory record, not something to read into memory.
MAX_OVF_SIZE = 8 * 1024 * 1024

PathLike = Union[str, "os.PathLike[str]"]
Kind = Literal["seed", "device", "cache"]
Mount = Callable[[str], Optional[bytes]]


@dataclass(frozen=True)
class Candidate:
    """One place ovf-env.xml may come from: a file (seed, cache) or a block device."""

    kind: Kind
    path: str


# --- reading an image with pycdlib -------------------------------------------------


def _strip_version(name: str) -> str:
    """``NAME.EXT;1`` -> ``NAME.EXT``; ``NAME.`` -> ``NAME`` (ISO 9660 decorations)."""
    base, sep, version = name.rpartition(";")
    if sep and version.isdigit():
        name = base
    return name.rstrip(".") if name.endswith(".") and name != "." else name


def _matches(name: str, iso9660: bool = False) -> bool:
    name = _strip_version(name).lower()
    if iso9660:
        # Strict ISO 9660 names cannot hold '-': writers put '_' in its place.
        name = name.replace("_", "-")
    return name == OVF_NAME


def _udf_name(entry: object) -> Optional[str]:
    ident = getattr(entry, "file_ident", None)
    raw = getattr(ident, "fi", None)
    if not raw:
        return None
    return raw.decode(getattr(ident, "encoding", None) or "latin-1", "replace")


def _find_path(iso: pycdlib.PyCdlib) -> Optional[tuple[str, str]]:
    """``(namespace keyword, path)`` of ovf-env.xml in the image's root, or None.

    Namespaces are tried UDF, Joliet, Rock Ridge, then plain ISO 9660, each
    only if the image has it; a namespace without the file falls through.
    """
    if iso.has_udf():
        for entry in iso.list_children(udf_path="/"):
            if entry is None or entry.is_dir():
                continue
            name = _udf_name(entry)
            if name and _matches(name):
                return "udf_path", "/" + name
    if iso.has_joliet():
        for rec in iso.list_children(joliet_path="/"):
            if rec.is_dir():
                continue
            name = rec.file_identifier().decode("utf-16-be", "replace")
            if _matches(name):
                return "joliet_path", "/" + name
    if iso.has_rock_ridge():
        for rec in iso.list_children(rr_path="/"):
            if rec.is_dir() or rec.rock_ridge is None:
                continue
            name = rec.rock_ridge.name().decode("utf-8", "replace")
            if _matches(name):
                return "rr_path", "/" + name
    for rec in iso.list_children(iso_path="/"):
        if rec.is_dir():
            continue
        name = rec.file_identifier().decode("ascii", "replace")
        if _matches(name, iso9660=True):
            return "iso_path", "/" + name
    return None


def read_ovf_from_image(path: PathLike) -> bytes:
    """Read ``ovf-env.xml`` from the root of an ISO 9660/Joliet/Rock Ridge/UDF image.

    ``path`` is a block device or an image file, opened read-only. Only the
    volume descriptors, directories and the file itself are read, never the
    whole device. Every failure is a MediaError naming the device.
    """
    import pycdlib  # ~10 ms to import: only when a device is read directly

    device = os.fspath(path)
    try:
        fp = open(device, "rb")  # closed in the finally below
    except OSError as exc:
        raise MediaUnreadableError(device=device, error=str(exc)) from exc
    iso = pycdlib.PyCdlib()
    opened = False
    try:
        try:
            iso.open_fp(fp)
            opened = True
            found = _find_path(iso)
        except Exception as exc:  # pycdlib raises many types on bad media
            raise MediaUnreadableError(device=device, error=str(exc)) from exc
        if found is None:
            raise OvfNotFoundError(device=device)
        keyword, name = found
        try:
            size = iso.get_record(**{keyword: name}).get_data_length()
            if size > MAX_OVF_SIZE:
                raise OvfTooLargeError(device=device, size=size)
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, **{keyword: name})
        except MediaError:
            raise
        except Exception as exc:
            raise MediaUnreadableError(device=device, error=str(exc)) from exc
        LOG.debug("read %s from %s (%s)", name, device, keyword)
        return out.getvalue()
    finally:
        if opened:
            try:
                iso.close()
            except Exception:  # closing never hides the real outcome
                LOG.debug("pycdlib close failed for %s", device, exc_info=True)
        fp.close()


# --- discovery ---------------------------------------------------------------------


def _probe_type(runner: Runner, fs_type: str) -> list[str]:
    cmd = ["blkid", "-c", "/dev/null", "-t", f"TYPE={fs_type}", "-o", "device"]
    try:
        result = runner(cmd, check=False)
    except (OSError, CommandError) as exc:
        LOG.warning("cannot probe for %s media: %s", fs_type, exc)
        return []
    if result.returncode == 2:  # blkid: no device matched
        return []
    if result.returncode != 0:
        LOG.warning("%s exited %s: %s", " ".join(cmd), result.returncode,
                    result.stderr.strip())
        return []
    return [line.strip() for line in result.stdout.splitlines() if line.strip()]


def probe_block_types(runner: Runner) -> dict[str, str]:
    """Block devices holding a UDF or ISO 9660 file system: ``{device: type}``.

    Uses blkid without its cache (a stale cache would hide the DVD). blkid's
    exit status 2 means "none found"; a missing blkid is logged and gives none.
    """
    found: dict[str, str] = {}
    for fs_type in MEDIA_TYPES:
        for device in _probe_type(runner, fs_type):
            found.setdefault(device, fs_type)
    return found


def candidates(root: PathLike, blkid_types: Mapping[str, str],
               seed_dir: Optional[PathLike] = None,
               data_dir: str = "/" + CACHE_DIR) -> list[Candidate]:
    """Where to look for ovf-env.xml, in order.

    Seed directory (when it has the file; ``seed_dir`` overrides the default
    /var/lib/cloud/seed/azure under ``root``), ``/dev/sr0`` (when it exists),
    every UDF/ISO 9660 device from ``blkid_types`` (deduplicated, order kept),
    then the cached copy from an earlier boot in ``data_dir`` (when it exists).
    """
    root = Path(root)
    out: list[Candidate] = []
    seen: set[str] = set()

    def add(kind: Kind, path: Path | str) -> None:
        key = os.path.realpath(path) if kind == "device" else os.fspath(path)
        if key not in seen:
            seen.add(key)
            out.append(Candidate(kind, os.fspath(path)))

    seed = (Path(seed_dir) if seed_dir is not None else root / SEED_DIR) / OVF_NAME
    if seed.is_file():
        add("seed", seed)
    sr0 = root / DEFAULT_DEVICE
    if os.path.exists(sr0):
        add("device", sr0)
    for device, fs_type in blkid_types.items():
        if fs_type.lower() in MEDIA_TYPES:
            add("device", device)
    cache = root / data_dir.lstrip("/") / OVF_NAME
    if cache.is_file():
        add("cache", cache)
    return out


def read_limited(path: PathLike) -> bytes:
    """A file's bytes, never more than the OVF size limit (MediaError beyond).

    For every path that reads ovf-env.xml: a seed or cached copy, or the file
    on a mounted DVD (the adapter's mount callback should read through it).
    """
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_OVF_SIZE + 1)
    except FileNotFoundError as exc:
        raise OvfNotFoundError(device=str(path)) from exc
    except OSError as exc:
        raise MediaUnreadableError(device=str(path), error=str(exc)) from exc
    if len(data) > MAX_OVF_SIZE:
        raise OvfTooLargeError(device=str(path), max_bytes=MAX_OVF_SIZE)
    return data


def read_ovf(candidate: Candidate, *, mount: Optional[Mount] = None) -> bytes:
    """The ovf-env.xml bytes of one candidate, or MediaError.

    For a device, ``mount(device)`` (a read-only mount done by the adapter,
    returning None when the kernel cannot mount it) is tried first, then the
    image is read directly.
    """
    if candidate.kind != "device":
        return read_limited(candidate.path)
    if mount is not None:
        try:
            data = mount(candidate.path)
        except MediaError:
            raise  # the callback read through read_limited and found it too large
        except Exception as exc:  # a failed mount still leaves the direct read
            LOG.warning("mounting %s failed: %s", candidate.path, exc)
            data = None
        if data is not None:
            if len(data) > MAX_OVF_SIZE:  # whatever the callback read
                raise OvfTooLargeError(device=candidate.path, max_bytes=MAX_OVF_SIZE)
            return data
        LOG.debug("%s not mounted; reading the image directly", candidate.path)
    return read_ovf_from_image(candidate.path)


def first_ovf(
    found: Iterable[Candidate],
    *,
    mount: Optional[Mount] = None,
    reader: Callable[..., bytes] = read_ovf,
) -> tuple[Candidate, bytes]:
    """Read the first candidate that yields ovf-env.xml.

    When none does, raise the first candidate's MediaError with ``tried``
    listing every path, or ``no provisioning media found`` when there was
    nothing to try. Whether that is fatal is the caller's decision.
    """
    errors: list[tuple[Candidate, MediaError]] = []
    for cand in found:
        try:
            return cand, reader(cand, mount=mount)
        except MediaError as exc:
            LOG.info("no ovf-env.xml from %s %s: %s", cand.kind, cand.path, exc)
            errors.append((cand, exc))
    if not errors:
        raise NoMediaError()
    first = errors[0][1]
    data = dict(first.supporting_data)
    data["tried"] = ",".join(c.path for c, _ in errors)
    raise type(first)(**data) from first


# --- side effects ------------------------------------------------------------------


def write_cached_copy(root: PathLike, data_redacted: bytes,
                      data_dir: str = "/" + CACHE_DIR) -> Path:
    """Write ``<root><data_dir>/ovf-env.xml`` (dir 0700, file 0600), atomically.

    ``data_dir`` is the datasource setting of that name (default
    /var/lib/waagent, as cloud-init's own datasource has it).

    The Azure Linux Agent waits for this file. The caller passes the copy with
    the password already redacted; it is still private, so the temporary file
    is created 0600 from the start (no world-readable window, whatever the
    umask) and renamed over the old copy.
    """
    directory = Path(root, data_dir.lstrip("/"))
    directory.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        pass
    os.chmod(directory, 0o700)
    target = directory / OVF_NAME
    atomic.write_file(target, data_redacted, mode=0o600)
    return target


def eject(device: str, runner: Runner) -> bool:
    """Eject the provisioning DVD; a failure is logged and returns False."""
    try:
        result = runner(["eject", device], check=False)
    except Exception as exc:  # missing tool, timeout: never fail provisioning
        LOG.warning("eject %s failed: %s", device, exc)
        return False
    if result.returncode != 0:
        LOG.warning("eject %s exited %s: %s", device, result.returncode,
                    result.stderr.strip())
        return False
    return True
