"""Exceptions raised by the chunking engine."""


class Cancelled(Exception):
    """The operation was cancelled; everything this run wrote has been removed."""


class IntegrityError(Exception):
    """Stored data does not match what the backup records say (or is missing)."""


class FormatError(IntegrityError):
    """A metadata or sha256 file is malformed or of an unsupported version."""
