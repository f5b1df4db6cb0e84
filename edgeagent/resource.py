"""``AsyncResource``: how the agent's long-lived parts are entered and closed.

Each part that owns sockets, tasks or files (the mDNS service, a mesh link, the DNS bridge,
the control socket, the journal, the serial ports) is an async context manager: entering
starts it, leaving closes it whatever happened inside. The composition root enters them in
one ``AsyncExitStack``, so they close in reverse order. ``close`` must be idempotent: the
exit stack and an explicit ``close`` (a test, a failed start) may both call it.
"""

from __future__ import annotations

import abc
from types import TracebackType
from typing import Self


class AsyncResource(abc.ABC):
    """``async with part:`` is ``await part.start()`` ... ``await part.close()``."""

    async def start(self) -> None:  # noqa: B027 - a part that opens lazily needs no start
        """Open what the part needs. Raises when it cannot start (nothing is left open)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release everything the part holds. Idempotent."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
