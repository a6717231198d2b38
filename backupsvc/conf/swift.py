"""Options of the Swift backup repository (Cinder's names and defaults)."""

from keystoneauth1 import loading as ks_loading
from oslo_config import cfg

SERVICE_USER_GROUP = "service_user"

opts = [
    cfg.StrOpt("backup_swift_url",
               help="The URL of the Swift endpoint, up to the account prefix "
                    "(e.g. http://swift:8080/v1/AUTH_); per_user auth appends the "
                    "project id. Unset: taken from the user's service catalog."),
    cfg.StrOpt("backup_swift_auth_url",
               help="The URL of the authentication endpoint for single_user auth "
                    "(tempauth's /auth/v1.0 or Keystone's /v3). Unset: taken from "
                    "the service catalog (keystone_catalog_info)."),
    cfg.StrOpt("swift_catalog_info", default="object-store:swift:publicURL",
               help="Info to match when looking for Swift in the service catalog: "
                    "<service_type>:<service_name>:<endpoint_type>. Only used when "
                    "backup_swift_url is unset."),
    cfg.StrOpt("keystone_catalog_info", default="identity:Identity Service:publicURL",
               help="Info to match when looking for Keystone in the service catalog: "
                    "<service_type>:<service_name>:<endpoint_type>. Only used when "
                    "backup_swift_auth_url is unset."),
    cfg.StrOpt("backup_swift_auth", default="per_user",
               choices=["per_user", "single_user"],
               help="per_user: use the requesting user's token and project; "
                    "single_user: the service's own Swift account (backup_swift_user)."),
    cfg.StrOpt("backup_swift_auth_version", default="1",
               help="Swift authentication version for single_user auth: 1 (tempauth "
                    "style, user 'account:user') or 3 (Keystone v3 through a "
                    "keystoneauth1 session)."),
    cfg.StrOpt("backup_swift_tenant",
               help="Swift tenant/account name (single_user). With auth version 1 "
                    "it is the account part of 'account:user' when backup_swift_user "
                    "has no colon; with 3 the project when backup_swift_project is "
                    "unset."),
    cfg.StrOpt("backup_swift_user_domain",
               help="Swift user domain name (Keystone v3, single_user)."),
    cfg.StrOpt("backup_swift_project_domain",
               help="Swift project domain name (Keystone v3, single_user)."),
    cfg.StrOpt("backup_swift_project",
               help="Swift project name (Keystone v3, single_user)."),
    cfg.StrOpt("backup_swift_user",
               help="Swift user name (single_user)."),
    cfg.StrOpt("backup_swift_key", secret=True,
               help="Swift key (password) for authentication (single_user)."),
    cfg.StrOpt("backup_swift_application_credential_id",
               help="backupsvc extension, not a Cinder option: Keystone v3 "
                    "application credential id used instead of user and key "
                    "(single_user, auth version 3)."),
    cfg.StrOpt("backup_swift_application_credential_secret", secret=True,
               help="backupsvc extension: the application credential's secret."),
    cfg.StrOpt("backup_swift_container", default="volumebackups",
               help="The default Swift container to use."),
    cfg.StrOpt("backup_swift_create_storage_policy",
               help="Storage policy (X-Storage-Policy) of containers created for "
                    "backups. Unset: Swift's default policy."),
    cfg.IntOpt("backup_swift_object_size", default=52428800,
               help="The size in bytes of Swift backup objects. Must be a multiple "
                    "of backup_swift_block_size."),
    cfg.IntOpt("backup_swift_block_size", default=32768,
               help="The size in bytes that changes are tracked for incremental "
                    "backups. backup_swift_object_size has to be a multiple of it."),
    cfg.IntOpt("backup_swift_retry_attempts", default=3, min=0,
               help="The number of retries to make for Swift operations."),
    cfg.IntOpt("backup_swift_retry_backoff", default=2, min=0,
               help="The backoff time in seconds between Swift retries; it doubles "
                    "after each retry."),
    cfg.StrOpt("backup_swift_ca_cert_file",
               help="Location of the CA certificate file to use for Swift (and "
                    "Keystone) client requests."),
    cfg.BoolOpt("backup_swift_auth_insecure", default=False,
                help="Bypass verification of server certificates when talking to "
                     "Swift (and Keystone)."),
    cfg.BoolOpt("backup_swift_enable_progress_timer", default=True,
                help="Send periodic progress notifications while backing up to "
                     "Swift."),
    cfg.StrOpt("backup_swift_region_name",
               help="Region of the Swift endpoint to pick from the service catalog."),
    cfg.BoolOpt("backup_swift_service_auth", default=False,
                help="With per_user auth, send the service user's token (X-Service-"
                     "Token, from the [service_user] section, which must also set "
                     "send_service_user_token = True) with the user's, so that a "
                     "Swift that honours service tokens accepts a user token that "
                     "expires during a long backup."),
]

# Cinder's [service_user] section: the service user's Keystone credentials
# (keystoneauth's auth_type, auth_url, username, password...).
service_user_opts = [
    cfg.BoolOpt("send_service_user_token", default=False,
                help="Send the service user's token with requests made on behalf "
                     "of users (see backup_swift_service_auth)."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts)
    conf.register_opts(service_user_opts, group=SERVICE_USER_GROUP)
    ks_loading.register_auth_conf_options(conf, SERVICE_USER_GROUP)
    ks_loading.register_session_conf_options(conf, SERVICE_USER_GROUP)


def list_service_user_opts() -> list:
    """The [service_user] options for the sample config (password auth shown)."""
    return (service_user_opts + ks_loading.get_session_conf_options()
            + ks_loading.get_auth_common_conf_options()
            + ks_loading.get_auth_plugin_conf_options("password"))
