"""A tiled server over a labctl data directory: the one labctl embeds, and ``labctl serve``.

A data directory holds everything of its runs::

    DATA_DIR/journal/        every document, first (labctl.storage.Journal)
    DATA_DIR/assets/         the potentiostat's HDF5 pages (readable storage)
    DATA_DIR/tiled/catalog.db       tiled's catalog (SQLite)
    DATA_DIR/tiled/data/            arrays tiled writes (zarr; writable storage)
    DATA_DIR/tiled/storage.sqlite   tables tiled writes (events; writable storage)

:class:`DataServer` serves it with exactly those options, the equivalent of::

    tiled serve catalog DATA_DIR/tiled/catalog.db -r DATA_DIR/assets -w DATA_DIR/tiled/data \\
        -w sqlite:///DATA_DIR/tiled/storage.sqlite --api-key KEY

The tables are in SQLite, not DuckDB: tiled gives DuckDB one connection shared by all the
server's worker threads, and a run writing while a dashboard reads crashed it (heap corruption
after ADBC "No active transaction" errors); SQLite gets a pool, a connection per thread. A data
directory made before holds ``storage.duckdb`` instead and is served from it as it is.

It differs from tiled's ``SimpleTiledServer`` in three ways a lab needs: its logs go to a
temporary directory, not into the data directory (an archive on a read-only disk can be served);
a data directory that was moved or copied is served from where it is now (tiled records absolute
paths: :func:`relocate_catalog` rewrites them); and a read-only data directory is served from a
temporary copy of its two databases (nothing is written into it).

A data server on another host is :func:`standalone_command` (one key, SQLite); the lab's data
server, for many rigs, is :class:`LabServer` (``labctl serve --postgres``: PostgreSQL, a key per rig).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import secrets
import shutil
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote_plus, urlparse

logger = logging.getLogger(__name__)

STARTUP_TIMEOUT = 30.0  # s
BUSY_TIMEOUT = 30_000  # ms a connection to the SQLite tables waits for another's write before failing


def catalog_path(data_dir: Path) -> Path:
    """The embedded server's SQLite catalog of a data directory."""
    return Path(data_dir) / "tiled" / "catalog.db"


TABLES = "storage.sqlite"  # the tables of a new data directory
OLD_TABLES = "storage.duckdb"  # those of one made before (DuckDB): kept as they are


def table_file(directory: Path) -> Path:
    """The file of the tables tiled writes in ``directory``: DuckDB's if only that exists, else SQLite's."""
    directory = Path(directory)
    if (directory / OLD_TABLES).exists() and not (directory / TABLES).exists():
        return directory / OLD_TABLES
    return directory / TABLES


def table_uri(path: Path) -> str:
    """The writable-storage URI tiled wants for a table file (sqlite: or duckdb:, from its name)."""
    from tiled.utils import ensure_uri

    scheme = "duckdb" if Path(path).name == OLD_TABLES else "sqlite"
    return ensure_uri(f"{scheme}:///{Path(path)}")


def prepare_sqlite_tables(path: Path) -> None:
    """Put the SQLite table file (created if absent) in WAL mode, once; it stays so.

    In SQLite's default mode a reader and a writer lock each other out ("database is locked"):
    a dashboard reading while a run writes would fail its requests. In WAL mode they do not.
    """
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA journal_mode=WAL")


def wait_for_writers(storage) -> None:
    """Make each pooled connection of tiled's SQLite ``storage`` wait for another's write.

    Two writers (two runs, or a run and ``labctl recover``) still take turns; SQLite's default
    is to fail the second at once. tiled opens no hook for this: a listener on its pool sets
    ``busy_timeout`` on every connection the pool opens (the pool is built here, before any request).
    """
    import sqlalchemy.event

    def on_connect(connection, _record) -> None:
        with connection.cursor() as cursor:
            cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT}")
            cursor.fetchall()

    sqlalchemy.event.listen(storage._connection_pool, "connect", on_connect)


def _recorded_tables(catalog: Path) -> Path | None:
    """The table file the catalog's paths were recorded with (its SQLite or DuckDB asset), or None."""
    with sqlite3.connect(f"file:{catalog}?mode=ro", uri=True) as db:
        row = db.execute("SELECT data_uri FROM assets WHERE data_uri LIKE 'duckdb:%' OR data_uri LIKE 'sqlite:%' "
                         "LIMIT 1").fetchone()
    if row is None:
        return None
    # sqlite://localhost//abs/DATA_DIR/tiled/storage.sqlite (or duckdb:, storage.duckdb)
    return Path("/" + urlparse(row[0]).path.lstrip("/"))


