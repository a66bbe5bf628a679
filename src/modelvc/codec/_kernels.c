/* Fused element-wise kernels for the tensor codec (see modelvc/codec/kernels.py).

   numpy runs each operation over the whole array before the next starts, so one delta
   link costs a dozen passes through memory. These loops do each job in one pass over
   cache-sized chunks and release the GIL, so two blocks decode on two cores. They are
   exact integer arithmetic (wrapping), bit for bit what the numpy fallback computes;
   tests/codec/test_kernels.py holds them to it. Little-endian hosts only: elsewhere the
   build fails on purpose and modelvc uses the numpy fallback. */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_EXPAND 1
#endif

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "modelvc kernels assume a little-endian host"
#endif

#define CH 4096    /* elements per chunk: the working set stays in L1/L2 */

/* The hot loops are compiled twice on x86-64, for AVX2 and the SSE2 baseline, and the
   loader picks one for the CPU at hand (an ifunc): wheels stay portable. */
#if defined(__x86_64__) && defined(__GNUC__) && defined(__linux__)
#define HOT __attribute__((target_clones("avx2", "default")))
#else
#define HOT
#endif
#define MAX_LINKS 64
/* Per grouped link in run(): 256 cursors, a flag, where each group must end, the
   number of groups used, then those groups (bytes), the largest first. */
#define CUR (513 + 1 + 64)
#define CUR_NACT 513
#define CUR_ACT 514

/* ---- order-preserving float mapping and zigzag, per width ---- */

#define DEFINE_OPS(T, ST, BITS)                                                          \
    static inline T ord##BITS(T u) {                                                     \
        return u ^ (T)((T)((ST)u >> (BITS - 1)) | ((T)1 << (BITS - 1)));                 \
    }                                                                                    \
    static inline T unord##BITS(T m) {                                                   \
        return m ^ (T)((T)~(T)((ST)m >> (BITS - 1)) | ((T)1 << (BITS - 1)));            \
    }                                                                                    \
    static inline T zig##BITS(T d) { return (T)(d << 1) ^ (T)((ST)d >> (BITS - 1)); }   \
    static inline T unzig##BITS(T z) { return (T)(z >> 1) ^ (T)(-(T)(z & 1)); }         \
    /* The group of an element (its exponent field) from its order-preserving value. */ \
    static inline unsigned key##BITS(T o, int shift) {                                   \
        T top = (T)((T)1 << (BITS - 1));                                                 \
        T mag = (T)((o & top) ? o : (T)~o) & (T)~top;                                    \
        return (unsigned)((mag >> shift) & 0xFF);                                        \
    }

DEFINE_OPS(uint8_t, int8_t, 8)
DEFINE_OPS(uint16_t, int16_t, 16)
DEFINE_OPS(uint32_t, int32_t, 32)
DEFINE_OPS(uint64_t, int64_t, 64)

/* ---- buffers ---- */

typedef struct {
    Py_buffer views[(MAX_LINKS + 2) * 8 + 6]; /* base, links, cast planes and the output */
    int count;
} Held;

static void release_all(Held *h) {
    for (int i = 0; i < h->count; i++) PyBuffer_Release(&h->views[i]);
    h->count = 0;
}

/* A read-only contiguous view of obj, kept in h; NULL (exception set) on failure. */
static const uint8_t *hold(Held *h, PyObject *obj, Py_ssize_t expect, const char *what,
                           int writable) {
    Py_buffer *v = &h->views[h->count];
    if (PyObject_GetBuffer(obj, v, writable ? (PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS)
                                            : PyBUF_C_CONTIGUOUS) < 0)
        return NULL;
    h->count++;
    if (expect >= 0 && v->len != expect) {
        PyErr_Format(PyExc_ValueError, "%s has %zd bytes, expected %zd", what, v->len, expect);
        return NULL;
    }
    return (const uint8_t *)v->buf;
}

/* hold() an input of whole w-byte elements; its length in bytes goes to *len. */
static const uint8_t *hold_elems(Held *h, PyObject *obj, int w, const char *what,
                                 Py_ssize_t *len) {
    const uint8_t *p = hold(h, obj, -1, what, 0);
    if (!p) return NULL;
    *len = h->views[h->count - 1].len;
    if (*len % w) {
        PyErr_Format(PyExc_ValueError, "%s: %zd bytes is not a whole number of %d-byte "
                     "elements", what, *len, w);
        return NULL;
    }
    return p;
}

static int check_width(int itemsize) {
    if (itemsize == 1 || itemsize == 2 || itemsize == 4 || itemsize == 8) return 0;
    PyErr_Format(PyExc_ValueError, "element width must be 1, 2, 4 or 8 bytes, not %d", itemsize);
    return -1;
}

/* ---- F32 -> BF16 cast prediction (modelvc.codec.cast._f32_to_bf16) ---- */

static inline uint16_t bf16_of(uint32_t x) {
    uint32_t rounded = (x + 0x7FFFu + ((x >> 16) & 1u)) >> 16; /* finite: never wraps */
    uint32_t quiet = (x >> 16) | 0x0040u;                       /* NaN: payload, quieted */
    return (uint16_t)(((x & 0x7FFFFFFFu) > 0x7F800000u) ? quiet : rounded);
}

/* out[0..m) (BF16) = the prediction from the F32 values plus the cast link's residual
   (byte planes cp at element lo), in the order-preserving domain. */
