/* A prepared execution plan's inner loop: a run of op records, each one call of an existing native
 * kernel (or a copy) on buffers the plan allocated once (opml/plan.py builds and validates the records).
 *
 * A record is OPML_PLAN_REC int64 words: the op code, then its operands (addresses, dimensions and
 * constants; layouts below, mirrored by opml/plan.py). The records are trusted: the Python builder
 * checked every dimension against the buffers it allocated and every constant against the bounds the
 * kernel needs, so this loop only dispatches; the kernels still check their own arguments, and a
 * refusal stops the run and reports which record refused (a bug in the builder). The only data errors
 * are the per-node path's named input errors (NaN into quantize or a float -> integer cast, a gather
 * index out of range): PLAN_DATA_ERROR, and the builder's caller re-runs that node's Python kernel, which
 * raises the error. Every kernel is the one the per-node path calls, with the same arguments, or the same
 * integer / float32 operations on the same values, so the bytes are the same; row splits over threads
 * never change a bit.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"
#include "pool.h"

#define OPML_PLAN_REC 32
#define OPML_PLAN_MAX_DIMS 12
#define MIN_ELEMENTS_PER_PART ((int64_t)1 << 15) /* opml/parallel.py's MIN_ROWS_PER_WORKER_ELEMENTS */

enum {
    OP_GEMM = 1,      /* cfg, x, m, y                                                   (opml_qgemm_cfg) */
    OP_MATMUL = 2,    /* cfg, a, b, count, m, k, n, y                                 (opml_qmatmul_cfg) */
    OP_SOFTMAX = 3,   /* x, xsigned, rows, len, table, zp, lo, hi, y                      (opml_softmax) */
    OP_LAYERNORM = 4, /* x, xkind, xmax, rows, n, gamma, beta, eps, frac, g, mult, shift, zp, qmin, qmax, y */
    OP_LUT8 = 5,      /* table, x, y, count                                                  (opml_lut8) */
    OP_PAIR_LUT8 = 6, /* table, a, na, b, nb, y, count                              (opml_pair_lut8) */
    OP_TRANSPOSE = 7, /* x, y, itemsize, ndim, out shape[ndim], x strides (elements) per out dim[ndim] */
    OP_MAXPOOL = 8,   /* x, planes, h, w, kh, kw, sh, sw, dh, dw, pad top, pad left, oh, ow, xsigned, y (opml_maxpool) */
    OP_CONV = 9,      /* x, b, c, h, w, pad top, pad left, hp, wp, zp byte, kh, kw, sh, sw, dh, dw, oh, ow,
                         xh, cols, cfg, y8, y, m, out itemsize                       (group 1, NCHW) */
    OP_QUANTIZE = 10, /* x (float32), y, count, scale (float32 bits), zp (float32 bits), lo, hi, ysigned */
    OP_DEQUANTIZE = 11, /* x, xkind, y (float32), count, zp, scale (float32 bits)                          */
    OP_CONCAT = 12,   /* y, outer, parts, table: parts x {x, bytes per outer row}                              */
    OP_GATHER = 13,   /* x, y, outer, n, inner bytes, idx, nidx, idx kind (KIND_*; int64 from the builder:
                         already in [0, n)), the per-node path's range check for a runtime index otherwise */
    OP_CAST = 14,     /* x, xkind, y, ykind, count                                       (numpy astype rules) */
    OP_ARGMAX = 15,   /* x, xkind, outer, n, inner, y (int64), select last                                    */
    OP_GCONV = 16,    /* cfg, x, b, h, w, y                                                   (opml_gconv_cfg) */
    OP_LUT_WIDE = 17, /* table, x (bytes), y, count, out itemsize                      (table[x], any width) */
    OP_ADD_WIDE = 18, /* a, ak, na, b, bk, nb, za, zb, am, bm, shift, zo, qmin, qmax, y, yk, count (opml_add_wide) */
    OP_PAIR_BCAST = 19, /* table, a, b, y, inner, na, nb, ndim, outer shape[ndim], a strides[ndim], b strides[ndim]:
                           opml_pair_lut8 on each inner block of the output (general numpy broadcasting) */
    OP_REDUCE = 20,   /* x, xkind, outer, r, inner, max, zp, mult, den, ozp, lo, hi, y, ykind: over the middle axis of
                         x [outer, r, inner]: the maximum, or clip(round_div(sum(x - zp) mult, den) + ozp, lo, hi) */
    OP_AVGPOOL = 21,  /* x, xkind, planes, h, w, kh, kw, sh, sw, dh, dw, pad top, pad left, oh, ow, zp, mult, shift,
                         ozp, lo, hi, include pad, y, ykind: round_div(window sum(x - zp) mult, count << shift) */
    OP_WHERE = 22,    /* cond, cond kind, a, b, y, itemsize, ndim, table: out shape[ndim], then the element strides
                         of cond, a and b per dimension (0 where broadcast): y = cond != 0 ? a : b */
    OP_TRANSPOSE2D = 23, /* x, y, count, rows, cols, itemsize: y[n, c, r] = x[n, r, c]   (opml_transpose_batched) */
    OP_QCONV = 24,    /* cfg, x, b, c, h, w, pad top, pad left, hp, wp, zp, kh, kw, sh, sw, dh, dw, y (opml_qconv_nchw) */
};

