/*
 * _backupsvc_blocks: the SHA-256 of each block of a buffer, in one call, and the
 * engine's other bulk byte work with the interpreter lock released.
 *
 * The engine hashes every 32 KiB block it backs up or restores. hashlib
 * releases the interpreter lock for each block and must take it back after
 * ~20 us of hashing; with the engine's other threads running Python, the
 * hashing thread then often waits for the lock longer than it hashed. Here a
 * whole piece (thousands of blocks) is scanned and hashed with the lock
 * released once. backupsvc.chunking.blocks uses this module when it was
 * built and falls back to hashlib otherwise, with the same results.
 *
 *   sha256_digests(buffer, start, end, block_size) -> bytes
 *
 * The 32-byte SHA-256 of each block of buffer[start:end] (the last may be
 * short), one after the other. A block of zeros is recognised with a memcmp
 * and is not hashed: it gets the digest of that many zero bytes, hashed once
 * per call (and length). Where the CPU has the SHA extensions, the other
 * blocks are hashed two at a time (sha256x2.c), else one at a time by OpenSSL.
 *
 *   two_stream_hashing([on]) -> bool
 *
 * Whether sha256_digests hashes two blocks at once; on=False turns it off
 * (tests and measurements compare both).
 *
 *   differing_blocks(a, b) -> list[int]
 *
 * The indices of the 32-byte records at which two digest strings differ
 * (records beyond the shorter one included): what an incremental backup
 * stores.
 *
 *   read_ranges(fd, offset, length, ranges) -> bytearray
 *
 * ``length`` bytes of the file from ``offset``: the byte ranges ``ranges``
 * (a list of ordered, disjoint (start, end) pairs relative to ``offset``) are
 * read with pread and every other byte is zero (they lie in holes). Zeroing
 * and reading run with the lock released once; Python's bytearray(length)
 * zeroes all of it holding the lock. The end of the file inside a range
 * raises EOFError(file offset); a failed read raises OSError.
 *
 *   zero_pages(buffer, start, end, page) -> list[tuple[int, int]]
 *
 * The (start, end) runs of pages of buffer[start:end] that are all zeros
 * (pages of ``page`` bytes from ``start``; the last may be short), merged:
 * what a restore onto a zeroed volume need not write. It holds the lock: a
 * page of data is recognised by its first bytes, so the scan of a frame
 * takes microseconds, less than taking the lock back would.
 *
 *   concat(parts) -> bytes
 *   copy_into(destination, offset, source) -> None
 *
 * b"".join(parts) and destination[offset:offset + len(source)] = source,
 * with the lock released while the bytes are copied (Python holds it for
 * buffers other than bytes). The engine copies every stored byte once into
 * its frames and once into the aligned buffers of direct writes; holding
 * the lock, those copies stall the threads that hash and compress. The
 * buffers are the engine's own: no other thread changes them meanwhile.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <openssl/sha.h>

#include "sha256x2.h"

/* Whether sha256x2() runs here (set when the module loads). */
static int two_streams;

static int
is_zero(const unsigned char *p, size_t n)
{
    /* p[0] is zero and every byte equals the one before it. */
    return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

static PyObject *
sha256_digests(PyObject *module, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t start, end, block;
    if (!PyArg_ParseTuple(args, "y*nnn:sha256_digests", &buf, &start, &end, &block))
        return NULL;
    if (block <= 0 || start < 0 || end < start || end > buf.len) {
        PyErr_Format(PyExc_ValueError,
                     "blocks of %zd bytes from %zd to %zd do not fit a %zd-byte buffer",
                     block, start, end, buf.len);
        PyBuffer_Release(&buf);
        return NULL;
    }
    Py_ssize_t count = (end - start + block - 1) / block;
    PyObject *result = PyBytes_FromStringAndSize(NULL, count * SHA256_DIGEST_LENGTH);
    if (result == NULL) {
        PyBuffer_Release(&buf);
        return NULL;
    }
    unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
    const unsigned char *data = buf.buf;

    Py_BEGIN_ALLOW_THREADS
    unsigned char zero_digest[SHA256_DIGEST_LENGTH];
    size_t zero_length = 0;         /* the length zero_digest is for; 0: none yet */
    Py_ssize_t waiting = -1;        /* a block whose hashing waits for a second one */
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t offset = start + i * block;
        size_t length = (size_t)(end - offset < block ? end - offset : block);
        unsigned char *digest = out + i * SHA256_DIGEST_LENGTH;
        if (!is_zero(data + offset, length)) {
            if (!two_streams) {
                SHA256(data + offset, length, digest);
            } else if (waiting < 0) {
                waiting = i;
            } else if (length == (size_t)block) {   /* (the waiting block is whole) */
                sha256x2(data + start + waiting * block, data + offset, length,
                         out + waiting * SHA256_DIGEST_LENGTH, digest);
                waiting = -1;
            } else {
                SHA256(data + offset, length, digest);
            }
            continue;
        }
        if (zero_length != length) {
            /* Zeros of this length: hash them once (the buffer holds them). */
            SHA256(data + offset, length, zero_digest);
            zero_length = length;
        }
        memcpy(digest, zero_digest, SHA256_DIGEST_LENGTH);
    }
    if (waiting >= 0) {
        Py_ssize_t offset = start + waiting * block;
        size_t length = (size_t)(end - offset < block ? end - offset : block);
        SHA256(data + offset, length, out + waiting * SHA256_DIGEST_LENGTH);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);
    return result;
}

