/* Batched HMAC-SHA256, keyed BLAKE2b, framed SHA-256 and AES-256-GCM sealing over
 * OpenSSL's libcrypto,
 * CRC-32s of the pieces of a text, and the row texts of the subject-bucket layout
 * (decimal id, fixed middle, upper-case hex of a blob): the inner loops of vault._aead
 * without a Python call per message, and without the GIL while they run.
 *
 * Private to vault._aead, which falls back to its pure-Python loops (the same bytes: the
 * tests compare the two, and check both against published test vectors and against
 * pyca/cryptography) when this module was not built. Nothing here chooses a key, a
 * nonce or a format: keys and nonces come from the caller (os.urandom), associated
 * data is vault._aead's length-prefixed encoding, built here only for the one shape the
 * recipes use (a fixed head, decimal integer parts, a fixed tail).
 *
 * Inputs are pinned before the GIL is released: every message is a bytes object whose
 * reference this module holds, and outputs are fresh bytes objects nobody else sees
 * until the function returns.
 */
#define PY_SSIZE_T_CLEAN
/* The low-level SHA-256 calls are deprecated in OpenSSL 3 but remain its fastest HMAC
 * path for many short messages: a keyed state is a plain struct, copied per message. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>

#include <stdint.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/sha.h>

#define KEY_BYTES 32
#define NONCE_BYTES 12
#define TAG_BYTES 16
#define SHA_BLOCK 64

/* The messages of a sequence, pinned: items[i] is a new reference (or NULL for None). */
typedef struct {
    Py_ssize_t n;
    PyObject **items;
    const unsigned char **data;
    Py_ssize_t *len;
} pinned;

static void unpin(pinned *p) {
    if (p->items != NULL) {
        for (Py_ssize_t i = 0; i < p->n; i++) Py_XDECREF(p->items[i]);
    }
    PyMem_Free(p->items);
    PyMem_Free((void *)p->data);
    PyMem_Free(p->len);
    p->items = NULL;
    p->data = NULL;
    p->len = NULL;
}

static int pin(PyObject *seq, pinned *p, int allow_none) {
    PyObject *fast = PySequence_Fast(seq, "expected a sequence of bytes");
    if (fast == NULL) return -1;
    p->n = PySequence_Fast_GET_SIZE(fast);
    p->items = PyMem_Calloc(p->n ? p->n : 1, sizeof(PyObject *));
    p->data = PyMem_Calloc(p->n ? p->n : 1, sizeof(unsigned char *));
    p->len = PyMem_Calloc(p->n ? p->n : 1, sizeof(Py_ssize_t));
    if (p->items == NULL || p->data == NULL || p->len == NULL) {
        Py_DECREF(fast);
        unpin(p);
        PyErr_NoMemory();
        return -1;
    }
    PyObject **src = PySequence_Fast_ITEMS(fast);
    for (Py_ssize_t i = 0; i < p->n; i++) {
        PyObject *item = src[i];
        if (item == Py_None && allow_none) continue;
        if (!PyBytes_Check(item)) {
            Py_DECREF(fast);
            unpin(p);
            PyErr_SetString(PyExc_TypeError, "expected bytes");
            return -1;
        }
        Py_INCREF(item);
        p->items[i] = item;
        p->data[i] = (const unsigned char *)PyBytes_AS_STRING(item);
        p->len[i] = PyBytes_GET_SIZE(item);
    }
    Py_DECREF(fast);
    return 0;
}

/* A list of n fresh bytes objects of the given sizes (NULL size -1: None). */
static PyObject *fresh_list(Py_ssize_t n, const Py_ssize_t *sizes, unsigned char **out) {
    PyObject *list = PyList_New(n);
    if (list == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *b;
        if (sizes[i] < 0) {
            b = Py_NewRef(Py_None);
            out[i] = NULL;
        } else {
            b = PyBytes_FromStringAndSize(NULL, sizes[i]);
            if (b == NULL) {
                Py_DECREF(list);
                return NULL;
            }
            out[i] = (unsigned char *)PyBytes_AS_STRING(b);
        }
        PyList_SET_ITEM(list, i, b);
    }
    return list;
}

