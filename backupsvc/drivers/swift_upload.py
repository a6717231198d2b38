"""Streaming PUTs to Swift: the request's thread, its bounded queue and its spool.

A streamed object's body goes to a PUT running in its own thread, fed
through a small bounded queue (:class:`Upload`). So that a stream that
breaks halfway can be sent again, as a buffered PUT would be, the thread
also copies the body into a :class:`Spool` (see :mod:`backupsvc.drivers.swift`).
"""

from __future__ import annotations

import hashlib
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from typing import IO

from oslo_log import log as logging
from requests.exceptions import RequestException
from swiftclient.exceptions import ClientException
from urllib3.exceptions import HTTPError as Urllib3Error

from backupsvc import directio
from backupsvc.drivers.base import StoreError

LOG = logging.getLogger(__name__)

MiB = 1024 * 1024
STREAM_QUEUE_BYTES = 4 * MiB   # bytes written but not yet sent, per streaming PUT


class Aborted(Exception):
    """Raised inside a streaming PUT's body so that the request never completes."""


def worth_retrying(exc: BaseException) -> bool:
    """Whether a failed PUT may succeed if sent again (what swiftclient retries)."""
    if isinstance(exc, ClientException):
        status = exc.http_status
        return status is not None and (status in (401, 408, 429, 498, 499)
                                       or 500 <= status <= 599)
    return isinstance(exc, (RequestException, Urllib3Error, OSError))


class Spool:
    """The body of a streamed PUT, kept for a replay in an unlinked temporary file.

    Written with O_DIRECT (:mod:`backupsvc.directio`): the file is read back
    only when a PUT failed, so its pages need not take page-cache memory
    (whose first touch costs more than the write on lazily backed VMs).
    """

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="backupsvc-swift-put-")
        self._writer: directio.DirectWriter | None = directio.DirectWriter(self._file.fileno())

    def append(self, chunk: bytes | memoryview) -> None:
        assert self._writer is not None
        self._writer.append(chunk)

    def body(self) -> IO[bytes]:
        """The whole body, from its start (no more appends)."""
        assert self._writer is not None
        self._writer.settle()
        self._file.seek(0)
        return self._file

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._file.close()


class Upload:
    """A chunked PUT running in its own thread, fed through a bounded queue.

    With a ``spool`` file, every byte of the body also goes there, in order;
    if the PUT fails with an error worth retrying, the thread goes on taking
    the body into the spool until the writer ends it, and :attr:`replayable`
    says the spool then holds the whole body.
    """

    def __init__(self, put: Callable[[Iterator[bytes]], str],
                 done: Callable[[bool], None], limit: int = STREAM_QUEUE_BYTES,
                 spool: Spool | None = None) -> None:
        self._cond = threading.Condition()
        self._chunks: deque[bytes | memoryview] = deque()
        self._queued, self._limit = 0, limit
        self._state = "open"                  # "closed": body complete; "aborted"
        self._finished = False
        self._spool = spool
        self.size = 0                         # bytes taken from the queue
        self.md5 = hashlib.md5(usedforsecurity=False)   # of the body taken
        self.etag: str | None = None
        self.error: BaseException | None = None
        self.replayable = False
        self.failed_at = 0                    # bytes taken when the PUT failed
        self._thread = threading.Thread(target=self._run, args=(put, done),
                                        name="swift-put", daemon=True)
        self._thread.start()

    def _take(self) -> bytes | memoryview | None:
        """The next chunk of the body (None: the body is complete)."""
        with self._cond:
            while not self._chunks and self._state == "open":
                self._cond.wait()
            if self._state == "aborted":
                raise Aborted("the writer was abandoned; the PUT is aborted")
            if not self._chunks:
                return None
            chunk = self._chunks.popleft()
            self._queued -= len(chunk)
            self._cond.notify_all()
        self.md5.update(chunk)
        self.size += len(chunk)
        if self._spool is not None:
            try:
                self._spool.append(chunk)
            except OSError as exc:
                # (TMPDIR full, say.) The upload itself is fine: it goes on, but a
                # failure of it can no longer be replayed.
                LOG.warning("Cannot keep the body of a streamed PUT for a retry (%s); "
                            "the upload goes on without one", exc)
                self._spool = None
        return chunk

    def _body(self) -> Iterator[bytes | memoryview]:
        while (chunk := self._take()) is not None:
            yield chunk

    def _run(self, put: Callable[[Iterator[bytes]], str], done: Callable[[bool], None]) -> None:
        try:
            self.etag = put(self._body())
        except BaseException as exc:  # handed to the writer's thread
            self.error = exc
        done(self.error is None)
        try:
            if self.error is not None and self._spool is not None \
                    and worth_retrying(self.error):
                self.failed_at = self.size
                while self._take() is not None:     # the rest of the body, for a replay
                    pass
                self.replayable = self._spool is not None   # (it may have failed meanwhile)
        except BaseException as exc:  # aborted, or the spool failed
            LOG.debug("The body of a failed PUT was not spooled: %s", exc)
        finally:
            with self._cond:
                self._finished = True
                self._cond.notify_all()

    def send(self, chunk: bytes | memoryview) -> None:
        with self._cond:
            while self._queued >= self._limit and not self._finished:
                self._cond.wait()
            if not self._finished:
                self._chunks.append(chunk)
                self._queued += len(chunk)
                self._cond.notify_all()
                return
        raise self.error or StoreError("the PUT ended before its body was complete")

    def _end(self, state: str) -> None:
        with self._cond:
            if self._state == "open":
                self._state = state
            self._cond.notify_all()
        self._thread.join()

    def finish(self) -> str:
        self._end("closed")
        if self.error is not None:
            raise self.error
        return self.etag or ""

    def abort(self) -> None:
        self._end("aborted")