/* Element kinds of the records above (bundle dtypes; opml/plan.py's _KIND). */
enum { KIND_I8, KIND_U8, KIND_I16, KIND_I32, KIND_I64, KIND_F32, KIND_BOOL };

/* Data-dependent refusals: the input the per-node path rejects with a named error (opml/plan.py re-runs the
 * node's Python kernel, which raises it). */
#define PLAN_DATA_ERROR -2

#define PTR(i) ((void *)(intptr_t)r[i])

static int parts_for(int64_t rows, int64_t row_elements, int threads) {
    int64_t per = MIN_ELEMENTS_PER_PART / (row_elements > 0 ? row_elements : 1) + 1;
    int64_t most = rows / per;
    if (threads <= 1 || most <= 1) return 1;
    return threads < most ? threads : (int)most;
}

/* ------------------------------------------------------------------- row-split non-GEMM kernels */

static int softmax_range(void *ctx, int64_t r0, int64_t r1) {
    const int64_t *r = (const int64_t *)ctx;
    return opml_softmax(PTR(1), (int)r[2], r0, r1, r[4], PTR(5), r[6], r[7], r[8], PTR(9), (int)r[OPML_PLAN_REC - 1]);
}

static int layernorm_range(void *ctx, int64_t r0, int64_t r1) {
    const int64_t *r = (const int64_t *)ctx;
    return opml_layernorm(PTR(1), (int)r[2], r[3], r0, r1, r[5], PTR(6), PTR(7), r[8], (int)r[9], (int)r[10], r[11],
                          (int)r[12], r[13], r[14], r[15], PTR(16), (int)r[OPML_PLAN_REC - 1]);
}

static int lut8_range(void *ctx, int64_t i0, int64_t i1) {
    const int64_t *r = (const int64_t *)ctx;
    return opml_lut8(PTR(1), PTR(2), PTR(3), i0, i1, (int)r[OPML_PLAN_REC - 1]);
}

static int pair_lut8_range(void *ctx, int64_t i0, int64_t i1) {
    const int64_t *r = (const int64_t *)ctx;
    return opml_pair_lut8(PTR(1), PTR(2), r[3], PTR(4), r[5], PTR(6), i0, i1, (int)r[OPML_PLAN_REC - 1]);
}

/* Lookups of at most this many elements run as plain loops here (the kernels' vector paths cost more to set up
 * than they save: an LSTM step's 32-element gates 130-200 ns -> tens of ns); the same table entries. */
#define SMALL_LOOKUPS 256

/* y[i] = table[(a[i mod na] << 8) | b[i mod nb]], as opml_pair_lut8. */
static void small_pair(const int64_t *r) {
    const uint8_t *t = PTR(1), *a = PTR(2), *b = PTR(4);
    uint8_t *y = PTR(6);
    int64_t na = r[3], nb = r[5], n = r[7];
    if (na == n && nb == n) {
        for (int64_t i = 0; i < n; i++) y[i] = t[((unsigned)a[i] << 8) | b[i]];
        return;
    }
    for (int64_t i = 0, ia = 0, ib = 0; i < n; i++) {
        y[i] = t[((unsigned)a[ia] << 8) | b[ib]];
        ia = ia + 1 == na ? 0 : ia + 1;
        ib = ib + 1 == nb ? 0 : ib + 1;
    }
}

/* ------------------------------------------------------------------------------ data movement */