/* The outputs of a MAC over pinned messages: a list of fresh out_len-byte bytes objects
 * (None for a None message), and in *out where each is written (the caller frees *out). */
static PyObject *mac_outputs(const pinned *p, Py_ssize_t out_len, unsigned char ***out) {
    Py_ssize_t *sizes = PyMem_Malloc((p->n ? p->n : 1) * sizeof(Py_ssize_t));
    *out = PyMem_Malloc((p->n ? p->n : 1) * sizeof(unsigned char *));
    PyObject *list = NULL;
    if (sizes == NULL || *out == NULL) {
        PyErr_NoMemory();
    } else {
        for (Py_ssize_t i = 0; i < p->n; i++) sizes[i] = p->items[i] == NULL ? -1 : out_len;
        list = fresh_list(p->n, sizes, *out);
    }
    PyMem_Free(sizes);
    return list;
}

/* hmac_sha256(key, prefix, messages, out_len) -> list[bytes | None]
 * HMAC-SHA256(key, prefix || m)[:out_len] of each message; None stays None. */
static PyObject *hmac_sha256(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer key, prefix;
    PyObject *messages;
    Py_ssize_t out_len;
    if (!PyArg_ParseTuple(args, "y*y*On", &key, &prefix, &messages, &out_len)) return NULL;
    PyObject *result = NULL;
    pinned p = {0};
    unsigned char **out = NULL;
    if (out_len < 1 || out_len > SHA256_DIGEST_LENGTH) {
        PyErr_SetString(PyExc_ValueError, "out_len must be 1..32");
        goto done;
    }
    if (pin(messages, &p, 1) < 0) goto done;
    result = mac_outputs(&p, out_len, &out);
    if (result == NULL) goto done;

    /* RFC 2104: K0 is the key (hashed if longer than a block), zero-padded to a block. */
    unsigned char k0[SHA_BLOCK] = {0}, pad[SHA_BLOCK];
    if (key.len > SHA_BLOCK) {
        SHA256((const unsigned char *)key.buf, (size_t)key.len, k0);
    } else {
        memcpy(k0, key.buf, (size_t)key.len);
    }
    SHA256_CTX inner0, outer0;
    for (int j = 0; j < SHA_BLOCK; j++) pad[j] = k0[j] ^ 0x36;
    SHA256_Init(&inner0);
    SHA256_Update(&inner0, pad, SHA_BLOCK);
    SHA256_Update(&inner0, prefix.buf, (size_t)prefix.len);
    for (int j = 0; j < SHA_BLOCK; j++) pad[j] = k0[j] ^ 0x5c;
    SHA256_Init(&outer0);
    SHA256_Update(&outer0, pad, SHA_BLOCK);

    Py_BEGIN_ALLOW_THREADS
    unsigned char mac[SHA256_DIGEST_LENGTH];
    SHA256_CTX ctx;
    for (Py_ssize_t i = 0; i < p.n; i++) {
        if (out[i] == NULL) continue;
        ctx = inner0;
        SHA256_Update(&ctx, p.data[i], (size_t)p.len[i]);
        SHA256_Final(mac, &ctx);
        ctx = outer0;
        SHA256_Update(&ctx, mac, SHA256_DIGEST_LENGTH);
        SHA256_Final(mac, &ctx);
        memcpy(out[i], mac, (size_t)out_len);
    }
    OPENSSL_cleanse(mac, sizeof mac);
    OPENSSL_cleanse(&ctx, sizeof ctx);
    Py_END_ALLOW_THREADS

    OPENSSL_cleanse(k0, sizeof k0);
    OPENSSL_cleanse(pad, sizeof pad);
    OPENSSL_cleanse(&inner0, sizeof inner0);
    OPENSSL_cleanse(&outer0, sizeof outer0);
done:
    unpin(&p);
    PyMem_Free(out);
    PyBuffer_Release(&key);
    PyBuffer_Release(&prefix);
    return result;
}