def relocate_catalog(catalog: Path, data_dir: Path, storage_dir: Path | None = None) -> Path | None:
    """Rewrite the absolute paths tiled recorded in ``catalog`` so they point into ``data_dir``.

    Parameters
    ----------
    catalog : Path
        The catalog (SQLite) to rewrite in place (the data directory's, or a temporary copy).
    data_dir : Path
        Where the data directory is now.
    storage_dir : Path, optional
        Where the table file (``storage.sqlite`` or ``storage.duckdb``) is now, if not
        ``data_dir/tiled`` (a temporary copy).

    Returns
    -------
    Path or None
        The directory the catalog pointed at before, if it was rewritten; None if it was right.
    """
    tables = _recorded_tables(catalog)
    old = None if tables is None else tables.parents[1]
    data_dir = Path(data_dir).resolve()
    storage_dir = Path(storage_dir or data_dir / "tiled")
    if old is None or (old == data_dir and storage_dir == data_dir / "tiled"):
        return None
    rewrites = [
        (table_uri(tables), table_uri(storage_dir / tables.name)),
        (f"file://localhost{old.as_posix()}/", f"file://localhost{data_dir.as_posix()}/"),
    ]
    with sqlite3.connect(catalog) as db:
        for before, after in rewrites:
            db.execute("UPDATE assets SET data_uri = ? || substr(data_uri, ?) WHERE substr(data_uri, 1, ?) = ?",
                       (after, len(before) + 1, len(before), before))
    logger.info("catalog %s: paths recorded under %s now point into %s", catalog, old, data_dir)
    return old


def writable(path: Path) -> bool:
    """Whether this process can create files in ``path``."""
    return os.access(path, os.W_OK | os.X_OK)


