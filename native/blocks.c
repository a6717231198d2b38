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
 *   sha256_blocks(buffer, start, end, block_size) -> list[str | None]
 *
 * One item per block of buffer[start:end] (the last may be short): the hex
 * SHA-256 of the block, or None for a block of zeros (the caller knows the
 * digest of n zero bytes; zeros are recognised with a memcmp, not hashed).
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
hex_digest(const unsigned char *digest)
{
    static const char digits[] = "0123456789abcdef";
    PyObject *text = PyUnicode_New(2 * SHA256_DIGEST_LENGTH, 127);
    if (text == NULL)
        return NULL;
    Py_UCS1 *out = PyUnicode_1BYTE_DATA(text);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++) {
        out[2 * i] = digits[digest[i] >> 4];
        out[2 * i + 1] = digits[digest[i] & 15];
    }
    return text;
}

static PyObject *
sha256_blocks(PyObject *module, PyObject *args)
{
    Py_buffer buf;
    Py_ssize_t start, end, block;
    if (!PyArg_ParseTuple(args, "y*nnn:sha256_blocks", &buf, &start, &end, &block))
        return NULL;
    if (block <= 0 || start < 0 || end < start || end > buf.len) {
        PyErr_Format(PyExc_ValueError,
                     "blocks of %zd bytes from %zd to %zd do not fit a %zd-byte buffer",
                     block, start, end, buf.len);
        PyBuffer_Release(&buf);
        return NULL;
    }
    Py_ssize_t count = (end - start + block - 1) / block;
    /* The digests, then one zero flag per block. */
    unsigned char *digests = PyMem_Malloc((size_t)count * (SHA256_DIGEST_LENGTH + 1) + 1);
    if (digests == NULL) {
        PyBuffer_Release(&buf);
        return PyErr_NoMemory();
    }
    unsigned char *zero = digests + (size_t)count * SHA256_DIGEST_LENGTH;
    const unsigned char *data = buf.buf;

    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        Py_ssize_t offset = start + i * block;
        size_t length = (size_t)(end - offset < block ? end - offset : block);
        zero[i] = (unsigned char)is_zero(data + offset, length);
        if (!zero[i])
            SHA256(data + offset, length, digests + i * SHA256_DIGEST_LENGTH);
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&buf);

    PyObject *result = PyList_New(count);
    for (Py_ssize_t i = 0; result != NULL && i < count; i++) {
        PyObject *item = Py_None;
        if (zero[i])
            Py_INCREF(item);
        else if ((item = hex_digest(digests + i * SHA256_DIGEST_LENGTH)) == NULL)
            Py_CLEAR(result);
        if (result != NULL)
            PyList_SET_ITEM(result, i, item);
    }
    PyMem_Free(digests);
    return result;
}

static PyMethodDef methods[] = {
    {"sha256_blocks", sha256_blocks, METH_VARARGS,
     "sha256_blocks(buffer, start, end, block_size) -> list of hex SHA-256 per block "
     "of buffer[start:end], None for a block of zeros; one release of the GIL."},
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
