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


def main() -> None:
    CONF.register_cli_opt(cfg.SubCommandOpt("command", handler=add_command_parsers))
    cmd.prepare()
    from backupsvc.db import api as db_api

    db_api.configure()
    func = getattr(CONF.command, "func", None)
    if func is None:
        sys.exit("usage: backupsvc-manage [--config-file FILE] {db sync|db version|"
                 "service list}")
    func()
