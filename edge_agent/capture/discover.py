"""What capture hardware this machine offers, for `edge-agent sources`: V4L2 devices, Pi cameras (when
picamera2 can be imported), whether OpenCV can run GStreamer pipelines, and what the configured camera
resolves to. Read-only: devices are opened only to ask what they are (VIDIOC_QUERYCAP), never streamed.
"""

from __future__ import annotations

import fcntl
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2

from edge_agent.capture.jetson import describe_input, gstreamer_support, pipeline_string
from edge_agent.capture.opencv import CaptureFormat, capture_target
from edge_agent.capture.picamera2 import import_picamera2, video_configuration
from edge_agent.capture.settings import CameraSettings
from edge_agent.capture.source import is_file_source
from edge_agent.errors import CaptureError
from edge_agent.redaction import redact

SYS_VIDEO4LINUX = Path("/sys/class/video4linux")
DEV = Path("/dev")

# linux/videodev2.h: struct v4l2_capability is driver[16], card[32], bus_info[32], then u32 version,
# capabilities, device_caps and reserved[3]: 104 bytes; VIDIOC_QUERYCAP = _IOR('V', 0, that struct).
VIDIOC_QUERYCAP = 0x80685600
_CAPABILITY = struct.Struct("=16s32s32sIII12x")
CAP_VIDEO_CAPTURE = 0x00000001
CAP_VIDEO_OUTPUT = 0x00000002
CAP_VIDEO_CAPTURE_MPLANE = 0x00001000
CAP_VIDEO_OUTPUT_MPLANE = 0x00002000
CAP_VIDEO_M2M_MPLANE = 0x00004000
CAP_VIDEO_M2M = 0x00008000
CAP_META_CAPTURE = 0x00800000
CAP_DEVICE_CAPS = 0x80000000


@dataclass(frozen=True)
class VideoDevice:
    """One /dev/videoN: its sysfs name, and what its driver says it does (None if it could not be asked)."""

    path: Path
    name: str
    driver: str | None = None
    caps: int | None = None
    problem: str | None = None

    @property
    def kind(self) -> str:
        if self.caps is None:
            return f"unknown ({self.problem})" if self.problem else "unknown"
        if self.caps & (CAP_VIDEO_M2M | CAP_VIDEO_M2M_MPLANE):
            return "memory-to-memory (a codec or converter, not a camera)"
        if self.caps & (CAP_VIDEO_CAPTURE | CAP_VIDEO_CAPTURE_MPLANE):
            return "video capture"
        if self.caps & CAP_META_CAPTURE:
            return "metadata only (not pictures)"
        if self.caps & (CAP_VIDEO_OUTPUT | CAP_VIDEO_OUTPUT_MPLANE):
            return "video output"
        return "other"

    @property
    def capture(self) -> bool | None:
        """Whether it delivers pictures; None when unknown."""
        return None if self.caps is None else self.kind == "video capture"


def parse_capability(data: bytes) -> tuple[str, int]:
    """Driver name and the node's capabilities from a filled `struct v4l2_capability`."""
    driver, _card, _bus, _version, capabilities, device_caps = _CAPABILITY.unpack(data[: _CAPABILITY.size])
    caps = device_caps if capabilities & CAP_DEVICE_CAPS else capabilities
    return driver.split(b"\0", 1)[0].decode("utf-8", "replace"), caps


def query_capability(device: Path) -> tuple[str, int]:
    """Ask the driver (VIDIOC_QUERYCAP); OSError when the device cannot be opened or asked."""
    descriptor = os.open(device, os.O_RDONLY | os.O_NONBLOCK)
    try:
        buffer = bytearray(_CAPABILITY.size)
        fcntl.ioctl(descriptor, VIDIOC_QUERYCAP, buffer, True)
    finally:
        os.close(descriptor)
    return parse_capability(bytes(buffer))


def _video_number(path: Path) -> int:
    match = re.fullmatch(r"video(\d+)", path.name)
    return int(match.group(1)) if match else -1


def video_devices(sysfs: Path = SYS_VIDEO4LINUX, dev: Path = DEV) -> list[VideoDevice]:
    """Every V4L2 video node, from sysfs and /dev, in number order."""
    names: dict[str, str] = {}
    if sysfs.is_dir():
        for entry in sysfs.glob("video*"):
            try:
                names[entry.name] = (entry / "name").read_text(encoding="utf-8", errors="replace").strip()
            except OSError:
                names[entry.name] = ""
    if dev.is_dir():
        for node in dev.glob("video*"):
            if _video_number(node) >= 0:
                names.setdefault(node.name, "")
    devices = []
    for node_name in sorted(names, key=lambda name: _video_number(Path(name))):
        if _video_number(Path(node_name)) < 0:
            continue
        path = dev / node_name
        try:
            driver, caps = query_capability(path)
        except OSError as exc:
            problem = exc.strerror or type(exc).__name__
            if exc.errno in (1, 13):  # EPERM, EACCES
                problem += ": add the user to the video group"
            devices.append(VideoDevice(path, names[node_name], problem=problem))
            continue
        devices.append(VideoDevice(path, names[node_name], driver, caps))
    return devices


