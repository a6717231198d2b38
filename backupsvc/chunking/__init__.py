"""Chunked, deduplicated, compressed volume backups in Cinder's on-store format.

The public API lives in :mod:`backupsvc.chunking.engine`.
"""
