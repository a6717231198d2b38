"""backupsvc: a volume backup service that speaks the Cinder v3 backup API."""

import sys

# Native threads only, so eventlet is never used; it is installed all the
# same (oslo.service requires it), and futurist imports it whenever it can,
# only to say it is deprecated: 20 MiB of memory and a quarter of a second of
# start-up in every process (the worker's idle size 93 -> 73 MiB). Unless
# something imported it before us, an import of it now raises ImportError,
# which futurist and oslo.utils take as "not installed".
if "eventlet" not in sys.modules:
    sys.modules["eventlet"] = None  # type: ignore[assignment]

from oslo_service import backend as _backend  # noqa: E402
from oslo_service.backend import exceptions as _backend_exceptions  # noqa: E402

# Native threads everywhere, never eventlet. This must happen before
# oslo.messaging is imported: importing it selects oslo.service's default
# (eventlet) backend if none was chosen yet. Tools that import us late (the
# config generator) may already have chosen; our own commands check it.
try:
    _backend.init_backend(_backend.BackendType.THREADING)
except _backend_exceptions.BackendAlreadySelected:
    pass