/* One output row of a transpose: n elements of `size` bytes, read `stride` elements apart. */
static void gather_row(const uint8_t *x, uint8_t *y, int64_t n, int64_t stride, int64_t size) {
#define GATHER(T)                                                                                                     \
    do {                                                                                                              \
        const T *xs = (const T *)(const void *)x;                                                                     \
        T *ys = (T *)(void *)y;                                                                                       \
        for (int64_t i = 0; i < n; i++) ys[i] = xs[i * stride];                                                       \
    } while (0)
    switch (size) {
    case 1: GATHER(uint8_t); break;
    case 2: GATHER(uint16_t); break;
    case 4: GATHER(uint32_t); break;
    case 8: GATHER(uint64_t); break;
    default:
        for (int64_t i = 0; i < n; i++) memcpy(y + i * size, x + i * stride * size, (size_t)size);
    }
#undef GATHER
}

/* y (C order, shape[ndim]) = x read with strides[ndim] (elements): a transpose of x. The last
 * dimension is copied as one block when x's stride there is 1, else gathered with its stride. */
static void transpose(const uint8_t *x, uint8_t *y, int64_t size, int ndim, const int64_t *shape,
                      const int64_t *strides) {
    int64_t idx[OPML_PLAN_MAX_DIMS] = {0};
    int64_t total = 1;
    for (int d = 0; d < ndim; d++) total *= shape[d];
    if (!total) return;
    int last = ndim - 1;
    int64_t inner = ndim ? shape[last] : 1, istride = ndim ? strides[last] : 0;
    int64_t src = 0; /* element offset of idx in x */
    for (int64_t done = 0; done < total; done += inner) {
        if (istride == 1)
            memcpy(y, x + src * size, (size_t)(inner * size));
        else
            gather_row(x + src * size, y, inner, istride, size);
        y += inner * size;
        for (int d = last - 1; d >= 0; d--) { /* next index over the outer dimensions */
            src += strides[d];
            if (++idx[d] < shape[d]) break;
            src -= strides[d] * shape[d];
            idx[d] = 0;
        }
    }
}

/* The native conv of kernels.prepare_conv for one group: pad and reorder to NHWC, im2col, GEMM,
 * then [b, oh, ow, m] -> [b, m, oh, ow]. */
static int conv(const int64_t *r, int threads) {
    const uint8_t *x = PTR(1);
    int64_t b = r[2], c = r[3], h = r[4], w = r[5], pt = r[6], pl = r[7], hp = r[8], wp = r[9];
    uint8_t zp = (uint8_t)r[10];
    uint8_t *xh = PTR(19);
    for (int64_t bi = 0; bi < b; bi++)
        for (int64_t yy = 0; yy < hp; yy++)
            for (int64_t xx = 0; xx < wp; xx++) {
                uint8_t *dst = xh + ((bi * hp + yy) * wp + xx) * c;
                int64_t sy = yy - pt, sx = xx - pl;
                if (sy < 0 || sy >= h || sx < 0 || sx >= w) {
                    memset(dst, zp, (size_t)c);
                    continue;
                }
                const uint8_t *src = x + (bi * c * h + sy) * w + sx;
                for (int64_t ci = 0; ci < c; ci++) dst[ci] = src[ci * h * w];
            }
    int64_t oh = r[17], ow = r[18], m = r[24], size = r[25];
    if (opml_im2col_nhwc(xh, b, hp, wp, c, r[11], r[12], r[13], r[14], r[15], r[16], oh, ow, 0, c, PTR(20)))
        return -1;
    if (b * oh * ow > 0 && m > 0 && opml_qgemm_cfg(PTR(21), PTR(20), b * oh * ow, PTR(22), threads)) return -1;
    int64_t shape[4] = {b, m, oh, ow}, strides[4] = {oh * ow * m, 1, ow * m, m};
    transpose(PTR(22), PTR(23), size, 4, shape, strides);
    return 0;
}

/* ------------------------------------------------------------------------------ conversions */