HOT static void cast_tail(const uint32_t *f32, const uint8_t *const *cp, Py_ssize_t lo,
                      Py_ssize_t m, uint8_t *out) {
    uint16_t r[CH];
    const uint8_t *c0 = cp[0] + lo, *c1 = cp[1] + lo;
    for (Py_ssize_t i = 0; i < m; i++) {
        uint16_t z = (uint16_t)(c0[i] | (c1[i] << 8));
        r[i] = unord16((uint16_t)(ord16(bf16_of(f32[i])) + unzig16(z)));
    }
    memcpy(out, r, (size_t)m * 2);
}

/* ---- plane merge / split ---- */

#define MERGE_AT(T, p, W, i, out)                                                        \
    do {                                                                                 \
        T v_ = 0;                                                                        \
        for (int b_ = 0; b_ < (W); b_++) v_ |= (T)((T)(p)[b_][i] << (8 * b_));           \
        (out) = v_;                                                                      \
    } while (0)

/* ---- un-grouping a grouped link's byte planes (see group_* for the order) ----

   gp[b][0..m) = plane b of the link's elements for the m elements whose groups are kk:
   element i takes the next unused position of its group (cursors c[g], which must not
   pass end[g]; *bad is set otherwise, or when an element's group has no elements).
   With AVX-512 VBMI2 one masked expand-load per group present in 64 elements fills
   those elements' bytes in order (about a third of the scalar loop's time); elsewhere a
   byte load per plane and element. */

#define DEFINE_UNGROUP_SCALAR(W)                                                         \
    static void ungroup_scalar_##W(uint8_t (*gp)[CH], const uint8_t *kk,                 \
                                   const uint8_t *const *p, uint32_t *c, int *bad,       \
                                   Py_ssize_t m, Py_ssize_t n) {                         \
        for (Py_ssize_t i = 0; i < m; i++) {                                             \
            uint32_t pos = c[kk[i]]++;                                                   \
            if (pos >= (uint64_t)n) { *bad = 1; pos = 0; }                               \
            for (int b = 0; b < W; b++) gp[b][i] = p[b][pos];                            \
        }                                                                                \
    }
DEFINE_UNGROUP_SCALAR(2)
DEFINE_UNGROUP_SCALAR(4)
DEFINE_UNGROUP_SCALAR(8)

#ifdef HAVE_EXPAND
#define DEFINE_UNGROUP_EXPAND(W)                                                         \
    __attribute__((target("avx512f,avx512bw,avx512vbmi2,popcnt")))                       \
    static void ungroup_expand_##W(uint8_t (*gp)[CH], const uint8_t *kk,                 \
                                   const uint8_t *const *p, uint32_t *c,                 \
                                   const uint32_t *end, const uint8_t *act, int nact,    \
                                   int *bad, Py_ssize_t m) {                             \
        for (Py_ssize_t i = 0; i < m; i += 64) {                                         \
            uint64_t live = m - i >= 64 ? ~0ull : ((1ull << (m - i)) - 1);               \
            uint64_t rem = live;                                                         \
            __m512i k = _mm512_maskz_loadu_epi8(live, kk + i);                           \
            __m512i v[W];                                                                \
            for (int b = 0; b < W; b++) v[b] = _mm512_setzero_si512();                   \
            for (int t = 0; t < nact && rem; t++) {                                      \
                uint8_t g = act[t];                                                      \
                uint64_t mk = _mm512_mask_cmpeq_epi8_mask(rem, k,                        \
                                                          _mm512_set1_epi8((char)g));    \
                uint32_t at = c[g], cnt = (uint32_t)__builtin_popcountll(mk);            \
                if (at + cnt > end[g]) { *bad = 1; mk = 0; cnt = 0; }                    \
                for (int b = 0; b < W; b++)                                              \
                    v[b] = _mm512_mask_expandloadu_epi8(v[b], mk, p[b] + at);            \
                c[g] = at + cnt;                                                         \
                rem &= ~mk;                                                              \
            }                                                                            \
            if (rem) *bad = 1; /* elements of a group that has no elements */            \
            for (int b = 0; b < W; b++) _mm512_mask_storeu_epi8(gp[b] + i, live, v[b]);  \
        }                                                                                \
    }
DEFINE_UNGROUP_EXPAND(2)
DEFINE_UNGROUP_EXPAND(4)
DEFINE_UNGROUP_EXPAND(8)
#define EXPAND(W, gp, kk, p, cur, bad, m)                                                \
    ungroup_expand_##W(gp, kk, p, cur, cur + 257, (const uint8_t *)(cur + CUR_ACT),      \
                       (int)cur[CUR_NACT], bad, m)
#else
#define EXPAND(W, gp, kk, p, cur, bad, m) ((void)0)
#endif
/* Whether the CPU has AVX-512 VBMI2: set once at import (PyInit__kernels). */
static int expand_ok = 0;

/* The byte planes, in element order, of a grouped link's elements [lo, lo + m) into gp
   (acc: their references, order-preserving; cur: the link's CUR record). */
#define DEFINE_GATHER(T, BITS, W)                                                        \
    HOT static void gather_##BITS(uint8_t (*gp)[CH], const T *acc, const uint8_t *const *p,  \
                              uint32_t *cur, int shift, int *bad, Py_ssize_t m,          \
                              Py_ssize_t n) {                                            \
        uint8_t kk[CH];                                                                  \
        for (Py_ssize_t i = 0; i < m; i++) kk[i] = (uint8_t)key##BITS(acc[i], shift);   \
        if (expand_ok)                                                                   \
            EXPAND(W, gp, kk, p, cur, bad, m);                                           \
        else                                                                             \
            ungroup_scalar_##W(gp, kk, p, cur, bad, m, n);                               \
    }
