/* Exact softmax and layernorm over the last axis: the spec's integer algorithms (opml/reference.py)
 * in int64, row by row.
 *
 * Softmax (x int8/uint8 [rows, L], a 256-entry int64 table T with |T| <= tmax):
 *     d_i = max(x) - x_i in [0, 255]   e_i = T[d_i]   s = max(sum e, 1)
 *     y_i = clip(floor((512 e_i + s) / (2 s)) + zp, lo, hi)
 *   |s| <= L tmax and |512 e + s| <= (512 + L) tmax; the caller guarantees (512 + 3 L) tmax + 2 < 2^52
 *   (checked again here), so every quantity is an int64 well below 2^52.
 *
 * Layernorm (x int8/uint8/int16 [rows, n] with |x| <= X, gamma/beta int64 [n], g the sqrt guard bits,
 * F the fraction bits):
 *     S = sum x   Q = sum x^2   t = n Q - S^2 (= v // n: the spec's v = sum (n x - S)^2 = n t exactly)
 *     den = max(isqrt((t << 2g) + eps), 1)
 *     z_i = floor((d_i 2^(F+g) + floor(den / 2)) / den)     with d_i = n x_i - S
 *     y_i = clip(zp + round_shift(clip_int32(z_i gamma_i + beta_i) * mult, shift), qmin, qmax)
 *   Bounds (checked by opml_layernorm_ok, which the kernel calls first): |S| <= X n, 0 <= t <= n Q <= X^2 n^2,
 *   (X^2 n^2 << 2g) + eps < 2^62 (so den <= 2^31); |d| <= 2 X n and |num| <= 2 X n 2^(F+g) + 2^31 < 2^51;
 *   |z| <= |num| (den >= 1) and |num| max|gamma| + max|beta| < 2^62; |mult| < 2^31 and 1 <= shift <= 62, so
 *   |clip_int32(a) * mult| < 2^62 and adding 2^(shift-1) <= 2^61 stays below 2^63. No int64 overflow.
 *
 * Exact floor division without a per-element integer divide: q0 = trunc(num * (1/den)) in float64 is
 * an estimate, and integer corrections (r = num - q0 den; while r < 0: q0--; while r >= den: q0++)
 * return floor(num / den) whatever the estimate was: they end with num = q0 den + r, 0 <= r < den.
 * The estimate only decides the speed (|num| < 2^51: it is within one of the quotient, and q0 den
 * cannot overflow). The floating-point part therefore cannot change a bit of the result, whatever
 * rounding, FMA contraction or vector width the compiler uses. isqrt likewise corrects an estimate
 * with integer steps (or runs integer Newton); no libm.
 *
 * The AVX2 variants (isa >= 1) evaluate the same integers four at a time in float64 lanes, only where
 * every value is an integer below 2^53 (so exact, in any order), with the same estimate-and-correct
 * division whose corrected remainders are checked (any lane outside the one-step range is recomputed
 * by the scalar code); their comments give each step's bound. The AVX-512 variants (norm_avx512: isa 2,
 * or a later code on a CPU with AVX-512) are the same steps eight lanes at a time, with masked tails and,
 * for layernorm, the statistics and the requantization in integer lanes. Return 0, or -1 on arguments
 * outside the bounds (nothing is written then).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#define OPML_2_52 ((int64_t)1 << 52)
#define OPML_2_51 ((int64_t)1 << 51)
#define OPML_2_62 ((int64_t)1 << 62)

#if defined(__x86_64__) || defined(__i386__)
#define OPML_NORM_X86 1
#include <immintrin.h>
#define OPML_AVX2 __attribute__((target("avx2")))
#define OPML_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq")))
#endif

/* Whether instruction-set code isa (qgemm.c OPML_ISA_*) runs the AVX-512 rows: 2 (AVX-512 VNNI, which the
 * library offers only with AVX-512 F, BW and VL), or a later code on a CPU with AVX-512 F, BW, VL and DQ.
 * The other codes (1, 3 AVX-VNNI, 4 its EVEX twin, kept for testing that GEMM) run the AVX2 rows. */
static int norm_avx512(int isa) {
#ifdef OPML_NORM_X86
    if (isa == 2) return 1;
    if (isa > 4) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    }
#endif
    (void)isa;
    return 0;
}

/* floor(v / 2^s) for 0 <= s <= 62, without relying on >> of negative values. */
static inline int64_t floor_shift(int64_t v, int s) { return v >= 0 ? v >> s : ~((~v) >> s); }

/* floor(num / den) for den >= 1, |num| < 2^51, den < 2^52, inv ~ 1 / den (see the header; the float64
 * estimate's magnitude is at most |num|, so its conversion is in range). */
static inline int64_t floor_div(int64_t num, int64_t den, double inv) {
    int64_t q = (int64_t)((double)num * inv);
    int64_t r = num - q * den;
    /* one branch-free step each way (the usual case: truncation of a negative estimate is one too
     * high), then the loops, which make the result exact whatever the estimate */
    int64_t lt = -(int64_t)(r < 0);
    q += lt;
    r += den & lt;
    int64_t ge = -(int64_t)(r >= den);
    q -= ge;
    r -= den & ge;
    while (r < 0) {
        q--;
        r += den;
    }
    while (r >= den) {
        q++;
        r -= den;
    }
    return q;
}

/* floor(sqrt(w)) for 0 <= w < 2^62. With SSE2, the float64 square root is the first estimate and
 * integer steps correct it ((r + 1)^2 <= (2^31 + 1)^2 < 2^63: no overflow); the loops end exactly at
 * floor(sqrt(w)) whatever the estimate (the float64 root is within one of it, so they run at most once).
 * Without SSE2, Newton's iteration from 2^ceil(bits/2) >= sqrt(w) decreases strictly until it reaches
 * floor(sqrt(w)), where the next iterate is not smaller. */
