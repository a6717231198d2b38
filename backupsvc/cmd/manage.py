"""backupsvc-manage: database and service administration."""

import sys

from oslo_config import cfg

from backupsvc import cmd

CONF = cfg.CONF


def db_sync() -> None:
    from backupsvc.db import migration

    migration.upgrade(CONF.command.version or "head")
    print("Database is at version %s" % migration.current_version())


def db_version() -> None:
    from backupsvc.db import migration

    print(migration.current_version() or "None")


def service_list() -> None:
    from backupsvc.context import get_admin_context
    from backupsvc.db import api as db

    print("%-32s %-20s %-8s %-6s %s" % ("Host", "Binary", "Zone", "State", "Last heartbeat"))
    for svc in db.service_get_all(get_admin_context()):
        state = "up" if db.service_is_up(svc, CONF.service_down_time) else "down"
        print("%-32s %-20s %-8s %-6s %s" % (svc.host, svc.binary, svc.availability_zone,
                                            state, svc.heartbeat_at))


def backup_verify() -> None:
    """Check that backups restore, reading them as a restore would (nothing written)."""
    from backupsvc import exception
    from backupsvc.context import get_admin_context
    from backupsvc.worker import verify

    ctx = get_admin_context()
    ids = list(CONF.command.backup_ids)
    if CONF.command.all:
        ids += verify.available_backups(ctx)
    if not ids:
        sys.exit("backupsvc-manage backup verify: name backup ids, or --all")
    failed = 0
    for backup_id in ids:
        try:
            found = verify.verify_backup(ctx, backup_id)
        except exception.BackupNotFound:
            print("%s: FAILED: no such backup" % backup_id)
            failed += 1
            continue
        if found.skipped:
            print("%s: skipped: %s" % (backup_id, found.error))
        elif found.ok:
            print("%s: OK: %d bytes restored (%d of data, from %d objects; a chain of %d)"
                  % (backup_id, found.size, found.data_bytes, found.objects_read,
                     found.chain))
        else:
            print("%s: FAILED: %s" % (backup_id, found.error))
            failed += 1
    if failed:
        sys.exit(1)


def add_command_parsers(subparsers) -> None:
    db_parser = subparsers.add_parser("db", help="database schema")
    db_sub = db_parser.add_subparsers(dest="action")
    sync = db_sub.add_parser("sync", help="create or upgrade the schema")
    sync.add_argument("version", nargs="?", default=None)
    sync.set_defaults(func=db_sync)
    db_sub.add_parser("version", help="print the schema version").set_defaults(
        func=db_version)
    svc_parser = subparsers.add_parser("service", help="workers")
    svc_sub = svc_parser.add_subparsers(dest="action")
    svc_sub.add_parser("list", help="list workers and their heartbeats").set_defaults(
        func=service_list)
    backup_parser = subparsers.add_parser("backup", help="backups")
    backup_sub = backup_parser.add_subparsers(dest="action")
    verify = backup_sub.add_parser(
        "verify", help="check that backups restore: every object and block is read and "
                       "checked as a restore would, nothing is written")
    verify.add_argument("backup_ids", nargs="*", metavar="BACKUP_ID")
    verify.add_argument("--all", action="store_true", help="every available backup")
    verify.set_defaults(func=backup_verify)


def main() -> None:
    CONF.register_cli_opt(cfg.SubCommandOpt("command", handler=add_command_parsers))
    cmd.prepare()
    from backupsvc.db import api as db_api

    db_api.configure()
    func = getattr(CONF.command, "func", None)
    if func is None:
        sys.exit("usage: backupsvc-manage [--config-file FILE] {db sync|db version|"
                 "service list|backup verify}")
    func()
