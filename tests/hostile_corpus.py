"""Hostile uploads, built in memory: files that are small to send and costly to decode, each with what the server must answer.

Each :class:`Case` names the HTTP status (and error code) that the real app serving the default model with its default
settings answers to it with ``mode=sync``, and generous limits on the request's wall time and on the peak resident
memory it adds (tests/test_hostile_corpus.py checks them in a subprocess per case).

``python tests/hostile_corpus.py`` prints, for every case, the decode path's measured time and peak memory next to
:mod:`app.io.decode_cost`'s estimate (one subprocess each; what the estimate's rates were checked against).
"""

from __future__ import annotations

import io
import json
import re
import resource
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image


def segment(marker: int, payload: bytes) -> bytes:
    """A JPEG marker segment: 0xFF, the marker, its length (payload + 2), the payload."""
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def entropy_bits(codes: list[tuple[int, int]]) -> bytes:
    """``(value, bit count)`` codes packed most significant bit first, padded with 1s, 0xFF bytes stuffed with 0x00."""
    acc = "".join(format(value, f"0{count}b") for value, count in codes)
    acc += "1" * (-len(acc) % 8)
    out = bytearray()
    for i in range(0, len(acc), 8):
        out.append(int(acc[i : i + 8], 2))
        if out[-1] == 0xFF:
            out.append(0)
    return bytes(out)