/* blake2b_keyed(key, messages, out_len) -> list[bytes]
 * Keyed BLAKE2b (RFC 7693) of each message, out_len bytes: the bytes of
 * hashlib.blake2b(m, key=key, digest_size=out_len).digest(), over OpenSSL's BLAKE2BMAC.
 * The row fingerprints of an ingest batch: with the GIL released, they are computed on a
 * helper thread while the sealing thread's Python goes on (vault.store._decide). */
static PyObject *blake2b_keyed(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer key;
    PyObject *messages;
    Py_ssize_t out_len;
    if (!PyArg_ParseTuple(args, "y*On", &key, &messages, &out_len)) return NULL;
    PyObject *result = NULL;
    pinned p = {0};
    unsigned char **out = NULL;
    EVP_MAC *mac = NULL;
    EVP_MAC_CTX *ctx = NULL;
    if (out_len < 1 || out_len > 64 || key.len < 1 || key.len > 64) {
        PyErr_SetString(PyExc_ValueError, "out_len and the key: 1..64 bytes");
        goto done;
    }
    if (pin(messages, &p, 0) < 0) goto done;
    result = mac_outputs(&p, out_len, &out);
    if (result == NULL) goto done;
    mac = EVP_MAC_fetch(NULL, "BLAKE2BMAC", NULL);
    ctx = mac == NULL ? NULL : EVP_MAC_CTX_new(mac);
    size_t size = (size_t)out_len;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
                           OSSL_PARAM_construct_end()};
    if (ctx == NULL || !EVP_MAC_init(ctx, key.buf, (size_t)key.len, params)) {
        Py_CLEAR(result);
        PyErr_SetString(PyExc_RuntimeError, "OpenSSL has no keyed BLAKE2b");
        goto done;
    }
    int ok = 1;
    Py_BEGIN_ALLOW_THREADS
    size_t got;
    for (Py_ssize_t i = 0; i < p.n && ok; i++) {
        /* init without a key restarts the MAC under the key it holds */
        ok = EVP_MAC_init(ctx, NULL, 0, NULL) && EVP_MAC_update(ctx, p.data[i], (size_t)p.len[i])
             && EVP_MAC_final(ctx, out[i], &got, size) && got == size;
    }
    Py_END_ALLOW_THREADS
    if (!ok) {
        Py_CLEAR(result);
        PyErr_SetString(PyExc_RuntimeError, "keyed BLAKE2b failed");
    }
done:
    EVP_MAC_CTX_free(ctx); /* frees (and cleanses) its copy of the key */
    EVP_MAC_free(mac);
    unpin(&p);
    PyMem_Free(out);
    PyBuffer_Release(&key);
    return result;
}

/* The integer columns of the associated data: each a buffer of int64. */
typedef struct {
    Py_ssize_t count;
    Py_buffer views[4];
} int_parts;

static void release_ints(int_parts *ints) {
    for (Py_ssize_t j = 0; j < ints->count; j++) PyBuffer_Release(&ints->views[j]);
    ints->count = 0;
}

static int get_ints(PyObject *seq, Py_ssize_t n, int_parts *ints) {
    ints->count = 0;
    PyObject *fast = PySequence_Fast(seq, "ad_ints must be a sequence of int64 arrays");
    if (fast == NULL) return -1;
    Py_ssize_t k = PySequence_Fast_GET_SIZE(fast);
    if (k > 4) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "at most 4 integer parts");
        return -1;
    }
    for (Py_ssize_t j = 0; j < k; j++) {
        Py_buffer *v = &ints->views[j];
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(fast, j), v,
                               PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
            Py_DECREF(fast);
            release_ints(ints);
            return -1;
        }
        ints->count = j + 1;
        if (v->itemsize != 8 || v->format == NULL || strchr("qlL", v->format[0]) == NULL ||
            v->len != n * 8) {
            Py_DECREF(fast);
            release_ints(ints);
            PyErr_SetString(PyExc_ValueError, "each integer part: one int64 per message");
            return -1;
        }
    }
    Py_DECREF(fast);
    return 0;
}