static int64_t isqrt64(int64_t w) {
    if (w < 2) return w;
#ifdef __SSE2__
    int64_t r = (int64_t)_mm_cvtsd_f64(_mm_sqrt_sd(_mm_setzero_pd(), _mm_set_sd((double)w)));
    r = r > ((int64_t)1 << 31) ? ((int64_t)1 << 31) : r;
    while (r * r > w) r--;
    while ((r + 1) * (r + 1) <= w) r++;
    return r;
#else
    int bits = 0;
    for (uint64_t t = (uint64_t)w; t; t >>= 1) bits++;
    int64_t x = (int64_t)1 << ((bits + 1) / 2);
    for (;;) {
        int64_t y = (x + w / x) / 2;
        if (y >= x) return x;
        x = y;
    }
#endif
}

/* Clamp (written for conditional moves: saturated values would make branches unpredictable). */
static inline int64_t clamp64(int64_t v, int64_t lo, int64_t hi) {
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    return v;
}

/* ---------------------------------------------------------------------------------------- softmax */

/* Bounds of the header; 1 when the kernel may run. */
int opml_softmax_ok(int64_t len, int64_t tmax) {
    if (len < 1 || tmax < 0 || len > ((int64_t)1 << 40) || tmax > OPML_2_52) return 0;
    /* (512 + 3 len) tmax + 2 < 2^52, without overflow (3 len < 2^42) */
    return tmax == 0 || (512 + 3 * len) <= (OPML_2_52 - 3) / tmax;
}

/* The row maximum's byte (signed or unsigned order). */
static inline uint8_t row_max(const uint8_t *xb, int64_t len, int xsigned) {
    if (xsigned) {
        int8_t m = (int8_t)xb[0];
        for (int64_t i = 1; i < len; i++) m = (int8_t)xb[i] > m ? (int8_t)xb[i] : m;
        return (uint8_t)m;
    }
    uint8_t m = xb[0];
    for (int64_t i = 1; i < len; i++) m = xb[i] > m ? xb[i] : m;
    return m;
}

/* One output byte: clip(floor((512 e + s) / (2 s)) + zp, lo, hi). */
static inline uint8_t softmax_element(int64_t e, int64_t s, double inv, int64_t zp, int64_t lo, int64_t hi) {
    return (uint8_t)clamp64(floor_div(512 * e + s, 2 * s, inv) + zp, lo, hi);
}

static void softmax_generic(const uint8_t *x, int xsigned, int64_t r0, int64_t r1, int64_t len,
                            const int64_t *table, int64_t zp, int64_t lo, int64_t hi, uint8_t *y) {
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *xb = x + r * len;
        uint8_t mx = row_max(xb, len, xsigned);
        /* max - x_i lies in [0, 255]: byte subtraction modulo 256 gives it for int8 and uint8 alike */
        int64_t s = 0;
        for (int64_t i = 0; i < len; i++) s += table[(uint8_t)(mx - xb[i])];
        s = s < 1 ? 1 : s;
        double inv = 1.0 / (double)(2 * s);
        for (int64_t i = 0; i < len; i++) y[r * len + i] = softmax_element(table[(uint8_t)(mx - xb[i])], s, inv, zp, lo, hi);
    }
}

#ifdef OPML_NORM_X86
/* AVX2 rows. e_i from a float64 copy of the table (exact: |T| < 2^52) into the scratch row ebuf; the
 * sum in float64 (every partial sum is an integer of magnitude <= L tmax < 2^52: exact in any order);
 * then four elements at a time:
 *   num = 512 e + s, den = 2 s                      integers below 2^52: exact
 *   q = floor(num * inv), rem = num - q den         q den, rem: integers below 2^53, exact
 *   q += (rem >= den) - (rem < 0)                   the floor quotient when -den <= rem < 2 den (lanes
 *                                                   outside, which the reciprocal's accuracy rules out,
 *                                                   are redone by the scalar code)
 *   clip(q + zp, lo, hi)                            exact, then converted to int32 and stored as bytes
 */