static float f32_of(int64_t bits) {
    uint32_t u = (uint32_t)bits;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#if defined(__x86_64__) || defined(__i386__)
#define PLAN_X86 1
#include <immintrin.h>

/* The quantizer 32 floats at a time with AVX2: VDIVPS (IEEE division, as the scalar one), VROUNDPS to nearest
 * even (rintf in the default rounding mode the engine requires), VADDPS, then the clamp by VMAXPS/VMINPS (no
 * NaN reaches them: the caller returns first) and an exact conversion of the integral result, packed to bytes
 * (the values are within the byte range, so the saturating packs change nothing). The same float32
 * operations on the same values as the scalar loop, so the same bytes. Returns how many elements it did (a
 * multiple of 32), or -1 when it met a NaN. */
__attribute__((target("avx2"))) static inline __m256i quantize8(const float *x, __m256 vs, __m256 vz, __m256 vl,
                                                                 __m256 vh, __m256 *nan) {
    __m256 v = _mm256_loadu_ps(x);
    *nan = _mm256_or_ps(*nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    __m256 t = _mm256_round_ps(_mm256_div_ps(v, vs), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_add_ps(t, vz), vl), vh));
}

__attribute__((target("avx2"))) static int64_t quantize_avx2(const float *x, uint8_t *y, int64_t n, float scale,
                                                              float zp, float lo, float hi, int ysigned) {
    const __m256 vs = _mm256_set1_ps(scale), vz = _mm256_set1_ps(zp), vl = _mm256_set1_ps(lo),
                 vh = _mm256_set1_ps(hi);
    const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 nan = _mm256_setzero_ps();
        __m256i a = quantize8(x + i, vs, vz, vl, vh, &nan), b = quantize8(x + i + 8, vs, vz, vl, vh, &nan);
        __m256i c = quantize8(x + i + 16, vs, vz, vl, vh, &nan), d = quantize8(x + i + 24, vs, vz, vl, vh, &nan);
        if (_mm256_movemask_ps(nan)) return -1;
        __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
        __m256i q = ysigned ? _mm256_packs_epi16(ab, cd) : _mm256_packus_epi16(ab, cd);
        _mm256_storeu_si256((__m256i *)(void *)(y + i), _mm256_permutevar8x32_epi32(q, order));
    }
    return i;
}
#endif

/* kernels.prepare_quantize: clip(rint(x / scale) + zp, lo, hi) in float32, then the integer; NaN refused. */
static int quantize(const int64_t *r) {
    const float *x = PTR(1);
    int64_t n = r[3];
    float scale = f32_of(r[4]), zp = f32_of(r[5]), lo = (float)r[6], hi = (float)r[7];
    int64_t done = 0;
#ifdef PLAN_X86
    if (r[OPML_PLAN_REC - 1] >= 1) { /* AVX2, or a later set (which implies it) */
        done = quantize_avx2(x, PTR(2), n, scale, zp, lo, hi, (int)r[8]);
        if (done < 0) return PLAN_DATA_ERROR;
    }
#endif
    for (int64_t i = done; i < n; i++)
        if (isnan(x[i])) return PLAN_DATA_ERROR;
    if (r[8]) {
        int8_t *y = PTR(2);
        for (int64_t i = done; i < n; i++) {
            float q = rintf(x[i] / scale) + zp;
            y[i] = (int8_t)(q < lo ? lo : (q > hi ? hi : q));
        }
    } else {
        uint8_t *y = PTR(2);
        for (int64_t i = done; i < n; i++) {
            float q = rintf(x[i] / scale) + zp;
            y[i] = (uint8_t)(q < lo ? lo : (q > hi ? hi : q));
        }
    }
    return 0;
}

/* Element i of a buffer of kind k as int64 (integer and bool kinds). */
static int64_t int_at(const void *x, int k, int64_t i) {
    switch (k) {
    case KIND_I8: return ((const int8_t *)x)[i];
    case KIND_U8: case KIND_BOOL: return ((const uint8_t *)x)[i];
    case KIND_I16: return ((const int16_t *)x)[i];
    case KIND_I32: return ((const int32_t *)x)[i];
    default: return ((const int64_t *)x)[i];
    }
}

/* kernels.prepare_dequantize: (float32)(x - zp) * scale (int64 difference, rounded to float32 once). */
static void dequantize(const int64_t *r) {
    const void *x = PTR(1);
    int k = (int)r[2];
    float *y = PTR(3), scale = f32_of(r[6]);
    int64_t n = r[4], zp = r[5];
    if (k == KIND_I8) {
        const int8_t *xs = x;
        for (int64_t i = 0; i < n; i++) y[i] = (float)((int64_t)xs[i] - zp) * scale;
    } else if (k == KIND_U8) {
        const uint8_t *xs = x;
        for (int64_t i = 0; i < n; i++) y[i] = (float)((int64_t)xs[i] - zp) * scale;
    } else {
        for (int64_t i = 0; i < n; i++) y[i] = (float)(int_at(x, k, i) - zp) * scale;
    }
}