/* str(v) of an int64 into out (at least 20 bytes); returns its length. Written here
 * rather than with snprintf, whose locale and format parsing were a fifth of sealing a
 * batch of records (issue 17). */
static int int64_text(char *out, int64_t v) {
    char rev[20];
    int n = 0, at = 0;
    /* the magnitude as unsigned, so that INT64_MIN is no overflow */
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        rev[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u != 0);
    if (v < 0) out[at++] = '-';
    while (n > 0) out[at++] = rev[--n];
    return at;
}

/* head || (be32(len(str(v))) || str(v) for each integer part) || tail, into buf. */
static size_t build_ad(unsigned char *buf, const Py_buffer *head, const int_parts *ints,
                       Py_ssize_t i, const Py_buffer *tail) {
    size_t at = (size_t)head->len;
    memcpy(buf, head->buf, at);
    for (Py_ssize_t j = 0; j < ints->count; j++) {
        char digits[24];
        int d = int64_text(digits, ((const int64_t *)ints->views[j].buf)[i]);
        buf[at] = 0;
        buf[at + 1] = 0;
        buf[at + 2] = 0;
        buf[at + 3] = (unsigned char)d;
        memcpy(buf + at + 4, digits, (size_t)d);
        at += 4 + (size_t)d;
    }
    memcpy(buf + at, tail->buf, (size_t)tail->len);
    return at + (size_t)tail->len;
}

/* gcm_seal(keys, nonces, plaintexts, ad_head, ad_ints, ad_tail) -> list[bytes]
 * AES-256-GCM of message i under keys[i] (or the one key, if keys is 32 bytes) with
 * nonces[i]: nonce || ciphertext || tag, as vault._aead.seal. */
static PyObject *gcm_seal(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer keys, nonces, head, tail;
    PyObject *plaintexts, *ad_ints;
    if (!PyArg_ParseTuple(args, "y*y*Oy*Oy*", &keys, &nonces, &plaintexts, &head, &ad_ints,
                          &tail))
        return NULL;
    PyObject *result = NULL;
    pinned p = {0};
    int_parts ints = {0};
    Py_ssize_t *sizes = NULL;
    unsigned char **out = NULL, *ad = NULL;
    EVP_CIPHER *cipher = NULL;
    EVP_CIPHER_CTX *ctx = NULL;
    int failed = 0;
    if (pin(plaintexts, &p, 0) < 0) goto done;
    int one_key = keys.len == KEY_BYTES;
    if (!one_key && keys.len != p.n * KEY_BYTES) {
        PyErr_SetString(PyExc_ValueError, "keys: one 32-byte key, or one per message");
        goto done;
    }
    if (nonces.len != p.n * NONCE_BYTES) {
        PyErr_SetString(PyExc_ValueError, "nonces: one 12-byte nonce per message");
        goto done;
    }
    if (get_ints(ad_ints, p.n, &ints) < 0) goto done;
    ad = PyMem_Malloc((size_t)(head.len + tail.len) + 24 * (size_t)ints.count + 1);
    sizes = PyMem_Malloc((p.n ? p.n : 1) * sizeof(Py_ssize_t));
    out = PyMem_Malloc((p.n ? p.n : 1) * sizeof(unsigned char *));
    if (ad == NULL || sizes == NULL || out == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t i = 0; i < p.n; i++) {
        if (p.len[i] > INT32_MAX - NONCE_BYTES - TAG_BYTES) {
            PyErr_SetString(PyExc_ValueError, "message too long");
            goto done;
        }
        sizes[i] = NONCE_BYTES + p.len[i] + TAG_BYTES;
    }
    result = fresh_list(p.n, sizes, out);
    if (result == NULL) goto done;
    cipher = EVP_CIPHER_fetch(NULL, "AES-256-GCM", NULL);
    ctx = EVP_CIPHER_CTX_new();
    if (cipher == NULL || ctx == NULL || !EVP_EncryptInit_ex(ctx, cipher, NULL, NULL, NULL)) {
        failed = 1;
        goto done;
    }
    const unsigned char *k = (const unsigned char *)keys.buf;
    const unsigned char *nv = (const unsigned char *)nonces.buf;
    Py_BEGIN_ALLOW_THREADS
    if (one_key && !EVP_EncryptInit_ex(ctx, NULL, NULL, k, NULL)) failed = 1;
    for (Py_ssize_t i = 0; i < p.n && !failed; i++) {
        const unsigned char *nonce = nv + i * NONCE_BYTES;
        unsigned char *o = out[i];
        int outl = 0, finl = 0;
        size_t adl = build_ad(ad, &head, &ints, i, &tail);
        memcpy(o, nonce, NONCE_BYTES);
        if (!EVP_EncryptInit_ex(ctx, NULL, NULL, one_key ? NULL : k + i * KEY_BYTES, nonce) ||
            !EVP_EncryptUpdate(ctx, NULL, &outl, ad, (int)adl) ||
            !EVP_EncryptUpdate(ctx, o + NONCE_BYTES, &outl, p.data[i], (int)p.len[i]) ||
            !EVP_EncryptFinal_ex(ctx, o + NONCE_BYTES + outl, &finl) ||
            outl + finl != p.len[i] ||
            !EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_GET_TAG, TAG_BYTES,
                                 o + NONCE_BYTES + p.len[i]))
            failed = 1;
    }
    Py_END_ALLOW_THREADS