OPML_AVX2 static void softmax_avx2(const uint8_t *x, int xsigned, int64_t r0, int64_t r1, int64_t len,
                                   const int64_t *table, int64_t zp, int64_t lo, int64_t hi, uint8_t *y,
                                   const double *tabd, double *ebuf) {
    const __m256d zero = _mm256_setzero_pd(), one = _mm256_set1_pd(1.0), c512 = _mm256_set1_pd(512.0);
    const __m256d zpv = _mm256_set1_pd((double)zp), lov = _mm256_set1_pd((double)lo), hiv = _mm256_set1_pd((double)hi);
    const __m128i low_bytes = _mm_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *xb = x + r * len;
        uint8_t mx;
        int64_t i = 0;
        if (len >= 32) {
            __m256i m = _mm256_loadu_si256((const __m256i *)xb);
            for (i = 32; i + 32 <= len; i += 32) {
                __m256i v = _mm256_loadu_si256((const __m256i *)(xb + i));
                m = xsigned ? _mm256_max_epi8(m, v) : _mm256_max_epu8(m, v);
            }
            /* horizontal maximum: fold halves (bytes compared in the row's order) */
            __m128i h = _mm_max_epu8(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
            if (xsigned) h = _mm_max_epi8(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
            for (int sh = 8; sh; sh >>= 1) {
                __m128i t = sh == 8 ? _mm_srli_si128(h, 8) : sh == 4 ? _mm_srli_si128(h, 4) : sh == 2 ? _mm_srli_si128(h, 2) : _mm_srli_si128(h, 1);
                h = xsigned ? _mm_max_epi8(h, t) : _mm_max_epu8(h, t);
            }
            mx = (uint8_t)_mm_cvtsi128_si32(h);
            for (; i < len; i++) mx = xsigned ? ((int8_t)xb[i] > (int8_t)mx ? xb[i] : mx) : (xb[i] > mx ? xb[i] : mx);
        } else {
            mx = row_max(xb, len, xsigned);
        }
        for (i = 0; i < len; i++) ebuf[i] = tabd[(uint8_t)(mx - xb[i])];
        __m256d acc = zero;
        for (i = 0; i + 4 <= len; i += 4) acc = _mm256_add_pd(acc, _mm256_loadu_pd(ebuf + i));
        double part[4];
        _mm256_storeu_pd(part, acc);
        double sd = (part[0] + part[1]) + (part[2] + part[3]);
        for (; i < len; i++) sd += ebuf[i];
        int64_t s = (int64_t)sd; /* an exact integer */
        s = s < 1 ? 1 : s;
        double inv = 1.0 / (double)(2 * s);
        const __m256d sv = _mm256_set1_pd((double)s), denv = _mm256_set1_pd((double)(2 * s)), invv = _mm256_set1_pd(inv);
        const __m256d negden = _mm256_set1_pd(-(double)(2 * s)), den2 = _mm256_set1_pd(4.0 * (double)s);
        uint8_t *yr = y + r * len;
        for (i = 0; i + 4 <= len; i += 4) {
            __m256d num = _mm256_add_pd(_mm256_mul_pd(_mm256_loadu_pd(ebuf + i), c512), sv);
            __m256d q = _mm256_floor_pd(_mm256_mul_pd(num, invv));
            __m256d rem = _mm256_sub_pd(num, _mm256_mul_pd(q, denv));
            __m256d bad = _mm256_or_pd(_mm256_cmp_pd(rem, negden, _CMP_LT_OQ), _mm256_cmp_pd(rem, den2, _CMP_GE_OQ));
            if (_mm256_movemask_pd(bad)) {
                for (int64_t k = i; k < i + 4; k++) yr[k] = softmax_element(table[(uint8_t)(mx - xb[k])], s, inv, zp, lo, hi);
                continue;
            }
            __m256d lt = _mm256_cmp_pd(rem, zero, _CMP_LT_OQ), ge = _mm256_cmp_pd(rem, denv, _CMP_GE_OQ);
            q = _mm256_add_pd(q, _mm256_sub_pd(_mm256_and_pd(ge, one), _mm256_and_pd(lt, one)));
            q = _mm256_min_pd(_mm256_max_pd(_mm256_add_pd(q, zpv), lov), hiv);
            int32_t bytes = _mm_cvtsi128_si32(_mm_shuffle_epi8(_mm256_cvttpd_epi32(q), low_bytes));
            memcpy(yr + i, &bytes, 4);
        }
        for (; i < len; i++) yr[i] = softmax_element(table[(uint8_t)(mx - xb[i])], s, inv, zp, lo, hi);
    }
}
/* AVX-512 rows (isa: see use_avx512): the AVX2 rows' arithmetic eight lanes at a time, with masks for
 * the tails instead of scalar loops. The row maximum over 64 bytes per step (tail lanes loaded as the
 * dtype's minimum, which cannot change it); e_i gathered from the float64 table (VGATHERDPD, tail
 * lanes masked to 0) into the scratch row ebuf and summed in float64 (exact: every partial sum is an
 * integer of magnitude <= L tmax < 2^52, in any order); then per eight elements the same steps as the
 * AVX2 variant: num = 512 e + s (one rounding of an exact integer below 2^52: exact), q = floor(num /
 * 2s) estimated, rem = num - q 2s exact, lanes with rem outside [-2s, 4s) redone by the scalar code,
 * one correction step, clip(q + zp, lo, hi), and VPMOVDB of the exact int32 to the output bytes. */
OPML_AVX512 static void softmax_avx512(const uint8_t *x, int xsigned, int64_t r0, int64_t r1, int64_t len,
                                       const int64_t *table, int64_t zp, int64_t lo, int64_t hi, uint8_t *y,
                                       const double *tabd, double *ebuf) {
    const __m512d zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0), c512 = _mm512_set1_pd(512.0);
    const __m512d zpv = _mm512_set1_pd((double)zp), lov = _mm512_set1_pd((double)lo), hiv = _mm512_set1_pd((double)hi);
    const __m512i fill = _mm512_set1_epi8(xsigned ? (char)-128 : 0);
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *xb = x + r * len;
        __m512i m = fill;
        for (int64_t i = 0; i < len; i += 64) {
            __mmask64 k = len - i >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (len - i)) - 1);
            __m512i v = _mm512_mask_loadu_epi8(fill, k, xb + i);
            m = xsigned ? _mm512_max_epi8(m, v) : _mm512_max_epu8(m, v);
        }
        __m256i h2 = xsigned ? _mm256_max_epi8(_mm512_castsi512_si256(m), _mm512_extracti64x4_epi64(m, 1))
                             : _mm256_max_epu8(_mm512_castsi512_si256(m), _mm512_extracti64x4_epi64(m, 1));
        __m128i h = xsigned ? _mm_max_epi8(_mm256_castsi256_si128(h2), _mm256_extracti128_si256(h2, 1))
                            : _mm_max_epu8(_mm256_castsi256_si128(h2), _mm256_extracti128_si256(h2, 1));
        h = xsigned ? _mm_max_epi8(h, _mm_srli_si128(h, 8)) : _mm_max_epu8(h, _mm_srli_si128(h, 8));
        h = xsigned ? _mm_max_epi8(h, _mm_srli_si128(h, 4)) : _mm_max_epu8(h, _mm_srli_si128(h, 4));
        h = xsigned ? _mm_max_epi8(h, _mm_srli_si128(h, 2)) : _mm_max_epu8(h, _mm_srli_si128(h, 2));
        h = xsigned ? _mm_max_epi8(h, _mm_srli_si128(h, 1)) : _mm_max_epu8(h, _mm_srli_si128(h, 1));
        uint8_t mx = (uint8_t)_mm_cvtsi128_si32(h);
        /* d_i = mx - x_i modulo 256 (in [0, 255] for int8 and uint8 alike), as int32 gather indices */
        const __m128i mxv = _mm_set1_epi8((char)mx);
        __m512d acc = zero;
        for (int64_t i = 0; i < len; i += 8) {
            __mmask8 k = len - i >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (len - i)) - 1);
            __m128i d = _mm_sub_epi8(mxv, _mm_maskz_loadu_epi8((__mmask16)k, xb + i));
            __m512d e = _mm512_mask_i32gather_pd(zero, k, _mm256_cvtepu8_epi32(d), tabd, 8);
            _mm512_mask_storeu_pd(ebuf + i, k, e);
            acc = _mm512_add_pd(acc, e);
        }
        int64_t s = (int64_t)_mm512_reduce_add_pd(acc); /* an exact integer */
        s = s < 1 ? 1 : s;
        double inv = 1.0 / (double)(2 * s);
        const __m512d sv = _mm512_set1_pd((double)s), denv = _mm512_set1_pd((double)(2 * s)), invv = _mm512_set1_pd(inv);
        const __m512d negden = _mm512_set1_pd(-(double)(2 * s)), den2 = _mm512_set1_pd(4.0 * (double)s);
        uint8_t *yr = y + r * len;
        for (int64_t i = 0; i < len; i += 8) {
            __mmask8 k = len - i >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (len - i)) - 1);
            __m512d num = _mm512_fmadd_pd(_mm512_maskz_loadu_pd(k, ebuf + i), c512, sv);
            __m512d q = _mm512_roundscale_pd(_mm512_mul_pd(num, invv), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
            __m512d rem = _mm512_fnmadd_pd(q, denv, num);
            __mmask8 bad = k & (_mm512_cmp_pd_mask(rem, negden, _CMP_LT_OQ) | _mm512_cmp_pd_mask(rem, den2, _CMP_GE_OQ));
            if (bad) {
                for (int64_t j = i; j < i + 8 && j < len; j++)
                    yr[j] = softmax_element(table[(uint8_t)(mx - xb[j])], s, inv, zp, lo, hi);
                continue;
            }
            q = _mm512_mask_add_pd(q, _mm512_cmp_pd_mask(rem, denv, _CMP_GE_OQ), q, one);
            q = _mm512_mask_sub_pd(q, _mm512_cmp_pd_mask(rem, zero, _CMP_LT_OQ), q, one);
            q = _mm512_min_pd(_mm512_max_pd(_mm512_add_pd(q, zpv), lov), hiv);
            _mm_mask_storeu_epi8(yr + i, (__mmask16)k, _mm256_cvtepi32_epi8(_mm512_cvttpd_epi32(q)));
        }
    }
}
#endif