static void store_int(void *y, int k, int64_t i, int64_t v) {
    switch (k) {
    case KIND_I8: ((int8_t *)y)[i] = (int8_t)v; break;
    case KIND_U8: ((uint8_t *)y)[i] = (uint8_t)v; break;
    case KIND_BOOL: ((uint8_t *)y)[i] = v != 0; break;
    case KIND_I16: ((int16_t *)y)[i] = (int16_t)v; break;
    case KIND_I32: ((int32_t *)y)[i] = (int32_t)v; break;
    default: ((int64_t *)y)[i] = v;
    }
}

/* kernels_data.prepare_cast (numpy astype): integers wrap to narrower ones, bool is "!= 0", integers
 * round to float32 once; float32 -> integer truncates and saturates (NaN refused). */
static int cast(const int64_t *r) {
    const void *x = PTR(1);
    int xk = (int)r[2], yk = (int)r[4];
    void *y = PTR(3);
    int64_t n = r[5];
    if (xk == KIND_F32) {
        const float *xs = x;
        if (yk == KIND_F32) {
            memcpy(y, x, (size_t)n * 4);
            return 0;
        }
        if (yk == KIND_BOOL) {
            for (int64_t i = 0; i < n; i++) ((uint8_t *)y)[i] = xs[i] != 0.0f;
            return 0;
        }
        for (int64_t i = 0; i < n; i++)
            if (isnan(xs[i])) return PLAN_DATA_ERROR;
        /* numpy: t = clip(trunc(x), min, below).astype(to); where(x >= top, max, t), with top = float32(max) and
         * below the float32 under top when top rounded above max */
        int64_t imin, imax;
        switch (yk) {
        case KIND_I8: imin = -128, imax = 127; break;
        case KIND_U8: imin = 0, imax = 255; break;
        case KIND_I16: imin = -32768, imax = 32767; break;
        case KIND_I32: imin = INT32_MIN, imax = INT32_MAX; break;
        default: imin = INT64_MIN, imax = INT64_MAX;
        }
        float top = (float)imax, lo = (float)imin;
        float below = top;
        if (yk == KIND_I64 || (double)top > (double)imax) { /* (float32(2^63 - 1) = 2^63) */ /* the float32 just under top (positive: one less in its bits) */
            uint32_t u;
            memcpy(&u, &top, sizeof u);
            u -= 1;
            memcpy(&below, &u, sizeof below);
        }
        for (int64_t i = 0; i < n; i++) {
            float t = truncf(xs[i]);
            t = t < lo ? lo : (t > below ? below : t);
            store_int(y, yk, i, xs[i] >= top ? imax : (int64_t)t);
        }
        return 0;
    }
    if (yk == KIND_F32) {
        for (int64_t i = 0; i < n; i++) ((float *)y)[i] = (float)int_at(x, xk, i);
        return 0;
    }
    for (int64_t i = 0; i < n; i++) store_int(y, yk, i, int_at(x, xk, i));
    return 0;
}

/* kernels_data.prepare_argmax on integer kinds: the first (or, select last, the last) index of the maximum
 * over the middle axis of x [outer, n, inner]. */
static void argmax(const int64_t *r) {
    const void *x = PTR(1);
    int k = (int)r[2];
    int64_t outer = r[3], n = r[4], inner = r[5], last = r[7];
    int64_t *y = PTR(6);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            int64_t best = 0, bv = 0;
            for (int64_t j = 0; j < n; j++) {
                int64_t jj = last ? n - 1 - j : j;
                int64_t v = int_at(x, k, (o * n + jj) * inner + in);
                if (j == 0 || v > bv) best = jj, bv = v;
            }
            y[o * inner + in] = best;
        }
}

/* ------------------------------------------------------------------------------ copies */

/* y [outer, sum of row bytes] = the parts' [outer, bytes] rows side by side (concat along one axis). */
static void concat(const int64_t *r) {
    uint8_t *y = PTR(1);
    int64_t outer = r[2], parts = r[3];
    const int64_t *t = PTR(4);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t p = 0; p < parts; p++) {
            int64_t len = t[2 * p + 1];
            memcpy(y, (const uint8_t *)(intptr_t)t[2 * p] + o * len, (size_t)len);
            y += len;
        }
}

