"""A SQLite file shared by durable parts: one writer with group commit, WAL, readers.

Theory of operation
-------------------
Durability. The file is opened with ``journal_mode=WAL`` and ``synchronous=FULL``: a COMMIT
returns only after the write-ahead log has been fsynced, so an acknowledged write survives a
power cut, not only a crash of the process.

Group commit. A flash card manages about a hundred fsyncs a second, so one COMMIT per write
would cap the device there. Every write is instead a *job* queued (bounded) for the store's
one **writer task**, the only user of the write connection. It takes everything waiting (up
to ``max_batch`` rows: ``BatchBuilder``), has each user plan its jobs as steps on its own
tables, carries the whole batch out as one transaction (one trip to the write connection's
thread: ``edgeagent.store.writers``) and only then resolves every job's future. While that
COMMIT is in flight new jobs queue up and form the next batch, so batches grow with the load
and the number of fsyncs stays bounded.

A failing job does not take the others with it: when a batch fails it is rolled back and every
job in it runs again alone, in queue order; only the jobs that fail again get the error (as
the store's error class, naming the file, the SQLite error as ``__cause__``).

Maintenance (compaction, ``vacuum``) is an *exclusive* program: it runs between batches and
commits as it goes; writes wait meanwhile. ``flush()`` returns once everything queued before
it is answered. ``close()`` drains the queue, then stops the writer and closes the file.

Reads go through a second, read-only connection (aiosqlite), so they see only committed rows
and a long read does not hold up the writer.

Sharing one file
----------------
Several users (the reactors' journal; next, the MQTT outbox) may share one file, and then
they must share one ``Store``: two writers on one file would take turns at SQLite's write lock
instead of committing together. Their jobs then land in the same batches, and one fsync serves
both. What keeps them apart:

- **Tables belong to one user.** Each user declares its tables in its ``Schema``; the store
  refuses two users claiming one table and the ``store_`` prefix (its own). A user's planner
  writes only its own tables, which is why the writer may run a batch's jobs grouped by user.
- **A version per user.** ``Schema.version`` with ``migrations[k]`` (version ``k`` to
  ``k + 1``) and ``create`` (a file without the user's tables). Versions are kept in the
  ``store_schema`` table (``user``, ``version``), except for the one user that may keep its
  version in ``PRAGMA user_version``: the journal, which had the file first and whose older
  readers look there. Opening for writing migrates each user, one transaction per step;
  a user whose version in the file is newer than the code refuses the open, naming the file,
  before anything changes. A reader (``readonly``) migrates nothing and learns the versions
  found (``version_of``) so it can read an older layout.
- **State stays with its user.** A planner reads its own in-memory state while planning (on
  the writer's thread) and changes it only in ``Planned.on_commit``, on the event loop after
  COMMIT, so a failed batch leaves nothing half-applied and can be planned again.

The outbox may as well have a file of its own (its own ``Store``): nothing in a user depends
on which. A file of its own keeps its drops and vacuums from touching the journal's pages;
sharing saves an fsync per batch when both write at once.

Modules: ``plan`` (the pure core: steps, batches, schema plans), ``writers`` (who carries the
steps out), ``database`` (``Store``, the adapter and task owner).
"""

from edgeagent.store.database import DEFAULT_MAX_BATCH as DEFAULT_MAX_BATCH
from edgeagent.store.database import Store as Store
from edgeagent.store.database import StoreError as StoreError
from edgeagent.store.database import StoreStats as StoreStats
from edgeagent.store.plan import Execute as Execute
from edgeagent.store.plan import ExecuteMany as ExecuteMany
from edgeagent.store.plan import Planned as Planned
from edgeagent.store.plan import Planner as Planner
from edgeagent.store.plan import Program as Program
from edgeagent.store.plan import Query as Query
from edgeagent.store.plan import Schema as Schema
from edgeagent.store.plan import Script as Script
from edgeagent.store.plan import Step as Step
from edgeagent.store.plan import chunks as chunks
from edgeagent.store.plan import used_bytes as used_bytes
from edgeagent.store.plan import vacuum as vacuum
from edgeagent.store.writers import WriterKind as WriterKind
