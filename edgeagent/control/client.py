"""A small blocking client of the control socket, for the CLI.

``call`` sends one request and waits for its answer. ``stream`` pipelines many on one
connection: a thread writes requests as the caller's iterator yields them while the caller
reads the answers, which the server sends in request order; the socket buffers and the
server's in-flight bound keep memory flat however long the stream.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from edgeagent.control.protocol import LineFramer, encode_request
from edgeagent.errors import ControlError, NotRunningError

CONTROL_SOCKET = "control.sock"  # in the agent's runtime directory


def control_socket(runtime_dir: str | Path) -> Path:
    """Where the agent in ``runtime_dir`` serves its control API."""
    return Path(runtime_dir) / CONTROL_SOCKET


class ControlClient:
    def __init__(self, path: Path, *, timeout: float = 10.0) -> None:
        self._path = path
        self._timeout = timeout
        self._next_id = 1

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request and return its result; raise ControlError with the agent's reason."""
        sock = self._connect()
        try:
            request_id = self._next_id
            self._next_id += 1
            sock.sendall(encode_request(request_id, method, params or {}))
            reply = self._read_line(sock)
        except TimeoutError as exc:
            reason = f"the agent did not answer {method!r} within {self._timeout}s"
            raise ControlError(reason) from exc
        finally:
            sock.close()
        message = json.loads(reply)
        if "error" in message:
            error = message["error"]
            raise ControlError(str(error.get("message", error)))
        return message.get("result")

    def stream(self, method: str, params: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Send one ``method`` request per item of ``params``; yield each reply message
        (``{"id", "result"}`` or ``{"id", "error"}``) as it arrives, in order."""
        sock = self._connect()
        sock.settimeout(None)  # a slow producer (a pipe from a sensor) may pause for long
        sent = [0]
        done = threading.Event()
        failure: list[BaseException] = []

        def write() -> None:
            try:
                for item in params:
                    sock.sendall(encode_request(sent[0] + 1, method, item))
                    sent[0] += 1
            except BaseException as exc:  # reported by the reader, after what was answered
                failure.append(exc)
            finally:
                done.set()
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_WR)

        writer = threading.Thread(target=write, name="edgeagent-cli-stream", daemon=True)
        writer.start()
        framer = LineFramer()
        received = 0
        try:
            while not (done.is_set() and received >= sent[0]):
                data = sock.recv(65536)
                if not data:
                    if received < sent[0]:
                        raise ControlError("the agent closed the control connection mid-stream")
                    break
                for line in framer.feed(data):
                    received += 1
                    yield json.loads(line)
            writer.join()
            if failure:
                raise failure[0]
        finally:
            sock.close()

    def _connect(self) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self._timeout)
        try:
            sock.connect(str(self._path))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            sock.close()
            raise NotRunningError(
                f"no agent is running (nothing answers on {self._path}); start it with "
                "`edgeagent run`, or point --runtime-dir at the agent's runtime directory"
            ) from exc
        except PermissionError as exc:
            sock.close()
            raise ControlError(
                f"permission denied on {self._path}: the control socket is owner-only; "
                "run as the agent's user (or root)"
            ) from exc
        return sock

    @staticmethod
    def _read_line(sock: socket.socket) -> bytes:
        framer = LineFramer()
        while True:
            data = sock.recv(65536)
            if not data:
                raise ControlError("the agent closed the control connection without answering")
            lines = framer.feed(data)
            if lines:
                return lines[0]
