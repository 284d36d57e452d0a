"""The Pi camera source against a fake `Picamera2` that keeps to picamera2's documented API, fed a real
face photo as its sensor picture (no Pi camera here)."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from edge_agent.capture.media import read_image
from edge_agent.capture.picamera2 import NOT_INSTALLED, Picamera2Source, boottime_ns
from edge_agent.capture.runner import CaptureRunner, LatestFrameSlot
from edge_agent.capture.settings import CameraSettings
from edge_agent.capture.source import open_source
from edge_agent.errors import CaptureError
from edge_agent.vision.detect import FaceDetector
from tests.conftest import DEMO_KIT

PHOTO = DEMO_KIT / "lin_manuel_miranda.png"  # 704 x 612, even sizes as libcamera wants
FRAME_NS = 33_333_333  # 30 fps


@pytest.fixture(scope="module")
def photo() -> npt.NDArray[np.uint8]:
    return read_image(PHOTO)  # RGB


def in_memory(rgb: npt.NDArray[np.uint8], pixel_format: str) -> npt.NDArray[np.uint8]:
    """What picamera2's make_array returns for `pixel_format`: libcamera's RGB888 is B, G, R in memory,
    BGR888 R, G, B; the X formats add a fourth byte (255)."""
    order = {"RGB888": [2, 1, 0], "XRGB8888": [2, 1, 0], "BGR888": [0, 1, 2], "XBGR8888": [0, 1, 2]}
    array = rgb[:, :, order[pixel_format]]
    if pixel_format.startswith("X"):
        array = np.dstack([array, np.full(rgb.shape[:2], 255, np.uint8)])
    return np.ascontiguousarray(array)


class FakeRequest:
    def __init__(self, arrays: dict[str, npt.NDArray[np.uint8]], metadata: dict[str, Any]) -> None:
        self.arrays, self.metadata, self.released = arrays, metadata, False

    def make_array(self, name: str) -> npt.NDArray[np.uint8]:
        if self.released:
            raise RuntimeError("request used after release")
        if name not in self.arrays:
            raise RuntimeError(f"Stream {name!r} is not defined")
        return self.arrays[name].copy()

    def get_metadata(self) -> dict[str, Any]:
        return dict(self.metadata)

    def release(self) -> None:
        self.released = True


class FakeJob:
    def __init__(self, result: FakeRequest | None = None, error: Exception | None = None) -> None:
        self.result, self.error = result, error


class FakePicamera2:
    """picamera2's `Picamera2` as its documentation and source describe it: `create_video_configuration`
    fills in the defaults and checks what libcamera would refuse (odd sizes, a non-YUV or larger lores);
    `capture_request(wait=False)` returns a job; `wait(job, timeout)` returns the request or raises
    TimeoutError. `script` yields per frame (sensor timestamp ns, main array) or an exception to raise."""

    def __init__(
        self, camera_num: int, script: Iterator[tuple[int, npt.NDArray[np.uint8]] | Exception]
    ) -> None:
        self.camera_num = camera_num
        self.script = script
        self.requested: dict[str, Any] | None = None
        self.configured: dict[str, Any] | None = None
        self.started = self.closed = False
        self.requests: list[FakeRequest] = []

    def create_video_configuration(
        self,
        main: dict[str, Any] | None = None,
        lores: dict[str, Any] | None = None,
        controls: dict[str, Any] | None = None,
        **others: Any,
    ) -> dict[str, Any]:
        self.requested = {"main": main, "lores": lores, "controls": controls, **others}
        main = {"format": "XBGR8888", "size": (1280, 720), **(main or {})}
        if lores is not None:
            lores = {"format": "YUV420", "size": main["size"], **lores}
            if lores["format"] not in ("YUV420", "YVU420"):
                raise RuntimeError("lores stream must be YUV")
            if lores["size"][0] > main["size"][0] or lores["size"][1] > main["size"][1]:
                raise RuntimeError("lores stream dimensions may not exceed main stream")
        for stream in (main, lores):
            if stream is not None and (stream["size"][0] % 2 or stream["size"][1] % 2):
                raise RuntimeError("width and height should be even")
        return {"use_case": "video", "main": main, "lores": lores, "controls": dict(controls or {})}

    def configure(self, camera_config: dict[str, Any]) -> None:
        self.configured = camera_config

    def start(self) -> None:
        assert self.configured is not None, "start before configure"
        self.started = True

    def capture_request(self, wait: bool | None = None) -> FakeJob | FakeRequest:
        if not self.started:
            raise RuntimeError("Camera is not started")
        item = next(self.script, None)
        if isinstance(item, Exception):
            raise item
        job = FakeJob()
        if item is not None:
            sensor_ns, array = item
            assert self.configured is not None
            arrays = {"main": array}
            if self.configured["lores"] is not None:
                width, height = self.configured["lores"]["size"]
                arrays["lores"] = np.zeros((height * 3 // 2, width), np.uint8)
            metadata = {
                "SensorTimestamp": sensor_ns,
                "FrameDuration": FRAME_NS // 1000,
                "ExposureTime": 10000,
            }
            job.result = FakeRequest(arrays, metadata)
            self.requests.append(job.result)
        return job if wait is False else self.wait(job)

    def wait(self, job: FakeJob, timeout: float | None = None) -> FakeRequest:
        if job.error is not None:
            raise job.error
        if job.result is None:  # the camera sends nothing
            time.sleep(timeout or 0.0)
            raise TimeoutError
        return job.result

    def stop(self) -> None:
        self.started = False

    def close(self) -> None:
        self.closed = True


Script = Iterator[tuple[int, npt.NDArray[np.uint8]] | Exception]


def frames_of(array: npt.NDArray[np.uint8], first_ns: int, count: int = 1000) -> Script:
    return iter([(first_ns + n * FRAME_NS, array) for n in range(count)])


def factory_for(scripts: list[Script], made: list[FakePicamera2]) -> Callable[[int], FakePicamera2]:
    """A `Picamera2` stand-in: each call (each reopen) takes the next script."""

    def make(camera_num: int) -> FakePicamera2:
        camera = FakePicamera2(camera_num, scripts[len(made)])
        made.append(camera)
        return camera

    return make


def pi_settings(**picamera2: Any) -> dict[str, Any]:
    return {"type": "picamera2", "picamera2": picamera2}


def test_configuration_asked_of_picamera2(photo: npt.NDArray[np.uint8]) -> None:
    made: list[FakePicamera2] = []
    settings = CameraSettings(**pi_settings(camera_num=1, lores=(352, 306)), width=704, height=612, fps=25.0)
    source = Picamera2Source(settings, factory_for([frames_of(in_memory(photo, "RGB888"), 10**9)], made))
    source.open()
    camera = made[0]
    assert camera.camera_num == 1 and camera.started
    assert camera.requested == {
        "main": {"size": (704, 612), "format": "RGB888"},
        "lores": {"size": (352, 306), "format": "YUV420"},
        "controls": {"FrameRate": 25.0},
    }
    assert camera.configured is not None and camera.configured["lores"]["size"] == (352, 306)
    frame = source.read()
    assert frame is not None and frame.image.shape == (612, 704, 3)
    assert frame.meta["stream"] == "main" and frame.meta["lores_size"] == "352x306"
    assert all(request.released for request in camera.requests)
    source.close()
    assert camera.closed and not camera.started


def test_default_configuration_leaves_size_and_rate_to_picamera2() -> None:
    made: list[FakePicamera2] = []
    source = Picamera2Source(CameraSettings(**pi_settings()), factory_for([iter([])], made))
    source.open()
    assert made[0].requested == {"main": {"format": "RGB888"}, "lores": None, "controls": None}
    source.close()


def test_rgb888_sensor_picture_arrives_as_rgb_and_the_face_is_found(
    photo: npt.NDArray[np.uint8], make_detector: Callable[..., FaceDetector]
) -> None:
    """RGB888 is B, G, R in memory: delivered as is, the frame would be blue-faced."""
    sensor = in_memory(photo, "RGB888")
    assert not np.array_equal(sensor, photo)
    source = Picamera2Source(CameraSettings(**pi_settings()), factory_for([frames_of(sensor, 10**9)], []))
    source.open()
    frame = source.read()
    source.close()
    assert frame is not None
    assert frame.image.flags.c_contiguous and frame.image.dtype == np.uint8
    np.testing.assert_array_equal(frame.image, photo)
    red, _, blue = frame.image.reshape(-1, 3).mean(axis=0)
    assert red > blue + 15  # skin and a warm stage light: red dominates in true RGB order
    detector = make_detector()
    faces = detector.detect(frame.image)
    assert len(faces) == 1 and faces[0].score > 0.8
    expected = detector.detect(read_image(PHOTO))[0]
    assert faces[0].box == expected.box


@pytest.mark.parametrize("pixel_format", ["BGR888", "XRGB8888", "XBGR8888"])
def test_every_format_arrives_as_rgb(photo: npt.NDArray[np.uint8], pixel_format: str) -> None:
    made: list[FakePicamera2] = []
    sensor = in_memory(photo, pixel_format)
    settings = CameraSettings(**pi_settings(format=pixel_format))
    source = Picamera2Source(settings, factory_for([frames_of(sensor, 10**9)], made))
    source.open()
    frame = source.read()
    assert made[0].requested is not None and made[0].requested["main"] == {"format": pixel_format}
    assert frame is not None
    np.testing.assert_array_equal(frame.image, photo)


def test_frames_are_stamped_with_the_sensor_time(photo: npt.NDArray[np.uint8]) -> None:
    """SensorTimestamp is CLOCK_BOOTTIME nanoseconds: a frame exposed 50 ms after the camera opened is
    stamped 50 ms after the wall time at opening, and frames 33.333 ms apart stay exactly that apart."""
    sensor = in_memory(photo, "RGB888")
    first_ns = boottime_ns() + 50_000_000
    source = Picamera2Source(CameraSettings(**pi_settings()), factory_for([frames_of(sensor, first_ns)], []))
    opened_at = datetime.now(UTC)
    source.open()
    frames = [source.read() for _ in range(3)]
    assert all(frame is not None for frame in frames)
    times = [frame.captured_at for frame in frames if frame is not None]
    assert abs(times[0] - (opened_at + timedelta(milliseconds=50))) < timedelta(milliseconds=20)
    for earlier, later in itertools.pairwise(times):
        assert abs((later - earlier) - timedelta(microseconds=33333.333)) <= timedelta(microseconds=1)
    assert [frame.index for frame in frames if frame is not None] == [0, 1, 2]
    assert frames[0] is not None and frames[0].meta["sensor_timestamp_ns"] == str(first_ns)
    assert source.fps == pytest.approx(30.0, abs=0.01)  # from FrameDuration


def test_a_libcamera_error_is_a_capture_error_and_the_runner_reopens(photo: npt.NDArray[np.uint8]) -> None:
    sensor = in_memory(photo, "RGB888")
    failing: Script = iter([(10**9, sensor), RuntimeError("Device or resource busy")])
    made: list[FakePicamera2] = []
    source = Picamera2Source(CameraSettings(**pi_settings()), factory_for([failing], made))
    source.open()
    assert source.read() is not None
    with pytest.raises(
        CaptureError, match=r"camera cam-1: Pi camera 0 stopped delivering frames: RuntimeError"
    ):
        source.read()

    made = []
    settings = CameraSettings(**pi_settings(), reconnect_min_s=0.01, reconnect_max_s=0.05)
    again: Script = iter([(10**9, sensor), RuntimeError("camera unplugged")])
    source = Picamera2Source(settings, factory_for([again, frames_of(sensor, 2 * 10**9)], made))
    slot = LatestFrameSlot()
    runner = CaptureRunner(source, slot, settings)
    runner.start()
    deadline = time.monotonic() + 5.0
    while runner.frames < 5 and time.monotonic() < deadline:
        slot.take(0.1)
    runner.stop()
    assert runner.frames >= 5 and runner.reconnects == 1 and len(made) == 2
    assert made[0].closed and made[1].closed


def test_a_stalled_camera_is_a_capture_error() -> None:
    source = Picamera2Source(CameraSettings(**pi_settings()), factory_for([iter([])], []))
    source.stall_timeout_s, source.poll_s = 0.3, 0.05
    source.open()
    started = time.monotonic()
    with pytest.raises(CaptureError, match=r"Pi camera 0 no frame for 0.3 s"):
        source.read()
    assert time.monotonic() - started < 2.0


def test_interrupt_ends_a_waiting_read() -> None:
    source = Picamera2Source(CameraSettings(**pi_settings()), factory_for([iter([])], []))
    source.poll_s = 0.05
    source.open()
    threading.Timer(0.2, source.interrupt).start()
    started = time.monotonic()
    assert source.read() is None
    assert time.monotonic() - started < 1.0


def test_opening_and_configuration_failures_are_capture_errors() -> None:
    def no_camera(camera_num: int) -> FakePicamera2:
        raise RuntimeError("Camera __init__ sequence did not complete.")

    with pytest.raises(CaptureError, match=r"Pi camera 0 cannot be opened: RuntimeError: Camera __init__"):
        Picamera2Source(CameraSettings(**pi_settings()), no_camera).open()

    made: list[FakePicamera2] = []
    settings = CameraSettings(**pi_settings(lores=(1280, 720)), width=640, height=480)
    with pytest.raises(CaptureError, match=r"refused the configuration .* may not exceed main stream"):
        Picamera2Source(settings, factory_for([iter([])], made)).open()
    assert made[0].closed


def test_without_picamera2_open_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "picamera2", None)  # as if not installed, even on a Pi
    source = open_source(CameraSettings(**pi_settings()))  # the module imports without picamera2
    assert isinstance(source, Picamera2Source) and source.live
    with pytest.raises(CaptureError) as raised:
        source.open()
    assert str(raised.value) == f"camera cam-1: {NOT_INSTALLED}"
    assert "sudo apt install python3-picamera2" in str(raised.value)
    assert "--system-site-packages" in str(raised.value)


def test_a_picamera2_that_fails_to_import_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pi OS's picamera2 imports simplejpeg, built for numpy 1: with numpy 2 in the venv it raises this."""
    package = tmp_path / "picamera2"
    package.mkdir()
    (package / "__init__.py").write_text(
        "raise ValueError('numpy.dtype size changed, may indicate binary incompatibility')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    with pytest.raises(
        CaptureError, match=r"cannot be imported: ValueError: numpy.dtype size changed.*numpy < 2"
    ):
        Picamera2Source(CameraSettings(**pi_settings())).open()
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
