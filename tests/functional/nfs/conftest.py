"""A real nfs-ganesha server for the session; stores reach it with nfs-rs.

This machine's kernel has no NFS client, so the userspace store is what runs
over the real protocol here; the kernel-mount path is unit-tested with an
injected command runner and mount table (tests/unit/drivers/test_nfs.py).
"""

from __future__ import annotations

import itertools
import os
import types

import pytest

from tests.nfsserver import GaneshaServer, NfsServerError

_counter = itertools.count()


@pytest.fixture(scope="session")
def nfs_server():
    server = GaneshaServer()
    try:
        server.start()
    except NfsServerError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        yield server
    finally:
        from backupsvc.drivers.nfs_client import close_sessions

        close_sessions()
        server.stop()


def nfs_conf(server: GaneshaServer, subdir: str, version: str = "4.1", **kw):
    """The options UserspaceNfsStore.from_conf reads, for a share under the export."""
    values = dict(backup_share=server.share(subdir),
                  backup_mount_options=server.mount_options(version),
                  backup_nfs_timeout=30, backup_create_containers=True,
                  backup_nfs_client="userspace")
    values.update(kw)
    return types.SimpleNamespace(**values)


class Share:
    """A fresh directory of the export: its share string and its local path."""

    def __init__(self, server: GaneshaServer, version: str) -> None:
        self.server = server
        self.version = version
        self.subdir = "t%d" % next(_counter)
        server.mkdir(self.subdir)
        self.local = os.path.join(server.export_dir, self.subdir)

    def conf(self, **kw):
        return nfs_conf(self.server, self.subdir, self.version, **kw)

    def store(self, **kw):
        from backupsvc.drivers.nfs_client import UserspaceNfsStore

        return UserspaceNfsStore.from_conf(self.conf(**kw))

    def names_over_nfs(self, container: str) -> list[str]:
        """Every name in a container, temporary ones included, as NFS shows it."""
        client = self.server.client(self.version)
        try:
            path = "%s/%s" % (self.subdir, container)
            return sorted(client.listdir(path)) if client.exists(path) else []
        finally:
            client.close()


@pytest.fixture(params=["4.1", "4.0"])
def share(request, nfs_server):
    """A fresh share on the real server, once per NFS version."""
    from backupsvc.drivers.nfs_client import close_sessions

    yield Share(nfs_server, request.param)
    close_sessions()


@pytest.fixture
def share41(nfs_server):
    from backupsvc.drivers.nfs_client import close_sessions

    yield Share(nfs_server, "4.1")
    close_sessions()