/* Rows [r0, r1) of y (bytes of the int8/uint8 output, [rows, len]) = softmax of x (bytes of int8 when
 * xsigned, else uint8) over its last axis. lo, hi: the output dtype's range. */
int opml_softmax(const uint8_t *x, int xsigned, int64_t r0, int64_t r1, int64_t len, const int64_t *table,
                 int64_t zp, int64_t lo, int64_t hi, uint8_t *y, int isa) {
    if (r0 < 0 || r1 < r0 || lo > hi || lo < -128 || hi > 255 || zp < -((int64_t)1 << 40) || zp > ((int64_t)1 << 40))
        return -1;
    int64_t tmax = 0;
    for (int i = 0; i < 256; i++) {
        if (table[i] < -OPML_2_52 || table[i] > OPML_2_52) return -1;
        int64_t a = table[i] < 0 ? -table[i] : table[i];
        tmax = a > tmax ? a : tmax;
    }
    if (!opml_softmax_ok(len, tmax)) return -1;
#ifdef OPML_NORM_X86
    if (isa >= 1) { /* AVX2, or a VNNI set (which implies it) */
        double *buf = (double *)malloc((size_t)(256 + len) * sizeof(double));
        if (buf) {
            for (int i = 0; i < 256; i++) buf[i] = (double)table[i];
            if (norm_avx512(isa))
                softmax_avx512(x, xsigned, r0, r1, len, table, zp, lo, hi, y, buf, buf + 256);
            else
                softmax_avx2(x, xsigned, r0, r1, len, table, zp, lo, hi, y, buf, buf + 256);
            free(buf);
            return 0;
        }
    }
#endif
    (void)isa;
    softmax_generic(x, xsigned, r0, r1, len, table, zp, lo, hi, y);
    return 0;
}

/* -------------------------------------------------------------------------------------- layernorm */