/* y [outer, nidx, inner] = x [outer, n, inner] at the indices along the middle axis. */
static int gather(const int64_t *r) {
    const uint8_t *x = PTR(1);
    uint8_t *y = PTR(2);
    int64_t outer = r[3], n = r[4], inner = r[5], nidx = r[7];
    const void *idx = PTR(6);
    int k = (int)r[8];
    for (int64_t j = 0; j < nidx; j++) { /* the per-node path checks every index before it copies */
        int64_t v = int_at(idx, k, j);
        if (v < -n || v >= n) return PLAN_DATA_ERROR;
    }
    for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < nidx; j++) {
            int64_t v = int_at(idx, k, j);
            v += v < 0 ? n : 0;
            memcpy(y, x + (o * n + v) * inner, (size_t)inner);
            y += inner;
        }
    return 0;
}

static void lut_wide(const int64_t *r) {
    const uint8_t *t = PTR(1), *x = PTR(2);
    uint8_t *y = PTR(3);
    int64_t n = r[4], size = r[5];
    switch (size) {
    case 2:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)(void *)y)[i] = ((const uint16_t *)(const void *)t)[x[i]];
        break;
    case 4:
        for (int64_t i = 0; i < n; i++) ((uint32_t *)(void *)y)[i] = ((const uint32_t *)(const void *)t)[x[i]];
        break;
    default:
        for (int64_t i = 0; i < n; i++) memcpy(y + i * size, t + x[i] * size, (size_t)size);
    }
}

static int add_wide_range(void *ctx, int64_t i0, int64_t i1) {
    const int64_t *r = (const int64_t *)ctx;
    return opml_add_wide(PTR(1), (int)r[2], r[3], PTR(4), (int)r[5], r[6], r[7], r[8], r[9], r[10], (int)r[11],
                         r[12], r[13], r[14], PTR(15), (int)r[16], i0, i1, (int)r[OPML_PLAN_REC - 1]);
}

/* y [outer..., inner] = table[a, b] with each operand periodic (na, nb) within an inner block and at its own
 * element strides over the outer dimensions (0 where it is broadcast). */
static int pair_bcast(const int64_t *r) {
    const uint8_t *a = PTR(2), *b = PTR(3);
    uint8_t *y = PTR(4);
    int64_t inner = r[5], na = r[6], nb = r[7];
    int nd = (int)r[8];
    if (nd < 0 || nd > OPML_PLAN_MAX_DIMS / 2) return -1;
    const int64_t *shape = r + 9, *as = r + 9 + nd, *bs = r + 9 + 2 * nd;
    int64_t idx[OPML_PLAN_MAX_DIMS] = {0}, total = 1, ao = 0, bo = 0;
    for (int d = 0; d < nd; d++) total *= shape[d];
    const uint8_t *table = PTR(1);
    int isa = (int)r[OPML_PLAN_REC - 1];
    uint8_t col[256];
    for (int64_t o = 0; o < total; o++) {
        uint8_t *yo = y + o * inner;
        if (!inner) {
        } else if (na == 1 && nb == inner) { /* one a per block (an SE block's channel scale): row a of the table */
            if (opml_lut8(table + ((int64_t)a[ao] << 8), b + bo, yo, 0, inner, isa)) return -1;
        } else if (nb == 1 && na == inner && inner >= 256) { /* one b per block: column b of the table */
            for (int v = 0; v < 256; v++) col[v] = table[(v << 8) | b[bo]];
            if (opml_lut8(col, a + ao, yo, 0, inner, isa)) return -1;
        } else if (opml_pair_lut8(table, a + ao, na, b + bo, nb, yo, 0, inner, isa)) {
            return -1;
        }
        for (int d = nd - 1; d >= 0; d--) {
            ao += as[d], bo += bs[d];
            if (++idx[d] < shape[d]) break;
            ao -= as[d] * shape[d], bo -= bs[d] * shape[d];
            idx[d] = 0;
        }
    }
    return 0;
}

/* ------------------------------------------------------------------------------ reductions */

/* intmath.round_div: floor((num + floor(den / 2)) / den) for den > 0 (the builder bounds |num| + den < 2^62). */
static int64_t round_div(int64_t num, int64_t den) {
    int64_t n = num + (den >> 1), q = n / den;
    return q - (n % den != 0 && n < 0);
}