class DataServer:
    """tiled serving one data directory, on a thread of this process.

    Parameters
    ----------
    data_dir : Path
        The data directory (see the module docstring).
    api_key : str, optional
        The single-user API key; random if not given.
    host, port : str, int
        Where to listen; port 0 picks a free one.
    read_only : bool, optional
        Serve a temporary copy of the databases, writing nothing into ``data_dir``. Default:
        when ``data_dir`` is not writable.
    """

    def __init__(self, data_dir: Path, *, api_key: str | None = None, host: str = "127.0.0.1", port: int = 0,
                 read_only: bool | None = None):
        self.data_dir = Path(data_dir).resolve()
        tiled_dir = self.data_dir / "tiled"
        self.read_only = (not writable(tiled_dir if tiled_dir.exists() else self.data_dir)
                          if read_only is None else read_only)
        self.api_key = api_key or secrets.token_hex(16)
        self._scratch = Path(tempfile.mkdtemp(prefix="labctl-tiled-"))  # logs, and copies when read-only
        try:
            self.catalog = self._catalog()
            self._start(host, port)
        except BaseException:
            shutil.rmtree(self._scratch, ignore_errors=True)
            raise

    def _catalog(self):
        from tiled.catalog import from_uri
        from tiled.config import StreamingCacheConfig
        from tiled.storage import get_storage

        tiled_dir = self.data_dir / "tiled"
        assets = self.data_dir / "assets"
        if self.read_only:
            storage_dir = self._scratch
            catalog = self._scratch / "catalog.db"
            for name in ("catalog.db", TABLES, TABLES + "-wal", OLD_TABLES):  # -wal: writes not yet merged
                if (tiled_dir / name).exists():
                    shutil.copy2(tiled_dir / name, self._scratch / name)
            readable = [assets, tiled_dir / "data"]
            writable_storage = [self._scratch / "data", table_uri(table_file(storage_dir))]
            (self._scratch / "data").mkdir()
        else:
            storage_dir = tiled_dir
            catalog = tiled_dir / "catalog.db"
            (tiled_dir / "data").mkdir(parents=True, exist_ok=True)
            assets.mkdir(parents=True, exist_ok=True)
            readable = [assets]
            writable_storage = [tiled_dir / "data", table_uri(table_file(storage_dir))]
        self._tables = writable_storage[1]
        exists = catalog.exists()
        if exists:
            relocate_catalog(catalog, self.data_dir, storage_dir)
        if self._tables.startswith("sqlite:"):
            prepare_sqlite_tables(table_file(storage_dir))
        # tiled initialises a catalog in a subprocess (a fresh interpreter: seconds on a loaded
        # machine); one that exists needs none, and the server's startup checks its schema.
        adapter = from_uri(catalog, writable_storage=writable_storage, readable_storage=readable,
                           init_if_not_exists=not exists, cache_config=StreamingCacheConfig(uri="memory").model_dump())
        self._storage = get_storage(self._tables)  # as SimpleTiledServer does, to dispose of it at close
        if self._tables.startswith("sqlite:"):
            wait_for_writers(self._storage)
        return adapter

    def _start(self, host: str, port: int) -> None:
        import httpx
        import uvicorn
        from tiled.config import Authentication
        from tiled.server.app import build_app
        from tiled.server.logging_config import LOGGING_CONFIG
        _close_log_files(LOGGING_CONFIG["loggers"])  # uvicorn's dictConfig drops them unclosed otherwise
        log_config = copy.deepcopy(LOGGING_CONFIG)
        for handler, name in (("access", "access.log"), ("default", "error.log")):
            log_config["handlers"][handler]["class"] = "logging.FileHandler"
            del log_config["handlers"][handler]["stream"]
            log_config["handlers"][handler]["filename"] = str(self._scratch / name)
        from labctl.stock_clients import register_documents_exporter

        register_documents_exporter()  # run.documents() (application/json-seq) from this server
        self.app = build_app(self.catalog, authentication=Authentication(single_user_api_key=self.api_key))
        self._server = _daemon_threaded_server()(uvicorn.Config(self.app, host=host, port=port, loop="asyncio",
                                                     log_config=log_config))
        self._cm = self._server.run_in_thread()
        try:
            base_url = self._cm.__enter__()
        except (TimeoutError, SystemExit) as error:  # uvicorn could not start: say why, from its log
            self._cm = None
            log = self.log.read_text(errors="replace").strip().splitlines() if self.log.exists() else []
            why = " | ".join(log[-12:]) if log else type(error).__name__
            raise RuntimeError(f"the tiled server of {self.data_dir} did not start on {host}:{port}: {why}") from None
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            with httpx.Client(trust_env=False) as client:
                while True:
                    if not self._server.thread.is_alive():
                        raise RuntimeError(f"the tiled server of {self.data_dir} stopped at start: see {self.log}")
                    try:
                        if client.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                            break
                    except httpx.RequestError:
                        pass
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the tiled server of {self.data_dir} did not start: see {self.log}")
                    time.sleep(0.1)
        except BaseException:
            self._cm.__exit__(None, None, None)
            raise
        self.port = urlparse(base_url).port
        local = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        self.uri = f"http://{local}:{self.port}/api/v1?api_key={quote_plus(self.api_key)}"

    @property
    def log(self) -> Path:
        """The server's error log (in a temporary directory, never in the data directory)."""
        return self._scratch / "error.log"

    def wait(self) -> None:
        """Block until the server thread ends (``labctl serve``: until Ctrl-C or SIGTERM closes it)."""
        self._server.thread.join()

    def close(self) -> None:
        """Stop serving; remove the temporary directory. Safe to call twice."""
        if getattr(self, "_cm", None) is None:
            return
        self._cm.__exit__(None, None, None)
        self._cm = None
        self._storage.dispose()  # close its connections (and release DuckDB's file lock) for the next process
        from tiled.server.logging_config import LOGGING_CONFIG

        _close_log_files(LOGGING_CONFIG["loggers"], within=self._scratch)
        shutil.rmtree(self._scratch, ignore_errors=True)


# ---- a data server on another host -----------------------------------------------------------------
def standalone_command(directory: Path, *, api_key: str, host: str = "0.0.0.0", port: int = 8000) -> list[str]:
    """The ``tiled serve catalog`` command of a data server on another host (see the README).

    Its catalog and writable storage live in ``directory``, which need have nothing to do with
    a lab's data directory: labctl (``storage.uri``) writes the potentiostat's rows into it
    through the tiled client (:mod:`labctl.storage.upload`). No readable storage is given: the
    server reads no file of the lab PC. ``--init`` creates the catalog the first time and is a
    no-op afterwards, so the same command restarts it. The tables go to ``storage.sqlite``
    (``storage.duckdb`` in a directory made before that holds one: see the module docstring);
    put that file in WAL mode before the first start (:func:`prepare_sqlite_tables`,
    ``sqlite3 storage.sqlite 'PRAGMA journal_mode=WAL'``), as :class:`StandaloneServer` does.
    tiled's command line offers no busy timeout: two concurrent writers can see "database is
    locked" (labctl's delivery retries).
    """
    directory = Path(directory)
    return ["tiled", "serve", "catalog", "--init", str(directory / "catalog.db"),
            "-w", str(directory / "data"), "-w", table_uri(table_file(directory)),
            "--api-key", api_key, "--host", host, "--port", str(port)]