/* The header's bounds for rows of n values with |x| <= xmax; 1 when the kernel may run. */
int opml_layernorm_ok(int64_t n, int64_t xmax, int64_t gmax, int64_t bmax, int64_t eps, int frac, int g,
                      int64_t mult, int shift) {
    if (n < 1 || n > ((int64_t)1 << 20) || xmax < 0 || xmax > 32768 || gmax < 0 || bmax < 0 || eps < 0)
        return 0;
    if (frac < 0 || g < 0 || frac + g > 40 || 2 * g > 40 || shift < 1 || shift > 62) return 0;
    if (mult <= -((int64_t)1 << 31) || mult >= ((int64_t)1 << 31)) return 0;
    if (eps >= OPML_2_62 || bmax >= OPML_2_62) return 0;
    /* t <= n Q <= (X n)^2, and (t << 2g) + eps < 2^62 */
    int64_t xn = xmax * n; /* <= 2^35 */
    if (xn >= ((int64_t)1 << 31)) return 0;
    if (xn * xn > ((OPML_2_62 - 1 - eps) >> (2 * g))) return 0;
    /* |d| <= n (max x - min x) <= 2 X n, |num| <= 2 X n 2^(F+g) + 2^31 < 2^51 */
    if (2 * xn > ((OPML_2_51 - ((int64_t)1 << 31) - 1) >> (frac + g))) return 0;
    int64_t num = ((2 * xn) << (frac + g)) + ((int64_t)1 << 31);
    /* |z| <= |num| (den >= 1): |z gamma + beta| <= num gmax + bmax < 2^62 */
    if (gmax > (OPML_2_62 - 1 - bmax) / num) return 0;
    return 1;
}

typedef struct {
    const void *x;
    int kind; /* 0 int8, 1 uint8, 2 int16 */
    int64_t n, eps, mult, zp, qmin, qmax, scale, rnd;
    int g, shift;
    const int64_t *gamma, *beta;
    uint8_t *y;
} ln_params;

#define OPML_INLINE static inline __attribute__((always_inline))

/* S = sum x and den = max(isqrt(((n Q - S^2) << 2g) + eps), 1) of row r. */
OPML_INLINE void ln_stats(const ln_params *p, int64_t r, int64_t *S_out, int64_t *den_out) {
    int64_t n = p->n, S = 0, Q = 0;
    if (p->kind == 0) {
        const int8_t *x = (const int8_t *)p->x + r * n;
        for (int64_t i = 0; i < n; i++) {
            S += x[i];
            Q += (int32_t)x[i] * x[i];
        }
    } else if (p->kind == 1) {
        const uint8_t *x = (const uint8_t *)p->x + r * n;
        for (int64_t i = 0; i < n; i++) {
            S += x[i];
            Q += (int32_t)x[i] * x[i];
        }
    } else {
        const int16_t *x = (const int16_t *)p->x + r * n;
        for (int64_t i = 0; i < n; i++) {
            S += x[i];
            Q += (int64_t)x[i] * x[i];
        }
    }
    int64_t t = n * Q - S * S; /* = v // n: the spec's v = sum (n x - S)^2 = n t */
    int64_t den = isqrt64(t * ((int64_t)1 << (2 * p->g)) + p->eps);
    *S_out = S;
    *den_out = den < 1 ? 1 : den;
}

OPML_INLINE int64_t ln_load(const ln_params *p, int64_t k) {
    if (p->kind == 0) return ((const int8_t *)p->x)[k];
    if (p->kind == 1) return ((const uint8_t *)p->x)[k];
    return ((const int16_t *)p->x)[k];
}

/* The output byte of element i (channel c) of a row with sum S and denominator den. */
OPML_INLINE uint8_t ln_element(const ln_params *p, int64_t xv, int64_t c, int64_t S, int64_t den, double inv) {
    int64_t num = (p->n * xv - S) * p->scale + (den >> 1);
    int64_t acc = floor_div(num, den, inv) * p->gamma[c] + p->beta[c];
    int64_t a = clamp64(acc, INT32_MIN, INT32_MAX);
    return (uint8_t)clamp64(p->zp + floor_shift(a * p->mult + p->rnd, p->shift), p->qmin, p->qmax);
}

static void ln_rows_generic(const ln_params *p, int64_t r0, int64_t r1) {
    int64_t n = p->n;
    for (int64_t r = r0; r < r1; r++) {
        int64_t S, den;
        ln_stats(p, r, &S, &den);
        double inv = 1.0 / (double)den;
        for (int64_t c = 0; c < n; c++) p->y[r * n + c] = ln_element(p, ln_load(p, r * n + c), c, S, den, inv);
    }
}

#ifdef OPML_NORM_X86
/* Four consecutive inputs as float64 (exact: integers of at most 16 bits). */
OPML_AVX2 static inline __m256d ln_load4(const ln_params *p, int64_t k) {
    __m128i v;
    if (p->kind == 2) {
        int64_t w;
        memcpy(&w, (const int16_t *)p->x + k, 8);
        v = _mm_cvtepi16_epi32(_mm_cvtsi64_si128(w));
    } else {
        int32_t w;
        memcpy(&w, (const uint8_t *)p->x + k, 4);
        v = p->kind == 0 ? _mm_cvtepi8_epi32(_mm_cvtsi32_si128(w)) : _mm_cvtepu8_epi32(_mm_cvtsi32_si128(w));
    }
    return _mm256_cvtepi32_pd(v);
}

/* The requantization of four exact integers a (|a| <= 2^31, float64) to output values, in int64 lanes:
 * zp + floor((a mult + 2^(s-1)) / 2^s) with VPMULDQ (|a|, |mult| < 2^31: the product is exact) and the
 * arithmetic shift as ~(~v >> s) on negative lanes, then the clamp to [qmin, qmax]. */