@dataclass
class Survey:
    devices: list[VideoDevice]
    pi_cameras: list[dict[str, Any]] | None  # None: picamera2 unavailable (see pi_problem)
    pi_problem: str | None
    gstreamer: tuple[bool, str]
    opencv_version: str = field(default=cv2.__version__)


def pi_cameras() -> tuple[list[dict[str, Any]] | None, str | None]:
    """`Picamera2.global_camera_info()`, or None and why picamera2 cannot be used."""
    try:
        picamera2 = import_picamera2()
    except CaptureError as exc:
        return None, str(exc)
    try:
        cameras = picamera2.global_camera_info()
    except Exception as exc:
        return None, f"picamera2 could not list cameras: {type(exc).__name__}: {exc}"
    return [dict(camera) for camera in cameras], None


def survey(sysfs: Path = SYS_VIDEO4LINUX, dev: Path = DEV) -> Survey:
    cameras, problem = pi_cameras()
    return Survey(video_devices(sysfs, dev), cameras, problem, gstreamer_support())


def report(found: Survey, camera: CameraSettings, explain: bool = False) -> list[str]:
    """The lines `edge-agent sources` prints."""
    lines = ["V4L2 devices (/sys/class/video4linux, /dev/video*):"]
    if not found.devices:
        lines.append("  none found")
    for device in found.devices:
        driver = f" [{device.driver}]" if device.driver else ""
        lines.append(f"  {device.path}  {device.name or '(no name)'}{driver}: {device.kind}")
    lines.append("Pi cameras (picamera2):")
    if found.pi_cameras is None:
        lines.append(f"  {found.pi_problem}")
    elif not found.pi_cameras:
        lines.append("  none found")
    for number, info in enumerate(found.pi_cameras or []):
        where = info.get("Id", "")
        lines.append(f"  camera_num {info.get('Num', number)}: {info.get('Model', '?')}  {where}".rstrip())
    supported, detail = found.gstreamer
    needed = "" if supported else " (camera.type = jetson needs an OpenCV built with GStreamer)"
    lines.append(f"OpenCV {found.opencv_version}: GStreamer {detail}{needed}")
    lines.append(f"Configured camera {camera.id} (camera.type = {camera.type}):")
    lines.extend(f"  {line}" for line in describe_camera(camera, explain))
    return lines


def describe_camera(camera: CameraSettings, explain: bool = False) -> list[str]:
    """What the configured source resolves to; with `explain`, exactly what will be opened."""
    if camera.type == "picamera2":
        lines = [f"Pi camera {camera.picamera2.camera_num} through picamera2; live"]
        if explain:
            arguments = video_configuration(camera)
            lines.append(
                f"Picamera2({camera.picamera2.camera_num}).create_video_configuration("
                + ", ".join(f"{key}={value!r}" for key, value in arguments.items())
                + ")"
            )
            if camera.picamera2.lores is not None:
                lines.append(
                    "frames carry the main stream; the lores stream is configured, not yet detected on"
                )
        return lines
    if camera.type == "jetson":
        live = "file: every frame, then the run ends" if camera.jetson.input == "file" else "live"
        lines = [f"{describe_input(camera)}; {live}"]
        if explain:
            lines += ["GStreamer pipeline (OpenCV CAP_GSTREAMER):", f"  {redact(pipeline_string(camera))}"]
        return lines
    if camera.type == "bodycam":
        body = camera.bodycam
        lines = [f"body-cam docking folder {body.folder} ({', '.join(body.patterns)})"]
        if explain:
            when: str = body.time_source
            if body.time_source == "filename":
                when = f"file name {body.filename_pattern!r} in {body.timezone}"
            lines.append(f"recording time from {when}; without one: {body.missing_time}")
            lines.append(f"after processing: {body.after}" + (f" to {body.move_to}" if body.move_to else ""))
        return lines
    return _describe_opencv(camera, explain)


def _describe_opencv(camera: CameraSettings, explain: bool) -> list[str]:
    target = capture_target(camera.source)
    if isinstance(target, int):
        what = f"V4L2 device {target} (/dev/video{target})"
    elif "://" in target:
        what = f"stream {redact(target)}"
    else:
        path = Path(target)
        what = f"{'video file' if path.is_file() else 'path'} {path}" + (
            "" if path.exists() else " (missing)"
        )
    file = is_file_source(camera)
    mode = (
        "file: every frame, then the run ends" if file else "live: reopened with backoff, newest frame wins"
    )
    lines = [f"{what}; {mode}"]
    if explain:
        shown = target if isinstance(target, int) else repr(redact(target))
        lines.append(f"OpenCV VideoCapture({shown})")
        requested = CaptureFormat.from_settings(camera)
        parts = [
            f"{requested.width}x{requested.height}" if requested.width else "",
            f"{requested.fps:g} fps" if requested.fps else "",
            requested.fourcc or "",
        ]
        if not file and any(parts):
            lines.append("requested format: " + " ".join(part for part in parts if part))
    return lines
