"""Decoding one DICOM frame: pydicom's decoders first, then the one repair other tools make.

pydicom tries every installed plugin for the transfer syntax (pylibjpeg, Pillow, its own
RLE decoder). When all refuse a sequential JPEG frame (Baseline or Extended, SOF0/SOF1)
because its scan header does not say `Ss=0, Se=63, Ah=Al=0` — pydicom's own
`JPEG-lossy.dcm` says `Se=0` — the frame is decoded again with those values: that is
what the IJG library inside DCMTK, GDCM and most viewers does (it warns
JWRN_NOT_SEQUENTIAL and carries on), since a sequential scan has no other meaning for
them. GDCM itself is not used: pydicom's GDCM plugin refuses 12-bit JPEG Extended, and
python-gdcm 3.2.6 decoding this file directly aborts the whole process (free(): invalid
pointer), which a server cannot risk.

A compressed frame that no decoder reads, repaired or not, is reported as an unsupported
encoding naming the transfer syntax (422 `unsupported_encoding`): the bytes may be fine
and another decoder may read them, so the file is not called corrupt.
"""

from __future__ import annotations

import logging
from typing import Any

from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate, get_frame
from pydicom.pixels.decoders.base import Decoder
from pydicom.uid import UID, JPEGBaseline8Bit, JPEGExtended12Bit

from server.errors import Unprocessable

log = logging.getLogger(__name__)

_SEQUENTIAL_JPEG = (JPEGBaseline8Bit, JPEGExtended12Bit)
_SOF_SEQUENTIAL = (0xC0, 0xC1)
# Markers without a length field: SOI, EOI, RST0-7, TEM.
_STANDALONE = {0xD8, 0xD9, 0x01, *range(0xD0, 0xD8)}


def decode_frame(decoder: Decoder, ds: Dataset, index: int, frames: int,
                 tsyntax: UID) -> tuple[NDArray[Any], dict[str, str | int]]:
    """Frame `index` as an array and pydicom's notes on what decoding changed."""
    if not tsyntax.is_compressed:
        # Native data: a failure means the bytes are short or the header lies (corrupt).
        return decoder.as_array(ds, index=index)
    try:
        return decoder.as_array(ds, index=index)
    except Exception as first:  # noqa: BLE001 - plugins raise anything; the repair may still read it
        failure: Exception = first
    if tsyntax in _SEQUENTIAL_JPEG:
        repaired = _repaired(ds, index, frames)
        if repaired is not None:
            try:
                return decoder.as_array(repaired, index=0)
            except Exception as exc:  # noqa: BLE001 - reported below as the encoding's
                failure = exc
    log.info("no decoder reads frame %s (%s): %s", index, tsyntax, failure)
    raise Unprocessable(
        f"unsupported encoding: none of the server's decoders can read this file's "
        f"{tsyntax.name} pixel data (transfer syntax {tsyntax}); it may use a variant of the "
        "encoding they do not support, or be damaged",
        code="unsupported_encoding",
        details={"transfer_syntax": str(tsyntax), "name": tsyntax.name},
    ) from failure


def _repaired(ds: Dataset, index: int, frames: int) -> Dataset | None:
    """A one-frame copy of `ds` whose frame has a sequential scan header, or None when the
    frame's header is not what the repair is for."""
    try:
        frame = get_frame(ds.PixelData, index, number_of_frames=frames)
    except Exception:
        log.info("cannot split the encapsulated pixel data into frames", exc_info=True)
        return None
    fixed = fix_sequential_scan(frame)
    if fixed is None:
        return None
    copy = ds.copy()
    copy.PixelData = encapsulate([fixed])
    copy.NumberOfFrames = 1
    for keyword in ("ExtendedOffsetTable", "ExtendedOffsetTableLengths"):
        if keyword in copy:
            del copy[keyword]
    return copy


def fix_sequential_scan(frame: bytes) -> bytes | None:
    """The JPEG codestream with its first scan header set to Ss=0, Se=63, Ah=Al=0, when the
    frame is sequential DCT (SOF0/SOF1) and says otherwise; None when nothing needs fixing
    or the header cannot be walked."""
    if frame[:2] != b"\xff\xd8":
        return None
    pos, sequential = 2, False
    while pos + 4 <= len(frame):
        if frame[pos] != 0xFF:
            return None
        marker = frame[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        length = int.from_bytes(frame[pos + 2 : pos + 4], "big")
        if marker in _SOF_SEQUENTIAL:
            sequential = True
        if marker == 0xDA:
            return _patch_sos(frame, pos, length) if sequential else None
        pos += 2 + length
    return None


def _patch_sos(frame: bytes, pos: int, length: int) -> bytes | None:
    components = frame[pos + 4] if pos + 4 < len(frame) else 0
    tail = pos + 5 + 2 * components  # Ss, Se, Ah/Al follow the component selectors
    if length != 6 + 2 * components or tail + 3 > len(frame):
        return None
    if frame[tail : tail + 3] == b"\x00\x3f\x00":
        return None
    return frame[:tail] + b"\x00\x3f\x00" + frame[tail + 3 :]