OPML_AVX2 static inline __m256d ln_requant_i64(__m256d acc, __m256i multv, __m256i rndv, __m128i shiftv,
                                               __m256i zpv, __m256i qminv, __m256i qmaxv) {
    __m256i a = _mm256_cvtepi32_epi64(_mm256_cvttpd_epi32(acc));
    __m256i v = _mm256_add_epi64(_mm256_mul_epi32(a, multv), rndv);
    __m256i sg = _mm256_cmpgt_epi64(_mm256_setzero_si256(), v);
    v = _mm256_xor_si256(_mm256_srl_epi64(_mm256_xor_si256(v, sg), shiftv), sg);
    v = _mm256_add_epi64(v, zpv);
    v = _mm256_blendv_epi8(v, qminv, _mm256_cmpgt_epi64(qminv, v));
    v = _mm256_blendv_epi8(v, qmaxv, _mm256_cmpgt_epi64(v, qmaxv));
    /* values in [-128, 255]: exact as float64, converted back by the caller like the other variant */
    __m128i lo32 = _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(v, _mm256_setr_epi32(0, 2, 4, 6, 0, 2, 4, 6)));
    return _mm256_cvtepi32_pd(lo32);
}

/* AVX2 rows: four elements at a time, the integer steps in float64 where they are exact (the caller
 * checked max|num| max|gamma| + max|beta| < 2^53; gd, bd: gamma and beta as float64):
 *   num = x (n 2^(F+g)) + (den/2 - S 2^(F+g))      integers below 2^51: exact
 *   q = floor(num * inv), r = num - q den           q den and r: integers below 2^52, exact
 *   q += (r >= den) - (r < 0)                       the floor quotient when -den <= r < 2 den; lanes
 *                                                   outside that (none, by the reciprocal's accuracy:
 *                                                   the estimate is within one) are redone by the
 *                                                   scalar code, so the result never rests on it
 *   a = clip_int32(q gamma + beta)                  exact below 2^53, the clamp bounds are integers
 * then the requantization zp + floor((a m + 2^(s-1)) / 2^s), clamped to [qmin, qmax]. For s >= 17 in
 * float64 too: with m = mh 2^16 + ml (mh = floor(m / 2^16), 0 <= ml < 2^16),
 *   a m + 2^(s-1) = 2^16 H + L,  H = a mh + 2^(s-17) (|H| < 2^47),  L = a ml (|L| < 2^47)
 *   floor((a m + 2^(s-1)) / 2^s) = floor((H + floor(L 2^-16)) 2^-(s-16))
 * (floor(floor(y / b) / c) = floor(y / (b c)) for integers b, c > 0; the products by powers of two are
 * exact, every sum is an integer below 2^49); else in int64 lanes (ln_requant_i64).
 */
