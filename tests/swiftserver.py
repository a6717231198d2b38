"""A real single-node OpenStack Swift on loopback, for tests.

``SwiftServer(base_dir).start()`` builds the rings (part power 8, one replica,
one device that is a directory under ``base_dir``), writes the server configs,
starts memcached and the account, container, object and proxy servers (the
servers run in the Python that runs the tests) on free ports, and waits until
tempauth hands out a token. ``stop()`` ends everything it started.

It needs ``swift`` importable by this Python and ``memcached`` installed;
``tools/install-swift.sh VENV`` installs both. Nothing here is skipped: a
missing piece raises :class:`SwiftUnavailable` naming that script.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

INSTALL_HINT = ("run tools/install-swift.sh %s (installs memcached and swift==2.38.* "
                "into that venv)" % sys.prefix)

USER, KEY, ACCOUNT = "test:tester", "testing", "AUTH_test"
POLICIES = ("gold", "silver")             # policy 0 (default) and 1
LISTING_LIMIT = 20
SERVERS = ("account", "container", "object", "proxy")
_MODULES = {"account": "swift.account.server", "container": "swift.container.server",
            "object": "swift.obj.server", "proxy": "swift.proxy.server"}

_RINGS = """
import sys
from swift.common.ring import RingBuilder
swift_dir, ports = sys.argv[1], dict(a.split("=") for a in sys.argv[2:])
for name, port in ports.items():
    builder = RingBuilder(8, 1, 1)
    builder.add_dev({"id": 0, "region": 1, "zone": 1, "ip": "127.0.0.1",
                     "port": int(port), "device": "d1", "weight": 100, "meta": ""})
    builder.rebalance()
    builder.get_ring().save("%s/%s.ring.gz" % (swift_dir, name))
"""

# swift 2.38 reads swift.conf from swift_dir but loads the storage policies from
# /etc/swift/swift.conf before it sees the config; point it at ours first.
_LAUNCH = ("import runpy, sys; import swift.common.utils as u; "
           "u.SWIFT_CONF_FILE = sys.argv.pop(1); "
           "from swift.common import storage_policy as sp; sp.reload_storage_policies(); "
           "runpy.run_module(sys.argv.pop(1), run_name='__main__')")

_PIPELINE = ("catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk "
             "tempauth copy slo dlo versioned_writes proxy-logging proxy-server")
# The access log shows the X-Service-Token a request came with (tempauth ignores
# it; the tests of backup_swift_service_auth read what was sent from the log).
_FILTER_OPTIONS = {"proxy-logging": "access_log_headers = true\n"
                                    "access_log_headers_only = X-Service-Token\n"}
# pipeline section -> entry point of the swift egg (tempauth and cache are set apart)
_FILTERS = {"catch_errors": "catch_errors", "gatekeeper": "gatekeeper",
            "healthcheck": "healthcheck", "proxy-logging": "proxy_logging",
            "listing_formats": "listing_formats", "bulk": "bulk", "copy": "copy",
            "slo": "slo", "dlo": "dlo", "versioned_writes": "versioned_writes"}


class SwiftUnavailable(RuntimeError):
    """Swift or memcached is not installed, or the servers did not come up."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_installed() -> str:
    """Path of memcached; raises SwiftUnavailable when something is missing."""
    missing = []
    if importlib.util.find_spec("swift") is None:
        missing.append("the swift package is not importable by %s" % sys.executable)
    memcached = shutil.which("memcached") or (
        "/usr/bin/memcached" if os.access("/usr/bin/memcached", os.X_OK) else None)
    if memcached is None:
        missing.append("memcached is not installed")
    if missing:
        raise SwiftUnavailable("Swift tests need a local Swift: %s; %s"
                               % ("; ".join(missing), INSTALL_HINT))
    assert memcached is not None
    return memcached


