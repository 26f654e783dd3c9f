"""Where runs go: a journal on local disk first, then databroker (tiled) in the background.

``Storage.open(data_dir)`` starts an embedded tiled server whose catalog (SQLite) lives in
``data_dir/tiled``, so runs persist across processes; ``Storage.open(data_dir, uri)`` uses a
remote one instead. Subscribe ``storage.callback`` to a RunEngine: every document is first
appended to ``data_dir/journal/<start uid>.jsonl`` (flushed at once), then handed to a
background thread that feeds it to ``bluesky_tiled_plugins.TiledWriter``. A slow or dead server
therefore never stalls or breaks the RunEngine. While a run is not yet (completely) in the
server it keeps a ``<start uid>.pending`` marker next to its journal, which holds every document;
when the server goes away, delivery retries with backoff and catches each run up from its
journal when the server is back.

Devices with long time series write them as HDF5 pages under ``storage.assets_dir`` (see
:mod:`labctl.core.assets`); the embedded server (or ``labctl serve``) reads those files in place; a
server given by URI, which may be on another host, gets their rows written into its own storage
(:mod:`labctl.storage.upload`).

Reading a run back as xarray, in two lines::

    storage = Storage.open("data")                   # or Storage.open("data", "http://host:8000/api/v1?api_key=...")
    ds = storage.catalog[uid]["primary"].read()      # xarray.Dataset; run.primary.read() works too

Runs the server missed (the process ended during an outage, or died mid-run) stay in the
journal with a ``.pending`` marker; ``storage.recover()`` (``labctl recover``) writes them in
from the journal (see :mod:`labctl.recovery`).

Finding runs: ``storage.runs()`` (summaries, newest first), ``storage.search_cell("LLZO-7")``
(a catalog node of that cell's runs), ``storage.catalog.search(Key("start.plan_name") == "plate")``.


The package, by role: :mod:`~labctl.storage.journal` (the local append-only copy),
:mod:`~labctl.storage.delivery` (the thread feeding the server), :mod:`~labctl.storage.upload`
(the pages' rows to a server on another host), :mod:`~labctl.storage.datadir`
(checking a data directory), :mod:`~labctl.storage.runs` (reading runs back) and
:mod:`~labctl.storage.facade` (:class:`Storage`, tying them together).
"""

from labctl.storage.datadir import UNUSABLE_FIX, check_data_dir, disk_error
from labctl.storage.delivery import BULK_BATCH_SIZE, LIVE_BATCH_SIZE, coalesce_stream_datums
from labctl.storage.facade import Recovered, Storage
from labctl.storage.journal import Journal
from labctl.storage.runs import CATALOG_SPEC, RUNS_NODE, CheckedRun

# Tunables (RETRY_AFTER, FSYNC_EVERY_SECONDS, ...) are not re-exported: they are read where they
# are defined, so patch them there (``labctl.storage.delivery.RETRY_AFTER``).
__all__ = [
    "BULK_BATCH_SIZE", "CATALOG_SPEC", "LIVE_BATCH_SIZE", "RUNS_NODE", "UNUSABLE_FIX", "CheckedRun", "Journal",
    "Recovered", "Storage", "check_data_dir", "coalesce_stream_datums", "disk_error",
]
