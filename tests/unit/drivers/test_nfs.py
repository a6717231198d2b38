"""The NFS driver's kernel-mount path, share parsing and options.

This machine's kernel has no NFS client (``mount -t nfs`` fails with "No such
device"), so the mount command runner and the mount table are fakes here:
they are the seams NfsMounter takes for that. The userspace path runs over a
real NFS server in tests/functional/nfs/.
"""

import hashlib
import os
import stat

import pytest
from oslo_config import cfg

from backupsvc.conf import backup as backup_conf
from backupsvc.conf import nfs as nfs_conf
from backupsvc.conf import service as service_conf
from backupsvc.drivers.base import ObjectStore
from backupsvc.drivers.nfs import (
    ClientOptions,
    CommandError,
    KernelNfsStore,
    MountEntry,
    NfsConfigError,
    NfsMounter,
    NfsMountError,
    client_options,
    from_conf,
    mount_point_for,
    parse_share,
    read_mount_table,
    share_url,
)

SHARE = "nfs.example.com:/srv/backups"


class FakeKernel:
    """A mount table and a ``mount`` command; ``behaviour`` says what mount does."""

    def __init__(self, behaviour="mount", fail_times=0):
        self.table: list[MountEntry] = [MountEntry("/dev/sda1", "/", "ext4")]
        self.commands: list[list[str]] = []
        self.behaviour = behaviour          # "mount" or "nothing" (exit 0, no mount)
        self.fail_times = fail_times        # first n mount commands fail
        self.sleeps: list[float] = []

    def run(self, cmd):
        self.commands.append(cmd)
        args = [a for a in cmd if a != "sudo"]
        if args[0] != "mount":
            return
        if self.fail_times:
            self.fail_times -= 1
            raise CommandError("mount.nfs: Connection timed out")
        if self.behaviour == "mount":
            self.table.append(MountEntry(args[-2], args[-1], "nfs4"))

    def mounter(self, base, **kw):
        return NfsMounter(str(base), runner=self.run, mount_table=lambda: list(self.table),
                          sleep=self.sleeps.append, **kw)

    def mounts(self):
        return [c for c in self.commands if "mount" in c]


# -- share ------------------------------------------------------------------------
@pytest.mark.parametrize("share,host,path", [
    ("nfs.example.com:/srv/backups", "nfs.example.com", "/srv/backups"),
    ("filer:/", "filer", "/"),
    ("192.0.2.10:/backups", "192.0.2.10", "/backups"),
    ("[2001:db8::10]:/backups", "2001:db8::10", "/backups"),
    ("[::1]:/a b", "::1", "/a b"),
    ("  host:/x  ", "host", "/x"),
])
def test_parse_share(share, host, path):
    parsed = parse_share(share)
    assert (parsed.host, parsed.path, parsed.share) == (host, path, share.strip())


@pytest.mark.parametrize("share,message", [
    (None, "backup_share is not set"),
    ("", "backup_share is not set"),
    ("nfs.example.com", "no ':'"),
    ("host:relative/path", "must be absolute"),
    ("2001:db8::10:/backups", "in brackets"),
    ("[2001:db8::10]/backups", "followed by ']:'"),
    ("[not-an-address]:/x", "not an IPv6 address"),
    ("bad_host!:/x", "not a host name"),
    ("300.1.2.3:/x", "not a host name or IPv4"),
    (":/x", "not a host name"),
])
def test_parse_share_rejects(share, message):
    with pytest.raises(NfsConfigError, match=message) as info:
        parse_share(share)
    assert isinstance(info.value, ValueError)
    assert "HOST:/PATH" in str(info.value)          # the message shows the formats


def test_mount_point_is_md5_of_the_share(tmp_path):
    digest = hashlib.md5(SHARE.encode()).hexdigest()
    assert mount_point_for(str(tmp_path), SHARE) == str(tmp_path / digest)
    assert mount_point_for("/var/lib/backupsvc/backup_mount/", SHARE) == (
        "/var/lib/backupsvc/backup_mount/" + digest)


