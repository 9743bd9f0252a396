"""An image file's pixel size read from its header, so a decompression bomb is refused before decoding.

A 1 MB PNG can declare 30000x30000 pixels and decode to gigabytes; OpenCV's own limit
(``OPENCV_IO_MAX_IMAGE_PIXELS``, 2^30 pixels) is read once when cv2 loads, so it can't follow an
option. This reads the sizes of the formats deepbg-live accepts (PNG, JPEG, BMP, WebP, TIFF) by their
content, not their name, since OpenCV also decodes by content. Torch-, OpenCV- and PyAV-free, so
the command line can name the limit without loading them.
"""

from __future__ import annotations

import struct

# Decoded pictures above this are refused (--max-pixels raises it): 120 MP passes a 108 MP phone photo
# and keeps one frame of BGR under 400 MB, while a 1 MB PNG may declare gigabytes of pixels.
MAX_PIXELS = 120_000_000
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # start-of-frame markers (not DHT, JPG, DAC)


def pixel_size(data: bytes | memoryview) -> tuple[int, int] | None:
    """``(width, height)`` as the image in ``data`` declares it; None for other data or a damaged header."""
    data = memoryview(data).cast("B")
    try:
        for reader in (_png, _jpeg, _bmp, _webp, _tiff):
            size = reader(data)
            if size is not None:
                return size
    except (struct.error, IndexError):  # a header cut short
        return None
    return None


def _png(data: memoryview) -> tuple[int, int] | None:
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return struct.unpack(">II", data[16:24])


def _jpeg(data: memoryview) -> tuple[int, int] | None:
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # markers without a length
            i += 2
        elif marker in _JPEG_SOF:
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        else:
            i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]
    return None


def _bmp(data: memoryview) -> tuple[int, int] | None:
    if data[:2] != b"BM":
        return None
    if struct.unpack("<I", data[14:18])[0] == 12:  # OS/2 BITMAPCOREHEADER: 16-bit sides
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # a negative height means rows stored top-down


def _webp(data: memoryview) -> tuple[int, int] | None:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return None
    kind = data[12:16]
    if kind == b"VP8 ":  # lossy: 14-bit sides after the key frame's start code
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if kind == b"VP8L":  # lossless: two 14-bit sides minus one, packed
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if kind == b"VP8X":  # extended: the canvas, two 24-bit sides minus one
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _tiff(data: memoryview) -> tuple[int, int] | None:
    order = {b"II*\x00": "<", b"MM\x00*": ">"}.get(bytes(data[:4]))
    if order is None:
        return None
    ifd = struct.unpack(order + "I", data[4:8])[0]  # the first page is the one OpenCV decodes
    (count,) = struct.unpack(order + "H", data[ifd : ifd + 2])
    sides: dict[int, int] = {}
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind = struct.unpack(order + "HH", data[entry : entry + 4])
        if tag in (256, 257):  # ImageWidth, ImageLength: a SHORT or a LONG
            fmt = order + ("H" if kind == 3 else "I")
            sides[tag] = struct.unpack(fmt, data[entry + 8 : entry + 8 + struct.calcsize(fmt)])[0]
    if len(sides) < 2:
        return None
    return sides[256], sides[257]
