"""The request context shared by the API, the use cases and the worker."""

from oslo_context import context as oslo_context
from oslo_db.sqlalchemy import enginefacade


@enginefacade.transaction_context_provider
class RequestContext(oslo_context.RequestContext):
    """A user's identity plus the DB transaction it runs in."""

    def __init__(self, *args, service_catalog: list | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # Carried to the worker: per_user Swift finds its endpoint here.
        self.service_catalog = service_catalog or []
        if self.is_admin is None or (not self.is_admin and "admin" in self.roles):
            self.is_admin = "admin" in self.roles

    def to_dict(self) -> dict:
        values = super().to_dict()
        values["service_catalog"] = self.service_catalog
        return values

    @classmethod
    def from_dict(cls, values: dict) -> "RequestContext":
        return super().from_dict(values, service_catalog=values.get("service_catalog"))

    def elevated(self) -> "RequestContext":
        ctx = self.from_dict(self.to_dict())
        ctx.is_admin = True
        if "admin" not in ctx.roles:
            ctx.roles = list(ctx.roles) + ["admin"]
        return ctx


def get_admin_context() -> RequestContext:
    return RequestContext(user_id=None, project_id=None, is_admin=True,
                          roles=["admin"], overwrite=False)
