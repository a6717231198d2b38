"""Pecan controllers: version discovery (root) and the v3 resources."""