def progressive_scan_bomb(width: int, height: int, scans: int) -> bytes:
    """A progressive greyscale JPEG of ``1 + scans`` scans, crafted byte by byte: each refinement scan is a few bytes, yet
    makes libjpeg walk every block (1000 scans of 6000x6000: ~70 KB of DC data and 44 B per scan, 22 s to decode).

    SOF2 (8-bit, one component), one quantisation table, two Huffman tables of a single 1-bit code each (DC: category 0;
    AC: EOB run of 2^14 + 14 extra bits), a DC-first scan coding every block's difference as 0, then ``scans`` AC
    refinement scans (Ss 1, Se 63, Ah 1, Al 0) of end-of-band runs of 32767 blocks covering every block.
    """
    blocks = -(-width // 8) * -(-height // 8)
    single_code = bytes([1] + [0] * 15)
    parts = [
        b"\xff\xd8",
        segment(0xDB, b"\x00" + bytes([1] * 64)),
        segment(0xC2, struct.pack(">BHHB", 8, height, width, 1) + b"\x01\x11\x00"),
        segment(0xC4, b"\x00" + single_code + b"\x00" + b"\x10" + single_code + b"\xe0"),
        segment(0xDA, b"\x01\x01\x00\x00\x00\x00") + entropy_bits([(0, 1)] * blocks),
    ]
    eob_runs = entropy_bits([(0, 1), (2**14 - 1, 14)] * -(-blocks // 32767))
    refinement = segment(0xDA, b"\x01\x01\x00\x01\x3f\x10") + eob_runs
    return b"".join(parts) + refinement * scans + b"\xff\xd9"


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    """A PNG chunk with its length and CRC."""
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png16_bomb(side: int = 6300) -> bytes:
    """A 16-bit greyscale PNG of ``side``² zeros (77 KB at 6300²: deflate's ~1030:1), compressed row by row."""
    compressor = zlib.compressobj(9)
    row = bytes(1 + 2 * side)
    data = b"".join(compressor.compress(row) for _ in range(side)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 16, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", data) + png_chunk(b"IEND", b"")


def webp_bomb(side: int = 6000) -> bytes:
    """A lossless WebP of one semi-transparent colour, ``side``² (1.4 KB at 6000²; libwebp decodes it whole in one call)."""
    buf = io.BytesIO()
    Image.new("RGBA", (side, side), (10, 20, 30, 128)).save(buf, "WEBP", lossless=True)
    return buf.getvalue()


def truncated_png() -> bytes:
    """The first 40 bytes of a PNG: its signature and part of its header."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buf, "PNG")
    return buf.getvalue()[:40]


def tiff_strips(width: int, strips: int) -> bytes:
    """An uncompressed greyscale TIFF of ``strips`` one-row strips, all pointing at the same row (8 bytes per strip)."""
    entries = [(256, 4, 1, width), (257, 4, 1, strips), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1)]
    directory = 8
    row = directory + 2 + 12 * 8 + 4
    offsets, counts = row + width, row + width + 4 * strips
    entries += [(273, 4, strips, offsets), (278, 4, 1, 1), (279, 4, strips, counts)]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", *e) for e in entries) + bytes(4)
    return b"II*\x00" + struct.pack("<I", directory) + ifd + bytes(width) + struct.pack("<I", row) * strips + struct.pack("<I", width) * strips


def bmp_rle_padding(width: int, height: int) -> bytes:
    """An 8-bit run-length BMP whose rows are one pixel and an end of line: Pillow's decoder, in Python, pads each row one
    pixel at a time (~0.2 µs a pixel) from 4 bytes of file."""
    palette = b"".join(struct.pack("<BBBB", i, i, i, 0) for i in range(256))
    data = b"\x01\x07\x00\x00" * height + b"\x00\x01"
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 256, 0)
    offset = 14 + len(info) + len(palette)
    return b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + palette + data


def gif_frames(side: int, frames: int) -> bytes:
    """A ``side``² GIF of ``frames`` one-pixel frames (only the first is decoded)."""
    frame = b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00"
    screen = b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff"
    return screen + frame * frames + b"\x3b"


def photo(width: int = 4000, height: int = 3000, quality: int = 90) -> bytes:
    """A normal photo-like baseline JPEG (smooth random colours)."""
    small = np.random.default_rng(0).integers(0, 256, (height // 50, width // 50, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@dataclass(frozen=True)
class Case:
    """One hostile upload and what must come of it.

    Attributes:
        name: Its name (a test id).
        make: Builds the file.
        status: The HTTP status the default app answers (``mode=sync``).
        code: The error code of that answer (``None``: a 200).
        seconds: Most wall time the request may take.
        mib: Most resident memory (MiB) the request may add to the server's.
        before: What it cost before the decode was bounded, in words (for the record).
    """

    name: str
    make: Callable[[], bytes]
    status: int
    code: str | None
    seconds: float
    mib: float
    before: str = ""


CASES = [
    Case("jpeg_1000_scans", lambda: progressive_scan_bomb(6000, 6000, 1000), 422, "corrupt_image", 3.0, 150, "22 s in libjpeg, unstoppable"),
    Case("jpeg_3000_scans", lambda: progressive_scan_bomb(6000, 6000, 3000), 422, "corrupt_image", 3.0, 150, "82 s in libjpeg"),
    Case("jpeg_63_scans", lambda: progressive_scan_bomb(6000, 6000, 63), 200, None, 60.0, 400, "1.5 s, just under the scan cap"),
    Case("png16_6300", png16_bomb, 200, None, 60.0, 600, "2.2 s and +976 MiB (float64 copies)"),
    Case("webp_lossless_6000", webp_bomb, 200, None, 60.0, 900, "+665 MiB (RGBA + white composite)"),
    Case("png_truncated_40_bytes", truncated_png, 422, "corrupt_image", 10.0, 100, "415 unsupported_media_type"),
    Case("tiff_100k_strips", lambda: tiff_strips(8, 100_000), 422, "corrupt_image", 10.0, 100, "0.4 s to open, 1.1 s to decode"),
    Case("tiff_6m_strips", lambda: tiff_strips(6, 6_000_000), 422, "corrupt_image", 10.0, 300, "~20 s to open, ~50 s and ~2 GB to decode"),
    Case("tiff_65536_strips", lambda: tiff_strips(366, 65_536), 200, None, 60.0, 400, "the cap: 0.3 s to open, 0.7 s to decode"),
    Case("bmp_rle_40mp", lambda: bmp_rle_padding(40_000, 1000), 413, "too_much_work", 10.0, 150, "~8 s of Python, 4 KB of file"),
    Case("gif_100k_frames", lambda: gif_frames(6000, 100_000), 200, None, 60.0, 400, "first frame only"),
    Case("photo_4000x3000", photo, 200, None, 60.0, 400, "a normal photo"),
]


def _status_kib(key: str) -> int:
    match = re.search(rf"^{key}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


def reset_peak() -> int:
    """Reset this process's peak resident memory to its current one (Linux ``clear_refs``); the current one, in KiB.

    Without it a child's peak would keep what the process reached before (importing torch, building the file) and, through
    ``ru_maxrss``, what its parent had when it was started.
    """
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS")


def peak_kib() -> int:
    """This process's peak resident memory since :func:`reset_peak`, in KiB: the high-water mark that ``ru_maxrss`` reports,
    without the part ``ru_maxrss`` inherits from the parent at ``exec``."""
    return _status_kib("VmHWM") or int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def _measure(path: str) -> None:
    """In a subprocess: decode ``path`` as an upload at working resolution is, print measured and estimated cost as JSON."""
    from app.io.decode_cost import decode_cost
    from app.io.decoding import ImageDecodeError, decode_resized, probe_image
    from app.io.resize import working_shape

    data = Path(path).read_bytes()
    base = reset_peak()
    started = time.perf_counter()
    try:
        header = probe_image(data)
        estimate = decode_cost(header, working_shape(header.height, header.width, 256))
        decode_resized(data, lambda rows, cols: working_shape(rows, cols, 256))
    except ImageDecodeError as exc:
        print(json.dumps({"refused": exc.code.value, "seconds": time.perf_counter() - started}))
        return
    seconds = time.perf_counter() - started
    mib = (peak_kib() - base) / 1024
    print(json.dumps({"seconds": seconds, "mib": mib, "estimated_s": estimate.seconds, "estimated_mib": estimate.peak_bytes / 2**20}))


def main(folder: Path) -> None:
    """Print each case's size, measured decode time and memory, and the estimate's."""
    folder.mkdir(parents=True, exist_ok=True)
    print(f"{'case':<24}{'bytes':>11}{'s':>8}{'est. s':>8}{'MiB':>8}{'est. MiB':>9}")
    for case in CASES:
        path = folder / f"{case.name}.bin"
        path.write_bytes(case.make())
        run = subprocess.run([sys.executable, __file__, "--measure", str(path)], capture_output=True, text=True, check=True)
        row = json.loads(run.stdout)
        size = path.stat().st_size
        if "refused" in row:
            print(f"{case.name:<24}{size:>11}{row['seconds']:>8.2f}  refused: {row['refused']}")
        else:
            print(f"{case.name:<24}{size:>11}{row['seconds']:>8.2f}{row['estimated_s']:>8.2f}{row['mib']:>8.0f}{row['estimated_mib']:>9.0f}")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--measure"]:
        _measure(sys.argv[2])
    else:
        main(Path(sys.argv[1] if len(sys.argv) > 1 else "hostile-corpus"))
