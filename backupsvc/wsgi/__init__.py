"""WSGI entry points for servers that import an application (uWSGI, mod_wsgi)."""
