"""A small blocking client of the control socket, for the CLI (one request at a time)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from edgeagent.control.protocol import LineFramer, encode_request
from edgeagent.errors import ControlError, NotRunningError


class ControlClient:
    def __init__(self, path: Path, *, timeout: float = 10.0) -> None:
        self._path = path
        self._timeout = timeout
        self._next_id = 1

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send one request and return its result; raise ControlError with the agent's reason."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self._timeout)
        try:
            try:
                sock.connect(str(self._path))
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                raise NotRunningError(
                    f"no agent is running (nothing answers on {self._path}); start it with "
                    "`edgeagent run`, or point --runtime-dir at the agent's runtime directory"
                ) from exc
            except PermissionError as exc:
                raise ControlError(
                    f"permission denied on {self._path}: the control socket is owner-only; "
                    "run as the agent's user (or root)"
                ) from exc
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