DEFINE_GATHER(uint16_t, 16, 2)
DEFINE_GATHER(uint32_t, 32, 4)
DEFINE_GATHER(uint64_t, 64, 8)
/* 1-byte elements are never grouped (py_run refuses them) */
#define gather_8(gp, acc, p, cur, shift, bad, m, n) (*(bad) = 1)

/* One element width: the loops are written out so the compiler vectorizes them. */
#define DEFINE_WIDTH(T, BITS, W)                                                         \
    HOT static void merge_##BITS(uint8_t *out, const uint8_t *const *p, Py_ssize_t n) {     \
        T buf[CH];                                                                       \
        for (Py_ssize_t lo = 0; lo < n; lo += CH) {                                      \
            Py_ssize_t m = n - lo < CH ? n - lo : CH;                                    \
            const uint8_t *q[8];                                                         \
            for (int b = 0; b < W; b++) q[b] = p[b] + lo;                                \
            for (Py_ssize_t i = 0; i < m; i++) MERGE_AT(T, q, W, i, buf[i]);            \
            memcpy(out + lo * W, buf, (size_t)m * W);                                    \
        }                                                                                \
    }                                                                                    \
    HOT static void split_##BITS(uint8_t *out, const uint8_t *src, Py_ssize_t n) {          \
        T buf[CH];                                                                       \
        for (Py_ssize_t lo = 0; lo < n; lo += CH) {                                      \
            Py_ssize_t m = n - lo < CH ? n - lo : CH;                                    \
            memcpy(buf, src + lo * W, (size_t)m * W);                                    \
            for (int b = 0; b < W; b++) {                                                \
                uint8_t *o = out + (Py_ssize_t)b * n + lo;                               \
                for (Py_ssize_t i = 0; i < m; i++) o[i] = (uint8_t)(buf[i] >> (8 * b));  \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    /* out planes = zigzag(ord(new) - ord(ref) - k * (ord(ref) - ord(ref2))) */          \
    HOT static void residual_##BITS(uint8_t *out, const uint8_t *new_, const uint8_t *ref,  \
                                const uint8_t *ref2, T k, int fl, Py_ssize_t n) {        \
        T a[CH], b[CH], c[CH];                                                           \
        for (Py_ssize_t lo = 0; lo < n; lo += CH) {                                      \
            Py_ssize_t m = n - lo < CH ? n - lo : CH;                                    \
            memcpy(a, new_ + lo * W, (size_t)m * W);                                     \
            memcpy(b, ref + lo * W, (size_t)m * W);                                      \
            if (fl)                                                                      \
                for (Py_ssize_t i = 0; i < m; i++) {                                     \
                    a[i] = ord##BITS(a[i]);                                              \
                    b[i] = ord##BITS(b[i]);                                              \
                }                                                                        \
            for (Py_ssize_t i = 0; i < m; i++) a[i] = (T)(a[i] - b[i]);                  \
            if (ref2) {                                                                  \
                memcpy(c, ref2 + lo * W, (size_t)m * W);                                 \
                if (fl)                                                                  \
                    for (Py_ssize_t i = 0; i < m; i++) c[i] = ord##BITS(c[i]);           \
                for (Py_ssize_t i = 0; i < m; i++)                                       \
                    a[i] = (T)(a[i] - (T)(k * (T)(b[i] - c[i])));                        \
            }                                                                            \
            for (Py_ssize_t i = 0; i < m; i++) a[i] = zig##BITS(a[i]);                   \
            for (int p = 0; p < W; p++) {                                                \
                uint8_t *o = out + (Py_ssize_t)p * n + lo;                               \
                for (Py_ssize_t i = 0; i < m; i++) o[i] = (uint8_t)(a[i] >> (8 * p));    \
            }                                                                            \
        }                                                                                \
    }                                                                                    \
    /* out = unord(ord(base) + sum over links of (unzig(merge(planes)) + k * step)); the  \
       base is a buffer or byte planes (bp); with cast planes (cp, 32-bit floats only) \
       the result is then the BF16 prediction plus the cast link's residual. A grouped   \
       link's (cur) planes are first un-grouped chunk by chunk (gather_*). */            \
    HOT static void run_##BITS(uint8_t *out, const uint8_t *base, const uint8_t *const *bp, \
                           const int *ks, const uint8_t *const *planes, int nl, int fl,  \
                           const uint8_t *const *cp, uint32_t *cur, int shift, int *bad, \
                           Py_ssize_t n) {                                               \
        T acc[CH], step[CH], d[CH];                                                      \
        uint8_t gp[8][CH]; /* a grouped link's planes for this chunk, in element order */ \
        for (Py_ssize_t lo = 0; lo < n; lo += CH) {                                      \
            Py_ssize_t m = n - lo < CH ? n - lo : CH;                                    \
            if (bp) {                                                                    \
                const uint8_t *q[8];                                                     \
                for (int b = 0; b < W; b++) q[b] = bp[b] + lo;                           \
                for (Py_ssize_t i = 0; i < m; i++) MERGE_AT(T, q, W, i, acc[i]);         \
            } else {                                                                     \
                memcpy(acc, base + lo * W, (size_t)m * W);                               \
            }                                                                            \
            if (fl)                                                                      \
                for (Py_ssize_t i = 0; i < m; i++) acc[i] = ord##BITS(acc[i]);           \
            for (int j = 0; j < nl; j++) {                                               \
                const uint8_t *const *p = planes + (Py_ssize_t)j * 8;                    \
                if (!p[0]) { /* a "same" link: no change, a zero step */                 \
                    memset(step, 0, sizeof step);                                        \
                    continue;                                                            \
                }                                                                        \
                if (cur && cur[(Py_ssize_t)j * CUR + 256]) {                             \
                    /* grouped: residuals sit by the reference's exponent (group_*) */   \
                    const uint8_t *q[8];                                                 \
                    gather_##BITS(gp, acc, p, cur + (Py_ssize_t)j * CUR, shift, bad, m, n); \
                    for (int b = 0; b < W; b++) q[b] = gp[b];                            \
                    for (Py_ssize_t i = 0; i < m; i++) {                                 \
                        T z;                                                             \
                        MERGE_AT(T, q, W, i, z);                                         \
                        d[i] = unzig##BITS(z);                                           \
                    }                                                                    \
                } else {                                                                 \
                    const uint8_t *q[8];                                                 \
                    for (int b = 0; b < W; b++) q[b] = p[b] + lo;                        \
                    for (Py_ssize_t i = 0; i < m; i++) {                                 \
                        T z;                                                             \
                        MERGE_AT(T, q, W, i, z);                                         \
                        d[i] = unzig##BITS(z);                                           \
                    }                                                                    \
                }                                                                        \
                if (ks[j]) {                                                             \
                    T kk = (T)ks[j];                                                     \
                    for (Py_ssize_t i = 0; i < m; i++) d[i] = (T)(d[i] + kk * step[i]);  \
                }                                                                        \
                for (Py_ssize_t i = 0; i < m; i++) acc[i] = (T)(acc[i] + d[i]);          \
                if (j + 1 < nl && ks[j + 1]) memcpy(step, d, (size_t)m * W);             \
            }                                                                            \
            if (fl)                                                                      \
                for (Py_ssize_t i = 0; i < m; i++) acc[i] = unord##BITS(acc[i]);         \
            if (cp)                                                                      \
                cast_tail((const uint32_t *)(const void *)acc, cp, lo, m, out + lo * 2); \
            else                                                                         \
                memcpy(out + lo * W, acc, (size_t)m * W);                                \
        }                                                                                \
    }