static PyObject *
differing_blocks(PyObject *module, PyObject *args)
{
    Py_buffer a, b;
    if (!PyArg_ParseTuple(args, "y*y*:differing_blocks", &a, &b))
        return NULL;
    PyObject *result = PyList_New(0);
    Py_ssize_t common = (a.len < b.len ? a.len : b.len) / SHA256_DIGEST_LENGTH;
    Py_ssize_t total = (a.len > b.len ? a.len : b.len) / SHA256_DIGEST_LENGTH;
    const unsigned char *pa = a.buf, *pb = b.buf;
    for (Py_ssize_t i = 0; result != NULL && i < total; i++) {
        if (i < common && memcmp(pa + i * SHA256_DIGEST_LENGTH, pb + i * SHA256_DIGEST_LENGTH,
                                 SHA256_DIGEST_LENGTH) == 0)
            continue;
        PyObject *index = PyLong_FromSsize_t(i);
        if (index == NULL || PyList_Append(result, index) < 0)
            Py_CLEAR(result);
        Py_XDECREF(index);
    }
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return result;
}

typedef struct {
    Py_ssize_t start, end;
} range_t;

/* The (start, end) pairs of ``list``, checked; NULL with an exception set. */
static range_t *
parse_ranges(PyObject *list, Py_ssize_t length)
{
    Py_ssize_t n = PyList_GET_SIZE(list);
    range_t *ranges = PyMem_New(range_t, n ? n : 1);
    if (ranges == NULL)
        return (range_t *)PyErr_NoMemory();
    Py_ssize_t previous = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyArg_ParseTuple(PyList_GET_ITEM(list, i), "nn:read_ranges",
                              &ranges[i].start, &ranges[i].end)
                || ranges[i].start < previous || ranges[i].end < ranges[i].start
                || ranges[i].end > length) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError,
                             "ranges must be ordered, disjoint and within %zd bytes", length);
            PyMem_Free(ranges);
            return NULL;
        }
        previous = ranges[i].end;
    }
    return ranges;
}

static PyObject *
zero_pages(PyObject *module, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t start, end, page;
    if (!PyArg_ParseTuple(args, "y*nnn:zero_pages", &buf, &start, &end, &page))
        return NULL;
    if (page <= 0 || start < 0 || end < start || end > buf.len) {
        PyErr_Format(PyExc_ValueError,
                     "pages of %zd bytes from %zd to %zd do not fit a %zd-byte buffer",
                     page, start, end, buf.len);
        PyBuffer_Release(&buf);
        return NULL;
    }
    PyObject *result = PyList_New(0);
    const unsigned char *data = buf.buf;
    Py_ssize_t run_start = -1;          /* the zero run being extended, if any */
    for (Py_ssize_t off = start; result != NULL && off < end + page; off += page) {
        /* (One step past the last page, which ends the run open there.) */
        int zero = off < end && is_zero(data + off, (size_t)(end - off < page ? end - off
                                                                            : page));
        if (zero && run_start < 0)
            run_start = off;
        if (zero || run_start < 0)
            continue;
        PyObject *run = Py_BuildValue("(nn)", run_start, off < end ? off : end);
        if (run == NULL || PyList_Append(result, run) < 0)
            Py_CLEAR(result);
        Py_XDECREF(run);
        run_start = -1;
    }
    PyBuffer_Release(&buf);
    return result;
}