static int64_t clamp(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* kernels.prepare_reduce (max, sum, mean) over one contiguous block of axes. */
static int reduce(const int64_t *r) {
    const void *x = PTR(1);
    int xk = (int)r[2], yk = (int)r[14];
    int64_t outer = r[3], n = r[4], inner = r[5], zp = r[7], mult = r[8], den = r[9], ozp = r[10], lo = r[11],
            hi = r[12];
    void *y = PTR(13);
    if (inner == 1 && (xk == KIND_I8 || xk == KIND_U8) && (yk == KIND_I8 || yk == KIND_U8) && lo <= hi)
        /* global pooling of NCHW planes: conv.c's vectorized sums (the same integers; the builder's bound is
         * stricter than the 2^62 one it needs) */
        return opml_plane_reduce(x, xk == KIND_I8, outer, n, r[6] ? 1 : 0, zp, mult, den, ozp, lo, hi, y,
                                 (int)r[OPML_PLAN_REC - 1]);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t in = 0; in < inner; in++) {
            int64_t base = o * n * inner + in, v;
            if (r[6]) {
                v = int_at(x, xk, base);
                for (int64_t j = 1; j < n; j++) {
                    int64_t t = int_at(x, xk, base + j * inner);
                    v = t > v ? t : v;
                }
            } else {
                int64_t acc = 0;
                for (int64_t j = 0; j < n; j++) acc += int_at(x, xk, base + j * inner) - zp;
                v = clamp(round_div(acc * mult, den) + ozp, lo, hi);
            }
            store_int(y, yk, o * inner + in, v);
        }
    return 0;
}

/* kernels.prepare_avgpool: per window, the sum of (x - zp) over its positions inside the image (the padding adds
 * 0), divided by the window's size or (include pad off) by its positions inside the image (never 0: checked). */
static void avgpool(const int64_t *r) {
    const void *x = PTR(1);
    int xk = (int)r[2], yk = (int)r[24];
    int64_t planes = r[3], h = r[4], w = r[5], kh = r[6], kw = r[7], sh = r[8], sw = r[9], dh = r[10], dw = r[11];
    int64_t pt = r[12], pl = r[13], oh = r[14], ow = r[15], zp = r[16], mult = r[17], shift = r[18], ozp = r[19];
    int64_t lo = r[20], hi = r[21], incl = r[22];
    void *y = PTR(23);
    int64_t at = 0;
    for (int64_t p = 0; p < planes; p++)
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++) {
                int64_t acc = 0, cnt = 0;
                for (int64_t i = 0; i < kh; i++) {
                    int64_t iy = oy * sh + i * dh - pt;
                    if (iy < 0 || iy >= h) continue;
                    for (int64_t j = 0; j < kw; j++) {
                        int64_t ix = ox * sw + j * dw - pl;
                        if (ix < 0 || ix >= w) continue;
                        acc += int_at(x, xk, (p * h + iy) * w + ix) - zp;
                        cnt++;
                    }
                }
                int64_t den = (incl ? kh * kw : cnt) << shift;
                store_int(y, yk, at++, clamp(round_div(acc * mult, den) + ozp, lo, hi));
            }
}

static void where(const int64_t *r) {
    const void *c = PTR(1);
    const uint8_t *a = PTR(3), *b = PTR(4);
    uint8_t *y = PTR(5);
    int ck = (int)r[2];
    int64_t size = r[6], nd = r[7];
    const int64_t *shape = PTR(8), *cs = shape + nd, *as = cs + nd, *bs = as + nd;
    int64_t idx[OPML_PLAN_MAX_DIMS] = {0}, total = 1, co = 0, ao = 0, bo = 0;
    for (int64_t d = 0; d < nd; d++) total *= shape[d];
    for (int64_t i = 0; i < total; i++) {
        memcpy(y + i * size, int_at(c, ck, co) ? a + ao * size : b + bo * size, (size_t)size);
        for (int64_t d = nd - 1; d >= 0; d--) {
            co += cs[d], ao += as[d], bo += bs[d];
            if (++idx[d] < shape[d]) break;
            co -= cs[d] * shape[d], ao -= as[d] * shape[d], bo -= bs[d] * shape[d];
            idx[d] = 0;
        }
    }
}

/* ---------------------------------------------------------------------------------------- loop */

