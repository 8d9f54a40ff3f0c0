"""Inspection of uploaded evidence photos: what they are, and when and where they were taken.

The type is decided by content alone (magic bytes), never by a file name:

* JPEG (``FF D8 FF``) and PNG (the 8-byte signature) are decoded in full with Pillow, so a file
  with the right magic but a damaged body (truncated, bad PNG chunk CRC, no IEND, garbage after
  the header) is rejected.  Images above ``MAX_PIXELS`` are rejected before they are decoded, and
  Pillow's own decompression-bomb warning/error is turned into ``PhotoError`` as well.  JPEGs are
  decoded at 1/8 scale: libjpeg still reads every byte of the stream, with 1/64 of the memory.
* HEIC (``ftyp`` at offset 4) cannot be decoded here (no libheif), so its ISO-BMFF structure is
  checked instead: every box must fit inside its parent, the ``ftyp`` major brand must be a HEIF
  brand, the ``meta`` box must have a ``pict`` handler and every item extent in ``iloc`` must lie
  inside the file.  The Exif item is found through ``iinf``/``iloc``; the image size comes from
  the ``ispe`` property of the primary item.  The HEVC payload itself is not checked.

Metadata is best effort: broken or absurd EXIF never rejects a photo, it gives ``None`` fields.
"""

from __future__ import annotations

import hashlib
import io
import math
import re
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from PIL import Image

__all__ = [
    "CHINA_STANDARD_TIME",
    "HEIF_BRANDS",
    "MAX_PIXELS",
    "PhotoError",
    "PhotoInfo",
    "inspect_photo",
]

#: Largest accepted image, in pixels (width × height).
MAX_PIXELS = 50_000_000
#: ``ftyp`` major brands accepted as HEIC: still images first, then image sequences.
HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1"})
_HEIF_SEQUENCE_BRANDS = frozenset({b"hevc", b"hevx", b"msf1"})
#: Assumed for EXIF times without an OffsetTimeOriginal (the phones are in Dongguan).
CHINA_STANDARD_TIME = timezone(timedelta(hours=8), "CST")

_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATE_TIME_ORIGINAL, _OFFSET_TIME_ORIGINAL = 0x9003, 0x9011
_GPS_LAT_REF, _GPS_LAT, _GPS_LON_REF, _GPS_LON = 1, 2, 3, 4
_EXIF_DATE = re.compile(r"(\d{4})[:-](\d\d)[:-](\d\d)[ T](\d\d):(\d\d):(\d\d)")
_EXIF_OFFSET = re.compile(r"([+-])(\d\d):(\d\d)")
_MAX_EXTENTS = 100_000  # iloc extents may take 0 bytes each; bound the work


@dataclass(frozen=True)
class PhotoInfo:
    """What ``inspect_photo`` found.  ``width``/``height`` are stored pixels (EXIF orientation
    not applied); ``None`` only for a HEIC without an ``ispe`` for its primary item."""

    mime: str  # "image/jpeg" | "image/png" | "image/heic"
    sha256: str
    size_bytes: int
    width: int | None
    height: int | None
    taken_at: datetime | None
    lon: float | None
    lat: float | None


class PhotoError(ValueError):
    """The upload is not an acceptable photo; the message is fit to show to the user."""


def inspect_photo(data: bytes, *, max_bytes: int = 10 * 2**20) -> PhotoInfo:
    """Check that ``data`` is a real JPEG, PNG or HEIC photo and read its metadata.

    ``taken_at`` is EXIF DateTimeOriginal with OffsetTimeOriginal when present; without an
    offset the time is taken to be China Standard Time (UTC+8).  ``lon``/``lat`` are the EXIF
    GPS position in degrees, or both ``None`` when missing or nonsense (out of range, no N/S/E/W
    reference, or exactly 0/0, which phones write when they have no fix).

    Raises ``PhotoError`` for anything that is not such a photo; no other exception escapes.
    """
    if not data:
        raise PhotoError("the photo is empty (0 bytes)")
    if len(data) > max_bytes:
        raise PhotoError(f"the photo is larger than the {max_bytes / 2**20:.3g} MB limit")
    if data.startswith(_JPEG_MAGIC):
        mime, (width, height, exif) = "image/jpeg", _inspect_raster(data, "JPEG")
    elif data.startswith(_PNG_MAGIC):
        mime, (width, height, exif) = "image/png", _inspect_raster(data, "PNG")
    elif data[4:8] == b"ftyp":
        mime, (width, height, exif) = "image/heic", _inspect_heic(data)
    else:
        raise PhotoError("the file is not a JPEG, PNG or HEIC photo")
    taken_at = _safely(_taken_at, exif)
    lon, lat = _safely(_position, exif) or (None, None)
    return PhotoInfo(
        mime=mime,
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        width=width,
        height=height,
        taken_at=taken_at,
        lon=lon,
        lat=lat,
    )


