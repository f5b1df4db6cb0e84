"""The control socket server: a thin asyncio adapter around ``protocol`` and a handler table.

Handlers are ``async def handler(params) -> result`` registered by the composition root.
An ``EdgeAgentError`` raised by a handler becomes an error reply (code = class name); any
other exception is logged and reported as ``internal`` so one bad request never stops the
agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from edgeagent.control.protocol import LineFramer, encode_error, encode_result, parse_request
from edgeagent.errors import EdgeAgentError, ProtocolError, TransportError
from edgeagent.resource import Number, TaskOwner

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[Any]]

MAX_CLIENTS = 32
MAX_IN_FLIGHT = 1024  # requests of one connection being handled at once


class ControlServer(TaskOwner):
    """Serves ``handlers`` on a Unix socket at ``path`` with mode 0600 in a 0700 directory.

    Each connection is a conversation task of the server's owner task; its requests are
    handled in tasks of their own (answered in order), so closing the server ends them all.
    """

    def __init__(self, path: Path, handlers: Mapping[str, Handler]) -> None:
        super().__init__("control")
        self._path = path
        self._handlers = dict(handlers)
        self._server: asyncio.Server | None = None
        self._clients = 0
        self._requests = 0
        self._refused = 0

    @property
    def path(self) -> Path:
        return self._path

    async def start(self) -> None:
        directory = self._path.parent
        await self.start_tasks()
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(directory, 0o700)
            self._remove_stale_socket()
            old_umask = os.umask(0o177)
            try:
                self._server = await asyncio.start_unix_server(self._serve_client, path=self._path)
            finally:
                os.umask(old_umask)
            os.chmod(self._path, 0o600)
        except OSError as exc:
            await self.stop_tasks()
            raise TransportError(f"cannot open control socket {self._path}: {exc}") from exc
        except BaseException:
            await self.stop_tasks()
            raise

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            await self.stop_tasks()
            return
        server.close()
        await self.stop_tasks()  # ends every conversation and the requests in flight
        await server.wait_closed()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    def counters(self) -> dict[str, Number]:
        return {"clients": self._clients, "requests": self._requests, "refused": self._refused}

    def detail(self) -> dict[str, Any]:
        return {"path": str(self._path)}

    def _remove_stale_socket(self) -> None:
        """Remove a socket left by a killed agent, but refuse to steal a live one."""
        try:
            mode = self._path.lstat().st_mode
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(mode):
            raise TransportError(f"{self._path} exists and is not a socket; remove it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(self._path))
        except OSError:
            self._path.unlink()
            return
        finally:
            probe.close()
        raise TransportError(
            f"another agent is already serving {self._path}; give each agent its own "
            "--runtime-dir (EDGEAGENT_RUNTIME_DIR)"
        )

    async def _serve_client(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        # start_unix_server runs this in a task of its own; the conversation moves into the
        # server's owner task, so close() can end it (and nothing outlives the server).
        if not self.running or self._clients >= MAX_CLIENTS:
            self._refused += 1
            writer.write(encode_error(None, "busy", "too many control clients"))
            writer.close()
            return
        self._clients += 1
        self.spawn(self._converse(reader, writer), "client", isolated=True)

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Answers leave in request order, but requests on one connection are handled
        # concurrently (up to MAX_IN_FLIGHT): a client streaming intents must not wait for
        # one journal commit per line. At the bound reading stops: backpressure.
        pending: asyncio.Queue[asyncio.Task[bytes] | bytes | None] = asyncio.Queue()
        room = asyncio.Semaphore(MAX_IN_FLIGHT)
        in_flight: set[asyncio.Task[bytes]] = set()
        reading = self.spawn(
            self._read_requests(reader, pending, room, in_flight), "reader", isolated=True
        )
        try:
            await _write_answers(pending, room, writer)
        except ConnectionError:
            pass
        finally:
            self._clients -= 1
            reading.cancel()
            for task in in_flight:
                task.cancel()
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()

    async def _read_requests(
        self,
        reader: asyncio.StreamReader,
        pending: asyncio.Queue[asyncio.Task[bytes] | bytes | None],
        room: asyncio.Semaphore,
        in_flight: set[asyncio.Task[bytes]],
    ) -> None:
        framer = LineFramer()
        try:
            while data := await reader.read(65536):
                try:
                    lines = framer.feed(data)
                except ProtocolError as exc:
                    await room.acquire()
                    pending.put_nowait(encode_error(None, "bad_request", str(exc)))
                    return
                for line in lines:
                    await room.acquire()
                    answer: asyncio.Task[bytes] = self.spawn(self._answer(line), "request")
                    in_flight.add(answer)
                    answer.add_done_callback(in_flight.discard)
                    self._requests += 1
                    pending.put_nowait(answer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            pending.put_nowait(None)  # the writer stops after the answers in flight

    async def _answer(self, line: bytes) -> bytes:
        try:
            request = parse_request(line)
        except ProtocolError as exc:
            return encode_error(None, "bad_request", str(exc))
        handler = self._handlers.get(request.method)
        if handler is None:
            known = ", ".join(sorted(self._handlers))
            return encode_error(
                request.id, "unknown_method", f"unknown method {request.method!r} (known: {known})"
            )
        try:
            return encode_result(request.id, await handler(request.params))
        except EdgeAgentError as exc:
            return encode_error(request.id, type(exc).__name__, str(exc))
        except Exception:
            log.exception("control method %s failed", request.method)
            reason = f"{request.method} failed; see the agent log"
            return encode_error(request.id, "internal", reason)


async def _write_answers(
    pending: asyncio.Queue[asyncio.Task[bytes] | bytes | None],
    room: asyncio.Semaphore,
    writer: asyncio.StreamWriter,
) -> None:
    """Write each answer as soon as it and every answer before it are ready."""
    while (item := await pending.get()) is not None:
        writer.write(item if isinstance(item, bytes) else await item)
        room.release()
        if pending.empty():  # drain once per burst, not once per line
            await writer.drain()
    await writer.drain()