/* out planes = the w planes of src (each n bytes) with the elements reordered by the
   exponent field of the reference (raw float bits), stably; counts[256] per group. */
#define DEFINE_GROUP(T, BITS, W)                                                         \
    HOT static void group_##BITS(uint8_t *out, const uint8_t *src, const uint8_t *ref,      \
                             int shift, uint32_t *counts, Py_ssize_t n) {                \
        uint32_t cur[256];                                                               \
        T r[CH];                                                                         \
        memset(counts, 0, 256 * sizeof(uint32_t));                                       \
        for (Py_ssize_t lo = 0; lo < n; lo += CH) {                                      \
            Py_ssize_t m = n - lo < CH ? n - lo : CH;                                    \
            memcpy(r, ref + lo * W, (size_t)m * W);                                      \
            for (Py_ssize_t i = 0; i < m; i++) counts[key##BITS(ord##BITS(r[i]), shift)]++; \
        }                                                                                \
        uint32_t at = 0;                                                                 \
        for (int g = 0; g < 256; g++) { cur[g] = at; at += counts[g]; }                   \
        for (Py_ssize_t lo = 0; lo < n; lo += CH) {                                      \
            Py_ssize_t m = n - lo < CH ? n - lo : CH;                                    \
            memcpy(r, ref + lo * W, (size_t)m * W);                                      \
            for (Py_ssize_t i = 0; i < m; i++) {                                         \
                uint32_t pos = cur[key##BITS(ord##BITS(r[i]), shift)]++;                 \
                for (int b = 0; b < W; b++)                                              \
                    out[(Py_ssize_t)b * n + pos] = src[(Py_ssize_t)b * n + lo + i];      \
            }                                                                            \
        }                                                                                \
    }

DEFINE_WIDTH(uint8_t, 8, 1)
DEFINE_WIDTH(uint16_t, 16, 2)
DEFINE_WIDTH(uint32_t, 32, 4)
DEFINE_WIDTH(uint64_t, 64, 8)
DEFINE_GROUP(uint16_t, 16, 2)
DEFINE_GROUP(uint32_t, 32, 4)
DEFINE_GROUP(uint64_t, 64, 8)

/* ---- Python entry points ---- */

/* merge(out, planes): interleave itemsize = len(planes) byte planes into out. */
static PyObject *py_merge(PyObject *self, PyObject *args) {
    PyObject *out_obj, *planes_obj;
    if (!PyArg_ParseTuple(args, "OO:merge", &out_obj, &planes_obj)) return NULL;
    PyObject *seq = PySequence_Fast(planes_obj, "planes must be a sequence");
    if (!seq) return NULL;
    Held h = {.count = 0};
    Py_ssize_t w = PySequence_Fast_GET_SIZE(seq);
    const uint8_t *p[8] = {0};
    uint8_t *out;
    Py_ssize_t n;
    if (check_width((int)w) < 0) goto fail;
    for (Py_ssize_t b = 0; b < w; b++) {
        Py_ssize_t expect = b ? h.views[0].len : -1;
        if (!(p[b] = hold(&h, PySequence_Fast_GET_ITEM(seq, b), expect, "a byte plane", 0)))
            goto fail;
    }
    n = h.views[0].len;
    if (!(out = (uint8_t *)hold(&h, out_obj, n * w, "the output", 1))) goto fail;
    Py_BEGIN_ALLOW_THREADS
    switch (w) {
        case 1: memcpy(out, p[0], (size_t)n); break;
        case 2: merge_16(out, p, n); break;
        case 4: merge_32(out, p, n); break;
        default: merge_64(out, p, n); break;
    }
    Py_END_ALLOW_THREADS
    release_all(&h);
    Py_DECREF(seq);
    Py_RETURN_NONE;
fail:
    release_all(&h);
    Py_DECREF(seq);
    return NULL;
}

/* split(out, src, itemsize): byte planes of src, plane b at out[b*n:(b+1)*n]. */
static PyObject *py_split(PyObject *self, PyObject *args) {
    PyObject *out_obj, *src_obj;
    int w;
    if (!PyArg_ParseTuple(args, "OOi:split", &out_obj, &src_obj, &w)) return NULL;
    if (check_width(w) < 0) return NULL;
    Held h = {.count = 0};
    Py_ssize_t len;
    const uint8_t *src = hold_elems(&h, src_obj, w, "the input", &len);
    if (!src) goto fail;
    uint8_t *out = (uint8_t *)hold(&h, out_obj, len, "the output", 1);
    if (!out) goto fail;
    Py_ssize_t n = len / w;
    Py_BEGIN_ALLOW_THREADS
    switch (w) {
        case 1: memcpy(out, src, (size_t)n); break;
        case 2: split_16(out, src, n); break;
        case 4: split_32(out, src, n); break;
        default: split_64(out, src, n); break;
    }
    Py_END_ALLOW_THREADS
    release_all(&h);
    Py_RETURN_NONE;
fail:
    release_all(&h);
    return NULL;
}

/* residual(out, new, ref, ref2 or None, k, itemsize, is_float) */
static PyObject *py_residual(PyObject *self, PyObject *args) {
    PyObject *out_obj, *new_obj, *ref_obj, *ref2_obj;
    int k, w, fl;
    if (!PyArg_ParseTuple(args, "OOOOiip:residual", &out_obj, &new_obj, &ref_obj, &ref2_obj,
                          &k, &w, &fl))
        return NULL;
    if (check_width(w) < 0) return NULL;
    Held h = {.count = 0};
    Py_ssize_t len;
    const uint8_t *a = hold_elems(&h, new_obj, w, "the new block", &len), *b, *c = NULL;
    uint8_t *out;
    if (!a) goto fail;
    if (!(b = hold(&h, ref_obj, len, "the reference block", 0))) goto fail;
    if (ref2_obj != Py_None && k && !(c = hold(&h, ref2_obj, len, "the reference's reference", 0)))
        goto fail;
    if (!(out = (uint8_t *)hold(&h, out_obj, len, "the output", 1))) goto fail;
    Py_ssize_t n = len / w;
    Py_BEGIN_ALLOW_THREADS
    switch (w) {
        case 1: residual_8(out, a, b, c, (uint8_t)k, fl, n); break;
        case 2: residual_16(out, a, b, c, (uint16_t)k, fl, n); break;
        case 4: residual_32(out, a, b, c, (uint32_t)k, fl, n); break;
        default: residual_64(out, a, b, c, (uint64_t)k, fl, n); break;
    }
    Py_END_ALLOW_THREADS
    release_all(&h);
    Py_RETURN_NONE;
fail:
    release_all(&h);
    return NULL;
}

/* Hold the w planes of seq (each n bytes) into ptrs[0..w); -1 with an exception set. */
static int hold_planes(Held *h, PyObject *obj, int w, Py_ssize_t n, const uint8_t **ptrs) {
    PyObject *seq = PySequence_Fast(obj, "byte planes must be a sequence");
    if (!seq) return -1;
    if (PySequence_Fast_GET_SIZE(seq) != w) {
        PyErr_Format(PyExc_ValueError, "%zd byte planes, expected %d",
                     PySequence_Fast_GET_SIZE(seq), w);
        Py_DECREF(seq);
        return -1;
    }
    for (int b = 0; b < w; b++) {
        if (!(ptrs[b] = hold(h, PySequence_Fast_GET_ITEM(seq, b), n, "a byte plane", 0))) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

/* run(out, base, links, itemsize, is_float, cast=None)

   base: the reference block (a buffer) or its byte planes (a list: a "full" block).
   links: (k, planes or None) oldest first; k = 0 for a plain delta, the step multiple
   for "extrap", planes None for an unchanged link; or (k, planes, starts) for a
   grouped link (its elements in group order) with each group's first position (256
   uint32). cast: the two byte planes of an
   F32 -> BF16 "cast" link on top (out is then BF16). */
static PyObject *py_run(PyObject *self, PyObject *args) {
    PyObject *out_obj, *base_obj, *links_obj, *cast_obj = Py_None;
    int w, fl, shift = 0, bad = 0;
    uint32_t *cur = NULL;
    if (!PyArg_ParseTuple(args, "OOOip|Oi:run", &out_obj, &base_obj, &links_obj, &w, &fl,
                          &cast_obj, &shift))
        return NULL;
    if (shift < 0 || shift >= 8 * w) {
        PyErr_SetString(PyExc_ValueError, "the group shift must be below the element width");
        return NULL;
    }
    if (check_width(w) < 0) return NULL;
    PyObject *links = PySequence_Fast(links_obj, "links must be a sequence");
    if (!links) return NULL;
    Held h = {.count = 0};
    int ks[MAX_LINKS];
    const uint8_t *planes[MAX_LINKS * 8], *bp[8], *cp[2];
    memset(planes, 0, sizeof planes);
    Py_ssize_t nl = PySequence_Fast_GET_SIZE(links), n, out_len, len;
    const uint8_t *base = NULL;
    int base_planes = PyList_Check(base_obj) || PyTuple_Check(base_obj);
    int cast = cast_obj != Py_None;
    uint8_t *out;
    if (nl > MAX_LINKS) {
        PyErr_Format(PyExc_ValueError, "at most %d links in one run", MAX_LINKS);
        goto fail;
    }
    if (cast && !(w == 4 && fl)) {
        PyErr_SetString(PyExc_ValueError, "a cast link needs an F32 run");
        goto fail;
    }
    if (base_planes) {
        if (PySequence_Size(base_obj) < 1) {
            PyErr_SetString(PyExc_ValueError, "no base planes");
            goto fail;
        }
        PyObject *first = PySequence_GetItem(base_obj, 0);
        if (!first) goto fail;
        Py_buffer v;
        if (PyObject_GetBuffer(first, &v, PyBUF_SIMPLE) < 0) {
            Py_DECREF(first);
            goto fail;
        }
        n = v.len;
        PyBuffer_Release(&v);
        Py_DECREF(first);
        if (hold_planes(&h, base_obj, w, n, bp) < 0) goto fail;
    } else {
        if (!(base = hold_elems(&h, base_obj, w, "the base block", &len))) goto fail;
        n = len / w;
    }
    for (Py_ssize_t j = 0; j < nl; j++) {
        PyObject *link = PySequence_Fast_GET_ITEM(links, j), *ps, *starts = Py_None;
        int k;
        if (!PyArg_ParseTuple(link, "iO|O:link", &k, &ps, &starts)) goto fail;
        if (starts != Py_None) { /* a grouped link: its groups' first positions */
            Py_buffer v;
            if (!fl || w < 2 || ps == Py_None) {
                PyErr_SetString(PyExc_ValueError, "only a float link with planes is grouped");
                goto fail;
            }
            if (!cur && !(cur = (uint32_t *)PyMem_RawCalloc((size_t)nl * CUR, 4))) {
                PyErr_NoMemory();
                goto fail;
            }
            if (PyObject_GetBuffer(starts, &v, PyBUF_SIMPLE) < 0) goto fail;
            if (v.len != 256 * 4) {
                PyBuffer_Release(&v);
                PyErr_SetString(PyExc_ValueError, "group starts must be 256 uint32");
                goto fail;
            }
            uint32_t *c = cur + j * CUR;
            memcpy(c, v.buf, 256 * 4);
            PyBuffer_Release(&v);
            c[256] = 1;
            for (int g = 0; g < 256; g++) {
                c[257 + g] = g < 255 ? c[g + 1] : (uint32_t)n;
                if (c[g] > c[257 + g]) {
                    PyErr_SetString(PyExc_ValueError, "group starts must not decrease");
                    goto fail;
                }
            }
            { /* the groups with elements, the largest first (ungroup_expand_*) */
                uint8_t *act = (uint8_t *)(c + CUR_ACT);
                int na = 0;
                for (int g = 0; g < 256; g++) {
                    uint32_t size = c[257 + g] - c[g];
                    int at = na++;
                    if (!size) { na--; continue; }
                    while (at && c[257 + act[at - 1]] - c[act[at - 1]] < size) {
                        act[at] = act[at - 1];
                        at--;
                    }
                    act[at] = (uint8_t)g;
                }
                c[CUR_NACT] = (uint32_t)na;
            }
        }
        if (k < 0 || k > 255) {
            PyErr_SetString(PyExc_ValueError, "a step multiple must be 0-255");
            goto fail;
        }
        ks[j] = k;
        if (ps != Py_None && hold_planes(&h, ps, w, n, planes + j * 8) < 0) goto fail;
    }
    if (nl && ks[0]) {
        PyErr_SetString(PyExc_ValueError, "the first link of a run cannot extrapolate");
        goto fail;
    }
    if (cast && hold_planes(&h, cast_obj, 2, n, cp) < 0) goto fail;
    out_len = cast ? n * 2 : n * w;
    if (!(out = (uint8_t *)hold(&h, out_obj, out_len, "the output", 1))) goto fail;
    {
        const uint8_t *const *bpp = base_planes ? bp : NULL;
        const uint8_t *const *cpp = cast ? cp : NULL;
        Py_BEGIN_ALLOW_THREADS
        switch (w) {
            case 1: run_8(out, base, bpp, ks, planes, (int)nl, fl, cpp, cur, shift, &bad, n);
                    break;
            case 2: run_16(out, base, bpp, ks, planes, (int)nl, fl, cpp, cur, shift, &bad, n);
                    break;
            case 4: run_32(out, base, bpp, ks, planes, (int)nl, fl, cpp, cur, shift, &bad, n);
                    break;
            default: run_64(out, base, bpp, ks, planes, (int)nl, fl, cpp, cur, shift, &bad, n);
                    break;
        }
        Py_END_ALLOW_THREADS
    }
    for (Py_ssize_t j = 0; cur && j < nl; j++) { /* every group used up exactly */
        const uint32_t *c = cur + j * CUR;
        for (int g = 0; c[256] && g < 256; g++) bad |= c[g] != c[257 + g];
    }
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "a grouped link's groups do not fit its reference");
        goto fail;
    }
    release_all(&h);
    PyMem_RawFree(cur);
    Py_DECREF(links);
    Py_RETURN_NONE;
fail:
    release_all(&h);
    PyMem_RawFree(cur);
    Py_DECREF(links);
    return NULL;
}

/* group(out, src, ref, itemsize, shift, counts): out = the byte planes src (itemsize
   planes of n bytes) reordered stably by the exponent group of ref's elements (float
   bits); counts (256 uint32) gets each group's size. */
static PyObject *py_group(PyObject *self, PyObject *args) {
    PyObject *out_obj, *src_obj, *ref_obj, *counts_obj;
    int w, shift;
    if (!PyArg_ParseTuple(args, "OOOiiO:group", &out_obj, &src_obj, &ref_obj, &w, &shift,
                          &counts_obj))
        return NULL;
    if (check_width(w) < 0) return NULL;
    if (w < 2 || shift < 0 || shift >= 8 * w) {
        PyErr_SetString(PyExc_ValueError, "group needs 2-8 byte elements and a shift below them");
        return NULL;
    }
    Held h = {.count = 0};
    Py_ssize_t len;
    const uint8_t *ref = hold_elems(&h, ref_obj, w, "the reference block", &len), *src;
    uint8_t *out, *counts;
    if (!ref) goto gfail;
    if (!(src = hold(&h, src_obj, len, "the planes", 0))) goto gfail;
    if (!(out = (uint8_t *)hold(&h, out_obj, len, "the output", 1))) goto gfail;
    if (!(counts = (uint8_t *)hold(&h, counts_obj, 256 * 4, "the counts", 1))) goto gfail;
    {
        Py_ssize_t n = len / w;
        uint32_t *c = (uint32_t *)(void *)counts;
        Py_BEGIN_ALLOW_THREADS
        switch (w) {
            case 2: group_16(out, src, ref, shift, c, n); break;
            case 4: group_32(out, src, ref, shift, c, n); break;
            default: group_64(out, src, ref, shift, c, n); break;
        }
        Py_END_ALLOW_THREADS
    }
    release_all(&h);
    Py_RETURN_NONE;
gfail:
    release_all(&h);
    return NULL;
}

/* cast_bf16(out, src): the F32 -> BF16 prediction of modelvc.codec.cast._f32_to_bf16. */
static PyObject *py_cast_bf16(PyObject *self, PyObject *args) {
    PyObject *out_obj, *src_obj;
    if (!PyArg_ParseTuple(args, "OO:cast_bf16", &out_obj, &src_obj)) return NULL;
    Held h = {.count = 0};
    const uint8_t *src = hold(&h, src_obj, -1, "the F32 input", 0);
    uint8_t *out;
    if (!src) goto fail;
    Py_ssize_t len = h.views[0].len;
    if (len % 4) {
        PyErr_SetString(PyExc_ValueError, "the F32 input is not a whole number of elements");
        goto fail;
    }
    if (!(out = (uint8_t *)hold(&h, out_obj, len / 2, "the output", 1))) goto fail;
    Py_ssize_t n = len / 4;
    Py_BEGIN_ALLOW_THREADS
    uint32_t u[CH];
    uint16_t r[CH];
    for (Py_ssize_t lo = 0; lo < n; lo += CH) {
        Py_ssize_t m = n - lo < CH ? n - lo : CH;
        memcpy(u, src + lo * 4, (size_t)m * 4);
        for (Py_ssize_t i = 0; i < m; i++) r[i] = bf16_of(u[i]);
        memcpy(out + lo * 2, r, (size_t)m * 2);
    }
    Py_END_ALLOW_THREADS
    release_all(&h);
    Py_RETURN_NONE;
fail:
    release_all(&h);
    return NULL;
}

/* set_expand(flag) -> the previous setting: whether un-grouping uses AVX-512 (where
   the CPU has it; tests run both paths). */
static PyObject *py_set_expand(PyObject *self, PyObject *args) {
    int flag, prev = expand_ok;
    if (!PyArg_ParseTuple(args, "p:set_expand", &flag)) return NULL;
#ifdef HAVE_EXPAND
    expand_ok = flag && __builtin_cpu_supports("avx512f") &&
                __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vbmi2");
#endif
    return PyBool_FromLong(prev);
}

/* ---- step_ratio: the encoder's guess of an extrapolation multiple ---- */

#define DEFINE_RATIOS(T, ST, BITS)                                                        \
    static Py_ssize_t ratios##BITS(double *r, const uint8_t *a, const uint8_t *b,          \
                                   const uint8_t *c, int fl, Py_ssize_t n) {              \
        Py_ssize_t m = 0;                                                                 \
        for (Py_ssize_t i = 0; i < n; i++) {                                              \
            T x, y, z;                                                                    \
            memcpy(&x, a + i * sizeof(T), sizeof(T));                                     \
            memcpy(&y, b + i * sizeof(T), sizeof(T));                                     \
            memcpy(&z, c + i * sizeof(T), sizeof(T));                                     \
            if (fl) {                                                                     \
                x = ord##BITS(x);                                                         \
                y = ord##BITS(y);                                                         \
                z = ord##BITS(z);                                                         \
            }                                                                             \
            ST step = (ST)(T)(y - z);                                                     \
            if (step) r[m++] = (double)(ST)(T)(x - y) / (double)step;                     \
        }                                                                                 \
        return m;                                                                         \
    }

DEFINE_RATIOS(uint8_t, int8_t, 8)
DEFINE_RATIOS(uint16_t, int16_t, 16)
DEFINE_RATIOS(uint32_t, int32_t, 32)
DEFINE_RATIOS(uint64_t, int64_t, 64)

/* The k-th smallest of a[0..n) (0-based), leaving every element before k no larger:
   Hoare's selection, O(n) on average (a sort of the sample was ~1 % of a delta commit). */
static double select_kth(double *a, Py_ssize_t n, Py_ssize_t k) {
    Py_ssize_t lo = 0, hi = n - 1;
    while (lo < hi) {
        double pivot = a[lo + (hi - lo) / 2];
        Py_ssize_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) {
                double t = a[i];
                a[i++] = a[j];
                a[j--] = t;
            }
        }
        if (k <= j)
            hi = j;
        else if (k >= i)
            lo = i;
        else
            break; /* a[j+1..i) all equal the pivot */
    }
    return a[k];
}

