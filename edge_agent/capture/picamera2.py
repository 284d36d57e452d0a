"""Raspberry Pi cameras through libcamera's picamera2 (`camera.type = "picamera2"`).

picamera2 is imported only when the camera is opened, so this module imports anywhere; it comes with
Pi OS (`sudo apt install python3-picamera2`), and a virtual environment sees it only when made with
`--system-site-packages`.

The calls are picamera2's documented ones (the Picamera2 manual; checked against the raspberrypi/picamera2
source): `Picamera2(camera_num)`, `create_video_configuration(main=..., lores=..., controls=...)`,
`configure`, `start`, then per frame `capture_request(wait=False)` and `wait(job, timeout)` (so that a
camera that stalls without an error, or an agent that stops, never blocks the capture thread for good),
`request.make_array("main")`, `request.get_metadata()`, `request.release()`; at the end `stop` and `close`.
`FrameRate` is picamera2's shorthand control for equal `FrameDurationLimits`.

Pixel formats carry libcamera's names, which give the order of a little-endian pixel word: "RGB888" is
stored B, G, R in memory (what OpenCV calls BGR), "BGR888" R, G, B, "XRGB8888" B, G, R, X and "XBGR8888"
R, G, B, X (the manual's appendix on pixel formats; picamera2's own `make_image` opens RGB888 with PIL's
raw mode "BGR"). Frames leave here as RGB whatever the format.

Times: `SensorTimestamp` in the request metadata is the start of exposure of the first row, in nanoseconds
of CLOCK_BOOTTIME (libcamera's control_ids_core.yaml). A frame is stamped
`wall_at_open - (boottime_at_open - SensorTimestamp)`: the moment the picture was taken, advancing with the
sensor's clock, so an NTP step does not move frame times (at a reopen the anchor follows the wall clock
again, unless that would take frame time backwards).

The low-resolution stream: with `camera.picamera2.lores = [w, h]` a YUV420 lores stream is configured
(picamera2 requires lores to be YUV and no larger than main), and its size is put in each frame's `meta`.
The pipeline still takes one picture per frame and detects on it: frames carry the MAIN stream, and the
lores stream is not used for detection yet (it costs a little ISP bandwidth and memory, nothing more).
"""

from __future__ import annotations

import contextlib
import importlib
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from edge_agent.capture.settings import CameraSettings
from edge_agent.errors import CaptureError
from edge_agent.types import Frame, RGBImage

NOT_INSTALLED = (
    "picamera2 is not installed: on Pi OS `sudo apt install python3-picamera2` "
    "and a venv with --system-site-packages"
)
# Where R, G and B sit in the array picamera2's make_array returns, per libcamera format.
CHANNELS = {"RGB888": (2, 1, 0), "BGR888": (0, 1, 2), "XRGB8888": (2, 1, 0), "XBGR8888": (0, 1, 2)}


class Request(Protocol):
    """The part of picamera2's `CompletedRequest` used here."""

    def make_array(self, name: str) -> npt.NDArray[np.uint8]: ...

    def get_metadata(self) -> dict[str, Any]: ...

    def release(self) -> None: ...


class Camera(Protocol):
    """The part of `picamera2.Picamera2` used here."""

    def create_video_configuration(self, **kwargs: Any) -> Any: ...

    def configure(self, camera_config: Any) -> None: ...

    def start(self) -> None: ...

    def capture_request(self, wait: bool | None = None) -> Any: ...

    def wait(self, job: Any, timeout: float | None = None) -> Any: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


CameraFactory = Callable[[int], Camera]


def video_configuration(settings: CameraSettings) -> dict[str, Any]:
    """The keyword arguments given to `Picamera2.create_video_configuration` for the configured camera."""
    pi = settings.picamera2
    main: dict[str, Any] = {}
    if settings.width is not None and settings.height is not None:
        main["size"] = (settings.width, settings.height)
    main["format"] = pi.format
    arguments: dict[str, Any] = {"main": main}
    if pi.lores is not None:
        arguments["lores"] = {"size": tuple(pi.lores), "format": "YUV420"}
    if settings.fps is not None:
        arguments["controls"] = {"FrameRate": settings.fps}
    return arguments


def to_rgb(array: npt.NDArray[np.uint8], pixel_format: str) -> RGBImage:
    """picamera2's main-stream array in `pixel_format` as a contiguous RGB image."""
    if array.ndim != 3 or array.shape[2] < 3 or pixel_format not in CHANNELS:
        raise ValueError(f"unexpected {pixel_format} array of shape {array.shape}")
    return np.ascontiguousarray(array[:, :, list(CHANNELS[pixel_format])], dtype=np.uint8)