# -- mounting -----------------------------------------------------------------------
def test_mount_command_line(tmp_path):
    kernel = FakeKernel()
    mp = mount_point_for(str(tmp_path), SHARE)
    plain = kernel.mounter(tmp_path)
    assert plain.mount_command(SHARE) == ["mount", "-t", "nfs", SHARE, mp]
    opts = kernel.mounter(tmp_path, options="vers=4.1,proto=tcp", root_helper="sudo")
    assert opts.mount_command(SHARE) == ["sudo", "mount", "-t", "nfs", "-o",
                                         "vers=4.1,proto=tcp", SHARE, mp]
    assert kernel.mounter(tmp_path, options="  ").mount_command(SHARE)[3] == SHARE


def test_mounts_once_and_reuses_the_mount(tmp_path):
    kernel = FakeKernel()
    mounter = kernel.mounter(tmp_path)
    mp = mounter.ensure_mounted(SHARE)
    assert os.path.isdir(mp) and len(kernel.mounts()) == 1
    assert mounter.ensure_mounted(SHARE) == mp
    assert kernel.mounter(tmp_path).ensure_mounted(SHARE) == mp   # another instance too
    assert len(kernel.mounts()) == 1


def test_plain_directory_is_not_a_mount(tmp_path):
    """mount exits 0 but nothing is mounted: retried, then refused, never trusted."""
    kernel = FakeKernel(behaviour="nothing")
    mounter = kernel.mounter(tmp_path, attempts=3)
    mp = mounter.mount_point(SHARE)
    os.makedirs(mp)
    assert not mounter.is_mounted(mp)
    with pytest.raises(NfsMountError, match="still a plain directory") as info:
        mounter.ensure_mounted(SHARE)
    assert "after 3 attempt(s)" in str(info.value)
    assert len(kernel.mounts()) == 3 and kernel.sleeps == [1, 2]


def test_mount_retried_until_it_works(tmp_path):
    kernel = FakeKernel(fail_times=2)
    mp = kernel.mounter(tmp_path, attempts=3).ensure_mounted(SHARE)
    assert len(kernel.mounts()) == 3
    assert kernel.mounter(tmp_path).is_mounted(mp)


def test_mount_failure_after_all_attempts(tmp_path):
    kernel = FakeKernel(fail_times=5)
    with pytest.raises(NfsMountError, match="Connection timed out"):
        kernel.mounter(tmp_path, attempts=2).ensure_mounted(SHARE)
    assert len(kernel.mounts()) == 2 and kernel.sleeps == [1]


def test_something_else_mounted_there_is_an_error(tmp_path):
    kernel = FakeKernel()
    mounter = kernel.mounter(tmp_path)
    kernel.table.append(MountEntry("tmpfs", mounter.mount_point(SHARE), "tmpfs"))
    with pytest.raises(NfsMountError, match="tmpfs file system"):
        mounter.ensure_mounted(SHARE)
    assert kernel.mounts() == []


def test_group_permissions_fixed_after_mounting(tmp_path):
    kernel = FakeKernel()
    mounter = kernel.mounter(tmp_path, root_helper="sudo")
    mp = mounter.mount_point(SHARE)
    os.makedirs(mp, mode=0o755)
    os.chmod(mp, 0o755)                                 # no group write bit
    mounter.ensure_mounted(SHARE)
    assert ["sudo", "chmod", "-R", "g+w", mp] in kernel.commands
    assert not [c for c in kernel.commands if "chgrp" in c]   # our group already


def test_read_mount_table_unescapes(tmp_path):
    table = tmp_path / "mounts"
    table.write_text("/dev/sda1 / ext4 rw 0 0\n"
                     "host:/a\\040b /mnt/with\\040space nfs4 rw,vers=4.1 0 0\n")
    assert read_mount_table(str(table))[1] == MountEntry("host:/a b", "/mnt/with space",
                                                         "nfs4")
    assert read_mount_table()                           # this machine's table parses


# -- the store on the mount -----------------------------------------------------------
def make_conf(tmp_path, **overrides):
    conf = cfg.ConfigOpts()
    for module in (service_conf, backup_conf, nfs_conf):
        module.register_opts(conf)
    conf([], default_config_files=[], default_config_dirs=[])
    conf.set_override("state_path", str(tmp_path))
    conf.set_override("backup_share", SHARE)
    for key, value in overrides.items():
        conf.set_override(key, value)
    return conf


