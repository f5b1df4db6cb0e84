"""Control protocol core: framing and message shapes (no I/O).

Theory of operation: a client writes one JSON object per line,
``{"id": 1, "method": "info", "params": {...}}``; the agent answers each with one line,
``{"id": 1, "result": ...}`` or ``{"id": 1, "error": {"code": "...", "message": "..."}}``.
Lines are bounded (``MAX_LINE``) so a misbehaving client cannot make the agent buffer
without limit; a client that sends an over-long line gets an error and is disconnected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from edgeagent.errors import ProtocolError

MAX_LINE = 1 << 20  # 1 MiB: far above any request we define


@dataclass(frozen=True, slots=True)
class Request:
    id: int | str | None
    method: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class LineFramer:
    """Splits a byte stream into lines; raises ProtocolError past ``max_line`` bytes."""

    max_line: int = MAX_LINE
    _buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        lines: list[bytes] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                break
            lines.append(bytes(self._buffer[:end]))
            del self._buffer[: end + 1]
        if len(self._buffer) > self.max_line:
            raise ProtocolError(f"control request longer than {self.max_line} bytes")
        return lines


def parse_request(line: bytes) -> Request:
    """Decode one request line; raises ProtocolError with a reason a person can act on."""
    try:
        message = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ProtocolError(f"request is not valid JSON: {exc}") from exc
    if not isinstance(message, dict):
        raise ProtocolError("request must be a JSON object")
    method = message.get("method")
    if not isinstance(method, str) or not method:
        raise ProtocolError("request needs a 'method' string")
    params = message.get("params", {})
    if not isinstance(params, dict):
        raise ProtocolError("'params' must be an object")
    request_id = message.get("id")
    if request_id is not None and not isinstance(request_id, int | str):
        raise ProtocolError("'id' must be a number or a string")
    return Request(request_id, method, params)


def encode_result(request_id: int | str | None, result: Any) -> bytes:
    return _encode({"id": request_id, "result": result})


def encode_error(request_id: int | str | None, code: str, message: str) -> bytes:
    return _encode({"id": request_id, "error": {"code": code, "message": message}})


def encode_request(request_id: int, method: str, params: dict[str, Any]) -> bytes:
    return _encode({"id": request_id, "method": method, "params": params})


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
