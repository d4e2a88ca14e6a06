"""Bounds on what a data source may read and decode. Read at call time (`limits.MAX_MEMBERS`), never
copied, so a test can lower one in the process it runs and test the check rather than the value.

Every real data set here fits with room to spare: CIFAR-10's training ZIP holds 50,000 images, NOAA
PlanktonSet 1.0 (NDSB) about 161,000 with its unlabelled test/ folder, the largest official file
(CIFAR-100's `train` pickle) is 148 MiB, image files compress by 1-3x, and CIFAR-10 decodes to 176 MiB.
A hostile tree stops at these bounds, whatever its headers claim.
"""
from __future__ import annotations

MAX_MEMBERS = 250_000  # entries (files and folders) of one tree
MAX_MEMBER_BYTES = 256 * 2**20  # expanded size of one member
MAX_TOTAL_BYTES = 8 * 2**30  # expanded size of all members of one tree
MAX_RATIO = 200  # expanded / compressed size, of a ZIP member or of a compressed tar stream ...
RATIO_FLOOR = 2**20  # ... once the expanded size passes 1 MiB (tiny members legitimately compress well)
MAX_DEPTH = 16  # path components of a member name
MAX_NAME_CHARS = 1024  # characters of a member name
MAX_IMAGE_PIXELS = 50_000_000  # width x height of one image (a 50-megapixel photo), read from its header
MAX_HEADER_BYTES = 2**20  # a tar's GNU long-name or pax header block, which tarfile reads whole
MAX_DECODED_BYTES = 4 * 2**30  # uint8 arrays of all splits of one data set, computed before allocating
READ_CHUNK = 1 << 20  # bytes per read() call


def size_text(nbytes: int) -> str:
    """`4 GiB`, `48.8281 KiB`: a byte count as the error lines print it."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:g} {unit}"
    return f"{nbytes} bytes"
