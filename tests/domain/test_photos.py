"""Tests for photo inspection in ``backend.domain.photos``: images are made here with Pillow, and
HEIC files are assembled box by box."""

from __future__ import annotations

import hashlib
import io
import struct
import zlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from backend.domain.photos import (
    CHINA_STANDARD_TIME,
    MAX_PIXELS,
    PhotoError,
    PhotoInfo,
    inspect_photo,
)

# 东莞市民服务中心, roughly: 22°58'12.34" N, 113°45'30.5" E
LAT_DMS = (IFDRational(22), IFDRational(58), IFDRational(1234, 100))
LON_DMS = (IFDRational(113), IFDRational(45), IFDRational(305, 10))
LAT = 22 + 58 / 60 + 12.34 / 3600
LON = 113 + 45 / 60 + 30.5 / 3600


def make_exif(
    taken: str | None = "2024:05:01 10:30:00",
    offset: str | None = "+08:00",
    gps: dict[int, object] | None = None,
) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0110] = "Test phone"
    if taken is not None:
        exif.get_ifd(0x8769)[0x9003] = taken
    if offset is not None:
        exif.get_ifd(0x8769)[0x9011] = offset
    if gps is None:
        gps = {1: "N", 2: LAT_DMS, 3: "E", 4: LON_DMS}
    if gps:
        exif.get_ifd(0x8825).update(gps)
    return exif


def make_image(fmt: str, size: tuple[int, int] = (64, 48), exif: Image.Exif | None = None) -> bytes:
    image = Image.effect_noise(size, 40).convert("RGB")
    out = io.BytesIO()
    image.save(out, fmt, **({"exif": exif} if exif is not None else {}))
    return out.getvalue()


JPEG = make_image("JPEG", exif=make_exif())
PNG = make_image("PNG")


# --- PNG chunks ---------------------------------------------------------------------------------


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(kind + payload)
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, pos = [], 8
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]))
        pos += 12 + length
    return chunks


