"""``Storage``: journal plus databroker (tiled), where a session's documents go and where runs are read."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from labctl.core.errors import StorageError
from labctl.locks import SERVER_STATE, Lock, live_holder, server_lock, writer_lock
from labctl.recovery import append_to_journal, complete_run, repair_journal, set_aside_journal, unannounced_files
from labctl.storage.datadir import check_data_dir
from labctl.storage.delivery import BULK_BATCH_SIZE, LIVE_BATCH_SIZE, Delivery
from labctl.storage.journal import Journal
from labctl.storage.runs import CATALOG_SPEC, RUNS_NODE, CheckedRun, summary
from labctl.storage.upload import new_writer

logger = logging.getLogger(__name__)


@dataclass
class Recovered:
    """What :meth:`Storage.recover` did with one run."""

    delivered: bool
    message: str
    points_lost: int = 0
    seconds_lost: float | None = None  # of samples, between the last row on disk and the run's end


class Storage:
    """Journal plus databroker (tiled): where a session's documents go and where runs are read.

    Use :meth:`open`; do not construct directly.

    Attributes
    ----------
    data_dir : Path
        Root of everything below.
    assets_dir : Path
        ``data_dir/assets``: where devices write HDF5 pages; readable by the embedded server.
    journal_dir : Path
        ``data_dir/journal``: the local append-only copy of every document.
    uri : str
        The tiled server's URI (the embedded server's includes its API key).
    server : labctl.dataserver.DataServer or None
        The embedded server, None when connected to a remote one (or the one serving the data
        directory already: ``labctl serve``, or a live ``labctl run``'s).
    read_only : bool
        True when the data directory cannot be written (an archive): only reading works.
    upload : bool
        True when the server is one given by URI (``storage.uri``): it may be on another host and
        cannot read ``assets_dir``, so the rows of the HDF5 pages are written into its storage
        (:mod:`labctl.storage.upload`). False for the embedded server or one serving this data
        directory, which read the pages in place.
    """

    def __init__(self, data_dir: Path, uri: str, server=None, *, batch_size: int = LIVE_BATCH_SIZE,
                 lock: Lock | None = None, read_only: bool = False, upload: bool = False) -> None:
        self.data_dir = Path(data_dir)
        self.assets_dir = self.data_dir / "assets"
        self.journal_dir = self.data_dir / "journal"
        self.read_only = read_only
        if not read_only:
            self.assets_dir.mkdir(parents=True, exist_ok=True)
        self.uri = uri
        self.server = server
        self.lock = lock  # the data directory's writer lock, when this process writes runs
        self._published: Lock | None = None  # server.json, when others go through our server
        self.journal = Journal(self.journal_dir, read_only=read_only)
        self._catalog = None
        self._catalog_lock = threading.Lock()
        self.upload = upload
        self._delivery = Delivery(self._connect_writer, self.journal, batch_size, upload=upload)
        self._closed = False

    @classmethod
    def open(cls, data_dir: Path | str, uri: str | None = None, *, live: bool = True,
             writer: str | None = None) -> Storage:
        """Open the storage under ``data_dir``, with an embedded tiled server unless ``uri`` is given.

        Parameters
        ----------
        data_dir : Path or str
            Journal, assets and (embedded) catalog directory; created if missing (writers).
        uri : str, optional
            A remote tiled server, e.g. ``http://host:8000/api/v1?api_key=secret``, pointing at
            the root or at a catalog of bluesky runs, with writable storage (see the README,
            "Overnight reliability"); the pages' rows are uploaded to it, since it may share no
            filesystem with this host. It is contacted only when needed, so an
            unreachable server does not prevent running experiments. Without it, a server
            already serving ``data_dir`` (``labctl serve``, or a live ``labctl run``; see
            ``data_dir/server.json``) is used, else an embedded one is started.
        live : bool
            True (the default, for real hardware): every document is written to the server as
            soon as it arrives, so the catalog shows running experiments. False (simulated labs,
            bulk imports): each run's streams are written to the server at its stop document,
            in one request per stream, which is many times faster; the journal has every
            document meanwhile.
        writer : str, optional
            This process writes runs (name the experiment): take the data directory's writer
            lock (:class:`labctl.locks.LockHeld` if another live process holds it; a stale one
            is taken over, ``storage.lock.took_over`` says so) and publish the embedded
            server's URI so that readers go through it. None: a reader.

        Raises
        ------
        StorageError
            The data directory is a file, missing (readers), or not writable (writers).
        """
        batch_size = LIVE_BATCH_SIZE if live else BULK_BATCH_SIZE
        data_dir = Path(data_dir).expanduser().resolve()
        can_write = check_data_dir(data_dir, write=writer is not None)
        lock = writer_lock(data_dir).acquire("labctl run", writer, runs=[]) if writer is not None else None
        server = storage = None
        upload = uri is not None
        try:
            if uri is None:
                served = live_holder(data_dir / SERVER_STATE, others_only=False)
                uri = served["uri"] if served is not None else None
            if uri is None:
                from labctl.dataserver import DataServer

                server = DataServer(data_dir, read_only=not can_write)
                uri = server.uri
            storage = cls(data_dir, uri, server, batch_size=batch_size, lock=lock, read_only=not can_write,
                          upload=upload)
            if server is not None and writer is not None:
                storage._published = server_lock(data_dir).acquire("labctl run (embedded server)", writer,
                                                                  uri=server.uri)
            if server is not None:
                storage.catalog  # creates the runs node on first use of this data_dir
        except BaseException:
            if storage is not None:
                storage.close(timeout=1)
            else:
                if server is not None:
                    server.close()
                if lock is not None:
                    lock.release()
            raise
        return storage

    # ---- connections -------------------------------------------------------------------------
    def _connect(self):
        """A new client (own HTTP connection pool) of the catalog of runs, created if missing."""
        from tiled.client import from_uri
        from tiled.structures.core import Spec

        # A server on this host (embedded, or serving the data directory) is on loopback: ignore
        # any HTTP(S)_PROXY of the environment.
        root = from_uri(self.uri, trust_env=urlparse(self.uri).hostname not in ("127.0.0.1", "localhost"))
        try:
            if any(spec.name == CATALOG_SPEC[0] for spec in root.specs):
                return root
            if RUNS_NODE not in root:
                try:
                    return root.create_container(RUNS_NODE, specs=[Spec(*CATALOG_SPEC)])
                except Exception:
                    # Another process may have created it in between; if not, re-raise.
                    if RUNS_NODE not in root:
                        raise
            return root[RUNS_NODE]
        except BaseException:
            root.context.close()
            raise

    def _connect_writer(self):
        """The delivery thread's own client (``TiledWriter`` needs data sources included)."""
        return self._connect().include_data_sources()

    @property
    def catalog(self):
        """The catalog of runs (``CatalogOfBlueskyRuns``): ``catalog[uid]`` is a ``BlueskyRun``.

        Raises :class:`StorageError` if the server cannot be reached.
        """
        with self._catalog_lock:
            if self._catalog is None:
                try:
                    self._catalog = self._connect()
                except Exception as error:
                    from tiled.client.context import CannotPrompt  # a server with logins, and no usable key

                    status = getattr(getattr(error, "response", None), "status_code", None)
                    if status in (401, 403) or isinstance(error, CannotPrompt):  # a wrong or revoked key
                        why = f"HTTP {status}" if status else "it asks for a login"
                        raise StorageError(self.server_name, f"the tiled server refused the API key ({why})",
                                           "check the api_key of storage.uri in the lab file") from None
                    raise StorageError(self.server_name, f"the tiled server cannot be reached ({type(error).__name__})",
                                       "start it (see `labctl serve`) or check storage.uri in the lab file") from error
            return self._catalog

    @property
    def server_name(self) -> str:
        """The server's URI without its API key, for messages."""
        url = urlparse(self.uri)
        return f"{url.scheme}://{url.netloc}{url.path}"

    # ---- writing -----------------------------------------------------------------------------
    def callback(self, name: str, doc: dict) -> None:
        """RunEngine subscriber: journal the document, then queue it for the server.

        Never raises because of the server; raises only if the journal cannot be written, which
        must stop an experiment (nothing would be recorded).
        """
        run_uid, line = self.journal.write(name, doc)
        if name == "start" and self.lock is not None:
            # Say which runs are ours, so that `labctl recover` elsewhere leaves them alone.
            self.lock.update(runs=[*self.lock.holder.get("runs", []), run_uid])
        self._delivery.submit(run_uid, name, line)

    def flush(self, timeout: float = 60) -> bool:
        """Wait until every document so far is in the server (or ``timeout`` passes).

        Returns
        -------
        bool
            True if, within ``timeout``, every document so far reached the server (runs that
            fell behind during an outage included); False if some are still only in the journal.
        """
        return self._delivery.wait(timeout)

    def pending(self) -> dict[str, str]:
        """Runs whose journal is not (completely) in the server: start uid -> reason.

        A run a live ``labctl run`` is writing says so (it delivers its runs itself).
        """
        from labctl.storage.catalogfile import pending_runs

        return pending_runs(self.data_dir)

    def _live_writer(self) -> tuple[dict | None, set[str]]:
        """The live process (not this one) writing into this data directory, and the runs it owns."""
        holder = live_holder(self.data_dir / "writer.lock")
        return holder, set(holder.get("runs", [])) if holder else set()

    def recover(self) -> dict[str, Recovered]:
        """Write every journalled run the server lacks or has incomplete in from the journal.

        A run needs it when its pending marker says the server copy is behind (the server was
        down and this process ended before catching up, or the process died mid-run), when the
        catalog does not have it at all, or when the catalog's copy has no stop document but the
        journal does. Each is written again in full from its journal, replacing any partial copy.
        Its journal is repaired first (:func:`labctl.recovery.repair_journal`: damaged lines and
        documents that do not fit set aside in ``<uid>.quarantine``); a journal without a start
        document (the process died as the step began) holds no run and is set aside whole. A run
        cut short gets its pages checked against their HDF5 files (rows written after the last
        journalled page are announced too, every field of a stream up to the same row, and so is a
        file of the run that the journal never named: the process died before the first page) and
        the stop document it never had (exit status
        ``fail``, reason ``interrupted``), both appended to its journal. Idempotent: a second
        call finds nothing to do. Runs this process is still writing, and the runs of another
        live ``labctl run`` on this data directory (its writer lock lists them), are left alone.

        Returns
        -------
        dict of str to Recovered
            Per run written in (or that failed to be): what happened and the points lost.
        """
        if self.read_only:
            raise StorageError(self.data_dir, "is read-only: nothing can be recovered into it",
                               "copy the data directory to a writable disk and run `labctl recover` there")
        still_open = self.journal.open_runs() | self._live_writer()[1]
        outcomes = {}
        needing = [uid for uid in self._needing_recovery() if uid not in still_open]
        unannounced = unannounced_files(self.journal_dir, self.assets_dir) if needing else None
        for run_uid in needing:
            try:
                outcomes[run_uid] = self._redeliver(run_uid, unannounced)
            except Exception as error:  # keep going: other runs may still be recoverable
                self.journal.mark_pending(run_uid, f"recovery failed: {error!r}")
                outcomes[run_uid] = Recovered(False, f"still pending: {error!r}")
        return outcomes

    def _needing_recovery(self) -> list[str]:
        if not self.journal_dir.exists():
            return []
        pending = self.journal.pending()
        journalled = sorted(path.stem for path in self.journal_dir.glob("*.jsonl") if path.stem != "unrouted")
        # A marker whose journal is gone (set aside by hand) needs nothing but to go.
        for uid in set(pending) - set(journalled):
            self.journal.mark_delivered(uid)
        in_catalog = set(self.catalog) if journalled else set()
        return [uid for uid in journalled
                if uid in pending or uid not in in_catalog or self._copy_unfinished(uid)]

    def _copy_unfinished(self, run_uid: str) -> bool:
        """Whether the catalog's copy of a run lacks the stop document its journal has."""
        try:
            if self.catalog[run_uid].metadata.get("stop"):
                return False
        except Exception:  # unreadable copy: write it again
            return True
        return any(name == "stop" for name, _ in self.journal.read(run_uid)[-1:])

    def _redeliver(self, run_uid: str, unannounced) -> Recovered:
        path = self.journal.path(run_uid)
        repair = repair_journal(path)
        if not repair.has_start:
            quarantine = set_aside_journal(path, "no start document: the process died as the step began")
            self.journal.mark_delivered(run_uid)
            return Recovered(True, f"no start document (the process ended as the step began): nothing was "
                                   f"recorded; the journal is set aside in {quarantine}")
        documents = _relocated(repair.documents, self.assets_dir)
        completion = complete_run(run_uid, documents, unannounced)
        if completion.appended:
            append_to_journal(path, completion.appended)
            documents += completion.appended
        client = self._connect_writer()
        try:
            if run_uid in client:  # a partial copy from the interrupted delivery
                client[run_uid].delete(recursive=True, external_only=False)
            writer = new_writer(client, BULK_BATCH_SIZE, upload=self.upload)
            for name, doc in documents:
                writer(name, doc)
        finally:
            client.context.close()
        self.journal.mark_delivered(run_uid)
        parts = ["delivered from the journal", str(repair), str(completion)]
        return Recovered(True, "; ".join(part for part in parts if part), completion.points_lost,
                         completion.seconds_lost)

    def close(self, timeout: float = 60) -> None:
        """Flush (up to ``timeout``), stop the delivery thread and the embedded server; release the locks."""
        if self._closed:
            return
        self._closed = True
        try:
            if not self.flush(timeout):
                logger.warning("storage: closing with runs only in the journal: %s", sorted(self.pending()))
            self._delivery.stop(timeout)
            self._delivery.close_client()
            self.journal.close()
            if self._catalog is not None:
                self._catalog.context.close()
                self._catalog = None
        finally:
            if self._published is not None:
                self._published.release()
            if self.server is not None:
                self.server.close()
            if self.lock is not None:
                self.lock.release()

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- reading -----------------------------------------------------------------------------
    def find(self, uid: str):
        """The run with this (possibly partial, at least 5 characters) start uid, as a :class:`CheckedRun`.

        Raises :class:`StorageError` if the catalog has no such run.
        """
        try:
            run = self.catalog.include_data_sources()[uid]
        except KeyError:
            raise StorageError(f"run {uid}", "is not in the catalog",
                               f"`labctl runs --data-dir {self.data_dir}` lists the stored runs") from None
        return CheckedRun(run)

    def search_cell(self, cell_id: str):
        """The runs of one cell (start document ``cell.id``), a catalog node, newest first."""
        from tiled.queries import Key

        return self.catalog.search(Key("start.cell.id") == cell_id).sort(("start.time", -1))

    def runs(self, limit: int | None = None, node=None) -> list[dict]:
        """Summaries of the runs, newest first.

        Parameters
        ----------
        limit : int, optional
            At most this many.
        node : optional
            A catalog node to summarise instead of the whole catalog (e.g. ``search_cell(...)``).

        Returns
        -------
        list of dict
            ``uid``, ``plan_name``, ``cell_id``, ``start`` (ISO 8601), ``exit_status`` and
            ``reason`` (None while the run is open) and ``num_events`` per stream (from the stop
            document; None while open).
        """
        node = (self.catalog if node is None else node).sort(("start.time", -1))
        items = node.items() if limit is None else node.items()[:limit]
        return [summary(run.metadata) for _, run in items]



def _relocated(documents: list[tuple[str, dict]], assets_dir: Path) -> list[tuple[str, dict]]:
    """Point stream resources at ``assets_dir`` when the data directory was moved since they were written."""
    from labctl.core.assets import _file_uri

    moved = []
    for name, doc in documents:
        if name == "stream_resource" and doc.get("uri", "").startswith("file:"):
            path = Path(urlparse(doc["uri"]).path)
            here = assets_dir / path.name
            if not path.exists() and here.exists():
                doc = {**doc, "uri": _file_uri(here)}
        moved.append((name, doc))
    return moved
