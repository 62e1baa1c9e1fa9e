"""Host entropy: Hyper-V's ACPI OEM0 table credited to the kernel pool.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
from dataclasses import dataclass
from typing import Any, Callable, Optional

LOG = logging.getLogger(__name__)

Ioctl = Callable[[str, int, bytes], Any]


OEM0 = "sys/firmware/acpi/tables/OEM0"


ACPI_HEADER_LEN = 36


RNDADDENTROPY = 0x40085203  # _IOW('R', 0x03, int[2])


# Hyper-V supplies 64 bytes; we credit 8 bits per byte (it is the host's own
# RNG output) but never more than 512 bits, so a larger or odd table cannot
# make the kernel believe it is better seeded than Hyper-V ever promises.
MAX_CREDIT_BITS = 512


MAX_PAYLOAD = 4096


def oem0_payload(table: bytes) -> Optional[bytes]:
    """The entropy bytes of an OEM0 ACPI table, or None when it is not Hyper-V's.

    The 36-byte ACPI header is constant and never credited. Kernels that
    seed from OEM0 themselves (Linux 6.9+) zero the payload afterwards; an
    all-zero payload means there is nothing left to add.
    """
    if len(table) < ACPI_HEADER_LEN or table[:4] != b"OEM0":
        return None
    if table[16:24] != b"MICROSFT":
        return None
    (length,) = struct.unpack_from("<I", table, 4)
    if length <= ACPI_HEADER_LEN or length > len(table):
        return None
    payload = table[ACPI_HEADER_LEN:length][:MAX_PAYLOAD]
    if not any(payload):
        return b""
    return payload


def credit_bits(payload: bytes) -> int:
    return min(len(payload) * 8, MAX_CREDIT_BITS)


def rand_pool_info(payload: bytes, bits: int) -> bytes:
    """Pack ``struct rand_pool_info {int entropy_count; int buf_size; u32 buf[];}``."""
    padded = payload + b"\0" * (-len(payload) % 4)
    return struct.pack("=ii", bits, len(payload)) + padded


def rnd_ioctl(path: str, request: int, arg: bytes) -> None:
    """The real ioctl: needs CAP_SYS_ADMIN for RNDADDENTROPY."""
    import fcntl

    fd = os.open(path, os.O_WRONLY)
    try:
        fcntl.ioctl(fd, request, arg)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class EntropyOutcome:
    status: str  # credited | mixed | absent | consumed | invalid | failed
    nbytes: int = 0
    bits: int = 0


def seed_entropy(root: str, *, ioctl: Ioctl,
                 log: logging.Logger = LOG) -> EntropyOutcome:
    """Mix Hyper-V's OEM0 entropy into the kernel pool, crediting it if allowed.

    Runs before SSH host keys are generated. Without CAP_SYS_ADMIN (or any
    ioctl failure) the bytes go to /dev/urandom: mixed in, not credited.
    """
    try:
        with open(os.path.join(root, OEM0), "rb") as f:
            table = f.read()
    except FileNotFoundError:
        log.debug("no ACPI OEM0 table: not a Hyper-V guest, no host entropy")
        return EntropyOutcome("absent")
    except OSError as err:
        log.warning("cannot read ACPI OEM0 table: %s", err)
        return EntropyOutcome("failed")
    payload = oem0_payload(table)
    if payload is None:
        log.warning("ACPI OEM0 table is not Hyper-V's entropy table; ignored")
        return EntropyOutcome("invalid")
    if not payload:
        log.debug("OEM0 entropy already consumed (zeroed) by the kernel")
        return EntropyOutcome("consumed")
    bits = credit_bits(payload)
    try:
        ioctl(os.path.join(root, "dev/random"), RNDADDENTROPY,
              rand_pool_info(payload, bits))
        log.info("credited %d bits of Hyper-V host entropy", bits)
        return EntropyOutcome("credited", len(payload), bits)
    except OSError as err:
        reason = errno.errorcode.get(err.errno or 0, str(err))
        log.info("RNDADDENTROPY refused (%s); mixing host entropy without credit", reason)
    try:
        fd = os.open(os.path.join(root, "dev/urandom"), os.O_WRONLY)
        try:
            os.write(fd, payload)
        finally:
            os.close(fd)
    except OSError as err:
        log.warning("cannot write host entropy to /dev/urandom: %s", err)
        return EntropyOutcome("failed", len(payload))
    return EntropyOutcome("mixed", len(payload), 0)