def png_join(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return b"\x89PNG\r\n\x1a\n" + b"".join(png_chunk(k, p) for k, p in chunks)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims ``width``×``height`` pixels, with a tiny (and wrong) IDAT."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return png_join([(b"IHDR", ihdr), (b"IDAT", zlib.compress(b"\0" * 16)), (b"IEND", b"")])


# --- HEIC boxes ---------------------------------------------------------------------------------


def box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", 8 + len(payload)) + kind + payload


def full_box(kind: bytes, payload: bytes, version: int = 0, flags: int = 0) -> bytes:
    return box(kind, bytes([version]) + flags.to_bytes(3, "big") + payload)


def uint(value: int, size: int) -> bytes:
    return value.to_bytes(size, "big")


def make_heic(
    exif: Image.Exif | None = None,
    *,
    brand: bytes = b"heic",
    iloc_version: int = 1,
    offset_size: int = 4,
    length_size: int = 4,
    base_offset_size: int = 0,
    index_size: int = 0,
    size: tuple[int, int] | None = (4032, 3024),
    exif_in_idat: bool = False,
) -> bytes:
    """ftyp + meta (hdlr, pitm, iinf, iloc, iprp) + mdat with a fake HEVC item 1 and, with
    ``exif``, an Exif item 2 (4-byte offset to the TIFF header, as iPhones write it)."""
    ftyp = box(b"ftyp", brand + uint(0, 4) + b"mif1" + brand)
    image = b"\x00\x00\x00\x10fake-hevc-slice!"
    exif_payload = uint(6, 4) + exif.tobytes() if exif is not None else b""
    mdat_payload = image + (b"" if exif_in_idat else exif_payload)

    def meta(mdat_start: int) -> bytes:
        infe = [full_box(b"infe", uint(1, 2) + uint(0, 2) + b"hvc1" + b"\0", version=2)]
        items = [(1, 0, mdat_start, len(image))]
        if exif is not None:
            infe.append(full_box(b"infe", uint(2, 2) + uint(0, 2) + b"Exif" + b"\0", version=2))
            if exif_in_idat:
                items.append((2, 1, 0, len(exif_payload)))
            else:
                items.append((2, 0, mdat_start + len(image), len(exif_payload)))
        wide = 4 if iloc_version == 2 else 2
        iloc = bytes([offset_size << 4 | length_size, base_offset_size << 4 | index_size])
        iloc += uint(len(items), wide)
        for item, method, offset, length in items:
            iloc += uint(item, wide)
            if iloc_version:
                iloc += uint(method, 2)
            base = offset // 2 if base_offset_size else 0  # split between base and extent
            iloc += uint(0, 2) + uint(base, base_offset_size) + uint(1, 2)
            iloc += uint(0, index_size) + uint(offset - base, offset_size)
            iloc += uint(length, length_size)
        children = [
            full_box(b"hdlr", uint(0, 4) + b"pict" + bytes(12) + b"\0"),
            full_box(b"pitm", uint(1, 2)),
            full_box(b"iinf", uint(len(infe), 2) + b"".join(infe)),
            full_box(b"iloc", iloc, version=iloc_version),
        ]
        if exif_in_idat:
            children.append(box(b"idat", exif_payload))
        if size is not None:
            ispe = full_box(b"ispe", uint(size[0], 4) + uint(size[1], 4))
            ipco = box(b"ipco", box(b"hvcC", b"\1" * 23) + ispe)
            ipma = full_box(b"ipma", uint(1, 4) + uint(1, 2) + bytes([2, 0x81, 0x02]))
            children.append(box(b"iprp", ipco + ipma))
        return full_box(b"meta", b"".join(children))

    mdat_start = len(ftyp) + len(meta(0)) + 8
    return ftyp + meta(mdat_start) + box(b"mdat", mdat_payload)


HEIC = make_heic(make_exif())


# --- JPEG and PNG -------------------------------------------------------------------------------


def test_jpeg_with_exif_time_and_gps() -> None:
    info = inspect_photo(JPEG)
    assert info == PhotoInfo(
        mime="image/jpeg",
        sha256=hashlib.sha256(JPEG).hexdigest(),
        size_bytes=len(JPEG),
        width=64,
        height=48,
        taken_at=datetime(2024, 5, 1, 2, 30, tzinfo=UTC),
        lon=pytest.approx(LON),
        lat=pytest.approx(LAT),
    )
    assert info.taken_at is not None and info.taken_at.utcoffset() == timedelta(hours=8)


def test_jpeg_without_exif() -> None:
    data = make_image("JPEG", (33, 17))
    info = inspect_photo(data)
    assert (info.mime, info.width, info.height) == ("image/jpeg", 33, 17)
    assert (info.taken_at, info.lon, info.lat) == (None, None, None)


def test_png_without_and_with_exif() -> None:
    info = inspect_photo(PNG)
    assert (info.mime, info.width, info.height, info.taken_at, info.lat) == (
        "image/png",
        64,
        48,
        None,
        None,
    )
    with_exif = make_image("PNG", exif=make_exif(offset="-03:30"))
    assert b"eXIf" in with_exif
    info = inspect_photo(with_exif)
    assert info.taken_at == datetime(2024, 5, 1, 14, 0, tzinfo=UTC)
    assert (info.lon, info.lat) == (pytest.approx(LON), pytest.approx(LAT))


def test_png_exif_chunk_after_the_image_data() -> None:
    chunks = png_chunks(make_image("PNG", exif=make_exif()))
    exif = [c for c in chunks if c[0] == b"eXIf"]
    rest = [c for c in chunks if c[0] != b"eXIf"]
    data = png_join(rest[:-1] + exif + rest[-1:])  # eXIf just before IEND
    assert data.index(b"eXIf") > data.index(b"IDAT")
    assert inspect_photo(data).lat == pytest.approx(LAT)


def test_time_without_offset_is_china_standard_time() -> None:
    info = inspect_photo(make_image("JPEG", exif=make_exif(offset=None)))
    assert info.taken_at == datetime(2024, 5, 1, 10, 30, tzinfo=CHINA_STANDARD_TIME)
    assert info.taken_at is not None and info.taken_at.utcoffset() == timedelta(hours=8)


@pytest.mark.parametrize(
    ("taken", "offset", "expected"),
    [
        ("2023:12:31 23:59:59", "+00:00", datetime(2023, 12, 31, 23, 59, 59, tzinfo=UTC)),
        ("2023:12:31 23:59:59", "-05:00", datetime(2024, 1, 1, 4, 59, 59, tzinfo=UTC)),
        ("2023:12:31 23:59:59\x00", "   :  ", datetime(2023, 12, 31, 15, 59, 59, tzinfo=UTC)),
        ("2023:12:31 23:59:59", "+99:00", datetime(2023, 12, 31, 15, 59, 59, tzinfo=UTC)),
        ("0000:00:00 00:00:00", "+08:00", None),
        ("    :  :     :  :  ", None, None),
        ("2023:02:30 10:00:00", None, None),
        ("yesterday", None, None),
    ],
)
def test_exif_times(taken: str, offset: str | None, expected: datetime | None) -> None:
    exif = make_exif(taken=taken, offset=offset)
    assert inspect_photo(make_image("JPEG", exif=exif)).taken_at == expected


def test_offset_with_minutes() -> None:
    info = inspect_photo(make_image("JPEG", exif=make_exif(offset="+05:45")))
    assert info.taken_at is not None
    assert info.taken_at.tzinfo == timezone(timedelta(hours=5, minutes=45))


@pytest.mark.parametrize(
    ("gps", "expected"),
    [
        ({1: "S", 2: LAT_DMS, 3: "W", 4: LON_DMS}, (-LON, -LAT)),
        ({1: "N", 2: (IFDRational(2297, 100), 0.0, 0.0), 3: "E", 4: (113.75, 0.0, 0.0)}, None),
        ({1: "N", 2: (IFDRational(95), 0.0, 0.0), 3: "E", 4: LON_DMS}, "nonsense"),
        ({1: "N", 2: LAT_DMS, 3: "E", 4: (IFDRational(181), 0.0, 0.0)}, "nonsense"),
        ({1: "N", 2: (22.0, 75.0, 0.0), 3: "E", 4: LON_DMS}, "nonsense"),
        ({1: "N", 2: (22.0, IFDRational(1, 0), 0.0), 3: "E", 4: LON_DMS}, "nonsense"),
        ({1: "X", 2: LAT_DMS, 3: "E", 4: LON_DMS}, "nonsense"),
        ({2: LAT_DMS, 4: LON_DMS}, "nonsense"),
        ({1: "N", 2: LAT_DMS}, "nonsense"),
        ({1: "N", 2: (0.0, 0.0, 0.0), 3: "E", 4: (0.0, 0.0, 0.0)}, "nonsense"),
    ],
)
def test_exif_gps(gps: dict[int, object], expected: object) -> None:
    info = inspect_photo(make_image("JPEG", exif=make_exif(gps=gps)))
    if expected == "nonsense":
        assert (info.lon, info.lat) == (None, None)
        assert info.taken_at is not None  # the rest of the EXIF still counts
    elif expected is None:
        assert (info.lon, info.lat) == (pytest.approx(113.75), pytest.approx(22.97))
    else:
        assert (info.lon, info.lat) == pytest.approx(expected)


def test_garbled_exif_is_ignored_not_fatal() -> None:
    exif_segment = JPEG.index(b"Exif\x00\x00")
    data = bytearray(JPEG)
    data[exif_segment + 6 : exif_segment + 40] = b"\xee" * 34  # TIFF header and IFD0 mangled
    info = inspect_photo(bytes(data))
    assert (info.width, info.taken_at, info.lat) == (64, None, None)


def test_empty() -> None:
    with pytest.raises(PhotoError, match="empty"):
        inspect_photo(b"")


def test_oversize_names_the_limit_in_mb() -> None:
    with pytest.raises(PhotoError, match="larger than the 10 MB limit"):
        inspect_photo(b"\xff\xd8\xff" + bytes(10 * 2**20))
    with pytest.raises(PhotoError, match=r"larger than the 0\.5 MB limit"):
        inspect_photo(JPEG + bytes(2**19), max_bytes=2**19)
    assert inspect_photo(JPEG, max_bytes=len(JPEG)).size_bytes == len(JPEG)


@pytest.mark.parametrize(
    "data",
    [
        b"This is not a photo, just a text file called photo.jpg\n",
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",
        b"%PDF-1.7\n",
        b"\xff\xd8",
        b"\x89PNG\r\n",
        b"RIFF\x00\x00\x00\x00WEBPVP8 ",
    ],
)
def test_not_a_photo(data: bytes) -> None:
    with pytest.raises(PhotoError, match="not a JPEG, PNG or HEIC photo"):
        inspect_photo(data)


@pytest.mark.parametrize("cut", [-2, -200, 0.5, 700, 20])
def test_truncated_jpeg(cut: float) -> None:
    end = int(len(JPEG) * cut) if isinstance(cut, float) else cut
    with pytest.raises(PhotoError, match="starts like a JPEG image but is damaged or incomplete"):
        inspect_photo(JPEG[:end])


def test_jpeg_magic_then_garbage() -> None:
    garbage = bytes((i * 7919 + 13) % 256 for i in range(5000))
    with pytest.raises(PhotoError, match="starts like a JPEG"):
        inspect_photo(b"\xff\xd8\xff\xe0" + garbage)


def test_png_with_a_broken_crc() -> None:
    chunks = png_chunks(PNG)
    idat = next(i for i, c in enumerate(chunks) if c[0] == b"IDAT")
    data = bytearray(png_join(chunks))
    crc_at = len(png_join(chunks[: idat + 1])) - 1
    data[crc_at] ^= 0xFF
    with pytest.raises(PhotoError, match="starts like a PNG image but is damaged"):
        inspect_photo(bytes(data))


def test_png_without_iend_or_truncated() -> None:
    chunks = png_chunks(PNG)
    assert chunks[-1][0] == b"IEND"
    for data in (png_join(chunks[:-1]), PNG[: len(PNG) // 2], PNG[:40]):
        with pytest.raises(PhotoError, match="starts like a PNG"):
            inspect_photo(data)


def test_png_with_corrupt_image_data_but_good_crcs() -> None:
    chunks = [(k, b"\x78\x9c" + bytes(200) if k == b"IDAT" else p) for k, p in png_chunks(PNG)]
    with pytest.raises(PhotoError, match="starts like a PNG"):
        inspect_photo(png_join(chunks))


@pytest.mark.parametrize(
    "size",
    [
        (8000, 8000),  # 64 MP: our cap
        (10000, 10000),  # 100 MP: Pillow's DecompressionBombWarning
        (30000, 30000),  # 900 MP: Pillow's DecompressionBombError
        (2**31 - 1, 2**31 - 1),
    ],
)
def test_decompression_bomb_headers(size: tuple[int, int]) -> None:
    assert size[0] * size[1] > MAX_PIXELS
    with pytest.raises(PhotoError, match="megapixel"):
        inspect_photo(png_header_only(*size))


def test_large_but_allowed_dimensions_are_decoded() -> None:
    # Within the cap, the (wrong, tiny) image data is still caught by the full decode.
    with pytest.raises(PhotoError, match="damaged or incomplete"):
        inspect_photo(png_header_only(5000, 5000))


def test_progressive_and_grayscale_jpegs() -> None:
    image = Image.effect_noise((50, 40), 40)
    for mode, options in (("L", {}), ("RGB", {"progressive": True}), ("CMYK", {})):
        out = io.BytesIO()
        image.convert(mode).save(out, "JPEG", **options)
        assert inspect_photo(out.getvalue()).width == 50
        with pytest.raises(PhotoError):
            inspect_photo(out.getvalue()[:-300])


# --- HEIC ---------------------------------------------------------------------------------------


def test_heic_with_exif() -> None:
    info = inspect_photo(HEIC)
    assert info.mime == "image/heic"
    assert (info.width, info.height) == (4032, 3024)
    assert info.taken_at == datetime(2024, 5, 1, 10, 30, tzinfo=CHINA_STANDARD_TIME)
    assert (info.lon, info.lat) == (pytest.approx(LON), pytest.approx(LAT))
    assert info.sha256 == hashlib.sha256(HEIC).hexdigest()


def test_heic_without_exif_or_size() -> None:
    info = inspect_photo(make_heic(None, size=None))
    assert (info.mime, info.width, info.height, info.taken_at, info.lat) == (
        "image/heic",
        None,
        None,
        None,
        None,
    )


@pytest.mark.parametrize(
    "layout",
    [
        {"iloc_version": 0},
        {"iloc_version": 1, "index_size": 4},
        {"iloc_version": 1, "index_size": 8, "base_offset_size": 8},
        {"iloc_version": 2, "offset_size": 8, "length_size": 8},
        {"iloc_version": 2, "base_offset_size": 4, "index_size": 4},
        {"iloc_version": 1, "exif_in_idat": True},
    ],
)
def test_heic_iloc_layouts(layout: dict[str, int]) -> None:
    exif = make_exif(offset="+09:00")
    info = inspect_photo(make_heic(exif, **layout))  # type: ignore[arg-type]
    assert info.taken_at == datetime(2024, 5, 1, 1, 30, tzinfo=UTC)
    assert info.lat == pytest.approx(LAT)


@pytest.mark.parametrize("brand", [b"heix", b"mif1", b"heim", b"heis"])
def test_heif_brands(brand: bytes) -> None:
    assert inspect_photo(make_heic(make_exif(), brand=brand)).mime == "image/heic"


@pytest.mark.parametrize("brand", [b"isom", b"mp42", b"qt  ", b"avif", b"crx "])
def test_other_iso_media_brands_are_not_heic(brand: bytes) -> None:
    with pytest.raises(PhotoError, match="not a HEIC photo"):
        inspect_photo(make_heic(make_exif(), brand=brand))


def test_heic_64_bit_and_to_the_end_box_sizes() -> None:
    ftyp_end = struct.unpack(">I", HEIC[:4])[0]
    meta_end = ftyp_end + struct.unpack(">I", HEIC[ftyp_end : ftyp_end + 4])[0]
    mdat_payload = HEIC[meta_end + 8 :]
    # mdat as size 0 ("to the end of the file"): offsets stay the same
    to_end = HEIC[:meta_end] + uint(0, 4) + b"mdat" + mdat_payload
    assert inspect_photo(to_end).lat == pytest.approx(LAT)
    # a box with a 64-bit largesize (appended, so that the item offsets stay valid)
    large = HEIC + uint(1, 4) + b"free" + uint(16 + 3, 8) + b"abc"
    assert inspect_photo(large).width == 4032


@pytest.mark.parametrize(
    ("where", "value", "match"),
    [
        ("mdat", 10**6, "'mdat' box has an impossible size"),
        ("mdat", 4, "'mdat' box has an impossible size"),
        ("meta", 2**31, "'meta' box has an impossible size"),
        ("ftyp", 7, "'ftyp' box has an impossible size"),
        ("iloc", 3000, "impossible size"),
    ],
)
def test_heic_with_a_broken_box_size(where: str, value: int, match: str) -> None:
    at = HEIC.index(where.encode()) - 4
    data = HEIC[:at] + uint(value, 4) + HEIC[at + 4 :]
    with pytest.raises(PhotoError, match=f"HEIC file is damaged or incomplete.*{match}"):
        inspect_photo(data)


def test_heic_truncated() -> None:
    for end in (len(HEIC) - 1, len(HEIC) // 2, 30, 9):
        with pytest.raises(PhotoError, match="damaged or incomplete"):
            inspect_photo(HEIC[:end])


def test_heic_item_pointing_past_the_end() -> None:
    ftyp_end = struct.unpack(">I", HEIC[:4])[0]
    meta_end = ftyp_end + struct.unpack(">I", HEIC[ftyp_end : ftyp_end + 4])[0]
    data = HEIC[:meta_end] + box(b"mdat", b"short")  # the items are no longer there
    with pytest.raises(PhotoError, match="item 1 lies past the end"):
        inspect_photo(data)


def test_heic_without_meta_or_handler() -> None:
    ftyp = box(b"ftyp", b"heic" + uint(0, 4) + b"mif1heic")
    with pytest.raises(PhotoError, match="no 'meta' box"):
        inspect_photo(ftyp + box(b"mdat", b"x" * 100))
    not_pict = HEIC.replace(b"pict", b"vide", 1)
    with pytest.raises(PhotoError, match="no picture handler"):
        inspect_photo(not_pict)


def test_heic_with_garbled_exif_item_keeps_the_photo() -> None:
    data = HEIC.replace(b"MM\x00*", b"XX\x00*", 1)
    info = inspect_photo(data)
    assert (info.width, info.taken_at, info.lat) == (4032, None, None)


# --- any input: PhotoInfo or PhotoError, nothing else ---------------------------------------------


def _inspect_or_reject(data: bytes) -> None:
    try:
        info = inspect_photo(data)
    except PhotoError as err:
        assert str(err)
        return
    assert info.mime in ("image/jpeg", "image/png", "image/heic")
    assert info.taken_at is None or info.taken_at.tzinfo is not None
    assert (info.lat is None) == (info.lon is None)
    assert info.lat is None or (-90 <= info.lat <= 90 and -180 <= info.lon <= 180)  # type: ignore[operator]


@given(st.binary(max_size=2000))
def test_arbitrary_bytes(data: bytes) -> None:
    _inspect_or_reject(data)


@given(
    st.sampled_from([JPEG, PNG, HEIC, make_heic(make_exif(), iloc_version=2, offset_size=8)]),
    st.lists(st.tuples(st.integers(0, 2**31), st.integers(0, 255)), max_size=8),
    st.integers(0, 2**31),
    st.binary(max_size=16),
)
def test_mutated_photos(
    original: bytes, flips: list[tuple[int, int]], cut: int, tail: bytes
) -> None:
    data = bytearray(original)
    for position, value in flips:
        data[position % len(data)] = value
    _inspect_or_reject(bytes(data))
    _inspect_or_reject(bytes(data[: cut % len(data)]) + tail)


@given(st.binary(min_size=1, max_size=64), st.integers(8, 400))
def test_heic_header_with_noise(noise: bytes, at: int) -> None:
    at = min(at, len(HEIC))
    _inspect_or_reject(HEIC[:at] + noise + HEIC[at:])
    _inspect_or_reject(HEIC[:8] + b"heic" + noise)
