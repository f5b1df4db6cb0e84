"""The serial ports reactors write to and sensors read: the runtime's sink for ``SerialWrite``
effects, and the one owner of every open port (``acquire``), so a device both read by a
sensor and written by an actuator is opened once, with one set of line settings.

Theory of operation
-------------------
``SerialPorts.execute`` is called by the reactor runtime for each ``SerialWrite`` (the
``actuator`` type returns them). A port is opened the first time it is written to, with the
line settings it was given for that device, and stays open. This module knows devices and
settings only: the composition root works out which settings the reactors using a device
declare (an actuator's ``baudrate``) and passes them in. Writes to one device keep their
order (one lock per device) and run on a worker thread, since pyserial blocks. A write must
finish within ``write_timeout`` seconds (a port held up by flow control would otherwise stall
its reactor).

A failure (no such device, no permission, unplugged, timed out) raises ``TransportError``
naming the device and the cause; the runtime counts it in the reactor's ``effect_errors`` and
notes it in the run metadata. The port is closed then and opened again on the next write, so
a USB adapter that was replugged works again without a restart. A failed write is not
retried: an actuator command carried out late (the valve opened an hour after it was asked
for) can be worse than none. Like every effect it is at least once across a crash: a write
whose intent was journaled but whose effects were not marked done runs again after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import serial

from edgeagent.errors import TransportError
from edgeagent.reactors.model import Effect, SerialWrite
from edgeagent.resource import AsyncResource, PartState, Report

log = logging.getLogger("edgeagent.serial")

DEFAULT_BAUDRATE = 115_200
DEFAULT_WRITE_TIMEOUT = 2.0


class SerialPorts(AsyncResource):
    """Open serial ports by device path; an async context manager that closes them all.

    ``report()`` (the stats seam) gives ``stats()`` as counters; the part is ``degraded``
    while the last write to some device failed (unplugged, say), until one succeeds again.
    """

    def __init__(
        self,
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        write_timeout: float = DEFAULT_WRITE_TIMEOUT,
    ) -> None:
        self._settings = {device: dict(wanted) for device, wanted in (settings or {}).items()}
        self._write_timeout = write_timeout
        self._ports: dict[str, serial.Serial] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._closed = False
        self._failing: dict[str, str] = {}  # device -> why its last write failed
        self._read: set[str] = set()  # devices a sensor reads (acquire): it closes them
        self.writes = 0
        self.bytes_written = 0
        self.errors = 0

    async def close(self) -> None:
        """Close every open port (idempotent). Waits for writes in progress."""
        self._closed = True
        for device, lock in list(self._locks.items()):
            async with lock:
                port = self._ports.pop(device, None)
                if port is not None:
                    await asyncio.to_thread(_close_quietly, port)

    async def execute(self, reactor: str, key: str, effect: Effect) -> None:
        """The runtime's ``EffectSink``: write ``effect.data`` to ``effect.device``."""
        if not isinstance(effect, SerialWrite):
            raise TypeError(f"SerialPorts carries out SerialWrite, not {type(effect).__name__}")
        await self.write(effect.device, effect.data)

    async def write(self, device: str, data: bytes) -> None:
        """Write ``data`` to ``device``, opening it first if needed; ``TransportError`` when
        the device cannot be opened or the write fails or times out."""
        if self._closed:
            raise TransportError(f"serial {device}: the agent is stopping")
        lock = self._locks.setdefault(device, asyncio.Lock())
        async with lock:
            port = self._ports.get(device)
            try:
                if port is None:
                    port = await asyncio.to_thread(self._open, device)
                    self._ports[device] = port
                await asyncio.to_thread(_write_all, port, data)
            except (serial.SerialException, OSError, ValueError) as exc:
                self.errors += 1
                # A port a sensor reads is closed by that reader (``drop``), which has to
                # stop watching its descriptor first; others are closed here.
                stale = None if device in self._read else self._ports.pop(device, None)
                if stale is not None:
                    await asyncio.to_thread(_close_quietly, stale)
                reason = self._failing[device] = _reason(exc)
                raise TransportError(f"serial {device}: {reason}") from exc
        self._failing.pop(device, None)
        self.writes += 1
        self.bytes_written += len(data)

    def stats(self) -> dict[str, Any]:
        return {
            "open": sorted(self._ports),
            "writes": self.writes,
            "bytes": self.bytes_written,
            "errors": self.errors,
        }

    def report(self) -> Report:
        if self._closed:
            state = PartState.STOPPED
        elif self._failing:
            state = PartState.DEGRADED
        else:
            state = PartState.RUNNING
        counters = {
            "open": len(self._ports),
            "writes": self.writes,
            "bytes": self.bytes_written,
            "errors": self.errors,
        }
        detail: dict[str, Any] = {"open": sorted(self._ports)}
        if self._failing:
            detail["failing"] = dict(sorted(self._failing.items()))
        return Report(state, counters, detail)

    async def acquire(self, device: str) -> serial.Serial:
        """The open port for ``device`` (opened now if it is not), shared with every writer:
        how a sensor reads a device an actuator writes to (one open, one set of settings).
        ``TransportError`` when it cannot be opened."""
        if self._closed:
            raise TransportError(f"serial {device}: the agent is stopping")
        lock = self._locks.setdefault(device, asyncio.Lock())
        async with lock:
            port = self._ports.get(device)
            if port is None:
                try:
                    port = await asyncio.to_thread(self._open, device)
                except (serial.SerialException, OSError, ValueError) as exc:
                    self.errors += 1
                    reason = self._failing[device] = _reason(exc)
                    raise TransportError(f"serial {device}: {reason}") from exc
                self._ports[device] = port
                self._failing.pop(device, None)
            self._read.add(device)
            return port

    async def drop(self, device: str, port: serial.Serial, reason: str) -> None:
        """A reader found ``port`` broken (unplugged): close it, so the next ``acquire`` or
        write opens the device again."""
        lock = self._locks.setdefault(device, asyncio.Lock())
        async with lock:
            self._read.discard(device)
            if self._ports.get(device) is port:
                del self._ports[device]
                self._failing[device] = reason
                await asyncio.to_thread(_close_quietly, port)

    def _open(self, device: str) -> serial.Serial:
        wanted = self._settings.get(device, {})
        baudrate = int(wanted.get("baudrate", DEFAULT_BAUDRATE))
        port = serial.Serial(
            port=device,
            baudrate=baudrate,
            bytesize=int(wanted.get("bytesize", 8)),
            parity=_PARITY[str(wanted.get("parity", "none"))],
            stopbits=wanted.get("stopbits", 1),
            write_timeout=self._write_timeout,
            timeout=0,
        )
        log.info("serial %s: open at %d baud", device, baudrate)
        return port


_PARITY = {"none": serial.PARITY_NONE, "even": serial.PARITY_EVEN, "odd": serial.PARITY_ODD}


def _write_all(port: serial.Serial, data: bytes) -> None:
    written = port.write(data)
    if written is not None and written != len(data):
        raise serial.SerialTimeoutException(f"wrote {written} of {len(data)} bytes")
    port.flush()  # on the wire (or in the kernel's queue for it) before the intent is acked


def _close_quietly(port: serial.Serial) -> None:
    with contextlib.suppress(serial.SerialException, OSError):
        port.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, serial.SerialTimeoutException):
        return f"write timed out ({exc or 'the device did not take the data in time'})"
    text = str(exc)
    if isinstance(exc, serial.SerialException) and isinstance(exc.__context__, OSError):
        # pyserial wraps the OSError: "[Errno 2] could not open port /dev/x: [Errno 2] ..."
        text = exc.__context__.strerror or text
    return text or type(exc).__name__