/* step_ratio(new, ref, ref2, itemsize, is_float) -> the median over the elements that
   moved (ref != ref2) of (new - ref) / (ref - ref2), signed and in the order-preserving
   domain for floats, as numpy.median takes it (an even count: the mean of the middle
   two); None when no element moved. */
static PyObject *py_step_ratio(PyObject *self, PyObject *args) {
    PyObject *a_obj, *b_obj, *c_obj;
    int w, fl;
    if (!PyArg_ParseTuple(args, "OOOip:step_ratio", &a_obj, &b_obj, &c_obj, &w, &fl))
        return NULL;
    if (check_width(w) < 0) return NULL;
    Held h = {.count = 0};
    Py_ssize_t len;
    const uint8_t *a = hold_elems(&h, a_obj, w, "the new block", &len), *b, *c;
    double *r = NULL, med = 0.0;
    if (!a) goto fail;
    if (!(b = hold(&h, b_obj, len, "the reference block", 0))) goto fail;
    if (!(c = hold(&h, c_obj, len, "the reference's reference", 0))) goto fail;
    Py_ssize_t n = len / w, m;
    if (!(r = (double *)PyMem_RawMalloc((size_t)(n ? n : 1) * sizeof(double)))) {
        PyErr_NoMemory();
        goto fail;
    }
    Py_BEGIN_ALLOW_THREADS
    switch (w) {
        case 1: m = ratios8(r, a, b, c, fl, n); break;
        case 2: m = ratios16(r, a, b, c, fl, n); break;
        case 4: m = ratios32(r, a, b, c, fl, n); break;
        default: m = ratios64(r, a, b, c, fl, n); break;
    }
    if (m) {
        med = select_kth(r, m, m / 2);
        if (!(m % 2)) { /* numpy.median: the mean of the middle two */
            double below = r[0];
            for (Py_ssize_t i = 1; i < m / 2; i++)
                if (r[i] > below) below = r[i];
            med = (below + med) / 2.0;
        }
    }
    Py_END_ALLOW_THREADS
    PyMem_RawFree(r);
    release_all(&h);
    if (!m) Py_RETURN_NONE;
    return PyFloat_FromDouble(med);
fail:
    release_all(&h);
    return NULL;
}

