"""The lab's data server (issue 16, point 2): tiled on a private PostgreSQL cluster, an API key per rig.

The test starts its own cluster (initdb + pg_ctl of the Debian package, on a free loopback port, in
a temporary directory; never the machine's own service), mints a rig's key and a viewer's key with
``labctl serve --add-key``, starts ``labctl serve --postgres`` as a child process, runs the short
experiment into it by URI with the rig's key, reads the runs back (``labctl runs``, ``labctl show``,
the stock tiled client with the viewer's key) and checks what is refused: a wrong key, a viewer
writing, a revoked key.
"""

import contextlib
import gc
import glob
import io
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import httpx
import pytest

from labctl.cli import main
from labctl.core.errors import UsageError
from labctl.dataserver import DATABASES, postgres_address

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
USER = "labctl"  # the cluster's superuser (trust authentication on loopback: a test cluster)


def postgres_bin() -> Path | None:
    """The directory of initdb and pg_ctl: Debian's /usr/lib/postgresql/VERSION/bin (newest), else the PATH's."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


BIN = postgres_bin()
needs_postgres = pytest.mark.skipif(BIN is None, reason="PostgreSQL is not installed (no initdb under /usr/lib/"
                                    "postgresql/*/bin nor on the PATH): `make test` installs the Debian package postgresql")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Postgres:
    """A private PostgreSQL cluster on a free loopback port, in a directory of its own, removed at stop.

    PostgreSQL refuses to run as root: as root, the cluster runs as the Debian package's
    ``postgres`` user (else ``nobody``), in a directory under /tmp that user may enter.
    """

    def __init__(self):
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            self.user = next(name for name in ("postgres", "nobody") if _exists(name))
        self.directory = Path(tempfile.mkdtemp(prefix="labctl-pg-", dir="/tmp" if self.user else None))
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self.address = f"{USER}@127.0.0.1:{self.port}"

    def _run(self, *command: str) -> None:
        done = subprocess.run(command, user=self.user, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-2000:])

    def start(self):
        data = self.directory / "cluster"
        self._run(str(BIN / "initdb"), "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync")
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(BIN / "pg_ctl"), "-D", str(data), "-l", str(self.directory / "log"), "-o", options, "-w",
                  "-t", "120", "start")
        return self

    def stop(self) -> None:
        if (self.directory / "cluster" / "postmaster.pid").exists():
            self._run(str(BIN / "pg_ctl"), "-D", str(self.directory / "cluster"), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.directory, ignore_errors=True)

    def query(self, database: str, sql: str):
        import asyncio

        import asyncpg

        async def fetch():
            connection = await asyncpg.connect(f"postgresql://{self.address}/{database}")
            try:
                return await connection.fetch(sql)
            finally:
                await connection.close()

        return asyncio.run(fetch())


def _exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


@pytest.fixture
def postgres():
    cluster = Postgres().start()
    yield cluster
    cluster.stop()


def cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def add_key(address: str, name: str, *flags: str) -> str:
    code, out, err = cli("serve", "--postgres", address, "--add-key", name, *flags)
    assert code == 0, err
    return out.split("shown once: ")[1].split()[0]


def lab_file(folder: Path, name: str, uri: str) -> Path:
    text = (CONFIGS / "lab-sim.yaml").read_text()
    assert "  uri: null" in text
    path = folder / f"{name}.yaml"
    path.write_text(text.replace("  uri: null", f"  uri: {json.dumps(uri)}", 1))
    return path


class Serving:
    """``labctl serve --postgres ... --storage ...`` as a child process."""

    def __init__(self, address: str, directory: Path, port: int):
        self.port, self.log = port, directory.parent / "serve.out"
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "labctl.cli", "serve", "--postgres", address,
                                             "--storage", str(directory), "--port", str(port)],
                                            stdout=log, stderr=subprocess.STDOUT)
        try:
            for _ in range(3000):  # bounded: each attempt waits on the socket or on the process
                assert self.process.poll() is None, self.log.read_text()[-3000:]
                with contextlib.suppress(httpx.RequestError):
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1.0, trust_env=False).status_code == 200:
                        return
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(0.2)
            raise AssertionError(f"labctl serve did not answer: {self.log.read_text()[-3000:]}")
        except BaseException:
            self.stop()
            raise

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(90)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
                raise
        return self.process.returncode


@needs_postgres
@pytest.mark.timeout(900)  # PostgreSQL, tiled and a simulated experiment, on a loaded 2-core machine
def test_a_rig_stores_an_experiment_into_the_labs_postgres_server_with_its_key_and_others_are_refused(
        tmp_path, postgres, short_experiment):
    from tiled.client import from_uri
    from tiled.client.utils import ClientError

    rig_key = add_key(postgres.address, "rig-1")
    other_rig_key = add_key(postgres.address, "rig-2")
    viewer_key = add_key(postgres.address, "viewers", "--read-only")
    assert len({rig_key, other_rig_key, viewer_key}) == 3
    code, _, err = cli("serve", "--postgres", postgres.address, "--add-key", "rig-1")
    assert code == 2 and "rig-1 has a key already" in err and "Traceback" not in err
    code, out, _ = cli("serve", "--postgres", postgres.address, "--list-keys")
    listed = {line.split()[0]: line for line in out.splitlines()}
    assert set(listed) == {"rig-1", "rig-2", "viewers"}
    assert "read-only" in listed["viewers"] and "read-write" in listed["rig-1"]
    assert all(key not in out for key in (rig_key, viewer_key))  # only the first eight characters

    port = free_port()
    server = Serving(postgres.address, tmp_path / "server", port)
    try:
        lab_pc = tmp_path / "lab-pc"
        lab_pc.mkdir()
        uri = f"http://127.0.0.1:{port}/api/v1?api_key={rig_key}"
        lab = lab_file(lab_pc, "lab-rig-1", uri)
        experiment = lab_pc / "short.yaml"
        experiment.write_text(short_experiment.replace(str(CONFIGS / "lab-sim.yaml"), str(lab)))
        data_dir = lab_pc / "data"
        code, out, err = cli("run", str(experiment), "--data-dir", str(data_dir))
        assert code == 0, out + err
        assert "4 of 4 runs stored" in out, out

        # Read back through labctl, against the URI.
        code, out, err = cli("runs", "--lab", str(lab), "--data-dir", str(data_dir), "--json")
        assert code == 0, err
        runs = json.loads(out)
        assert sorted(run["plan_name"] for run in runs) == ["plate", "rest", "set_pressure", "set_temperature"]
        assert all(run["pending_upload"] is None for run in runs)
        plate = next(run["uid"] for run in runs if run["plan_name"] == "plate")
        code, out, err = cli("show", plate, "--lab", str(lab), "--data-dir", str(data_dir))
        assert code == 0, err
        assert "plate" in out and "LLZTO-CLI-1" in out
        assert Path(out.split("figure: ")[1].strip()).stat().st_size > 0

        # The stock tiled client, with the viewers' key: every run, the potentiostat's rows.
        client = from_uri(f"http://127.0.0.1:{port}", api_key=viewer_key)
        try:
            stored = client["runs"]
            assert sorted(stored) == sorted(run["uid"] for run in runs)
            assert stored[plate]["potentiostat"]["potentiostat_Ewe"].shape == (3600,)
            with pytest.raises(ClientError, match="Requires scopes"):  # a viewer cannot write
                client.create_container("vandalism")
            assert "vandalism" not in client
        finally:
            client.context.close()

        # The catalog and the events' tables are in PostgreSQL; the arrays in the server's directory.
        assert DATABASES == ("labctl_catalog", "labctl_tables", "labctl_auth")
        nodes = postgres.query("labctl_catalog", "SELECT key FROM nodes")
        assert {run["uid"] for run in runs} <= {row["key"] for row in nodes}
        tables = postgres.query("labctl_tables", "SELECT table_name FROM information_schema.tables "
                                                 "WHERE table_schema = 'public'")
        assert tables, "no events' table in PostgreSQL"
        assert any((tmp_path / "server" / "data").rglob("*"))

        code, out, _ = cli("serve", "--postgres", postgres.address, "--list-keys")
        used = {line.split()[0]: "last used never" not in line for line in out.splitlines()}
        assert used == {"rig-1": True, "rig-2": False, "viewers": True}, out

        # A wrong key is refused, in one line; so is a revoked one, from its next request. (tiled's
        # from_uri leaves its HTTP client open when it fails: collected here, its warning ignored.)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            for name, key in (("wrong", "ab" * 36), ("revoked", None), ("not hex", "not-a-key")):
                if key is None:
                    code, out, err = cli("serve", "--postgres", postgres.address, "--revoke-key", "rig-2")
                    assert code == 0 and "revoked 1 key" in out
                    key = other_rig_key
                    with pytest.raises(ClientError, match="Invalid API key"):
                        from_uri(f"http://127.0.0.1:{port}", api_key=key)
                refused = lab_file(lab_pc, f"lab-{name.replace(' ', '-')}", f"http://127.0.0.1:{port}/api/v1?api_key={key}")
                code, out, err = cli("runs", "--lab", str(refused), "--data-dir", str(data_dir))
                assert code == 4, (name, out, err)
                assert len(err.strip().splitlines()) == 1 and "refused the API key" in err, (name, err)
                assert key not in err  # the message names the server, never the secret
            gc.collect()
        code, out, err = cli("runs", "--lab", str(lab), "--data-dir", str(data_dir))
        assert code == 0, err  # rig-1's key still works
    finally:
        assert server.stop() == 0, server.log.read_text()[-3000:]


@pytest.mark.parametrize("address", ["labctl@127.0.0.1:5432", "lab:secret@db.lab.example:65535", "u@[::1]:1"])
def test_a_postgres_address_is_user_at_host_port(address):
    assert postgres_address(address) == address


@pytest.mark.parametrize("address", ["", "labctl", "127.0.0.1:5432", "labctl@127.0.0.1", "labctl@127.0.0.1:0",
                                     "labctl@127.0.0.1:65536", "labctl@:5432", "@127.0.0.1:5432",
                                     "labctl@127.0.0.1:54x", "postgresql://labctl@127.0.0.1:5432/db"])
def test_a_bad_postgres_address_is_refused_in_one_line_naming_the_form(address):
    with pytest.raises(UsageError, match=r"expected USER@HOST:PORT.*port 1-65535"):
        postgres_address(address)
    code, _, err = cli("serve", "--postgres", address, "--list-keys")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_serve_refuses_mixed_or_missing_options_in_one_line(tmp_path):
    for argv in (["serve"], ["serve", "--add-key", "rig-1"], ["serve", str(tmp_path), "--postgres", "u@h:1"],
                 ["serve", "--postgres", "u@h:1", "--read-only"], ["serve", "--postgres", "u@h:1"]):
        code, _, err = cli(*argv)
        assert code == 2, argv
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, (argv, err)
