"""The control server on a real Unix socket: ordering, pipelining, bounds, errors."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from edgeagent.control.server import MAX_IN_FLIGHT, ControlServer
from edgeagent.errors import ControlError


async def _exchange(path: Path, payload: bytes, answers: int) -> list[dict[str, Any]]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(payload)
    await writer.drain()
    lines = [json.loads(await reader.readline()) for _ in range(answers)]
    writer.close()
    await writer.wait_closed()
    return lines


def _requests(*methods: str) -> bytes:
    return b"".join(
        json.dumps({"id": i, "method": m, "params": {}}).encode() + b"\n"
        for i, m in enumerate(methods)
    )


async def test_pipelined_requests_are_handled_together_and_answered_in_order(
    tmp_path: Path,
) -> None:
    release = asyncio.Event()
    started: list[str] = []

    async def slow(params: dict[str, Any]) -> str:
        started.append("slow")
        await release.wait()
        return "slow"

    async def fast(params: dict[str, Any]) -> str:
        started.append("fast")
        if started.count("fast") == 2:
            release.set()  # only reachable if the fast ones ran while slow was waiting
        return "fast"

    path = tmp_path / "run" / "control.sock"
    async with ControlServer(path, {"slow": slow, "fast": fast}):
        async with asyncio.timeout(5):
            answers = await _exchange(path, _requests("slow", "fast", "fast"), 3)
    assert [a["id"] for a in answers] == [0, 1, 2]
    assert [a["result"] for a in answers] == ["slow", "fast", "fast"]
    assert started == ["slow", "fast", "fast"]


async def test_handler_errors_and_bad_lines_do_not_end_the_connection(tmp_path: Path) -> None:
    async def refuse(params: dict[str, Any]) -> None:
        raise ControlError("no, because")

    async def ok(params: dict[str, Any]) -> str:
        return "ok"

    path = tmp_path / "control.sock"
    async with ControlServer(path, {"refuse": refuse, "ok": ok}):
        payload = _requests("refuse") + b"not json\n" + _requests("nope") + _requests("ok")
        answers = await _exchange(path, payload, 4)
    assert answers[0]["error"] == {"code": "ControlError", "message": "no, because"}
    assert answers[1]["error"]["code"] == "bad_request"
    assert answers[2]["error"]["code"] == "unknown_method"
    assert answers[3]["result"] == "ok"


async def test_in_flight_requests_are_bounded(tmp_path: Path) -> None:
    release = asyncio.Event()
    full = asyncio.Event()
    running = 0
    peak = 0

    async def hold(params: dict[str, Any]) -> int:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        if peak == MAX_IN_FLIGHT:
            full.set()
        await release.wait()
        running -= 1
        return 1

    path = tmp_path / "control.sock"
    total = MAX_IN_FLIGHT + 200
    async with ControlServer(path, {"hold": hold}):
        reader, writer = await asyncio.open_unix_connection(str(path))
        writer.write(_requests(*["hold"] * total))
        # The server stops reading at the bound; the rest waits in the socket buffers.
        async with asyncio.timeout(5):
            await full.wait()
        await asyncio.sleep(0.1)  # time for any request past the bound to (wrongly) start
        assert peak == MAX_IN_FLIGHT
        release.set()
        async with asyncio.timeout(10):
            await writer.drain()
            answers = [json.loads(await reader.readline()) for _ in range(total)]
        writer.close()
        await writer.wait_closed()
    assert [a["id"] for a in answers] == list(range(total))


async def test_a_client_that_vanishes_mid_stream_leaves_the_server_serving(
    tmp_path: Path,
) -> None:
    async def slow(params: dict[str, Any]) -> str:
        await asyncio.sleep(0.05)
        return "late"

    async def ok(params: dict[str, Any]) -> str:
        return "ok"

    path = tmp_path / "control.sock"
    async with ControlServer(path, {"slow": slow, "ok": ok}) as server:
        _, writer = await asyncio.open_unix_connection(str(path))
        writer.write(_requests(*["slow"] * 20))
        await writer.drain()
        writer.close()  # gone before any answer
        await writer.wait_closed()
        await asyncio.sleep(0.2)
        assert (await _exchange(path, _requests("ok"), 1))[0]["result"] == "ok"
        assert server.path == path


async def test_closing_with_a_client_connected_logs_no_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A client still connected (say `edgeagent journal --follow`) when the agent stops: the
    # server cancels its handler. Python 3.11's start_server then logged "Exception in
    # callback ... CancelledError" for the cancelled handler, once per client.
    async def forever(params: dict[str, Any]) -> str:
        await asyncio.Event().wait()
        return "never"

    path = tmp_path / "control.sock"
    server = ControlServer(path, {"wait": forever})
    await server.start()
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(_requests("wait"))
    await writer.drain()
    await asyncio.sleep(0.05)  # the request is being handled
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        await server.close()
        await asyncio.sleep(0.05)  # the server's done-callbacks run
    assert await reader.read() == b""  # the connection was closed, no answer
    writer.close()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []
