"""Decompression bombs: pictures whose header claims more pixels than `bounded.MAX_IMAGE_PIXELS` are
refused from the header, before any pixel is decoded, by every command that reads a photo.

The bombs are real PNG files built here: one claims 60000x60000 and carries a tiny stream of zeros (OpenCV
raised an assertion from deep inside `imdecode`); the other is a genuinely decodable one-colour 30000x30000
picture of 109 kB (decoded, it took 5.4 GB of memory). Each command runs as a child process; its peak
memory is the kernel's account of that one child (`RUSAGE_CHILDREN` of a small wrapper process).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_agent.bounded import MAX_IMAGE_PIXELS
from edge_agent.capture.media import image_size, read_frames, read_image
from edge_agent.errors import MediaError
from tests.kits.agent_kit import DEMO_CLIP, DEMO_KIT

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MEMORY_LIMIT_KIB = 1024 * 1024  # 1 GiB: a refused bomb must cost no more than loading the models


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, depth: int, colour: int, idat: bytes) -> bytes:
    header = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")


def claimed_bomb() -> bytes:
    """60000x60000 RGB in the header, a kilobyte of compressed zeros behind it."""
    return png(60000, 60000, 8, 2, zlib.compress(bytes(1_000_000), 9))


def decodable_bomb(side: int = 30000) -> bytes:
    """A complete one-colour 1-bit grey picture: every row is filter byte 0 and zeros, compressed in blocks
    of 1000 rows (0.1 s here)."""
    row = bytes(1 + (side + 7) // 8)
    stream = zlib.compressobj(9)
    block = row * 1000
    parts = [stream.compress(block) for _ in range(side // 1000)]
    parts.append(stream.compress(row * (side % 1000)))
    parts.append(stream.flush())
    return png(side, side, 1, 0, b"".join(parts))


@pytest.fixture(scope="module")
def bombs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bombs")
    made = {"claimed": claimed_bomb(), "decodable": decodable_bomb()}
    paths = {}
    for name, data in made.items():
        path = folder / f"{name}.png"
        path.write_bytes(data)
        paths[name] = path
    return paths


def test_the_bombs_are_what_they_claim(bombs: dict[str, Path]) -> None:
    """The decodable one is a real, complete PNG of 900 MP in about 109 kB (checked by zlib, not by
    decoding it: that is the attack)."""
    data = bombs["decodable"].read_bytes()
    assert len(data) < 120_000
    width, height = struct.unpack(">II", data[16:24])
    assert (width, height) == (30000, 30000)
    idat_length = struct.unpack(">I", data[33:37])[0]
    raw = zlib.decompressobj()
    size = len(raw.decompress(data[41 : 41 + idat_length]))
    assert raw.eof and size == 30000 * (1 + 30000 // 8)
    assert struct.unpack(">II", bombs["claimed"].read_bytes()[16:24]) == (60000, 60000)


@pytest.mark.parametrize("name", ["claimed", "decodable"])
def test_read_image_refuses_from_the_header(bombs: dict[str, Path], name: str) -> None:
    with pytest.raises(MediaError) as raised:
        read_image(bombs[name])
    message = str(raised.value)
    assert str(bombs[name]) in message and f"{MAX_IMAGE_PIXELS:,}" in message
    assert "\n" not in message


def test_a_picture_just_past_the_bound_is_refused_with_its_size(tmp_path: Path) -> None:
    """Under Pillow's own bomb limit (89 MP) the refusal is ours and says width x height."""
    side = 7072  # 7072 x 7072 = 50.01 MP
    path = tmp_path / "big.png"
    path.write_bytes(decodable_bomb(side))
    with pytest.raises(MediaError, match=r"7072x7072 = 50,013,184 pixels, over the limit of 50,000,000"):
        read_image(path)
    fits = tmp_path / "fits.png"
    fits.write_bytes(decodable_bomb(2000))
    assert image_size(fits, fits.read_bytes()) == (2000, 2000)
    assert read_image(fits).shape == (2000, 2000, 3)


def test_real_photos_and_clips_still_read() -> None:
    for photo in sorted(DEMO_KIT.glob("*.jpg")) + sorted(DEMO_KIT.glob("*.png")):
        image = read_image(photo)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
    assert sum(1 for _ in read_frames(DEMO_CLIP, every=25)) == 11  # 275 frames


def test_a_video_with_frames_past_the_bound_is_refused_before_decoding(tmp_path: Path) -> None:
    """A real MJPEG AVI of 7100x7100 frames (50.4 MP): refused from the stream's declared size."""
    path = tmp_path / "huge.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"MJPG"), 1.0, (7100, 7100))
    assert writer.isOpened()
    writer.write(np.zeros((7100, 7100, 3), np.uint8))
    writer.release()
    with pytest.raises(MediaError, match=r"huge\.avi: video frame is 7100x7100 = 50,410,000 pixels"):
        list(read_frames(path))


# The command runs under a small Python of its own that reports its child's peak: a child forked from
# the test process itself would count the test process's pages (models and all) as its own until exec.
_MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(code)\n"
)


def _run_measured(args: list[str], folder: Path) -> tuple[int, str, int]:
    """Exit status, stderr and peak RSS (KiB) of `edge-agent ARGS` run as a child process."""
    out, err, peak = folder / "stdout.txt", folder / "stderr.txt", folder / "peak.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("EDGE_AGENT_")}
    env["EDGE_AGENT_WATCHLIST__PATH"] = str(folder / "watchlist.db")
    command = [sys.executable, "-c", _MEASURE, str(peak), sys.executable, "-m", "edge_agent", *args]
    with out.open("wb") as stdout, err.open("wb") as stderr:
        code = subprocess.run(command, stdout=stdout, stderr=stderr, env=env, check=False)
    return code.returncode, err.read_text(), int(peak.read_text())


COMMANDS = {
    "detect": lambda photo: ["detect", photo],
    "embed": lambda photo: ["embed", photo],
    "compare": lambda photo: ["compare", photo, str(DEMO_KIT / "alex_lacamoire.jpg")],
    "watchlist enroll": lambda photo: [
        "watchlist", "enroll", "Test Person", photo,
        "--reason", "test", "--source", "test", "--expires", "1d", "--by", "test",
    ],
    "watchlist search": lambda photo: ["watchlist", "search", photo],
}  # fmt: skip


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("name", ["claimed", "decodable"])
def test_every_command_refuses_a_bomb_in_one_line_and_bounded_memory(
    bombs: dict[str, Path], command: str, name: str, tmp_path: Path
) -> None:
    code, stderr, peak_kib = _run_measured(COMMANDS[command](str(bombs[name])), tmp_path)
    assert code == 1, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if str(bombs[name]) in line]
    assert len(lines) == 1, stderr
    assert (
        lines[0].startswith("edge-agent: ") and f"over the limit of {MAX_IMAGE_PIXELS:,} pixels" in lines[0]
    )
    assert "libpng" not in stderr and "[ WARN" not in stderr
    assert peak_kib < MEMORY_LIMIT_KIB, f"{command} on the {name} bomb peaked at {peak_kib / 1024:.0f} MiB"
    if command == "watchlist enroll":
        nothing = _run_measured(["watchlist", "list"], tmp_path)
        assert "Test Person" not in (tmp_path / "stdout.txt").read_text(), nothing