class StandaloneServer:
    """:func:`standalone_command` run as a child process (tests, benchmarks): start, stop, start again.

    Parameters
    ----------
    directory : Path
        The server's own directory (created).
    port : int
        A free port on loopback.
    """

    def __init__(self, directory: Path, port: int, api_key: str | None = None):
        import sys

        self.directory, self.port = Path(directory), port
        self.api_key = api_key or secrets.token_hex(32)  # tiled refuses weak keys
        self.uri = f"http://127.0.0.1:{port}/api/v1?api_key={quote_plus(self.api_key)}"
        command = standalone_command(self.directory, api_key=self.api_key, host="127.0.0.1", port=port)
        self.command = [str(Path(sys.executable).with_name("tiled")), *command[1:]]
        self.process = None

    def start(self) -> None:
        """Start the process and return once it answers (or raise with its log if it dies)."""
        import subprocess

        import httpx

        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        if table_file(self.directory).name == TABLES:  # readers and writers lock each other out otherwise
            prepare_sqlite_tables(table_file(self.directory))
        with open(self.directory / "server.log", "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory)
        deadline = time.monotonic() + 10 * STARTUP_TIMEOUT  # a loaded machine: imports alone take a while
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1.0, trust_env=False).status_code == 200:
                    return
            except httpx.RequestError:
                time.sleep(0.2)
        log = (self.directory / "server.log").read_text(errors="replace")[-2000:]
        self.close()
        raise RuntimeError(f"the tiled server in {self.directory} did not start: {log}")

    def kill(self) -> None:
        """SIGKILL it, as a crash or a pulled cable would."""
        self.process.kill()
        self.process.wait(timeout=60)

    def close(self) -> None:
        """Stop it (SIGTERM) if it runs. Safe to call twice."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)


# ---- the lab's data server: tiled on PostgreSQL, an API key per rig ----------------------------------
LAB_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "dataserver.yml"
DATABASES = ("labctl_catalog", "labctl_tables", "labctl_auth")  # the catalog, the events' tables, the API keys
READ_ONLY_SCOPES = ["read:metadata", "read:data"]  # a viewer's key; a rig's key has its principal's ("inherit")


def postgres_address(text: str) -> str:
    """Check ``USER@HOST:PORT`` (a password may follow the user, better given in ``$PGPASSWORD``); return it.

    Raises :class:`UsageError` naming the expected form.
    """
    from labctl.core.errors import UsageError

    user, at, place = text.rpartition("@")
    host, colon, port = place.rpartition(":")
    if not (user and at and host and colon and port.isdigit() and 1 <= int(port) <= 65535) or "/" in text:
        raise UsageError(f"--postgres {text!r}: expected USER@HOST:PORT, e.g. labctl@127.0.0.1:5432 "
                         f"(port 1-65535; the password in $PGPASSWORD)")
    return text


class LabServer:
    """The lab's data server: ``tiled serve config`` of :data:`LAB_CONFIG` as a child process.

    Its catalog, the tables of the events and the API keys are in three PostgreSQL databases
    (:data:`DATABASES`); the arrays rigs write go to ``directory/data``. Every request needs an
    API key of the authentication database: :meth:`add_key` mints one per rig, or a read-only one
    for viewers. tiled supports several keys only in its multi-user mode, which it turns on
    only with an identity provider: the configuration has one that knows no user (nobody logs in
    with a password), and the keys are written straight into the database, as tiled's
    ``POST /auth/principal/{uuid}/apikey`` does (that route needs an administrator logged in
    through a provider, which this lab has not).

    Parameters
    ----------
    postgres : str
        ``USER[:PASSWORD]@HOST:PORT`` of the PostgreSQL cluster (the password better in ``$PGPASSWORD``).
    directory : Path
        The server's own directory (its arrays, its log); created.
    host, port : str, int
        Where to listen.
    config : Path
        The tiled configuration (default: configs/dataserver.yml).
    """

    def __init__(self, postgres: str, directory: Path, *, host: str = "127.0.0.1", port: int = 8000,
                 config: Path = LAB_CONFIG):
        import sys

        self.postgres, self.directory = postgres_address(postgres), Path(directory).resolve()
        self.host, self.port, self.config = host, port, Path(config)
        self.auth_database = f"postgresql+asyncpg://{postgres}/{DATABASES[2]}"
        self.command = [str(Path(sys.executable).with_name("tiled")), "serve", "config", str(self.config),
                        "--host", host, "--port", str(port)]
        self.env = {**os.environ, "LABCTL_POSTGRES": postgres, "LABCTL_DATA_SERVER_DIR": str(self.directory)}
        self.process = None

    @property
    def log(self) -> Path:
        """The server's log (its standard output and error)."""
        return self.directory / "server.log"

    def uri(self, api_key: str) -> str:
        """The URI a rig's lab file gives as ``storage.uri`` (host: this machine's name if it listens on all)."""
        import socket

        host = socket.getfqdn() if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{host}:{self.port}/api/v1?api_key={quote_plus(api_key)}"

    # ---- the databases -------------------------------------------------------------------------
    def _run(self, coroutine):
        """Run one database coroutine; PostgreSQL unreachable or refusing becomes a one-line :class:`Unreachable`."""
        import asyncio

        import asyncpg

        from labctl.core.errors import Unreachable

        where = self.postgres.rpartition("@")[2]
        try:
            return asyncio.run(coroutine)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            why = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise Unreachable(f"PostgreSQL at {where}: {why} (check --postgres USER@HOST:PORT and $PGPASSWORD)") from None

    def prepare(self) -> None:
        """Create the databases that are missing and the authentication database's tables; idempotent."""
        from labctl.core.errors import Unreachable

        self._run(self._create_databases())
        if not self._run(self._auth_initialized()):
            import subprocess

            # tiled's own command: it creates the tables and stamps alembic's revision (the server checks it)
            done = subprocess.run([self.command[0], "admin", "initialize-database", self.auth_database],
                                  capture_output=True, text=True, env=self.env)
            if done.returncode != 0:
                why = " | ".join(done.stderr.strip().splitlines()[-3:])
                raise Unreachable(f"PostgreSQL at {self.postgres.rpartition('@')[2]}: tiled admin initialize-database "
                                  f"{DATABASES[2]} failed: {why}")

    async def _create_databases(self) -> None:
        import asyncpg

        connection = await asyncpg.connect(f"postgresql://{self.postgres}/postgres")
        try:
            existing = {row["datname"] for row in await connection.fetch("SELECT datname FROM pg_database")}
            for name in DATABASES:
                if name not in existing:
                    await connection.execute(f'CREATE DATABASE "{name}"')
                    logger.info("created database %s", name)
        finally:
            await connection.close()

    async def _auth_initialized(self) -> bool:
        from sqlalchemy.ext.asyncio import create_async_engine
        from tiled.alembic_utils import UninitializedDatabase, check_database
        from tiled.authn_database.core import ALL_REVISIONS, REQUIRED_REVISION

        engine = create_async_engine(self.auth_database)
        try:
            await check_database(engine, REQUIRED_REVISION, ALL_REVISIONS)
            return True
        except UninitializedDatabase:
            return False
        finally:
            await engine.dispose()

    # ---- the keys --------------------------------------------------------------------------------
    def add_key(self, name: str, read_only: bool = False) -> str:
        """Mint the API key of ``name`` (a rig, or viewers if ``read_only``); return its secret.

        Each name gets a service principal of its own (role "user": read and write; a read-only
        key is restricted to reading). Only the key's hash is stored: the secret is shown once.
        Raises :class:`UsageError` if ``name`` has a key (revoke it first).
        """
        self.prepare()
        return self._run(self._add_key(name, read_only))

    async def _add_key(self, name: str, read_only: bool) -> str:
        import hashlib

        from sqlalchemy import select
        from tiled.authn_database import orm
        from tiled.authn_database.core import create_service

        from labctl.core.errors import UsageError

        async with self._session() as db:
            if (await db.execute(select(orm.APIKey).filter(orm.APIKey.note == name))).unique().scalars().first():
                raise UsageError(f"--add-key {name}: {name} has a key already (`--revoke-key {name}` first)")
            principal = await create_service(db, "user")
            secret = secrets.token_bytes(4 + 32)  # as tiled's generate_apikey: 32 bytes, plus the 4 shown
            db.add(orm.APIKey(principal_id=principal.id, note=name, first_eight=secret.hex()[:8],
                              hashed_secret=hashlib.sha256(secret).digest(),
                              scopes=READ_ONLY_SCOPES if read_only else ["inherit"]))
            await db.commit()
        return secret.hex()

    def keys(self) -> list[dict]:
        """The keys: name, first eight characters, read-only or not, last used (None: never)."""
        self.prepare()
        return self._run(self._keys())

    async def _keys(self) -> list[dict]:
        from sqlalchemy import select
        from tiled.authn_database import orm

        async with self._session() as db:
            rows = (await db.execute(select(orm.APIKey).order_by(orm.APIKey.note))).unique().scalars().all()
            return [{"name": key.note, "first_eight": key.first_eight, "read_only": "inherit" not in key.scopes,
                     "latest_activity": key.latest_activity} for key in rows]

    def revoke_key(self, name: str) -> int:
        """Delete ``name``'s keys (the server refuses them from the next request); return how many."""
        self.prepare()
        return self._run(self._revoke_key(name))

    async def _revoke_key(self, name: str) -> int:
        from sqlalchemy import delete
        from tiled.authn_database import orm

        async with self._session() as db:
            result = await db.execute(delete(orm.APIKey).where(orm.APIKey.note == name))
            await db.commit()
            return result.rowcount

    @contextlib.asynccontextmanager
    async def _session(self):
        from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

        engine = create_async_engine(self.auth_database)
        try:
            async with AsyncSession(engine, expire_on_commit=False) as db:
                yield db
        finally:
            await engine.dispose()

    # ---- the process -----------------------------------------------------------------------------
    def start(self) -> None:
        """Prepare the databases, start tiled, and return once it answers.

        Raises :class:`Unreachable` with the end of its log if it dies or does not answer.
        """
        import subprocess

        import httpx

        from labctl.core.errors import Unreachable

        self.prepare()
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.directory,
                                            env=self.env)
        local = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        deadline = time.monotonic() + 10 * STARTUP_TIMEOUT  # a loaded machine: imports alone take a while
        while self.process.poll() is None and time.monotonic() < deadline:
            try:
                if httpx.get(f"http://{local}:{self.port}/healthz", timeout=1.0, trust_env=False).status_code == 200:
                    return
            except httpx.RequestError:
                time.sleep(0.2)
        import re

        log = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip()  # uvicorn colours its log
               for line in self.log.read_text(errors="replace").strip().splitlines()]
        errors = [line for line in log if "ERROR" in line or "Error" in line]
        self.close()
        raise Unreachable(f"the lab's data server did not start on {self.host}:{self.port}: "
                          + " | ".join((errors or log)[-3:]) + f" (log: {self.log})")

    def wait(self) -> int:
        """Block until the server process ends; return its exit code."""
        return self.process.wait()

    def close(self) -> None:
        """Stop it (SIGTERM; SIGKILL after a minute) if it runs. Safe to call twice."""
        import subprocess

        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=60)


