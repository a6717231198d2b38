from oslo_config import cfg

opts = [
    cfg.HostAddressOpt("osapi_volume_listen", default="0.0.0.0",
                       help="IP address on which the backup API listens."),
    cfg.PortOpt("osapi_volume_listen_port", default=8776,
                help="Port on which the backup API listens."),
    cfg.IntOpt("osapi_volume_workers", default=2, min=1,
               help="Number of API worker processes (gunicorn workers)."),
    cfg.IntOpt("osapi_volume_threads", default=8, min=1,
               help="Threads per API worker process."),
    cfg.StrOpt("auth_strategy", default="keystone", choices=["noauth", "keystone"],
               help="How requests are authenticated. 'noauth' trusts the "
                    "X-Auth-Token 'user:project' form and x-user-id / "
                    "x-project-id headers; use it only on trusted networks."),
    cfg.IntOpt("osapi_max_limit", default=1000,
               help="The maximum number of items a collection resource returns "
                    "in a single response."),
    cfg.IntOpt("osapi_max_request_body_size", default=114688,
               help="The maximum body size for each request, in bytes."),
    cfg.StrOpt("public_endpoint",
               help="Public URL used in links; default is the request's host URL."),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_opts(opts)
