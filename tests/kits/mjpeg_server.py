"""A real network camera for tests: the demo clip served as an MJPEG stream over HTTP (what many IP
cameras offer beside RTSP), read by the agent through the same OpenCV/FFmpeg URL path as RTSP.

It can die (connections dropped, port closed), come back on the same port, or stall (keep the
connection open and send nothing), which is what flaky cameras do.
"""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from pathlib import Path

import cv2

BOUNDARY = b"frame"


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class MjpegCamera:
    def __init__(self, clip: Path, port: int, fps: float = 30.0) -> None:
        self.port = port
        self.fps = fps
        self.frames = _jpeg_frames(clip)
        self.stalled = threading.Event()
        self._alive = threading.Event()
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/stream.mjpg"

    def start(self) -> None:
        camera = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY.decode()}")
                self.end_headers()
                index = 0
                try:
                    while camera._alive.is_set():
                        if camera.stalled.is_set():
                            time.sleep(0.05)
                            continue
                        jpeg = camera.frames[index % len(camera.frames)]
                        index += 1
                        head = b"--" + BOUNDARY + b"\r\nContent-Type: image/jpeg\r\nContent-Length: "
                        self.wfile.write(head + str(len(jpeg)).encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                        time.sleep(1.0 / camera.fps)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._alive.set()
        self._server = _Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        """The camera dies: open connections end and the port refuses new ones."""
        self._alive.clear()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _jpeg_frames(clip: Path) -> list[bytes]:
    capture = cv2.VideoCapture(str(clip))
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.imencode(".jpg", bgr)[1].tobytes())
    capture.release()
    return frames