def test_kernel_store_from_conf(tmp_path):
    kernel = FakeKernel()
    conf = make_conf(tmp_path, backup_mount_options="vers=3")
    store = KernelNfsStore.from_conf(conf, runner=kernel.run,
                                     mount_table=lambda: list(kernel.table),
                                     sleep=kernel.sleeps.append)
    assert isinstance(store, ObjectStore)
    assert store.mount_point == mount_point_for(str(tmp_path / "backup_mount"), SHARE)
    assert kernel.mounts() == [["mount", "-t", "nfs", "-o", "vers=3", SHARE,
                                store.mount_point]]
    # Posix semantics on the mount point, posix layout and naming.
    store.ensure_container("ab/cd/abcd")
    store.put("ab/cd/abcd", "obj", b"data")
    assert store.get("ab/cd/abcd", "obj") == b"data"
    assert store.list("ab/cd/abcd", "o") == ["obj"]
    path = os.path.join(store.mount_point, "ab/cd/abcd/obj")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o660
    assert store.default_container("abcdef") == "ab/cd/abcdef"
    store.delete("ab/cd/abcd", "obj")
    assert store.list("ab/cd/abcd", "") == []


def test_kernel_store_refuses_to_write_once_unmounted(tmp_path):
    kernel = FakeKernel()
    conf = make_conf(tmp_path)
    store = KernelNfsStore.from_conf(conf, runner=kernel.run,
                                     mount_table=lambda: list(kernel.table))
    store.ensure_container("c")
    kernel.table = kernel.table[:1]                     # unmounted behind our back
    with pytest.raises(NfsMountError, match="no longer mounted"):
        store.put("c", "obj", b"x")
    assert os.listdir(os.path.join(store.mount_point, "c")) == []
    store.ensure_container("c")                         # a new backup mounts again
    assert len(kernel.mounts()) == 2
    store.put("c", "obj", b"x")


def test_from_conf_validates_the_share(tmp_path):
    conf = make_conf(tmp_path)
    conf.clear_override("backup_share")
    with pytest.raises(NfsConfigError, match="backup_share is not set"):
        from_conf(conf)
    conf.set_override("backup_nfs_client", "userspace")
    with pytest.raises(NfsConfigError, match="backup_share is not set"):
        from_conf(conf)


def test_options_defaults(tmp_path):
    conf = make_conf(tmp_path)
    assert conf.backup_mount_point_base == str(tmp_path / "backup_mount")
    assert conf.backup_mount_attempts == 3
    assert conf.backup_mount_options is None
    assert conf.backup_nfs_client == "kernel"
    names = {o.name for o in nfs_conf.opts}
    assert {"backup_share", "backup_mount_options", "backup_mount_point_base",
            "backup_mount_attempts"} <= names


# -- userspace client options -----------------------------------------------------------
@pytest.mark.parametrize("options,expected", [
    (None, ClientOptions(("4.1", "4.0", "3"))),
    ("", ClientOptions(("4.1", "4.0", "3"))),
    ("vers=3,port=2049,mountport=20048", ClientOptions(("3",), 2049, 20048)),
    ("nfsvers=4,minorversion=0", ClientOptions(("4.0",))),
    ("vers=4", ClientOptions(("4.1", "4.0"))),
    ("vers=4.1,noresvport,hard,timeo=600,rsize=1048576", ClientOptions(("4.1",),
                                                                        noresvport=True)),
    ("resvport,port=0,sec=sys", ClientOptions(noresvport=False)),
])
def test_client_options(options, expected):
    assert client_options(options) == expected


@pytest.mark.parametrize("options,message", [
    ("vers=4.2", "not supported"),
    ("vers=2", "not supported"),
    ("sec=krb5", "AUTH_SYS"),
    ("port=nfs", "not a port"),
    ("port=70000", "not a port"),
])
def test_client_options_rejects(options, message):
    with pytest.raises(NfsConfigError, match=message):
        client_options(options)


def test_share_url():
    assert share_url(parse_share("host:/srv/a b")) == "nfs://host/srv/a%20b"
    assert share_url(parse_share("[2001:db8::1]:/x")) == "nfs://[2001:db8::1]/x"
