"""``backupsvc-manage backup verify``: backups checked by reading them as a restore
would, on the real deployment (POSIX repository, MariaDB), nothing written."""

from __future__ import annotations

import random
import re

import pytest

from tests.functional import fixtures as fx
from tests.functional.fixtures import MiB

pytestmark = pytest.mark.functional


def data_objects(deployment, backup_id: str) -> list:
    return sorted((p for p in deployment.backup_path.rglob("*")
                   if p.is_file() and backup_id in p.name and re.search(r"-\d+\Z", p.name)),
                  key=lambda p: p.stat().st_size)


@pytest.fixture
def chain(deployment):
    """A volume with data, its full backup and an incremental; removed afterwards."""
    deployment.ensure_worker()
    api = fx.Api(deployment.base_url)
    volume = api.create_volume(size=1)
    path = fx.volume_file(deployment.volumes_dir, volume["id"])
    rng = random.Random(31)
    fx.write_at(path, 4 * MiB, rng.randbytes(12 * MiB))
    full = api.create_backup(volume["id"])
    fx.write_at(path, 100 * MiB, rng.randbytes(64 * 1024))
    incremental = api.create_backup(volume["id"], incremental=True)
    yield api, full, incremental
    for backup in (incremental, full):
        api.delete_backup(backup["id"])
    api.delete("volumes/%s" % volume["id"])


def test_intact_backups_verify(deployment, chain):
    _, full, incremental = chain
    out = deployment.manage("backup", "verify", full["id"], incremental["id"]).stdout
    assert re.search(r"^%s: OK: 1073741824 bytes restored \(12582912 of data, from \d+ "
                     r"objects; a chain of 1\)$" % full["id"], out, re.MULTILINE), out
    # The incremental's restore takes its changed block from it, the rest from the full.
    assert re.search(r"^%s: OK: 1073741824 bytes restored \(12648448 of data, from \d+ "
                     r"objects; a chain of 2\)$" % incremental["id"], out, re.MULTILINE), out


def test_a_flipped_byte_fails_verification_of_every_backup_that_needs_it(deployment,
                                                                         chain):
    api, full, incremental = chain
    victim = data_objects(deployment, full["id"])[-1]       # the largest: data, not edges
    stored = bytearray(victim.read_bytes())
    stored[len(stored) // 2] ^= 0x40
    victim.write_bytes(bytes(stored))
    result = deployment.manage("backup", "verify", full["id"], incremental["id"],
                               check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    for backup in (full, incremental):
        line = next(line for line in result.stdout.splitlines()
                    if line.startswith(backup["id"]))
        assert "FAILED: IntegrityError" in line and victim.name in line, result.stdout
    # --all names them too (and the exit status says something failed).
    every = deployment.manage("backup", "verify", "--all", check=False)
    assert every.returncode == 1
    assert "%s: FAILED" % full["id"] in every.stdout
    # Verification changed nothing: the backups are still available.
    assert api.backup(full["id"])["status"] == "available"


def test_unknown_and_unavailable_backups(deployment, chain):
    result = deployment.manage("backup", "verify", "no-such-backup", check=False)
    assert result.returncode == 1
    assert "no-such-backup: FAILED: no such backup" in result.stdout
    usage = deployment.manage("backup", "verify", check=False)
    assert usage.returncode != 0 and "--all" in usage.stderr