OPML_AVX2 static inline __attribute__((always_inline)) void ln_rows_avx2_body(
    const ln_params *p, int64_t r0, int64_t r1, const double *gd, const double *bd, const int f64_requant) {
    int64_t n = p->n;
    const __m256d zero = _mm256_setzero_pd(), one = _mm256_set1_pd(1.0);
    const __m256d i32lo = _mm256_set1_pd(-2147483648.0), i32hi = _mm256_set1_pd(2147483647.0);
    const __m256d nscale = _mm256_set1_pd((double)(n * p->scale));
    const __m128i low_bytes = _mm_setr_epi8(0, 4, 8, 12, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    /* float64 requantization constants (used when f64_requant) */
    int64_t mh = floor_shift(p->mult, 16), ml = p->mult - mh * 65536;
    const __m256d mhv = _mm256_set1_pd((double)mh), mlv = _mm256_set1_pd((double)ml);
    const __m256d rh = _mm256_set1_pd(f64_requant ? (double)((int64_t)1 << (p->shift - 17)) : 0.0);
    const __m256d inv16 = _mm256_set1_pd(1.0 / 65536.0);
    const __m256d invs = _mm256_set1_pd(f64_requant ? 1.0 / (double)((int64_t)1 << (p->shift - 16)) : 0.0);
    const __m256d zpd = _mm256_set1_pd((double)p->zp);
    const __m256d qmind = _mm256_set1_pd((double)p->qmin), qmaxd = _mm256_set1_pd((double)p->qmax);
    /* int64 requantization constants */
    const __m256i multv = _mm256_set1_epi64x(p->mult), rndv = _mm256_set1_epi64x(p->rnd);
    const __m256i zpv = _mm256_set1_epi64x(p->zp), qminv = _mm256_set1_epi64x(p->qmin);
    const __m256i qmaxv = _mm256_set1_epi64x(p->qmax);
    const __m128i shiftv = _mm_cvtsi32_si128(p->shift);
    for (int64_t r = r0; r < r1; r++) {
        int64_t S, den;
        ln_stats(p, r, &S, &den);
        double inv = 1.0 / (double)den;
        const __m256d invv = _mm256_set1_pd(inv), denv = _mm256_set1_pd((double)den);
        const __m256d negden = _mm256_set1_pd(-(double)den), den2 = _mm256_set1_pd(2.0 * (double)den);
        const __m256d offv = _mm256_set1_pd((double)((den >> 1) - S * p->scale));
        uint8_t *yr = p->y + r * n;
        int64_t c = 0;
        for (; c + 4 <= n; c += 4) {
            __m256d num = _mm256_add_pd(_mm256_mul_pd(ln_load4(p, r * n + c), nscale), offv);
            __m256d q = _mm256_floor_pd(_mm256_mul_pd(num, invv));
            __m256d rem = _mm256_sub_pd(num, _mm256_mul_pd(q, denv));
            __m256d lt = _mm256_cmp_pd(rem, zero, _CMP_LT_OQ), ge = _mm256_cmp_pd(rem, denv, _CMP_GE_OQ);
            __m256d bad = _mm256_or_pd(_mm256_cmp_pd(rem, negden, _CMP_LT_OQ), _mm256_cmp_pd(rem, den2, _CMP_GE_OQ));
            if (_mm256_movemask_pd(bad)) {
                for (int64_t k = c; k < c + 4; k++) yr[k] = ln_element(p, ln_load(p, r * n + k), k, S, den, inv);
                continue;
            }
            q = _mm256_add_pd(q, _mm256_sub_pd(_mm256_and_pd(ge, one), _mm256_and_pd(lt, one)));
            __m256d acc = _mm256_add_pd(_mm256_mul_pd(q, _mm256_loadu_pd(gd + c)), _mm256_loadu_pd(bd + c));
            acc = _mm256_min_pd(_mm256_max_pd(acc, i32lo), i32hi);
            __m256d o;
            if (f64_requant) {
                __m256d h = _mm256_add_pd(_mm256_mul_pd(acc, mhv), rh);
                __m256d l = _mm256_floor_pd(_mm256_mul_pd(_mm256_mul_pd(acc, mlv), inv16));
                o = _mm256_floor_pd(_mm256_mul_pd(_mm256_add_pd(h, l), invs));
                o = _mm256_min_pd(_mm256_max_pd(_mm256_add_pd(o, zpd), qmind), qmaxd);
            } else {
                o = ln_requant_i64(acc, multv, rndv, shiftv, zpv, qminv, qmaxv);
            }
            int32_t bytes = _mm_cvtsi128_si32(_mm_shuffle_epi8(_mm256_cvttpd_epi32(o), low_bytes));
            memcpy(yr + c, &bytes, 4);
        }
        for (; c < n; c++) yr[c] = ln_element(p, ln_load(p, r * n + c), c, S, den, inv);
    }
}

OPML_AVX2 static void ln_rows_avx2(const ln_params *p, int64_t r0, int64_t r1, const double *gd, const double *bd) {
    if (p->shift >= 17)
        ln_rows_avx2_body(p, r0, r1, gd, bd, 1);
    else
        ln_rows_avx2_body(p, r0, r1, gd, bd, 0);
}
/* Sixteen inputs (k: the lanes in the row) widened to int32, other lanes 0. */
OPML_AVX512 static inline __m512i ln_load16_avx512(const ln_params *p, int64_t at, __mmask16 k) {
    if (p->kind == 0) return _mm512_cvtepi8_epi32(_mm_maskz_loadu_epi8(k, (const int8_t *)p->x + at));
    if (p->kind == 1) return _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(k, (const uint8_t *)p->x + at));
    return _mm512_cvtepi16_epi32(_mm256_maskz_loadu_epi16(k, (const int16_t *)p->x + at));
}

/* AVX-512 rows. The statistics in integer lanes: S and Q summed in int64 lanes (x^2 <= 2^30 fits the
 * int32 product), so they equal ln_stats' sums exactly; the same den. Then eight elements at a time the
 * AVX2 rows' float64 steps (exact under the same caller check, max|num| max|gamma| + max|beta| < 2^53;
 * the fused multiply-adds round once a result that is an exact integer below 2^53, so they are exact
 * too), lanes with the remainder outside [-den, 2 den) redone by the scalar code, and the requantization
 * in int64 lanes: a = clip_int32(q gamma + beta) exact, a mult + 2^(s-1) (|.| < 2^63: the header's
 * bounds), VPSRAQ (the arithmetic shift: floor division by 2^s), + zp, clamp to [qmin, qmax], and
 * VPMOVQB to bytes. Tails by masks. */