def _safely(read: Any, exif: Image.Exif | None) -> Any:
    """``read(exif)``, or None when there is no EXIF or it is too broken to read."""
    if exif is None:
        return None
    try:
        with warnings.catch_warnings():
            _quiet_exif_warnings()
            return read(exif)
    except Exception:  # malformed EXIF in an otherwise good photo: just no metadata
        return None


def _quiet_exif_warnings() -> None:
    """Pillow warns (UserWarning) about corrupt EXIF; here that just means no metadata."""
    warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")


# --- JPEG and PNG -------------------------------------------------------------------------------


def _inspect_raster(data: bytes, fmt: str) -> tuple[int, int, Image.Exif | None]:
    """(width, height, EXIF) of a JPEG or PNG, decoded in full; PhotoError if it is not one."""
    try:
        # Turns Pillow's bomb warning into an exception.  catch_warnings is process-wide, but the
        # worst a concurrent thread can see is that warning raised as an error, which we catch.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            _quiet_exif_warnings()
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                _check_pixels(*im.size)
                im.verify()  # PNG: chunk CRCs up to IEND
            with Image.open(io.BytesIO(data), formats=[fmt]) as im:
                width, height = im.size
                if fmt == "JPEG":
                    im.draft(None, (max(1, width // 8), max(1, height // 8)))
                im.load()  # truncation is an error: ImageFile.LOAD_TRUNCATED_IMAGES stays off
                try:
                    exif: Image.Exif | None = im.getexif()
                except Exception:  # malformed EXIF: the photo stands, without metadata
                    exif = None
    except PhotoError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        limit = MAX_PIXELS // 10**6
        raise PhotoError(f"the image is too large (more than {limit} megapixels)") from exc
    except Exception as exc:
        raise PhotoError(
            f"the file starts like a {fmt} image but is damaged or incomplete and cannot be read"
        ) from exc
    return width, height, exif


def _check_pixels(width: int, height: int) -> None:
    if width * height > MAX_PIXELS:
        raise PhotoError(
            f"the image is {width}×{height} pixels, more than the {MAX_PIXELS // 10**6} "
            "megapixel limit"
        )


# --- EXIF ---------------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    return value.strip("\x00 ") if isinstance(value, str) else ""


def _taken_at(exif: Image.Exif) -> datetime | None:
    """DateTimeOriginal with OffsetTimeOriginal, else in China Standard Time."""
    ifd = exif.get_ifd(_EXIF_IFD)
    match = _EXIF_DATE.fullmatch(_text(ifd.get(_DATE_TIME_ORIGINAL))[:19])
    if not match:
        return None
    year, month, day, hour, minute, second = (int(part) for part in match.groups())
    try:
        naive = datetime(year, month, day, hour, minute, second)
    except ValueError:  # 0000:00:00 00:00:00 and other impossible dates
        return None
    return naive.replace(tzinfo=_offset(_text(ifd.get(_OFFSET_TIME_ORIGINAL))))


def _offset(text: str) -> timezone:
    """``±HH:MM`` as a timezone; China Standard Time when absent or unusable."""
    match = _EXIF_OFFSET.fullmatch(text)
    if not match:
        return CHINA_STANDARD_TIME
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14) or int(minutes) >= 60:
        return CHINA_STANDARD_TIME
    return timezone(-delta if sign == "-" else delta)


def _position(exif: Image.Exif) -> tuple[float | None, float | None]:
    """(lon, lat) from the GPS IFD, or (None, None) unless both are sensible."""
    gps = exif.get_ifd(_GPS_IFD)
    lat = _coordinate(gps.get(_GPS_LAT), _text(gps.get(_GPS_LAT_REF)), "N", "S", 90)
    lon = _coordinate(gps.get(_GPS_LON), _text(gps.get(_GPS_LON_REF)), "E", "W", 180)
    if lat is None or lon is None or (lat == 0 and lon == 0):
        return None, None
    return lon, lat


def _coordinate(value: Any, ref: str, positive: str, negative: str, limit: int) -> float | None:
    """Degrees from EXIF (degrees, minutes, seconds) rationals and a hemisphere reference."""
    if ref.upper() not in (positive, negative) or value is None:
        return None
    parts = tuple(value) if isinstance(value, tuple | list) else (value,)
    if not 1 <= len(parts) <= 3:
        return None
    try:
        numbers = [float(part) for part in parts]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if not all(math.isfinite(n) and n >= 0 for n in numbers) or any(n >= 60 for n in numbers[1:]):
        return None
    degrees = sum(n / 60**i for i, n in enumerate(numbers))
    if degrees > limit:
        return None
    return -degrees if ref.upper() == negative else degrees


# --- HEIC (ISO-BMFF) ----------------------------------------------------------------------------


class _Box(NamedTuple):
    type: bytes
    start: int  # first byte of the payload
    end: int  # one past the last byte of the box


class _Location(NamedTuple):
    method: int  # iloc construction_method: 0 file offset, 1 idat offset, 2 item reference
    data_reference: int  # 0: this file
    extents: list[tuple[int, int]]  # (offset, length); length 0: to the end


def _broken(detail: str) -> PhotoError:
    return PhotoError(f"the HEIC file is damaged or incomplete ({detail})")


def _name(kind: bytes) -> str:
    """A box type for messages: 'mdat', or hex when it is not printable."""
    text = kind.decode("ascii", "replace")
    return f"'{text}'" if text.isprintable() else f"0x{kind.hex()}"


class _Reader:
    """Big-endian fields from ``data[pos:end]``; reading past ``end`` is a broken file."""

    def __init__(self, data: bytes, box: _Box) -> None:
        self.data, self.pos, self.end, self.kind = data, box.start, box.end, box.type

    def bytes(self, n: int) -> bytes:
        if self.pos + n > self.end:
            raise _broken(f"the {_name(self.kind)} box is too short")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def uint(self, n: int) -> int:
        return int.from_bytes(self.bytes(n), "big")

    def full_box(self) -> tuple[int, int]:
        """(version, flags) of a full box."""
        return self.uint(1), self.uint(3)


def _boxes(data: bytes, start: int, end: int) -> list[_Box]:
    """The boxes that exactly fill ``data[start:end]``."""
    boxes, pos = [], start
    while pos < end:
        if end - pos < 8:
            raise _broken("a box header is cut off")
        size, kind = int.from_bytes(data[pos : pos + 4], "big"), data[pos + 4 : pos + 8]
        header = 8
        if size == 1:
            if end - pos < 16:
                raise _broken(f"the {_name(kind)} box header is cut off")
            size, header = int.from_bytes(data[pos + 8 : pos + 16], "big"), 16
        elif size == 0:
            size = end - pos
        if kind == b"uuid":
            header += 16
        if size < header or pos + size > end:
            raise _broken(f"the {_name(kind)} box has an impossible size")
        boxes.append(_Box(kind, pos + header, pos + size))
        pos += size
    return boxes


def _children(data: bytes, box: _Box, *, full: bool = False) -> dict[bytes, _Box]:
    """The child boxes by type (first of each); a full box has 4 bytes version/flags first."""
    start = box.start + 4 if full else box.start
    if start > box.end:
        raise _broken(f"the {_name(box.type)} box is too short")
    children: dict[bytes, _Box] = {}
    for child in _boxes(data, start, box.end):
        children.setdefault(child.type, child)
    return children


def _inspect_heic(data: bytes) -> tuple[int | None, int | None, Image.Exif | None]:
    """(width, height, EXIF) of a structurally sound HEIC; PhotoError otherwise."""
    top = _boxes(data, 0, len(data))
    if top[0].type != b"ftyp" or top[0].end - top[0].start < 8:
        raise _broken("no valid 'ftyp' box")
    brand = data[top[0].start : top[0].start + 4]
    if brand not in HEIF_BRANDS | _HEIF_SEQUENCE_BRANDS:
        raise PhotoError(f"the file is not a HEIC photo (its brand is {_name(brand)})")
    boxes = {box.type: box for box in reversed(top)}
    if b"meta" not in boxes:
        if brand in _HEIF_SEQUENCE_BRANDS and b"moov" in boxes:
            return None, None, None
        raise _broken("no 'meta' box")
    meta = _children(data, boxes[b"meta"], full=True)
    if b"hdlr" not in meta or _handler(data, meta[b"hdlr"]) != b"pict":
        raise _broken("the 'meta' box has no picture handler")
    idat = meta.get(b"idat")
    locations = _item_locations(data, meta[b"iloc"]) if b"iloc" in meta else {}
    extents = {item: _extents(data, idat, loc, item) for item, loc in locations.items()}
    primary = _primary_item(data, meta[b"pitm"]) if b"pitm" in meta else None
    width, height = _primary_size(data, meta.get(b"iprp"), primary)
    types = _item_types(data, meta[b"iinf"]) if b"iinf" in meta else {}
    exif_items = [item for item, kind in types.items() if kind == b"Exif" and extents.get(item)]
    if not exif_items:
        return width, height, None
    return width, height, _heif_exif(b"".join(data[a:b] for a, b in extents[exif_items[0]]))


def _handler(data: bytes, hdlr: _Box) -> bytes:
    reader = _Reader(data, hdlr)
    reader.full_box()
    reader.uint(4)  # pre_defined
    return reader.bytes(4)


def _primary_item(data: bytes, pitm: _Box) -> int:
    reader = _Reader(data, pitm)
    version, _ = reader.full_box()
    return reader.uint(2 if version == 0 else 4)


def _item_types(data: bytes, iinf: _Box) -> dict[int, bytes]:
    """item_ID → item_type from the ``infe`` boxes (versions 2 and 3; older ones have none)."""
    reader = _Reader(data, iinf)
    version, _ = reader.full_box()
    reader.uint(2 if version == 0 else 4)  # entry_count: the boxes themselves are authoritative
    types: dict[int, bytes] = {}
    for infe in _boxes(data, reader.pos, iinf.end):
        if infe.type != b"infe":
            continue
        entry = _Reader(data, infe)
        version, _ = entry.full_box()
        if version >= 2:
            item = entry.uint(2 if version == 2 else 4)
            entry.uint(2)  # item_protection_index
            types[item] = entry.bytes(4)
    return types


def _item_locations(data: bytes, iloc: _Box) -> dict[int, _Location]:
    """item_ID → location from ``iloc`` (versions 0, 1 and 2), base offsets applied."""
    reader = _Reader(data, iloc)
    version, _ = reader.full_box()
    if version > 2:
        raise _broken(f"unknown 'iloc' version {version}")
    offset_size, length_size = divmod(reader.uint(1), 16)
    base_offset_size, index_size = divmod(reader.uint(1), 16)
    index_size = index_size if version else 0
    if not {offset_size, length_size, base_offset_size, index_size} <= {0, 4, 8}:
        raise _broken("bad field sizes in the 'iloc' box")
    wide = 4 if version == 2 else 2
    locations: dict[int, _Location] = {}
    budget = _MAX_EXTENTS
    for _ in range(reader.uint(wide)):
        item = reader.uint(wide)
        method = reader.uint(2) & 0xF if version else 0
        data_reference = reader.uint(2)
        base = reader.uint(base_offset_size)
        count = reader.uint(2)
        budget -= count
        if budget < 0:
            raise _broken("too many item extents")
        extents = []
        for _ in range(count):
            reader.uint(index_size)
            offset = reader.uint(offset_size)
            extents.append((base + offset, reader.uint(length_size)))
        locations[item] = _Location(method, data_reference, extents)
    return locations


def _extents(data: bytes, idat: _Box | None, loc: _Location, item: int) -> list[tuple[int, int]]:
    """Absolute (start, end) byte ranges of an item in this file; empty if stored elsewhere."""
    if loc.data_reference != 0 or loc.method not in (0, 1):
        return []
    if loc.method == 0:
        first, last = 0, len(data)
    elif idat is not None:
        first, last = idat.start, idat.end
    else:
        raise _broken(f"item {item} is in a missing 'idat' box")
    ranges = []
    for offset, length in loc.extents:
        start = first + offset
        end = last if length == 0 else start + length
        if start > last or end > last:
            raise _broken(f"item {item} lies past the end of the file")
        ranges.append((start, end))
    return ranges


def _primary_size(
    data: bytes, iprp: _Box | None, primary: int | None
) -> tuple[int | None, int | None]:
    """(width, height) from the ``ispe`` property associated with the primary item."""
    if iprp is None:
        return None, None
    children = _children(data, iprp)
    if primary is None or b"ipco" not in children or b"ipma" not in children:
        return None, None
    properties = _boxes(data, children[b"ipco"].start, children[b"ipco"].end)
    for index in _associations(data, children[b"ipma"], primary):
        if 1 <= index <= len(properties) and properties[index - 1].type == b"ispe":
            reader = _Reader(data, properties[index - 1])
            reader.full_box()
            width, height = reader.uint(4), reader.uint(4)
            if width and height:
                return width, height
    return None, None


def _associations(data: bytes, ipma: _Box, item: int) -> list[int]:
    """1-based ``ipco`` property indices associated with ``item`` in ``ipma``."""
    reader = _Reader(data, ipma)
    version, flags = reader.full_box()
    indices: list[int] = []
    for _ in range(reader.uint(4)):
        entry = reader.uint(2 if version < 1 else 4)
        for _ in range(reader.uint(1)):
            value = reader.uint(2) & 0x7FFF if flags & 1 else reader.uint(1) & 0x7F
            if entry == item:
                indices.append(value)
    return indices


def _heif_exif(payload: bytes) -> Image.Exif | None:
    """An Exif item: a 4-byte big-endian offset to the TIFF header, then the TIFF data."""
    if len(payload) < 4:
        return None
    tiff = payload[4 + int.from_bytes(payload[:4], "big") :]
    if tiff[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    exif = Image.Exif()
    try:
        with warnings.catch_warnings():
            _quiet_exif_warnings()
            exif.load(tiff)
    except Exception:  # broken Exif: the photo stands, without metadata
        return None
    return exif