static int run_one(const int64_t *r, int threads) {
    switch (r[0]) {
    case 0: /* a record that does nothing: scripts/bench/plan.py times each op kind by dropping its records */
        return 0;
    case OP_GEMM:
        return r[3] ? opml_qgemm_cfg(PTR(1), PTR(2), r[3], PTR(4), threads) : 0;
    case OP_MATMUL:
        return r[4] && r[5] && r[7] ? opml_qmatmul_cfg(PTR(1), PTR(2), PTR(3), r[4], r[5], r[6], r[7], PTR(8), threads)
                                    : 0;
    case OP_SOFTMAX:
        return opml_parallel_for(softmax_range, (void *)r, r[3], parts_for(r[3], r[4], threads));
    case OP_LAYERNORM:
        return opml_parallel_for(layernorm_range, (void *)r, r[4], parts_for(r[4], r[5], threads));
    case OP_LUT8:
        if (r[4] >= 0 && r[4] <= SMALL_LOOKUPS) { /* the same table entries without the vector set-up */
            const uint8_t *t = PTR(1), *x = PTR(2);
            uint8_t *y = PTR(3);
            for (int64_t i = 0; i < r[4]; i++) y[i] = t[x[i]];
            return 0;
        }
        return opml_parallel_for(lut8_range, (void *)r, r[4], parts_for(r[4], 1, threads));
    case OP_PAIR_LUT8:
        if (r[7] >= 0 && r[7] <= SMALL_LOOKUPS && r[3] > 0 && r[5] > 0) {
            small_pair(r);
            return 0;
        }
        return opml_parallel_for(pair_lut8_range, (void *)r, r[7], parts_for(r[7], 1, threads));
    case OP_TRANSPOSE:
        if (r[4] < 0 || r[4] > OPML_PLAN_MAX_DIMS) return -1;
        transpose(PTR(1), PTR(2), r[3], (int)r[4], r + 5, r + 5 + r[4]);
        return 0;
    case OP_MAXPOOL: /* conv.c's vectorized pooling (padding is the dtype's minimum: skipped taps never win) */
        return opml_maxpool(PTR(1), (int)r[15], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
                            r[13], r[14], PTR(16), (int)r[OPML_PLAN_REC - 1], threads);
    case OP_CONV:
        return conv(r, threads);
    case OP_QUANTIZE:
        return quantize(r);
    case OP_DEQUANTIZE:
        dequantize(r);
        return 0;
    case OP_CONCAT:
        concat(r);
        return 0;
    case OP_GATHER:
        return gather(r);
    case OP_CAST:
        return cast(r);
    case OP_ARGMAX:
        argmax(r);
        return 0;
    case OP_GCONV:
        return r[3] ? opml_gconv_cfg(PTR(1), PTR(2), r[3], r[4], r[5], PTR(6), threads) : 0;
    case OP_LUT_WIDE:
        lut_wide(r);
        return 0;
    case OP_REDUCE:
        return reduce(r);
    case OP_AVGPOOL:
        avgpool(r);
        return 0;
    case OP_TRANSPOSE2D:
        return r[3] ? opml_transpose_batched(PTR(1), r[3], r[4], r[5], r[6], PTR(2), threads) : 0;
    case OP_QCONV:
        return r[3] ? opml_qconv_nchw(PTR(1), PTR(2), r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12],
                                      r[13], r[14], r[15], r[16], r[17], PTR(18), 0, threads)
                    : 0;
    case OP_WHERE:
        if (r[7] < 0 || r[7] > OPML_PLAN_MAX_DIMS) return -1;
        where(r);
        return 0;
    case OP_PAIR_BCAST:
        return pair_bcast(r);
    case OP_ADD_WIDE:
        return opml_parallel_for(add_wide_range, (void *)r, r[17], parts_for(r[17], 1, threads));
    default:
        return -1;
    }
}

/* The record width (the Python builder checks it against its own). */
int64_t opml_plan_record_words(void) { return OPML_PLAN_REC; }

/* Runs records [0, count) in order. Returns 0, or 1 + the index of the first record that failed (nothing
 * after it ran), with *code = -1 when its kernel refused its arguments (a builder bug) or PLAN_DATA_ERROR for
 * an input the per-node path rejects with a named error. */
int64_t opml_plan_run(const int64_t *records, int64_t count, int threads, int64_t *code) {
    for (int64_t i = 0; i < count; i++) {
        int rc = run_one(records + i * OPML_PLAN_REC, threads);
        if (rc) {
            *code = rc == PLAN_DATA_ERROR ? PLAN_DATA_ERROR : -1;
            return i + 1;
        }
    }
    return 0;
}