class SwiftServer:
    def __init__(self, base_dir: str | os.PathLike[str]) -> None:
        self.base = Path(base_dir)
        self.etc, self.devices, self.logs = (self.base / "etc", self.base / "srv",
                                            self.base / "log")
        self.ports = {name: free_port() for name in SERVERS}
        self.memcached_port = free_port()
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.user, self.key = USER, KEY

    @property
    def auth_url(self) -> str:
        return "http://127.0.0.1:%d/auth/v1.0" % self.ports["proxy"]

    @property
    def storage_url(self) -> str:
        return "http://127.0.0.1:%d/v1/%s" % (self.ports["proxy"], ACCOUNT)

    # -- set-up -------------------------------------------------------------------
    def _write_configs(self) -> None:
        for d in (self.etc, self.devices / "d1", self.logs):
            d.mkdir(parents=True, exist_ok=True)
        policies = "".join("[storage-policy:%d]\nname = %s\n%s\n" % (
            i, name, "default = yes" if i == 0 else "") for i, name in enumerate(POLICIES))
        (self.etc / "swift.conf").write_text(
            "[swift-hash]\nswift_hash_path_suffix = backupsvc-tests\n"
            "swift_hash_path_prefix = backupsvc-tests\n\n"
            # Small listing pages, so that full listings really take several requests.
            "[swift-constraints]\ncontainer_listing_limit = %d\n\n%s"
            % (LISTING_LIMIT, policies))
        common = ("[DEFAULT]\nbind_ip = 127.0.0.1\nbind_port = %%d\nworkers = 0\nuser = %s\n"
                  "swift_dir = %s\ndevices = %s\nmount_check = false\n"
                  "disable_fallocate = true\nlog_level = INFO\n\n"
                  % (pwd.getpwuid(os.getuid()).pw_name, self.etc, self.devices))
        for name in ("account", "container", "object"):
            (self.etc / ("%s-server.conf" % name)).write_text(
                common % self.ports[name]
                + "[pipeline:main]\npipeline = %s-server\n\n"
                  "[app:%s-server]\nuse = egg:swift#%s\n" % (name, name, name))
        filters = "".join("[filter:%s]\nuse = egg:swift#%s\n%s\n" % (
            name, entry, _FILTER_OPTIONS.get(name, "")) for name, entry in _FILTERS.items())
        (self.etc / "proxy-server.conf").write_text(
            common % self.ports["proxy"]
            + "[pipeline:main]\npipeline = %s\n\n" % _PIPELINE
            + "[app:proxy-server]\nuse = egg:swift#proxy\naccount_autocreate = true\n\n"
            + "[filter:tempauth]\nuse = egg:swift#tempauth\nuser_%s = %s .admin\n\n"
              % (USER.replace(":", "_"), KEY)
            + "[filter:cache]\nuse = egg:swift#memcache\nmemcache_servers = 127.0.0.1:%d\n\n"
              % self.memcached_port
            + filters)

    def _build_rings(self) -> None:
        rings = ["account=%d" % self.ports["account"],
                 "container=%d" % self.ports["container"],
                 "object=%d" % self.ports["object"],
                 "object-1=%d" % self.ports["object"]]
        result = subprocess.run([sys.executable, "-c", _RINGS, str(self.etc), *rings],
                                capture_output=True, text=True, timeout=120)
        if result.returncode:
            raise SwiftUnavailable("building the Swift rings failed:\n%s" % result.stderr)

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.logs / ("%s.log" % name), "ab") as log:
            self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                                stdin=subprocess.DEVNULL,
                                                start_new_session=True)

    def start_server(self, name: str) -> None:
        self._spawn(name, [sys.executable, "-c", _LAUNCH, str(self.etc / "swift.conf"),
                           _MODULES[name], str(self.etc / ("%s-server.conf" % name)), "-v"])

    def start(self, timeout: float = 60) -> SwiftServer:
        memcached = check_installed()
        self._write_configs()
        self._build_rings()
        try:
            self._spawn("memcached", [memcached, "-l", "127.0.0.1", "-p",
                                      str(self.memcached_port), "-U", "0", "-m", "64",
                                      "-u", pwd.getpwuid(os.getuid()).pw_name])
            for name in SERVERS:
                self.start_server(name)
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def log_tail(self, name: str, lines: int = 30) -> str:
        try:
            text = (self.logs / ("%s.log" % name)).read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_ready(self, timeout: float = 60) -> None:
        """Until GET /auth/v1.0 returns a token and the account answers."""
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise SwiftUnavailable("%s exited with %s during start-up:\n%s"
                                           % (name, proc.returncode, self.log_tail(name)))
            try:
                token = self.token()
                req = urllib.request.Request(self.storage_url, method="HEAD",
                                             headers={"X-Auth-Token": token})
                with urllib.request.urlopen(req, timeout=5):
                    return
            except (OSError, urllib.error.URLError) as exc:
                last = exc
            time.sleep(0.1)
        raise SwiftUnavailable("Swift did not answer on %s within %ds (last error: %s)\n%s"
                               % (self.auth_url, timeout, last, self.log_tail("proxy")))

    def token(self) -> str:
        req = urllib.request.Request(self.auth_url,
                                     headers={"X-Auth-User": USER, "X-Auth-Key": KEY})
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.headers["X-Auth-Token"]

    # -- tear-down ----------------------------------------------------------------
    def stop_server(self, name: str) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def stop(self) -> None:
        for name in list(self.procs):
            self.stop_server(name)
