"""backupsvc: a volume backup service that speaks the Cinder v3 backup API."""

from oslo_service import backend as _backend
from oslo_service.backend import exceptions as _backend_exceptions

# Native threads everywhere, never eventlet. This must happen before
# oslo.messaging is imported: importing it selects oslo.service's default
# (eventlet) backend if none was chosen yet. Tools that import us late (the
# config generator) may already have chosen; our own commands check it.
try:
    _backend.init_backend(_backend.BackendType.THREADING)
except _backend_exceptions.BackendAlreadySelected:
    pass
