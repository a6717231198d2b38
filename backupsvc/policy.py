"""oslo.policy rules with Cinder's names and defaults, declared in code.

Operators override them in policy.yaml; ``etc/policy.yaml.sample`` is
generated from these defaults.
"""

from oslo_config import cfg
from oslo_policy import policy

from backupsvc import exception

CONF = cfg.CONF

ADMIN_API = "is_admin:True or (role:admin and is_admin_project:True)"
ADMIN_OR_READER = "role:admin or (role:reader and project_id:%(project_id)s)"
ADMIN_OR_MEMBER = "role:admin or (role:member and project_id:%(project_id)s)"
# Keystone implies reader from member; noauth's X-Roles does not, so reads
# accept any project role and writes need member (or the legacy _member_).
PROJECT_READER = ("role:admin or ((role:reader or role:member or role:_member_) "
                  "and project_id:%(project_id)s)")
PROJECT_MEMBER = ("role:admin or ((role:member or role:_member_) "
                  "and project_id:%(project_id)s)")


def _rule(name, check, description, operations):
    return policy.DocumentedRuleDefault(
        name=name, check_str=check, description=description,
        operations=[{"method": m, "path": p} for m, p in operations])


RULES = [
    policy.RuleDefault("admin_api", ADMIN_API, "Admin-only API."),
    _rule("backup:get_all", PROJECT_READER, "List backups.",
          [("GET", "/backups"), ("GET", "/backups/detail")]),
    _rule("backup:get", PROJECT_READER, "Show a backup.", [("GET", "/backups/{backup_id}")]),
    _rule("backup:create", PROJECT_MEMBER, "Create a backup.", [("POST", "/backups")]),
    _rule("backup:update", PROJECT_MEMBER, "Update a backup.",
          [("PUT", "/backups/{backup_id}")]),
    _rule("backup:delete", PROJECT_MEMBER, "Delete a backup.",
          [("DELETE", "/backups/{backup_id}")]),
    _rule("backup:restore", PROJECT_MEMBER, "Restore a backup.",
          [("POST", "/backups/{backup_id}/restore")]),
    _rule("backup:export-import", "rule:admin_api", "Export a backup record.",
          [("GET", "/backups/{backup_id}/export_record")]),
    _rule("backup:backup-import", "rule:admin_api", "Import a backup record.",
          [("POST", "/backups/import_record")]),
    _rule("backup:backup_project_attribute", "rule:admin_api",
          "Show a backup's project and user ids.", [("GET", "/backups/{backup_id}")]),
    _rule("volume_extension:backup_admin_actions:reset_status", "rule:admin_api",
          "Reset a backup's status.", [("POST", "/backups/{backup_id}/action")]),
    _rule("volume_extension:backup_admin_actions:force_delete", "rule:admin_api",
          "Force-delete a backup (cancels a running backup).",
          [("POST", "/backups/{backup_id}/action")]),
    _rule("volume:create", PROJECT_MEMBER, "Create a volume.", [("POST", "/volumes")]),
    _rule("volume:get", PROJECT_READER, "Show a volume.", [("GET", "/volumes/{volume_id}")]),
    _rule("volume:get_all", PROJECT_READER, "List volumes.", [("GET", "/volumes")]),
    _rule("volume:update", PROJECT_MEMBER, "Update a volume.",
          [("PUT", "/volumes/{volume_id}")]),
    _rule("volume:delete", PROJECT_MEMBER, "Delete a volume.",
          [("DELETE", "/volumes/{volume_id}")]),
    _rule("volume_extension:volume_actions:attach", PROJECT_MEMBER, "Attach a volume.",
          [("POST", "/volumes/{volume_id}/action")]),
    _rule("volume_extension:volume_actions:detach", PROJECT_MEMBER, "Detach a volume.",
          [("POST", "/volumes/{volume_id}/action")]),
    _rule("volume_extension:volume_admin_actions:reset_status", "rule:admin_api",
          "Reset a volume's status.", [("POST", "/volumes/{volume_id}/action")]),
    _rule("volume_extension:volume_manage", "rule:admin_api",
          "Adopt an existing file or block device as a volume.",
          [("POST", "/os-volume-manage")]),
    _rule("volume:create_snapshot", PROJECT_MEMBER, "Create a snapshot.",
          [("POST", "/snapshots")]),
    _rule("volume:get_snapshot", PROJECT_READER, "Show a snapshot.",
          [("GET", "/snapshots/{snapshot_id}")]),
    _rule("volume:get_all_snapshots", PROJECT_READER, "List snapshots.",
          [("GET", "/snapshots")]),
    _rule("volume:delete_snapshot", PROJECT_MEMBER, "Delete a snapshot.",
          [("DELETE", "/snapshots/{snapshot_id}")]),
]

_ENFORCER: policy.Enforcer | None = None


def list_rules():
    return RULES


def get_enforcer() -> policy.Enforcer:
    global _ENFORCER
    if _ENFORCER is None:
        _ENFORCER = policy.Enforcer(CONF)
        _ENFORCER.register_defaults(RULES)
    return _ENFORCER


def authorize(context, action: str, target: dict | None = None) -> None:
    """Raise PolicyNotAuthorized (403) unless the context may do ``action``."""
    if target is None:
        target = {"project_id": context.project_id, "user_id": context.user_id}
    credentials = context.to_policy_values()
    credentials["is_admin"] = bool(context.is_admin)
    if not get_enforcer().authorize(action, target, credentials, do_raise=False):
        raise exception.PolicyNotAuthorized(action=action)


def check(context, action: str, target: dict | None = None) -> bool:
    try:
        authorize(context, action, target)
    except exception.PolicyNotAuthorized:
        return False
    return True