done:
    if (failed && !PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "AES-GCM failed");
    if (PyErr_Occurred()) Py_CLEAR(result);
    EVP_CIPHER_CTX_free(ctx); /* cleanses the key schedule */
    EVP_CIPHER_free(cipher);
    unpin(&p);
    release_ints(&ints);
    PyMem_Free(ad);
    PyMem_Free(sizes);
    PyMem_Free(out);
    PyBuffer_Release(&keys);
    PyBuffer_Release(&nonces);
    PyBuffer_Release(&head);
    PyBuffer_Release(&tail);
    return result;
}

/* sha256_framed(head, tag, blobs) -> bytes
 * SHA-256 of head || (tag || be64(len(b)) || b for each blob b). */
static PyObject *sha256_framed(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer head, tag;
    PyObject *blobs;
    if (!PyArg_ParseTuple(args, "y*y*O", &head, &tag, &blobs)) return NULL;
    pinned p = {0};
    PyObject *result = NULL;
    if (pin(blobs, &p, 0) < 0) goto done;
    unsigned char digest[SHA256_DIGEST_LENGTH];
    Py_BEGIN_ALLOW_THREADS
    SHA256_CTX ctx;
    unsigned char len_be[8];
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, head.buf, (size_t)head.len);
    for (Py_ssize_t i = 0; i < p.n; i++) {
        uint64_t n = (uint64_t)p.len[i];
        for (int j = 7; j >= 0; j--, n >>= 8) len_be[j] = (unsigned char)(n & 0xff);
        SHA256_Update(&ctx, tag.buf, (size_t)tag.len);
        SHA256_Update(&ctx, len_be, sizeof len_be);
        SHA256_Update(&ctx, p.data[i], (size_t)p.len[i]);
    }
    SHA256_Final(digest, &ctx);
    Py_END_ALLOW_THREADS
    result = PyBytes_FromStringAndSize((const char *)digest, SHA256_DIGEST_LENGTH);
done:
    unpin(&p);
    PyBuffer_Release(&head);
    PyBuffer_Release(&tag);
    return result;
}

/* CRC-32 as zlib computes it (reflected, polynomial 0xEDB88320), eight bytes a step. */
static uint32_t crc_table[8][256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int j = 1; j < 8; j++) {
            uint32_t c = crc_table[j - 1][i];
            crc_table[j][i] = (c >> 8) ^ crc_table[0][c & 0xff];
        }
    }
}