def boottime_ns() -> int:
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def import_picamera2() -> Any:
    """picamera2's `Picamera2` class, or a CaptureError saying why it cannot be had."""
    try:
        module = importlib.import_module("picamera2")
    except ModuleNotFoundError as exc:
        if exc.name == "picamera2":
            raise CaptureError(NOT_INSTALLED) from None
        hint = " (libcamera's Python bindings come only from Pi OS's apt)" if exc.name == "libcamera" else ""
        raise CaptureError(f"picamera2 cannot be imported: {exc}{hint}") from None
    except Exception as exc:  # e.g. Pi OS's simplejpeg built for numpy 1 meeting numpy 2 in the venv
        raise CaptureError(
            f"picamera2 cannot be imported: {type(exc).__name__}: {exc} "
            "(Pi OS's picamera2 needs the OS numpy < 2: see hardware/raspberry-pi/README.md)"
        ) from None
    return module.Picamera2


class Picamera2Source:
    """A live Pi camera: reopened with backoff by the runner when it fails, newest frame wins."""

    live = True
    stall_timeout_s = 5.0  # no frame for this long (or 3 frame periods): the camera has failed, reopen it
    poll_s = 0.2  # how often a waiting read looks whether the agent is stopping

    def __init__(self, settings: CameraSettings, factory: CameraFactory | None = None) -> None:
        self.settings = settings
        self.camera_id = settings.id
        self.camera_num = settings.picamera2.camera_num
        self.fps: float | None = settings.fps
        self._factory = factory
        self._camera: Camera | None = None
        self._pending: Any = None  # a capture job still waiting for its frame
        self._interrupted = threading.Event()
        self._index = 0
        self._anchor = (datetime.now(UTC), boottime_ns())
        self._last: datetime | None = None

    def open(self) -> None:
        self.close()
        try:
            factory: CameraFactory = self._factory or import_picamera2()
        except CaptureError as exc:
            raise CaptureError(f"camera {self.camera_id}: {exc}") from None
        now = datetime.now(UTC)
        if self._last is None or now > self._last:
            self._anchor = (now, boottime_ns())
        try:
            camera = factory(self.camera_num)
        except Exception as exc:
            raise self._error(f"cannot be opened: {type(exc).__name__}: {exc}") from None
        arguments = video_configuration(self.settings)
        try:
            camera.configure(camera.create_video_configuration(**arguments))
            camera.start()
        except Exception as exc:
            with contextlib.suppress(Exception):
                camera.close()
            raise self._error(f"refused the configuration {arguments}: {exc}") from None
        self._camera = camera

    def read(self) -> Frame | None:
        """The next frame; None only after `interrupt`. CaptureError when the camera fails or stalls."""
        camera = self._camera
        if camera is None:
            raise self._error("read before open")
        patience = (
            max(self.stall_timeout_s, 3.0 / self.settings.fps) if self.settings.fps else self.stall_timeout_s
        )
        deadline = time.monotonic() + patience
        while not self._interrupted.is_set():
            try:
                if self._pending is None:
                    self._pending = camera.capture_request(wait=False)
                request: Request = camera.wait(self._pending, timeout=self.poll_s)
            except TimeoutError:
                if time.monotonic() >= deadline:
                    raise self._error(f"no frame for {patience:g} s") from None
                continue
            except Exception as exc:  # libcamera's RuntimeError when the camera goes away
                self._pending = None
                raise self._error(f"stopped delivering frames: {type(exc).__name__}: {exc}") from None
            self._pending = None
            return self._frame(request)
        return None

    def _frame(self, request: Request) -> Frame:
        try:
            array = request.make_array("main")
            metadata = request.get_metadata()
        except Exception as exc:
            raise self._error(f"unreadable frame: {type(exc).__name__}: {exc}") from None
        finally:
            request.release()
        pixel_format = self.settings.picamera2.format
        try:
            image = to_rgb(array, pixel_format)
        except ValueError as exc:
            raise self._error(str(exc)) from None
        sensor_ns = metadata.get("SensorTimestamp")
        if not isinstance(sensor_ns, int) or sensor_ns <= 0:
            sensor_ns = boottime_ns()  # no sensor time: the time we got the frame
        wall, boot_ns = self._anchor
        captured_at = wall + timedelta(microseconds=(sensor_ns - boot_ns) / 1000.0)
        self._last = captured_at
        duration_us = metadata.get("FrameDuration")
        if isinstance(duration_us, int | float) and duration_us > 0:
            self.fps = 1e6 / duration_us
        meta = {"stream": "main", "pixel_format": pixel_format, "sensor_timestamp_ns": str(sensor_ns)}
        if self.settings.picamera2.lores is not None:
            width, height = self.settings.picamera2.lores
            meta["lores_size"] = f"{width}x{height}"
        frame = Frame(image, self.camera_id, self._index, captured_at, meta=meta)
        self._index += 1
        return frame

    def _error(self, what: str) -> CaptureError:
        return CaptureError(f"camera {self.camera_id}: Pi camera {self.camera_num} {what}")

    def processed(self, frame: Frame) -> None:
        """Nothing to record: a camera has no progress."""

    def interrupt(self) -> None:
        self._interrupted.set()

    def close(self) -> None:
        camera, self._camera, self._pending = self._camera, None, None
        if camera is None:
            return
        with contextlib.suppress(Exception):
            camera.stop()
        with contextlib.suppress(Exception):
            camera.close()
