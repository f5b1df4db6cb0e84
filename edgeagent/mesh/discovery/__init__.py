"""Discovery: how a cluster finds candidate peers (adapters; see docs/mesh.md).

The package is layered without cycles: :mod:`.base` holds what strategies share (the
:class:`Candidate`, the :class:`DiscoveryStrategy` protocol, the :class:`DiscoveryContext`);
the strategies (:mod:`.mdns`, :mod:`.static`, :mod:`.dns`) import only ``base``; and
:mod:`.registry` imports the strategies and loads one by name (``load_strategy``, built-ins or
a plugin's entry point). This module re-exports ``base`` and nothing above it, so a core that
needs the ``Candidate`` type (``edgeagent.mesh.link``) does not load the strategies' adapters.
Strategies run as supervised tasks of their cluster's link until it closes.
"""

from __future__ import annotations

from edgeagent.mesh.discovery.base import CacheView as CacheView
from edgeagent.mesh.discovery.base import Candidate as Candidate
from edgeagent.mesh.discovery.base import Deduplicator as Deduplicator
from edgeagent.mesh.discovery.base import DiscoveryContext as DiscoveryContext
from edgeagent.mesh.discovery.base import DiscoveryError as DiscoveryError
from edgeagent.mesh.discovery.base import DiscoveryStrategy as DiscoveryStrategy
from edgeagent.mesh.discovery.base import Loop as Loop
from edgeagent.mesh.discovery.base import LoopingStrategy as LoopingStrategy
from edgeagent.mesh.discovery.base import MdnsBrowser as MdnsBrowser
from edgeagent.mesh.discovery.base import ReportCandidate as ReportCandidate
from edgeagent.mesh.discovery.base import Resolver as Resolver
from edgeagent.mesh.discovery.base import strategy_loops as strategy_loops