static uint32_t crc32_of(const unsigned char *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    while (n >= 8) {
        uint32_t one = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                            (uint32_t)p[3] << 24);
        uint32_t two = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 |
                       (uint32_t)p[7] << 24;
        c = crc_table[7][one & 0xff] ^ crc_table[6][(one >> 8) & 0xff] ^
            crc_table[5][(one >> 16) & 0xff] ^ crc_table[4][one >> 24] ^
            crc_table[3][two & 0xff] ^ crc_table[2][(two >> 8) & 0xff] ^
            crc_table[1][(two >> 16) & 0xff] ^ crc_table[0][two >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = crc_table[0][(c ^ *p++) & 0xff] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* crc32_pieces(text, sep) -> bytes
 * zlib.crc32 of each piece of text.split(bytes([sep])), as little-endian uint32s. */
static PyObject *crc32_pieces(PyObject *self, PyObject *args) {
    (void)self;
    Py_buffer text;
    int sep;
    if (!PyArg_ParseTuple(args, "y*i", &text, &sep)) return NULL;
    if (sep < 0 || sep > 255) {
        PyBuffer_Release(&text);
        PyErr_SetString(PyExc_ValueError, "sep must be one byte");
        return NULL;
    }
    const unsigned char *at = (const unsigned char *)text.buf;
    const unsigned char *end = at + text.len;
    Py_ssize_t pieces = 1;
    for (const unsigned char *q = at; (q = memchr(q, sep, (size_t)(end - q))) != NULL; q++) {
        pieces++;
    }
    PyObject *result = PyBytes_FromStringAndSize(NULL, pieces * 4);
    if (result != NULL) {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(result);
        Py_BEGIN_ALLOW_THREADS
        for (Py_ssize_t i = 0; i < pieces; i++) {
            const unsigned char *stop = memchr(at, sep, (size_t)(end - at));
            if (stop == NULL) stop = end;
            uint32_t c = crc32_of(at, (size_t)(stop - at));
            out[0] = (unsigned char)c;
            out[1] = (unsigned char)(c >> 8);
            out[2] = (unsigned char)(c >> 16);
            out[3] = (unsigned char)(c >> 24);
            out += 4;
            at = stop + 1;
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&text);
    return result;
}

/* One int64 buffer of exactly n items (format q/l/L), or an error. */
static int int64_view(PyObject *obj, Py_buffer *v, Py_ssize_t n, const char *what) {
    if (PyObject_GetBuffer(obj, v, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (v->itemsize != 8 || v->format == NULL || strchr("qlL", v->format[0]) == NULL ||
        (n >= 0 && v->len != n * 8)) {
        PyBuffer_Release(v);
        PyErr_Format(PyExc_ValueError, "%s: one int64 per row", what);
        return -1;
    }
    return 0;
}

/* text_rows(ints, middles, codes, data, offsets) -> (text, ends)
 * Row i is str(ints[i]) || middles[codes[i]] || HEX(data[offsets[i]:offsets[i + 1]]) (upper
 * case); text is the rows joined by ",", ends[i] (native int64s) where row i ends in it.
 * codes None: every row takes middles[0]; data None: no hex part. The rows of
 * vault.bucket_rows (what group_concat of the database's row texts returns), written once,
 * without a string per row. */
static PyObject *text_rows(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *ints_obj, *middles_obj, *codes_obj, *data_obj, *offsets_obj;
    if (!PyArg_ParseTuple(args, "OOOOO", &ints_obj, &middles_obj, &codes_obj, &data_obj,
                          &offsets_obj)) return NULL;
    Py_buffer ints = {0}, codes = {0}, data = {0}, offsets = {0};
    pinned mid = {0};
    PyObject *text = NULL, *ends = NULL, *result = NULL;
    if (int64_view(ints_obj, &ints, -1, "ints") < 0) return NULL;
    Py_ssize_t n = ints.len / 8;
    int have_codes = codes_obj != Py_None, have_data = data_obj != Py_None;
    if (pin(middles_obj, &mid, 0) < 0) goto done;
    if (mid.n < 1) {
        PyErr_SetString(PyExc_ValueError, "at least one middle");
        goto done;
    }
    if (have_codes && int64_view(codes_obj, &codes, n, "codes") < 0) {
        have_codes = 0;
        goto done;
    }
    if (have_data) {
        if (PyObject_GetBuffer(data_obj, &data, PyBUF_C_CONTIGUOUS) < 0) {
            have_data = 0;
            goto done;
        }
        if (int64_view(offsets_obj, &offsets, n + 1, "offsets") < 0) {
            PyBuffer_Release(&data);
            have_data = 0;
            goto done;
        }
    }
    const int64_t *iv = (const int64_t *)ints.buf;
    const int64_t *cv = have_codes ? (const int64_t *)codes.buf : NULL;
    const int64_t *ov = have_data ? (const int64_t *)offsets.buf : NULL;
    Py_ssize_t size = n > 0 ? n - 1 : 0;  /* the commas */
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t c = cv != NULL ? cv[i] : 0;
        if (c < 0 || c >= mid.n) {
            PyErr_SetString(PyExc_ValueError, "a code names no middle");
            goto done;
        }
        char digits[24];
        size += int64_text(digits, iv[i]) + mid.len[c];
        if (ov != NULL) {
            if (ov[i] < 0 || ov[i + 1] < ov[i] || ov[i + 1] > data.len) {
                PyErr_SetString(PyExc_ValueError, "offsets outside the data");
                goto done;
            }
            size += 2 * (ov[i + 1] - ov[i]);
        }
    }
    text = PyBytes_FromStringAndSize(NULL, size);
    ends = PyBytes_FromStringAndSize(NULL, n * 8);
    if (text == NULL || ends == NULL) goto done;
    {
        unsigned char *out = (unsigned char *)PyBytes_AS_STRING(text);
        int64_t *end_of = (int64_t *)PyBytes_AS_STRING(ends);
        const unsigned char *bytes = have_data ? (const unsigned char *)data.buf : NULL;
        static const char hex[] = "0123456789ABCDEF";
        Py_BEGIN_ALLOW_THREADS
        size_t at = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            if (i > 0) out[at++] = ',';
            at += (size_t)int64_text((char *)out + at, iv[i]);
            int64_t c = cv != NULL ? cv[i] : 0;
            memcpy(out + at, mid.data[c], (size_t)mid.len[c]);
            at += (size_t)mid.len[c];
            if (ov != NULL) {
                for (int64_t k = ov[i]; k < ov[i + 1]; k++) {
                    out[at++] = (unsigned char)hex[bytes[k] >> 4];
                    out[at++] = (unsigned char)hex[bytes[k] & 15];
                }
            }
            end_of[i] = (int64_t)at;
        }
        Py_END_ALLOW_THREADS
    }
    result = PyTuple_Pack(2, text, ends);
done:
    Py_XDECREF(text);
    Py_XDECREF(ends);
    unpin(&mid);
    PyBuffer_Release(&ints);
    if (have_codes) PyBuffer_Release(&codes);
    if (have_data) {
        PyBuffer_Release(&data);
        PyBuffer_Release(&offsets);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"hmac_sha256", hmac_sha256, METH_VARARGS,
     "HMAC-SHA256(key, prefix || m)[:out_len] of each message (None stays None)."},
    {"blake2b_keyed", blake2b_keyed, METH_VARARGS,
     "Keyed BLAKE2b of each message, out_len bytes (hashlib.blake2b(m, key=key))."},
    {"gcm_seal", gcm_seal, METH_VARARGS,
     "AES-256-GCM seal of each message: nonce || ciphertext || tag."},
    {"sha256_framed", sha256_framed, METH_VARARGS,
     "SHA-256 of head || (tag || be64(len(b)) || b for each blob b)."},
    {"crc32_pieces", crc32_pieces, METH_VARARGS,
     "zlib.crc32 of each piece of text split at the byte sep (little-endian uint32s)."},
    {"text_rows", text_rows, METH_VARARGS,
     "Rows str(int) || middle || HEX(blob) joined by commas, and where each ends."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_sealc",
    "Batched HMAC-SHA256, keyed BLAKE2b, framed SHA-256, AES-256-GCM and CRC-32 (private to "
    "vault._aead).", -1,
    methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__sealc(void) {
    crc_init();
    return PyModule_Create(&module);
}