/* empty(n) -> a writable memoryview of n uninitialised bytes (a bytearray's): the
   codec's output and scratch buffers without importing numpy (~25-30 ms of a one-shot
   command's start-up) and without bytearray(n)'s zero-fill pass. */
static PyObject *py_empty(PyObject *self, PyObject *args) {
    Py_ssize_t n;
    if (!PyArg_ParseTuple(args, "n:empty", &n)) return NULL;
    if (n < 0) {
        PyErr_SetString(PyExc_ValueError, "empty: a negative size");
        return NULL;
    }
    PyObject *ba = PyByteArray_FromStringAndSize(NULL, n);
    if (!ba) return NULL;
    PyObject *mv = PyMemoryView_FromObject(ba);
    Py_DECREF(ba);
    return mv;
}

/* equal(a, b) -> whether two byte buffers hold the same bytes (memcmp, without the GIL). */
static PyObject *py_equal(PyObject *self, PyObject *args) {
    Py_buffer a, b;
    if (!PyArg_ParseTuple(args, "y*y*:equal", &a, &b)) return NULL;
    int same = a.len == b.len;
    if (same && a.len) {
        Py_BEGIN_ALLOW_THREADS
        same = memcmp(a.buf, b.buf, (size_t)a.len) == 0;
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return PyBool_FromLong(same);
}

static PyMethodDef methods[] = {
    {"step_ratio", py_step_ratio, METH_VARARGS,
     "step_ratio(new, ref, ref2, itemsize, is_float): median step multiple, or None."},
    {"equal", py_equal, METH_VARARGS, "equal(a, b): whether two buffers hold the same bytes."},
    {"empty", py_empty, METH_VARARGS, "empty(n): a memoryview of n uninitialised bytes."},
    {"merge", py_merge, METH_VARARGS, "merge(out, planes): interleave byte planes."},
    {"split", py_split, METH_VARARGS, "split(out, src, itemsize): byte planes of src."},
    {"residual", py_residual, METH_VARARGS,
     "residual(out, new, ref, ref2, k, itemsize, is_float): delta/extrap planes."},
    {"run", py_run, METH_VARARGS, "run(out, base, links, itemsize, is_float): decode a run."},
    {"group", py_group, METH_VARARGS,
     "group(out, src, ref, itemsize, shift, counts): planes by the ref's exponent."},
    {"cast_bf16", py_cast_bf16, METH_VARARGS, "cast_bf16(out, src): F32 -> BF16 prediction."},
    {"set_expand", py_set_expand, METH_VARARGS,
     "set_expand(flag): un-group with AVX-512 where the CPU has it; returns the old flag."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_kernels", "Fused codec kernels (C).", -1, methods,
};

/* Bumped when a job changes what it computes or takes: kernels.py falls back to numpy
   for a stale build rather than call it wrongly. */
#define KERNELS_VERSION 4

PyMODINIT_FUNC PyInit__kernels(void) {
    PyObject *m = PyModule_Create(&module);
#ifdef HAVE_EXPAND
    __builtin_cpu_init();
    expand_ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                __builtin_cpu_supports("avx512vbmi2");
#endif
    if (m && PyModule_AddIntConstant(m, "VERSION", KERNELS_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
