"""A real NFS server for tests: nfs-ganesha (VFS FSAL) on 127.0.0.1, NFSv4 only.

This machine's kernel has no NFS client, so tests reach the server with the
userspace client (nfs-rs). NFSv4 only, so no rpcbind is needed; each server
listens on a free port of its own, so parallel runs never collide. Every
server lives in a directory ``backupsvc-nfs-tests/run-*`` under the temporary
directory, holding the pid of the process that started it: a later start
removes the leftovers of runs whose owner died (killing only a ganesha whose
command line names that run's own config file).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

STATE_ROOT = os.path.join(tempfile.gettempdir(), "backupsvc-nfs-tests")
PSEUDO = "/backups"
INSTALL_HINT = "run tools/install-nfs.sh (as root) to install nfs-ganesha and nfs-rs"

CONFIG = """\
NFS_CORE_PARAM {
    Bind_Addr = 127.0.0.1;
    NFS_Port = %(port)d;
    Protocols = 4;
    Enable_NLM = false;
    Enable_RQUOTA = false;
    Enable_UDP = false;
    mount_path_pseudo = true;
    Dbus_Name_Prefix = backupsvc%(port)d;
}
NFSv4 {
    Graceless = true;
    RecoveryRoot = "%(run_dir)s/recovery";
}
EXPORT {
    Export_Id = 1;
    Path = "%(export)s";
    Pseudo = %(pseudo)s;
    Protocols = 4;
    Access_Type = RW;
    Squash = No_Root_Squash;
    SecType = sys;
    FSAL { Name = VFS; }
}
LOG { Default_Log_Level = EVENT; }
"""


class NfsServerError(RuntimeError):
    pass


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not: nobody may ever reap it here)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _read_pid(path: str) -> int | None:
    try:
        with open(path) as f:
            return int(f.read().strip() or 0) or None
    except (OSError, ValueError):
        return None


def sweep_leftovers() -> None:
    """Stop the servers of crashed runs and remove their directories."""
    if not os.path.isdir(STATE_ROOT):
        return
    for entry in os.listdir(STATE_ROOT):
        run_dir = os.path.join(STATE_ROOT, entry)
        owner = _read_pid(os.path.join(run_dir, "owner.pid"))
        if owner is None or alive(owner):
            continue
        pid = _read_pid(os.path.join(run_dir, "ganesha.pid"))
        conf = os.path.join(run_dir, "ganesha.conf")
        if pid is not None:
            try:
                with open("/proc/%d/cmdline" % pid, "rb") as f:
                    ours = conf.encode() in f.read().split(b"\0")
            except OSError:
                ours = False
            if ours:
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(run_dir, ignore_errors=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class GaneshaServer:
    """``start()`` / ``stop()`` one ganesha.nfsd exporting a fresh directory."""

    def __init__(self) -> None:
        self.run_dir = ""
        self.export_dir = ""
        self.port = 0
        self.binary = ""
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> str:
        return os.path.join(self.run_dir, "ganesha.log")

    def share(self, subdir: str = "") -> str:
        return "127.0.0.1:%s" % (PSEUDO + ("/" + subdir if subdir else ""))

    def mount_options(self, version: str = "4.1") -> str:
        return "vers=%s,port=%d,noresvport" % (version, self.port)

    def log_tail(self, lines: int = 30) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def start(self, timeout: float = 15.0) -> None:
        binary = shutil.which("ganesha.nfsd") or (
            "/usr/bin/ganesha.nfsd" if os.path.exists("/usr/bin/ganesha.nfsd") else None)
        if binary is None:
            raise NfsServerError("ganesha.nfsd is not installed; " + INSTALL_HINT)
        try:
            import nfs_rs  # noqa: F401
        except ImportError:
            raise NfsServerError("the nfs-rs package is not installed; " + INSTALL_HINT) \
                from None
        os.makedirs(STATE_ROOT, exist_ok=True)
        sweep_leftovers()
        self.run_dir = tempfile.mkdtemp(prefix="run-", dir=STATE_ROOT)
        with open(os.path.join(self.run_dir, "owner.pid"), "w") as f:
            f.write(str(os.getpid()))
        self.export_dir = os.path.join(self.run_dir, "export")
        os.makedirs(self.export_dir)
        os.makedirs(os.path.join(self.run_dir, "recovery"))
        self.binary = binary
        problem = ""
        for _ in range(3):            # a port picked by free_port() can be taken meanwhile
            self.port = free_port()
            problem = self._start_once(timeout)
            if not problem:
                return
        raise NfsServerError(problem)

    def restart(self, timeout: float = 15.0) -> None:
        """Stop the server and start it again on the same port and export."""
        self.stop_process()
        problem = self._start_once(timeout)
        if problem:
            raise NfsServerError(problem)

    def _start_once(self, timeout: float) -> str:
        conf = os.path.join(self.run_dir, "ganesha.conf")
        with open(conf, "w") as f:
            f.write(CONFIG % {"port": self.port, "run_dir": self.run_dir,
                              "export": self.export_dir, "pseudo": PSEUDO})
        self.proc = subprocess.Popen(
            [self.binary, "-F", "-f", conf, "-L", self.log_path,
             "-p", os.path.join(self.run_dir, "ganesha.pid")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True)
        with open(os.path.join(self.run_dir, "ganesha.pid"), "w") as f:
            f.write(str(self.proc.pid))
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return ("ganesha.nfsd exited with %d on port %d; its log ends:\n%s"
                        % (self.proc.returncode, self.port, self.log_tail()))
            last = self._try_connect()
            if not last:
                return ""
            time.sleep(0.05)
        self.stop_process()
        return ("ganesha.nfsd did not answer NFS on 127.0.0.1:%d within %.0f s (%s); "
                "its log ends:\n%s" % (self.port, timeout, last, self.log_tail()))

    def client(self, version: str = "4.1"):
        import nfs_rs

        return nfs_rs.Client.connect("nfs://127.0.0.1%s" % PSEUDO, versions=[version],
                                     nfs_port=self.port, noresvport=True,
                                     connect_timeout=5, operation_timeout=30)

    def _try_connect(self) -> str:
        try:
            self.client().close()
        except Exception as exc:    # not up yet
            return str(exc)
        return ""

    def mkdir(self, path: str) -> None:
        """Create a directory through NFS (changes behind ganesha's back can look stale)."""
        client = self.client()
        try:
            client.mkdir(path, parents=True, exist_ok=True, mode=0o770)
        finally:
            client.close()

    def stop_process(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def stop(self) -> None:
        self.stop_process()
        if self.run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