def _daemon_threaded_server():
    """tiled's ``ThreadedServer`` with uvicorn on a daemon thread.

    tiled starts it on an ordinary thread, which Python waits for at exit: a script that read a
    run and never called ``close()`` hung for good. Nothing is lost by not waiting: every document
    is in the journal first, and SQLite's WAL survives a cut write.
    """
    from tiled.server.simple import ThreadedServer

    class DaemonThreadedServer(ThreadedServer):
        @contextlib.contextmanager
        def run_in_thread(self):
            self.thread = threading.Thread(target=self.run, name="labctl-data-server", daemon=True)
            self.thread.start()
            try:
                deadline = time.monotonic() + STARTUP_TIMEOUT
                while not self.started:
                    if time.monotonic() > deadline or not self.thread.is_alive():
                        raise TimeoutError(f"uvicorn did not start in {STARTUP_TIMEOUT} s")
                    time.sleep(0.05)
                host, port = self.servers[0].sockets[0].getsockname()
                yield f"http://{host}:{port}"
            finally:
                self.should_exit = True
                self.thread.join()

    return DaemonThreadedServer


def _close_log_files(logger_names, within: Path | None = None) -> None:
    """Close and detach the log files of tiled's and uvicorn's loggers (those in ``within`` only, if given).

    Each embedded server points these loggers at files of its own; a handler dropped without
    being closed leaves its file open until the garbage collector finds it.
    """
    for name in logger_names:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            filename = getattr(handler, "baseFilename", None)
            if filename is not None and (within is None or Path(filename).is_relative_to(within)):
                logger.removeHandler(handler)
                handler.close()
