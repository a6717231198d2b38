/*
 * _backupsvc_blocks: the SHA-256 of each block of a buffer, in one call.
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
 * per call (and length).
 *
 *   differing_blocks(a, b) -> list[int]
 *
 * The indices of the 32-byte records at which two digest strings differ
 * (records beyond the shorter one included): what an incremental backup
 * stores.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <string.h>
#include <openssl/sha.h>

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
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t offset = start + i * block;
        size_t length = (size_t)(end - offset < block ? end - offset : block);
        unsigned char *digest = out + i * SHA256_DIGEST_LENGTH;
        if (!is_zero(data + offset, length)) {
            SHA256(data + offset, length, digest);
            continue;
        }
        if (zero_length != length) {
            /* Zeros of this length: hash them once (the buffer holds them). */
            SHA256(data + offset, length, zero_digest);
            zero_length = length;
        }
        memcpy(digest, zero_digest, SHA256_DIGEST_LENGTH);
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

static PyMethodDef methods[] = {
    {"sha256_digests", sha256_digests, METH_VARARGS,
     "sha256_digests(buffer, start, end, block_size) -> the 32-byte SHA-256 of each block "
     "of buffer[start:end], concatenated; one release of the GIL."},
    {"differing_blocks", differing_blocks, METH_VARARGS,
     "differing_blocks(a, b) -> indices of the 32-byte records where a and b differ."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_backupsvc_blocks",
    "Block hashing for backupsvc's engine (see native/blocks.c).", -1, methods,
};

PyMODINIT_FUNC
PyInit__backupsvc_blocks(void)
{
    return PyModule_Create(&module);
}