OPML_AVX512 static void ln_rows_avx512(const ln_params *p, int64_t r0, int64_t r1, const double *gd, const double *bd) {
    int64_t n = p->n;
    const __m512d zero = _mm512_setzero_pd(), one = _mm512_set1_pd(1.0);
    const __m512d i32lo = _mm512_set1_pd(-2147483648.0), i32hi = _mm512_set1_pd(2147483647.0);
    const __m512d nscale = _mm512_set1_pd((double)(n * p->scale));
    const __m512i multv = _mm512_set1_epi64(p->mult), rndv = _mm512_set1_epi64(p->rnd);
    const __m512i zpv = _mm512_set1_epi64(p->zp), qminv = _mm512_set1_epi64(p->qmin);
    const __m512i qmaxv = _mm512_set1_epi64(p->qmax);
    const __m128i shiftv = _mm_cvtsi32_si128(p->shift);
    for (int64_t r = r0; r < r1; r++) {
        __m512i sacc = _mm512_setzero_si512(), qacc = _mm512_setzero_si512();
        for (int64_t c = 0; c < n; c += 16) {
            __mmask16 k = n - c >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - c)) - 1);
            __m512i v = ln_load16_avx512(p, r * n + c, k);
            __m512i sq = _mm512_mullo_epi32(v, v);
            sacc = _mm512_add_epi64(sacc, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(v)));
            sacc = _mm512_add_epi64(sacc, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(v, 1)));
            qacc = _mm512_add_epi64(qacc, _mm512_cvtepi32_epi64(_mm512_castsi512_si256(sq)));
            qacc = _mm512_add_epi64(qacc, _mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(sq, 1)));
        }
        int64_t S = _mm512_reduce_add_epi64(sacc), Q = _mm512_reduce_add_epi64(qacc);
        int64_t t = n * Q - S * S;
        int64_t den = isqrt64(t * ((int64_t)1 << (2 * p->g)) + p->eps);
        den = den < 1 ? 1 : den;
        double inv = 1.0 / (double)den;
        const __m512d invv = _mm512_set1_pd(inv), denv = _mm512_set1_pd((double)den);
        const __m512d negden = _mm512_set1_pd(-(double)den), den2 = _mm512_set1_pd(2.0 * (double)den);
        const __m512d offv = _mm512_set1_pd((double)((den >> 1) - S * p->scale));
        uint8_t *yr = p->y + r * n;
        for (int64_t c = 0; c < n; c += 8) {
            __mmask8 k = n - c >= 8 ? (__mmask8)0xff : (__mmask8)((1u << (n - c)) - 1);
            __m512d xv = _mm512_cvtepi32_pd(_mm512_castsi512_si256(ln_load16_avx512(p, r * n + c, k)));
            __m512d num = _mm512_fmadd_pd(xv, nscale, offv);
            __m512d q = _mm512_roundscale_pd(_mm512_mul_pd(num, invv), _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
            __m512d rem = _mm512_fnmadd_pd(q, denv, num);
            __mmask8 bad = k & (_mm512_cmp_pd_mask(rem, negden, _CMP_LT_OQ) | _mm512_cmp_pd_mask(rem, den2, _CMP_GE_OQ));
            if (bad) {
                for (int64_t j = c; j < c + 8 && j < n; j++) yr[j] = ln_element(p, ln_load(p, r * n + j), j, S, den, inv);
                continue;
            }
            q = _mm512_mask_add_pd(q, _mm512_cmp_pd_mask(rem, denv, _CMP_GE_OQ), q, one);
            q = _mm512_mask_sub_pd(q, _mm512_cmp_pd_mask(rem, zero, _CMP_LT_OQ), q, one);
            __m512d acc = _mm512_fmadd_pd(q, _mm512_maskz_loadu_pd(k, gd + c), _mm512_maskz_loadu_pd(k, bd + c));
            acc = _mm512_min_pd(_mm512_max_pd(acc, i32lo), i32hi);
            __m512i a = _mm512_cvtepi32_epi64(_mm512_cvttpd_epi32(acc));
            __m512i o = _mm512_sra_epi64(_mm512_add_epi64(_mm512_mul_epi32(a, multv), rndv), shiftv);
            o = _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(o, zpv), qminv), qmaxv);
            _mm_mask_storeu_epi8(yr + c, (__mmask16)k, _mm512_cvtepi64_epi8(o));
        }
    }
}
#endif

/* Rows [r0, r1) of y (output bytes, [rows, n]) = layernorm of x over its last axis (n values).
 * xkind: 0 int8, 1 uint8, 2 int16; xmax bounds |x| (the caller's: 128, 255, or the data's for int16,
 * verified here on the rows it reads). gamma, beta: n entries. qmin..qmax within -128..255. */
int opml_layernorm(const void *x, int xkind, int64_t xmax, int64_t r0, int64_t r1, int64_t n,
                   const int64_t *gamma, const int64_t *beta, int64_t eps, int frac, int g, int64_t mult,
                   int shift, int64_t zp, int64_t qmin, int64_t qmax, uint8_t *y, int isa) {
    if (xkind < 0 || xkind > 2 || r0 < 0 || r1 < r0 || qmin > qmax || qmin < -128 || qmax > 255) return -1;
    if (zp < -((int64_t)1 << 40) || zp > ((int64_t)1 << 40)) return -1;
    int64_t gmax = 0, bmax = 0;
    for (int64_t i = 0; i < n; i++) {
        if (gamma[i] < -OPML_2_62 || gamma[i] > OPML_2_62 || beta[i] < -OPML_2_62 || beta[i] > OPML_2_62) return -1;
        int64_t ga = gamma[i] < 0 ? -gamma[i] : gamma[i], ba = beta[i] < 0 ? -beta[i] : beta[i];
        gmax = ga > gmax ? ga : gmax;
        bmax = ba > bmax ? ba : bmax;
    }
    if (!opml_layernorm_ok(n, xmax, gmax, bmax, eps, frac, g, mult, shift)) return -1;
    if (xkind == 2) {
        const int16_t *x16 = (const int16_t *)x;
        for (int64_t i = r0 * n; i < r1 * n; i++)
            if (x16[i] > xmax || x16[i] < -xmax) return -1;
    }
    ln_params p = {x, xkind, n, eps, mult, zp, qmin, qmax, (int64_t)1 << (frac + g), (int64_t)1 << (shift - 1),
                   g, shift, gamma, beta, y};
#ifdef OPML_NORM_X86
    /* the float64 steps of the AVX2 rows are exact when max|num| max|gamma| + max|beta| < 2^53 */
    int64_t numax = ((2 * xmax * n) << (frac + g)) + ((int64_t)1 << 31);
    if (isa >= 1 && (gmax == 0 || numax <= (((int64_t)1 << 53) - 1 - bmax) / gmax)) {
        double *gd = (double *)malloc((size_t)(2 * n) * sizeof(double));
        if (gd) {
            for (int64_t i = 0; i < n; i++) {
                gd[i] = (double)gamma[i];
                gd[n + i] = (double)beta[i];
            }
            if (norm_avx512(isa))
                ln_rows_avx512(&p, r0, r1, gd, gd + n);
            else
                ln_rows_avx2(&p, r0, r1, gd, gd + n);
            free(gd);
            return 0;
        }
    }
#endif
    (void)isa;
    ln_rows_generic(&p, r0, r1);
    return 0;
}