static PyObject *
read_ranges(PyObject *module, PyObject *args)
{
    int fd;
    long long offset;
    Py_ssize_t length;
    PyObject *list;
    if (!PyArg_ParseTuple(args, "iLnO!:read_ranges", &fd, &offset, &length,
                          &PyList_Type, &list))
        return NULL;
    if (offset < 0 || length < 0) {
        PyErr_SetString(PyExc_ValueError, "offset and length must not be negative");
        return NULL;
    }
    range_t *ranges = parse_ranges(list, length);
    if (ranges == NULL)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(list);
    /* Not initialised here: every byte is zeroed or read below. */
    PyObject *result = PyByteArray_FromStringAndSize(NULL, length);
    if (result == NULL) {
        PyMem_Free(ranges);
        return NULL;
    }
    char *out = PyByteArray_AS_STRING(result);
    int error = 0;
    long long eof_at = -1;
    Py_BEGIN_ALLOW_THREADS
    Py_ssize_t pos = 0;             /* bytes before this are zeroed or read */
    for (Py_ssize_t i = 0; i <= n && !error && eof_at < 0; i++) {
        Py_ssize_t start = i < n ? ranges[i].start : length;
        Py_ssize_t end = i < n ? ranges[i].end : length;
        memset(out + pos, 0, (size_t)(start - pos));
        Py_ssize_t at = start;
        while (at < end) {
            ssize_t got = pread(fd, out + at, (size_t)(end - at), (off_t)(offset + at));
            if (got < 0 && errno == EINTR)
                continue;
            if (got < 0) {
                error = errno;
                break;
            }
            if (got == 0) {
                eof_at = offset + at;
                break;
            }
            at += got;
        }
        pos = end;
    }
    Py_END_ALLOW_THREADS
    PyMem_Free(ranges);
    if (error) {
        Py_DECREF(result);
        errno = error;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (eof_at >= 0) {
        Py_DECREF(result);
        PyObject *where = PyLong_FromLongLong(eof_at);
        if (where != NULL) {
            PyErr_SetObject(PyExc_EOFError, where);
            Py_DECREF(where);
        }
        return NULL;
    }
    return result;
}

static PyObject *
concat(PyObject *module, PyObject *arg)
{
    PyObject *seq = PySequence_Fast(arg, "concat takes a sequence of buffers");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    Py_buffer *views = PyMem_New(Py_buffer, n ? n : 1);
    if (views == NULL) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    Py_ssize_t got = 0, total = 0;
    PyObject *result = NULL;
    for (; got < n; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, got), &views[got],
                               PyBUF_SIMPLE) < 0)
            goto done;
        if (views[got].len > PY_SSIZE_T_MAX - total) {
            PyBuffer_Release(&views[got]);
            PyErr_NoMemory();
            goto done;
        }
        total += views[got].len;
    }
    result = PyBytes_FromStringAndSize(NULL, total);
    if (result == NULL)
        goto done;
    char *out = PyBytes_AS_STRING(result);
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        memcpy(out, views[i].buf, (size_t)views[i].len);
        out += views[i].len;
    }
    Py_END_ALLOW_THREADS
done:
    for (Py_ssize_t i = 0; i < got; i++)
        PyBuffer_Release(&views[i]);
    PyMem_Free(views);
    Py_DECREF(seq);
    return result;
}

static PyObject *
copy_into(PyObject *module, PyObject *args)
{
    Py_buffer dest, src;
    Py_ssize_t offset;
    if (!PyArg_ParseTuple(args, "w*ny*:copy_into", &dest, &offset, &src))
        return NULL;
    if (offset < 0 || offset > dest.len || src.len > dest.len - offset) {
        PyErr_Format(PyExc_ValueError, "%zd bytes at %zd do not fit a %zd-byte buffer",
                     src.len, offset, dest.len);
        PyBuffer_Release(&dest);
        PyBuffer_Release(&src);
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    memcpy((char *)dest.buf + offset, src.buf, (size_t)src.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&dest);
    PyBuffer_Release(&src);
    Py_RETURN_NONE;
}

static PyObject *
two_stream_hashing(PyObject *module, PyObject *args)
{
    int wanted = -1;
    if (!PyArg_ParseTuple(args, "|p:two_stream_hashing", &wanted))
        return NULL;
    if (wanted == 1 && !sha256x2_available()) {
        PyErr_SetString(PyExc_ValueError, "this CPU has no SHA extensions");
        return NULL;
    }
    if (wanted >= 0)
        two_streams = wanted;
    return PyBool_FromLong(two_streams);
}

static PyMethodDef methods[] = {
    {"sha256_digests", sha256_digests, METH_VARARGS,
     "sha256_digests(buffer, start, end, block_size) -> the 32-byte SHA-256 of each block "
     "of buffer[start:end], concatenated; one release of the GIL."},
    {"differing_blocks", differing_blocks, METH_VARARGS,
     "differing_blocks(a, b) -> indices of the 32-byte records where a and b differ."},
    {"read_ranges", read_ranges, METH_VARARGS,
     "read_ranges(fd, offset, length, ranges) -> bytearray of length bytes from offset: "
     "the (start, end) ranges read, the rest zeros; one release of the GIL."},
    {"zero_pages", zero_pages, METH_VARARGS,
     "zero_pages(buffer, start, end, page) -> the merged (start, end) runs of the pages of "
     "buffer[start:end] that are all zeros."},
    {"concat", concat, METH_O,
     "concat(parts) -> b''.join(parts), copied with the GIL released."},
    {"copy_into", copy_into, METH_VARARGS,
     "copy_into(destination, offset, source): destination[offset:offset + len(source)] = "
     "source, copied with the GIL released."},
    {"two_stream_hashing", two_stream_hashing, METH_VARARGS,
     "two_stream_hashing([on]) -> whether sha256_digests hashes two blocks at once with "
     "the CPU's SHA extensions (on by default where the CPU has them); on=False turns "
     "it off, to compare."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_backupsvc_blocks",
    "Block hashing for backupsvc's engine (see native/blocks.c).", -1, methods,
};

PyMODINIT_FUNC
PyInit__backupsvc_blocks(void)
{
    two_streams = sha256x2_available();
    return PyModule_Create(&module);
}
