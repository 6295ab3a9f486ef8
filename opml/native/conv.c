/* Direct grouped convolution (depthwise included) on NCHW int8/uint8 input: no im2col, no per-group GEMM.
 *
 * For a conv with `group` groups of cg input and mg output channels each (depthwise: cg == 1), output
 * channel oc of group g = oc / mg at output position (oy, ox) is
 *     acc = sum over ci < cg, i < kh, j < kw of  w[oc, ci, i, j] * xp[g cg + ci, oy sh + i dh, ox sw + j dw]
 *     y   = epilogue_oc(acc)
 * where xp is the input padded with its zero point (the value the numpy path pads with) and the epilogue
 * is the one the native GEMM applies to the same column (opml.native.epilogue: clamp, multiply, add, shift,
 * clamp; it adds the bias and the zero point's share itself). acc is the same integer sum the per-group
 * GEMM forms (the terms' order does not matter for integers); the caller checks 255 * sum |w[oc]| < 2^31, so
 * every partial sum fits int32 and none of the sums below overflows. So the output bytes equal the GEMM
 * path's, whatever the instruction set or the number of threads.
 *
 * Layout (any stride, dilation and padding with contiguous vector loads, small planes included): each input
 * channel of the padded input is copied once into sh * sw phases, phase (pr, pc) holding padded element
 * (r sh + pr, q sw + pc) at (r, q) as int16. Tap (i, j) of output (oy, ox) reads padded element
 * (oy sh + i dh, ox sw + j dw), i.e. element (oy + (i dh) / sh, ox + (j dw) / sw) of phase
 * ((i dh) % sh, (j dw) % sw). With the output rows laid out qw apart (the phase width; columns ow .. qw - 1
 * are computed and dropped), output v = oy qw + ox reads phase element v + tap offset: every tap is one
 * contiguous stream over all outputs of the channel, whatever the plane's width.
 *
 * Products, two per 32-bit lane with VPMADDWD (VPDPWSSD where AVX-512 VNNI runs: the same two products and
 * the accumulator added in int32, no saturation): every phase value is an input byte or the zero point, so any
 * partial sum, in the dropped columns too, lies within 255 * sum |w[oc]| < 2^31 (the caller's bound) and every
 * int32 operation is exact, in any order. A "unit" is two
 * taps whose values sit in adjacent int16s, with its weight pair (a single tap: weights (w, 0)):
 *   - depthwise (cg 1): taps of one kernel row reading consecutive phase elements (3x3 stride 1: taps 0 and 1;
 *     stride 2: 0 and 2); a 32-bit load at element v + off gives output v's pair, so even and odd outputs
 *     accumulate in separate registers (loads at v0 + 2 l and v0 + 1 + 2 l) and are interleaved per block;
 *   - cg >= 2: channels 2p and 2p + 1 are interleaved element by element, so a 32-bit load at pair element
 *     v + off gives both channels' values of one tap for output v: lanes are consecutive outputs;
 *   - cg >= 3 with int8 weights where AVX-512 VNNI runs: four channels interleaved as bytes and VPDPBUSD, four
 *     products per lane (quad_sums_avx512vnni has the bound; a last partial quad repeats a channel with weight 0:
 *     RGB stems are one quad).
 * Variants by instruction set (qgemm.c's codes): portable C; AVX2 (8 lanes; codes 1, 3, 4); AVX-512 (16 lanes;
 * code 2, or a later code on a CPU with AVX-512 F/BW/VL/DQ; VPDPWSSD with VNNI). All form the same integers;
 * the phase copies and the epilogue have per-set versions too.
 * Work items (image, group) are split over the thread pool; each writes its own output planes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define CONV_X86 1
#define CONV_AVX2 __attribute__((target("avx2")))
#define CONV_AVX512 __attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512dq")))
#define CONV_AVX512VNNI __attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#endif

#define BLOCK 64 /* outputs per vector block (4 AVX-512 or 8 AVX2 registers) */
#define SPARE (BLOCK + 16) /* elements after each phase's last row: the blocks' reads past the last output */
#define MIN_MACS_PER_PART ((int64_t)1 << 17) /* below this much work per thread, threads cost more than they save */

struct conv_epilogue { /* one value per output channel (opml.native.Epilogue's unpermuted arrays) */
    const int64_t *lo, *hi, *mul, *add, *shift, *post;
    int64_t span, base;
    int outkind; /* 0 int32, 1 int8, 2 uint8, 3 int16 */
};

struct conv_job {
    const uint8_t *x;
    int xsigned;
    int64_t b, c, h, w, m, cg, mg, group, kh, kw, sh, sw, dh, dw, top, left, hp, wp, oh, ow, zp;
    const int16_t *wt; /* [m, cg, kh, kw] */
    struct conv_epilogue e;
    int isa;
    void *y;
    int64_t qh, qw;   /* rows and columns of a phase (padded rows / sh, padded columns / sw, rounded up) */
    int64_t psize;    /* elements of one phase: (qh + 1) rows of qw, then SPARE more */
    int64_t v;        /* virtual outputs per channel: oh rows of qw (columns ow .. qw - 1 are computed, not kept) */
    int pairs;        /* 1: channels interleaved in pairs (cg >= 2); 0: taps paired along kernel rows (see sums_*) */
    int quads;        /* 1: channels interleaved in fours as bytes, for VPDPBUSD (see quad_sums_avx512vnni) */
    int64_t units;    /* tap pairs and single taps (see opml_gconv_cfg) */
    int64_t *uoff;    /* per unit: the offset of its first tap in the group's phases */
    int64_t *ulo, *uhi; /* per unit: its taps' indexes in a channel's weights (uhi -1: a single tap) */
};

static size_t out_size(int outkind) { return outkind == 0 ? 4 : (outkind == 3 ? 2 : 1); }

/* ---------------------------------------------------------------------------------------- epilogue */

/* The GEMM's epilogue of one accumulator of channel c (qgemm.c y_of). */
static inline int64_t y_of(const struct conv_epilogue *e, int64_t c, int64_t a) {
    a = a < e->lo[c] ? e->lo[c] : a;
    a = a > e->hi[c] ? e->hi[c] : a;
    int64_t v = (int64_t)(((uint64_t)a * (uint64_t)e->mul[c] + (uint64_t)e->add[c]) >> e->shift[c]) + e->post[c];
    v = v < 0 ? 0 : v;
    return (v > e->span ? e->span : v) + e->base;
}

/* Whether the final clamp to [0, span] can bind for channel c: the value before it is non-decreasing in the
 * clamped accumulator (mul >= 0, and the biased sum is the true value in (0, 2^64), see opml.native.epilogue),
 * so it lies between its values at lo and hi; when those are within [0, span] the vector epilogues skip it. */
static int needs_clamp(const struct conv_epilogue *e, int64_t c) {
    int64_t at_lo = (int64_t)(((uint64_t)e->lo[c] * (uint64_t)e->mul[c] + (uint64_t)e->add[c]) >> e->shift[c]) + e->post[c];
    int64_t at_hi = (int64_t)(((uint64_t)e->hi[c] * (uint64_t)e->mul[c] + (uint64_t)e->add[c]) >> e->shift[c]) + e->post[c];
    return !(at_lo >= 0 && at_hi <= e->span);
}

static void store_one(int outkind, void *dst, int64_t i, int64_t v) {
    if (outkind == 0)
        ((int32_t *)dst)[i] = (int32_t)v;
    else if (outkind == 1)
        ((int8_t *)dst)[i] = (int8_t)v;
    else if (outkind == 2)
        ((uint8_t *)dst)[i] = (uint8_t)v;
    else
        ((int16_t *)dst)[i] = (int16_t)v;
}

/* The epilogue of channel c over its rows: dst row r (n outputs, rows contiguous) from acc + r * stride. */
static void epilogue_generic(const struct conv_epilogue *e, int64_t c, const int32_t *acc, int64_t rows,
                             int64_t stride, int64_t n, void *dst) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t i = 0; i < n; i++) store_one(e->outkind, dst, r * n + i, y_of(e, c, acc[r * stride + i]));
}

/* ------------------------------------------------------------------------------------- phase planes */

/* Input channel ch of image bi, padded with zp, into its sh * sw phases at ph (see the header); t is scratch
 * for one padded row of qw * sw elements. */
typedef void (*widen_fn)(int16_t *d, const uint8_t *s, int64_t n, int xsigned);
typedef void (*split_fn)(int16_t *de, int16_t *dodd, const uint8_t *s, int64_t n, int xsigned);

/* de[k] = s[2 k] and dodd[k] = s[2 k + 1] for the n bytes of s, as int16 (sign-extended when xsigned). */
static void split_generic(int16_t *restrict de, int16_t *restrict dodd, const uint8_t *restrict s, int64_t n,
                          int xsigned) {
    for (int64_t k = 0; 2 * k < n; k++) de[k] = xsigned ? (int8_t)s[2 * k] : s[2 * k];
    for (int64_t k = 0; 2 * k + 1 < n; k++) dodd[k] = xsigned ? (int8_t)s[2 * k + 1] : s[2 * k + 1];
}

/* d[0:n] = the bytes s[0:n] as int16 (sign-extended when xsigned). */
static void widen_generic(int16_t *restrict d, const uint8_t *restrict s, int64_t n, int xsigned) {
    if (xsigned)
        for (int64_t q = 0; q < n; q++) d[q] = (int8_t)s[q];
    else
        for (int64_t q = 0; q < n; q++) d[q] = s[q];
}

#ifdef CONV_X86
CONV_AVX2 static void widen_avx2(int16_t *d, const uint8_t *s, int64_t n, int xsigned) {
    int64_t q = 0;
    for (; q + 16 <= n; q += 16) {
        __m128i b = _mm_loadu_si128((const __m128i *)(s + q));
        _mm256_storeu_si256((__m256i *)(d + q), xsigned ? _mm256_cvtepi8_epi16(b) : _mm256_cvtepu8_epi16(b));
    }
    widen_generic(d + q, s + q, n - q, xsigned);
}

CONV_AVX512 static void split_avx512(int16_t *de, int16_t *dodd, const uint8_t *s, int64_t n, int xsigned) {
    int16_t even[32];
    for (int i = 0; i < 32; i++) even[i] = (int16_t)(2 * i);
    __m512i ie = _mm512_loadu_si512(even), io = _mm512_add_epi16(ie, _mm512_set1_epi16(1));
    for (int64_t q = 0; q < n; q += 64) {
        int64_t left = n - q;
        __mmask64 k = left >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << left) - 1);
        __m512i b = _mm512_maskz_loadu_epi8(k, s + q);
        __m256i lo = _mm512_castsi512_si256(b), hi = _mm512_extracti64x4_epi64(b, 1);
        __m512i a0 = xsigned ? _mm512_cvtepi8_epi16(lo) : _mm512_cvtepu8_epi16(lo);
        __m512i a1 = xsigned ? _mm512_cvtepi8_epi16(hi) : _mm512_cvtepu8_epi16(hi);
        int64_t ne = (left + 1) / 2, no = left / 2;
        __mmask32 ke = ne >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << ne) - 1);
        __mmask32 ko = no >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << no) - 1);
        _mm512_mask_storeu_epi16(de + q / 2, ke, _mm512_permutex2var_epi16(a0, ie, a1));
        _mm512_mask_storeu_epi16(dodd + q / 2, ko, _mm512_permutex2var_epi16(a0, io, a1));
    }
}

CONV_AVX512 static void widen_avx512(int16_t *d, const uint8_t *s, int64_t n, int xsigned) {
    for (int64_t q = 0; q < n; q += 32) {
        __mmask32 k = n - q >= 32 ? 0xFFFFFFFFu : (__mmask32)((1u << (n - q)) - 1);
        __m256i b = _mm256_maskz_loadu_epi8(k, s + q);
        _mm512_mask_storeu_epi16(d + q, k, xsigned ? _mm512_cvtepi8_epi16(b) : _mm512_cvtepu8_epi16(b));
    }
}
#endif

static inline __attribute__((always_inline)) void build_body(const struct conv_job *j, int64_t bi, int64_t ch,
                                                             int16_t *restrict ph, widen_fn widen, split_fn split) {
    /* the job's fields as locals: the stores below could alias them otherwise (-fno-strict-aliasing) */
    const int64_t h = j->h, w = j->w, sh = j->sh, sw = j->sw, top = j->top, left = j->left, qh = j->qh, qw = j->qw;
    const int64_t psize = j->psize, rows = qh * sh;
    const int16_t zp = (int16_t)j->zp;
    const int xsigned = j->xsigned;
    const uint8_t *restrict src = j->x + ((bi * j->c + ch) * h) * w;
    for (int64_t r = 0, pr = 0, rq = 0; r < rows; r++) { /* pr = r % sh, rq = r / sh */
        int64_t yr = r - top;
        int16_t *restrict base = ph + pr * sw * psize + rq * qw;
        if (++pr == sh) pr = 0, rq++;
        if (yr < 0 || yr >= h) {
            for (int64_t pc = 0; pc < sw; pc++)
                for (int64_t q = 0; q < qw; q++) base[pc * psize + q] = zp;
            continue;
        }
        const uint8_t *restrict s = src + yr * w;
        if (sw == 1) { /* the padded row is the phase row */
            for (int64_t q = 0; q < left; q++) base[q] = zp;
            widen(base + left, s, w, xsigned);
            for (int64_t q = left + w; q < qw; q++) base[q] = zp;
            continue;
        }
        for (int64_t pc = 0; pc < sw; pc++)
            for (int64_t q = 0; q < qw; q++) base[pc * psize + q] = zp;
        /* input column r + sw k is padded column left + r + sw k: phase (left + r) % sw, element (left + r) / sw + k */
        if (sw == 2) {
            split(base + (left & 1) * psize + (left >> 1), base + ((left + 1) & 1) * psize + ((left + 1) >> 1), s, w,
                  xsigned);
            continue;
        }
        for (int64_t r = 0; r < sw && r < w; r++) {
            int16_t *restrict d = base + (left + r) % sw * psize + (left + r) / sw;
            int64_t n = (w - r + sw - 1) / sw;
            const uint8_t *restrict sr = s + r;
            if (xsigned)
                for (int64_t k = 0; k < n; k++) d[k] = (int8_t)sr[k * sw];
            else
                for (int64_t k = 0; k < n; k++) d[k] = sr[k * sw];
        }
    }
    for (int64_t p = 0; p < sh * sw; p++) /* the spare row and block of each phase */
        for (int64_t q = qh * qw; q < psize; q++) ph[p * psize + q] = zp;
}

/* The same loops compiled for each instruction set (the widening and deinterleaving copies vectorize). */
static void build_generic(const struct conv_job *j, int64_t bi, int64_t ch, int16_t *ph) {
    build_body(j, bi, ch, ph, widen_generic, split_generic);
}
#ifdef CONV_X86
CONV_AVX2 static void build_avx2(const struct conv_job *j, int64_t bi, int64_t ch, int16_t *ph) {
    build_body(j, bi, ch, ph, widen_avx2, split_generic);
}
CONV_AVX512 static void build_avx512(const struct conv_job *j, int64_t bi, int64_t ch, int16_t *ph) {
    build_body(j, bi, ch, ph, widen_avx512, split_avx512);
}
#endif

/* ------------------------------------------------------------------------------------ output rows */

/* acc[0 : v rounded up to BLOCK] = the sums of one output channel over the group's phases (depthwise units):
 * unit u adds lo * x[uoff + v] + hi * x[uoff + v + 1] to output v, wp[u] holding (lo, hi) as an int16 pair (hi 0
 * for a single tap). The vector forms compute even and odd outputs in separate registers: a 32-bit load at
 * element uoff + v is the pair (x[uoff + v], x[uoff + v + 1]), so VPMADDWD (or VPDPWSSD) forms one unit's term
 * of output v in the lane; even outputs load at v0 + 2 l, odd ones at v0 + 1 + 2 l, and the two are
 * interleaved at the end. */
static void sums_generic(const struct conv_job *j, const int16_t *phases, const int32_t *wp, int32_t *acc) {
    int64_t n = (j->v + BLOCK - 1) / BLOCK * BLOCK;
    for (int64_t v = 0; v < n; v++) acc[v] = 0;
    for (int64_t u = 0; u < j->units; u++) {
        const int16_t *s = phases + j->uoff[u];
        int32_t lo = (int16_t)(wp[u] & 0xFFFF), hi = (int16_t)((uint32_t)wp[u] >> 16);
        for (int64_t v = 0; v < j->v; v++) acc[v] += lo * s[v] + hi * s[v + 1];
    }
}

#ifdef CONV_X86
CONV_AVX2 static void sums_avx2(const struct conv_job *j, const int16_t *phases, const int32_t *wp, int32_t *acc) {
    for (int64_t v0 = 0; v0 < j->v; v0 += BLOCK) {
        __m256i e[4], o[4]; /* e[r]: outputs v0 + 16 r + 2 l; o[r]: v0 + 16 r + 1 + 2 l (l < 8) */
        for (int r = 0; r < 4; r++) e[r] = o[r] = _mm256_setzero_si256();
        for (int64_t u = 0; u < j->units; u++) {
            __m256i wv = _mm256_set1_epi32(wp[u]);
            const int16_t *s = phases + j->uoff[u] + v0;
            for (int r = 0; r < 4; r++) {
                e[r] = _mm256_add_epi32(e[r], _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(s + 16 * r)), wv));
                o[r] = _mm256_add_epi32(o[r], _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(s + 16 * r + 1)), wv));
            }
        }
        for (int r = 0; r < 4; r++) {
            __m256i lo = _mm256_unpacklo_epi32(e[r], o[r]), hi = _mm256_unpackhi_epi32(e[r], o[r]);
            _mm256_storeu_si256((__m256i *)(acc + v0 + 16 * r), _mm256_permute2x128_si256(lo, hi, 0x20));
            _mm256_storeu_si256((__m256i *)(acc + v0 + 16 * r + 8), _mm256_permute2x128_si256(lo, hi, 0x31));
        }
    }
}

#endif

/* Channel pairs (cg >= 2): channels 2p and 2p + 1 of the group are interleaved element by element, so the
 * 32-bit word at int16 index 2 (uoff + v) is (x_2p[uoff + v], x_2p+1[uoff + v]) and one VPMADDWD lane gives
 * both channels' products of one tap for output v: lanes are consecutive outputs, no even/odd split. */
static void pair_sums_generic(const struct conv_job *j, const int16_t *phases, const int32_t *wp, int32_t *acc) {
    int64_t n = (j->v + BLOCK - 1) / BLOCK * BLOCK;
    for (int64_t v = 0; v < n; v++) acc[v] = 0;
    for (int64_t u = 0; u < j->units; u++) {
        const int16_t *s = phases + 2 * j->uoff[u];
        int32_t lo = (int16_t)(wp[u] & 0xFFFF), hi = (int16_t)((uint32_t)wp[u] >> 16);
        for (int64_t v = 0; v < j->v; v++) acc[v] += lo * s[2 * v] + hi * s[2 * v + 1];
    }
}

#ifdef CONV_X86
CONV_AVX2 static void pair_sums_avx2(const struct conv_job *j, const int16_t *phases, const int32_t *wp,
                                     int32_t *acc) {
    for (int64_t v0 = 0; v0 < j->v; v0 += BLOCK) {
        __m256i a[8];
        for (int r = 0; r < 8; r++) a[r] = _mm256_setzero_si256();
        for (int64_t u = 0; u < j->units; u++) {
            __m256i wv = _mm256_set1_epi32(wp[u]);
            const __m256i *s = (const __m256i *)(phases + 2 * (j->uoff[u] + v0));
            for (int r = 0; r < 8; r++) a[r] = _mm256_add_epi32(a[r], _mm256_madd_epi16(_mm256_loadu_si256(s + r), wv));
        }
        for (int r = 0; r < 8; r++) _mm256_storeu_si256((__m256i *)(acc + v0) + r, a[r]);
    }
}

/* 8 accumulators of channel c -> 8 int32 outputs (already within the output dtype for byte/int16 outputs). */
CONV_AVX2 static inline __m256i y_of8(const struct conv_epilogue *e, int64_t c, __m256i a, int clamp) {
    a = _mm256_max_epi32(a, _mm256_set1_epi32((int32_t)e->lo[c]));
    a = _mm256_min_epi32(a, _mm256_set1_epi32((int32_t)e->hi[c]));
    __m256i m = _mm256_set1_epi64x(e->mul[c]), ad = _mm256_set1_epi64x(e->add[c]), po = _mm256_set1_epi64x(e->post[c]);
    __m128i sh = _mm_cvtsi64_si128(e->shift[c]);
    __m256i ev = _mm256_mul_epi32(a, m); /* lanes 0, 2, 4, 6: signed 32 x 32 -> 64, mul < 2^31 */
    __m256i od = _mm256_mul_epi32(_mm256_srli_epi64(a, 32), m);
    ev = _mm256_add_epi64(_mm256_srl_epi64(_mm256_add_epi64(ev, ad), sh), po);
    od = _mm256_add_epi64(_mm256_srl_epi64(_mm256_add_epi64(od, ad), sh), po);
    if (clamp) {
        __m256i zero = _mm256_setzero_si256(), span = _mm256_set1_epi64x(e->span);
        ev = _mm256_blendv_epi8(ev, zero, _mm256_cmpgt_epi64(zero, ev));
        ev = _mm256_blendv_epi8(ev, span, _mm256_cmpgt_epi64(ev, span));
        od = _mm256_blendv_epi8(od, zero, _mm256_cmpgt_epi64(zero, od));
        od = _mm256_blendv_epi8(od, span, _mm256_cmpgt_epi64(od, span));
    }
    __m256i v = _mm256_blend_epi32(ev, _mm256_slli_epi64(od, 32), 0xAA); /* low 32 bits of each value */
    return _mm256_add_epi32(v, _mm256_set1_epi32((int32_t)e->base));  /* v + base fits the output dtype */
}

CONV_AVX2 static void epilogue_row_avx2(const struct conv_epilogue *e, int64_t c, const int32_t *acc, int64_t n,
                                        void *dst, int clamp) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256i v = y_of8(e, c, _mm256_loadu_si256((const __m256i *)(acc + i)), clamp);
        if (e->outkind == 0) {
            _mm256_storeu_si256((__m256i *)((int32_t *)dst + i), v);
            continue;
        }
        __m128i p16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)); /* in range */
        if (e->outkind == 3)
            _mm_storeu_si128((__m128i *)((int16_t *)dst + i), p16);
        else
            _mm_storel_epi64((__m128i *)((uint8_t *)dst + i),
                             e->outkind == 1 ? _mm_packs_epi16(p16, p16) : _mm_packus_epi16(p16, p16));
    }
    for (; i < n; i++) store_one(e->outkind, dst, i, y_of(e, c, acc[i]));
}

CONV_AVX2 static void epilogue_avx2(const struct conv_epilogue *e, int64_t c, const int32_t *acc, int64_t rows,
                                    int64_t stride, int64_t n, void *dst) {
    size_t osz = out_size(e->outkind);
    int clamp = needs_clamp(e, c);
    for (int64_t r = 0; r < rows; r++)
        epilogue_row_avx2(e, c, acc + r * stride, n, (uint8_t *)dst + (size_t)(r * n) * osz, clamp);
}

/* The AVX-512 sums: e0, e1 hold outputs v0 + 32 r + 2 l, o0, o1 outputs v0 + 32 r + 1 + 2 l (l < 16). */
#define SUMS_AVX512(DOT)                                                                                        \
    __m512i lo_idx = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);                 \
    __m512i hi_idx = _mm512_add_epi32(lo_idx, _mm512_set1_epi32(8));                                            \
    for (int64_t v0 = 0; v0 < j->v; v0 += BLOCK) {                                                              \
        __m512i e0 = _mm512_setzero_si512(), e1 = e0, o0 = e0, o1 = e0;                                         \
        for (int64_t u = 0; u < j->units; u++) {                                                                \
            __m512i wv = _mm512_set1_epi32(wp[u]);                                                              \
            const int16_t *s = phases + j->uoff[u] + v0;                                                        \
            e0 = DOT(e0, _mm512_loadu_si512(s), wv);                                                            \
            e1 = DOT(e1, _mm512_loadu_si512(s + 32), wv);                                                       \
            o0 = DOT(o0, _mm512_loadu_si512(s + 1), wv);                                                        \
            o1 = DOT(o1, _mm512_loadu_si512(s + 33), wv);                                                       \
        }                                                                                                       \
        _mm512_storeu_si512(acc + v0, _mm512_permutex2var_epi32(e0, lo_idx, o0));                               \
        _mm512_storeu_si512(acc + v0 + 16, _mm512_permutex2var_epi32(e0, hi_idx, o0));                          \
        _mm512_storeu_si512(acc + v0 + 32, _mm512_permutex2var_epi32(e1, lo_idx, o1));                          \
        _mm512_storeu_si512(acc + v0 + 48, _mm512_permutex2var_epi32(e1, hi_idx, o1));                          \
    }

#define MADD_ADD(a, x, w) _mm512_add_epi32(a, _mm512_madd_epi16(x, w))
CONV_AVX512 static void sums_avx512(const struct conv_job *j, const int16_t *phases, const int32_t *wp, int32_t *acc) {
    SUMS_AVX512(MADD_ADD)
}

/* VPDPWSSD: the same two products added to the accumulator in one instruction (no saturation). */
CONV_AVX512VNNI static void sums_avx512vnni(const struct conv_job *j, const int16_t *phases, const int32_t *wp,
                                            int32_t *acc) {
    SUMS_AVX512(_mm512_dpwssd_epi32)
}
/* Channel pairs: four registers of 16 consecutive outputs. */
#define PAIR_SUMS_AVX512(DOT)                                                                                   \
    for (int64_t v0 = 0; v0 < j->v; v0 += BLOCK) {                                                              \
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;                                         \
        for (int64_t u = 0; u < j->units; u++) {                                                                \
            __m512i wv = _mm512_set1_epi32(wp[u]);                                                              \
            const int16_t *s = phases + 2 * (j->uoff[u] + v0);                                                  \
            a0 = DOT(a0, _mm512_loadu_si512(s), wv);                                                            \
            a1 = DOT(a1, _mm512_loadu_si512(s + 32), wv);                                                       \
            a2 = DOT(a2, _mm512_loadu_si512(s + 64), wv);                                                       \
            a3 = DOT(a3, _mm512_loadu_si512(s + 96), wv);                                                       \
        }                                                                                                       \
        _mm512_storeu_si512(acc + v0, a0);                                                                      \
        _mm512_storeu_si512(acc + v0 + 16, a1);                                                                 \
        _mm512_storeu_si512(acc + v0 + 32, a2);                                                                 \
        _mm512_storeu_si512(acc + v0 + 48, a3);                                                                 \
    }

CONV_AVX512 static void pair_sums_avx512(const struct conv_job *j, const int16_t *phases, const int32_t *wp,
                                         int32_t *acc) {
    PAIR_SUMS_AVX512(MADD_ADD)
}

CONV_AVX512VNNI static void pair_sums_avx512vnni(const struct conv_job *j, const int16_t *phases, const int32_t *wp,
                                                 int32_t *acc) {
    PAIR_SUMS_AVX512(_mm512_dpwssd_epi32)
}
#undef PAIR_SUMS_AVX512

/* Channel quads (cg >= 3, int8 weights, AVX-512 VNNI): channels 4q .. 4q + 3 interleaved as bytes, each the
 * input value plus 128 when the input is signed (so 0 .. 255); VPDPBUSD multiplies the four unsigned bytes of
 * a lane by four signed weight bytes and adds the four products and the accumulator in int32 without
 * saturation. Every partial sum of sum (x + 128) w lies within 255 * sum |w| < 2^31; corr = 128 * sum w
 * (0 for unsigned inputs) is subtracted at the end, giving sum x w exactly. */
CONV_AVX512VNNI static void quad_sums_avx512vnni(const struct conv_job *j, const uint8_t *quads, const int32_t *wq,
                                                 int32_t corr, int32_t *acc) {
    __m512i cv = _mm512_set1_epi32(corr);
    for (int64_t v0 = 0; v0 < j->v; v0 += BLOCK) {
        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t u = 0; u < j->units; u++) {
            __m512i wv = _mm512_set1_epi32(wq[u]);
            const uint8_t *s = quads + 4 * (j->uoff[u] + v0);
            a0 = _mm512_dpbusd_epi32(a0, _mm512_loadu_si512(s), wv);
            a1 = _mm512_dpbusd_epi32(a1, _mm512_loadu_si512(s + 64), wv);
            a2 = _mm512_dpbusd_epi32(a2, _mm512_loadu_si512(s + 128), wv);
            a3 = _mm512_dpbusd_epi32(a3, _mm512_loadu_si512(s + 192), wv);
        }
        _mm512_storeu_si512(acc + v0, _mm512_sub_epi32(a0, cv));
        _mm512_storeu_si512(acc + v0 + 16, _mm512_sub_epi32(a1, cv));
        _mm512_storeu_si512(acc + v0 + 32, _mm512_sub_epi32(a2, cv));
        _mm512_storeu_si512(acc + v0 + 48, _mm512_sub_epi32(a3, cv));
    }
}
#undef MADD_ADD
#undef SUMS_AVX512

CONV_AVX512 static void epilogue_avx512(const struct conv_epilogue *e, int64_t c, const int32_t *acc, int64_t rows,
                                        int64_t stride, int64_t n, void *dst) {
    __m512i lo = _mm512_set1_epi32((int32_t)e->lo[c]), hi = _mm512_set1_epi32((int32_t)e->hi[c]);
    __m512i m = _mm512_set1_epi64(e->mul[c]), ad = _mm512_set1_epi64(e->add[c]), po = _mm512_set1_epi64(e->post[c]);
    __m128i sh = _mm_cvtsi64_si128(e->shift[c]);
    __m512i zero = _mm512_setzero_si512(), span = _mm512_set1_epi64(e->span), base = _mm512_set1_epi32((int32_t)e->base);
    int clamp = needs_clamp(e, c);
    for (int64_t r = 0; r < rows; r++, acc += stride, dst = (uint8_t *)dst + (size_t)n * out_size(e->outkind))
    for (int64_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        __m512i a = _mm512_maskz_loadu_epi32(k, acc + i);
        a = _mm512_min_epi32(_mm512_max_epi32(a, lo), hi);
        __m512i ev = _mm512_mul_epi32(a, m), od = _mm512_mul_epi32(_mm512_srli_epi64(a, 32), m);
        ev = _mm512_add_epi64(_mm512_srl_epi64(_mm512_add_epi64(ev, ad), sh), po);
        od = _mm512_add_epi64(_mm512_srl_epi64(_mm512_add_epi64(od, ad), sh), po);
        if (clamp) {
            ev = _mm512_min_epi64(_mm512_max_epi64(ev, zero), span);
            od = _mm512_min_epi64(_mm512_max_epi64(od, zero), span);
        }
        __m512i v = _mm512_add_epi32(_mm512_mask_blend_epi32(0xAAAA, ev, _mm512_slli_epi64(od, 32)), base);
        if (e->outkind == 0)
            _mm512_mask_storeu_epi32((int32_t *)dst + i, k, v);
        else if (e->outkind == 3)
            _mm512_mask_cvtepi32_storeu_epi16((int16_t *)dst + i, k, v); /* truncation: v is within int16 */
        else
            _mm512_mask_cvtepi32_storeu_epi8((uint8_t *)dst + i, k, v); /* truncation: v is within the byte */
    }
}

static int have_vnni512(int isa) {
    if (isa == 2) return 1;
    __builtin_cpu_init();
    return isa >= 5 && __builtin_cpu_supports("avx512vnni");
}

static int have_avx512(int isa) {
    if (isa == 2) return 1;
    if (isa < 5) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
}
#endif

/* ------------------------------------------------------------------------------------------ driver */

static int64_t nphase_of(const struct conv_job *j) { return j->sh * j->sw; }

/* d[4 e + k] = src[k][e] + bias as a byte for e < n: four channels' int16 phases (values of the input's dtype)
 * interleaved as the bytes VPDPBUSD reads (bias 128 for signed inputs). */
static void interleave4_generic(const int16_t *const src[4], int bias, int64_t n, uint8_t *d) {
    for (int64_t e = 0; e < n; e++)
        for (int k = 0; k < 4; k++) d[4 * e + k] = (uint8_t)(src[k][e] + bias);
}
#ifdef CONV_X86
CONV_AVX512 static void interleave4_avx512(const int16_t *const src[4], int bias, int64_t n, uint8_t *d) {
    __m512i b = _mm512_set1_epi32(bias), byte = _mm512_set1_epi32(0xFF);
    for (int64_t e = 0; e < n; e += 16) {
        __mmask16 k = n - e >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - e)) - 1);
        __m512i acc = _mm512_setzero_si512();
        for (int q = 0; q < 4; q++) {
            __m512i v = _mm512_cvtepi16_epi32(_mm256_maskz_loadu_epi16(k, src[q] + e));
            acc = _mm512_or_si512(acc, _mm512_slli_epi32(_mm512_and_si512(_mm512_add_epi32(v, b), byte), 8 * q));
        }
        _mm512_mask_storeu_epi32(d + 4 * e, k, acc);
    }
}
#endif

static int conv_range(void *ctx, int64_t i0, int64_t i1) {
    const struct conv_job *j = (const struct conv_job *)ctx;
    int64_t nphase = j->sh * j->sw;
    int64_t acc_len = (j->v + BLOCK - 1) / BLOCK * BLOCK;
    /* channel pairs: the pairs' interleaved phases, then room for the two channels being interleaved */
    int64_t chans = j->quads ? 4 : (j->pairs ? 2 * ((j->cg + 1) / 2) + 2 : j->cg);
    int64_t nquads = j->quads ? (j->cg + 3) / 4 : 0;
    uint8_t *quads = j->quads ? (uint8_t *)malloc((size_t)(nquads * 4 * nphase * j->psize)) : NULL;
    int16_t *phases = (int16_t *)malloc((size_t)(chans * nphase * j->psize) * sizeof(int16_t));
    int32_t *acc = (int32_t *)malloc((size_t)acc_len * sizeof(int32_t));
    int32_t *wp = (int32_t *)malloc((size_t)j->units * sizeof(int32_t));
    if (!phases || !acc || !wp || (j->quads && !quads)) {
        free(quads);
        free(phases);
        free(acc);
        free(wp);
        return -1;
    }
    void (*build)(const struct conv_job *, int64_t, int64_t, int16_t *) = build_generic;
    void (*interleave4)(const int16_t *const[4], int, int64_t, uint8_t *) = interleave4_generic;
    void (*sums)(const struct conv_job *, const int16_t *, const int32_t *, int32_t *) =
        j->pairs ? pair_sums_generic : sums_generic;
    void (*epi)(const struct conv_epilogue *, int64_t, const int32_t *, int64_t, int64_t, int64_t, void *) =
        epilogue_generic;
#ifdef CONV_X86
    if (have_avx512(j->isa)) {
        build = build_avx512;
        interleave4 = interleave4_avx512;
        sums = have_vnni512(j->isa) ? (j->pairs ? pair_sums_avx512vnni : sums_avx512vnni)
                                    : (j->pairs ? pair_sums_avx512 : sums_avx512);
        epi = epilogue_avx512;
    } else if (j->isa >= 1) {
        build = build_avx2;
        sums = j->pairs ? pair_sums_avx2 : sums_avx2;
        epi = epilogue_avx2;
    }
#endif
    size_t osz = out_size(j->e.outkind);
    int64_t taps = j->cg * j->kh * j->kw, chan = nphase * j->psize;
    for (int64_t item = i0; item < i1; item++) {
        int64_t bi = item / j->group, g = item % j->group;
        if (j->quads)
            for (int64_t q = 0; q < nquads; q++) { /* a last quad's missing channels repeat one (weight 0) */
                for (int64_t k = 0; k < 4; k++)
                    build(j, bi, g * j->cg + (4 * q + k < j->cg ? 4 * q + k : j->cg - 1), phases + k * chan);
                const int16_t *src[4] = {phases, phases + chan, phases + 2 * chan, phases + 3 * chan};
                interleave4(src, j->xsigned ? 128 : 0, chan, quads + 4 * q * chan);
            }
        else if (!j->pairs)
            for (int64_t ci = 0; ci < j->cg; ci++) build(j, bi, g * j->cg + ci, phases + ci * chan);
        else
            for (int64_t p = 0; p < (j->cg + 1) / 2; p++) { /* an odd group's last pair repeats its channel (weight 0) */
                int16_t *a = phases + (chans - 2) * chan, *c = a + chan, *d = phases + 2 * p * chan;
                build(j, bi, g * j->cg + 2 * p, a);
                build(j, bi, g * j->cg + (2 * p + 1 < j->cg ? 2 * p + 1 : 2 * p), c);
                for (int64_t e = 0; e < chan; e++) d[2 * e] = a[e], d[2 * e + 1] = c[e];
            }
        for (int64_t o = 0; o < j->mg; o++) {
            int64_t oc = g * j->mg + o;
            const int16_t *w = j->wt + oc * taps;
            uint8_t *dst = (uint8_t *)j->y + (size_t)((bi * j->m + oc) * j->oh * j->ow) * osz;
#ifdef CONV_X86
            if (j->quads) {
                int32_t corr = 0;
                for (int64_t k = 0; k < taps; k++) corr += w[k];
                for (int64_t u = 0; u < j->units; u++) { /* ulo: channel 4q's tap; uhi: channels in the quad */
                    uint32_t packed = 0;
                    for (int64_t k = 0; k < j->uhi[u]; k++)
                        packed |= (uint32_t)(uint8_t)(int8_t)w[j->ulo[u] + k * j->kh * j->kw] << (8 * k);
                    wp[u] = (int32_t)packed;
                }
                quad_sums_avx512vnni(j, quads, wp, j->xsigned ? 128 * corr : 0, acc);
                epi(&j->e, oc, acc, j->oh, j->qw, j->ow, dst);
                continue;
            }
#endif
            for (int64_t u = 0; u < j->units; u++)
                wp[u] = (int32_t)((uint32_t)(uint16_t)w[j->ulo[u]] |
                                  (j->uhi[u] < 0 ? 0u : (uint32_t)(uint16_t)w[j->uhi[u]] << 16));
            sums(j, phases, wp, acc);
            epi(&j->e, oc, acc, j->oh, j->qw, j->ow, dst);
        }
    }
    free(quads);
    free(phases);
    free(acc);
    free(wp);
    return 0;
}

/* depthwise output planes of at most this many outputs, and narrower than the second bound, run by channel
 * blocks (dwcb_range): measured against the plane path (one thread, AVX-512 VNNI, planes -> blocks): 960 x 3x3
 * 70 -> 13 us, 576 x 6x6 62 -> 20 us, 576 x 6x6 1x1 43 -> 17 us, 144 x 12x12 30 -> 18 us, 24x24 outputs 1.0-1.2x
 * as fast, 48x48 0.8x; planes with rows of 32 or more outputs are faster by planes (2x96, 8x64, 16x32: 0.7-0.97x) */
#define DWCB_MAX_OUTPUTS 640
#define DWCB_MAX_WIDTH 31
/* grouped convs (RegNet's groups of 8 channels) by channel blocks up to this many outputs per plane: 440 channels
 * (55 groups) 3x3 90 -> 13.5 us, 208 x 6x6 52 -> 19 us, 12x12 1.2x as fast, 24x24 0.6x */
#define DWCB_MAX_OUTPUTS_GROUPED 200
static int dwcb_wanted(const struct conv_job *j, int64_t mode);
static int dwcb_run(const struct conv_job *j, const int64_t *consts, int threads);

#define P64(i) ((const int64_t *)(intptr_t)cfg[i])

/* Plane p of x through the 256-entry table of its channel p % c (opml_lut8, pointwise.c). */
struct lut_planes_job {
    const uint8_t *tables, *x;
    uint8_t *y;
    int64_t c, n;
    int isa;
};

static int lut_planes_range(void *ctx, int64_t p0, int64_t p1) {
    const struct lut_planes_job *lp = (const struct lut_planes_job *)ctx;
    for (int64_t p = p0; p < p1; p++)
        if (opml_lut8(lp->tables + (p % lp->c) * 256, lp->x + p * lp->n, lp->y + p * lp->n, 0, lp->n, lp->isa)) return -1;
    return 0;
}

/* cfg (int64): 0 xsigned, 1 c, 2 m, 3 group, 4 kh, 5 kw, 6 sh, 7 sw, 8 dh, 9 dw, 10 pad top, 11 pad left,
 * 12 pad bottom, 13 pad right, 14 zero point (the padding value), 15 weights (int16 [m, c / group, kh, kw]),
 * 16 span, 17 base, 18 outkind, 19 isa, 20..25 the per-channel epilogue arrays lo, hi, mul, add, shift, post
 * (opml.native.Epilogue, at least m entries each), 26 path (0 the faster for the shape, 1 by planes, 2 by channel
 * blocks where the conv is depthwise and AVX-512 runs; every path gives the same bytes), 27 the channel blocks'
 * constants (opml_dwcb_consts; 0: made at each call), 28 for a 1x1 stride-1 unpadded depthwise conv with byte
 * outputs, the address of its c x 256 output table (the kernel's own outputs on the 256 byte values; 0: none),
 * used on path 0.
 * x: [b, c, h, w] bytes; y: [b, m, oh, ow] of the outkind's type with oh, ow from the geometry.
 * Returns 0, or -1 for arguments outside the kernel's bounds or when memory runs out. */
int opml_gconv_cfg(const int64_t *cfg, const void *x, int64_t b, int64_t h, int64_t w, void *y, int threads) {
    struct conv_job j;
    memset(&j, 0, sizeof j);
    j.x = (const uint8_t *)x;
    j.xsigned = (int)cfg[0];
    j.c = cfg[1], j.m = cfg[2], j.group = cfg[3], j.kh = cfg[4], j.kw = cfg[5], j.sh = cfg[6], j.sw = cfg[7];
    j.dh = cfg[8], j.dw = cfg[9], j.top = cfg[10], j.left = cfg[11], j.zp = cfg[14];
    j.wt = (const int16_t *)(intptr_t)cfg[15];
    j.e = (struct conv_epilogue){P64(20), P64(21), P64(22), P64(23), P64(24), P64(25), cfg[16], cfg[17], (int)cfg[18]};
    j.isa = (int)cfg[19];
    j.y = y;
    j.b = b, j.h = h, j.w = w;
    if (b < 0 || h < 1 || w < 1 || j.group < 1 || j.c < 1 || j.m < 1 || j.c % j.group || j.m % j.group || j.kh < 1 ||
        j.kw < 1 || j.sh < 1 || j.sw < 1 || j.dh < 1 || j.dw < 1 || j.top < 0 || j.left < 0 || cfg[12] < 0 ||
        cfg[13] < 0 || j.e.outkind < 0 || j.e.outkind > 3 || j.zp < (j.xsigned ? -128 : 0) ||
        j.zp > (j.xsigned ? 127 : 255) || j.isa < 0)
        return -1;
    j.cg = j.c / j.group, j.mg = j.m / j.group;
    j.hp = h + j.top + cfg[12], j.wp = w + j.left + cfg[13];
    j.oh = (j.hp - (j.kh - 1) * j.dh - 1) / j.sh + 1;
    j.ow = (j.wp - (j.kw - 1) * j.dw - 1) / j.sw + 1;
    if (j.hp - (j.kh - 1) * j.dh - 1 < 0 || j.wp - (j.kw - 1) * j.dw - 1 < 0) return -1;
    j.qw = (j.wp + j.sw - 1) / j.sw;
    j.qh = (j.hp + j.sh - 1) / j.sh;
    j.psize = (j.qh + 1) * j.qw + SPARE;
    j.v = j.oh * j.qw;
    if (!b) return 0;
    if (cfg[26] < 0 || cfg[26] > 2) return -1;
    if (cfg[28] && !cfg[26] && j.cg == 1 && j.mg == 1 && j.kh == 1 && j.kw == 1 && j.sh == 1 && j.sw == 1 && !j.top &&
        !j.left && !cfg[12] && !cfg[13] && (j.e.outkind == 1 || j.e.outkind == 2)) {
        /* a 1x1 stride-1 depthwise conv (a per-channel scale: PP-OCR's batch norms) with byte outputs: each output
         * is a function of its channel and input byte, so a per-channel 256-entry table of this kernel's own
         * outputs (the wrapper ran it on the 256 byte values, cfg[28]) gives the same bytes by lookups */
        struct lut_planes_job lp = {(const uint8_t *)(intptr_t)cfg[28], j.x, (uint8_t *)y, j.c, h * w, j.isa};
        int64_t items = b * j.c, per = MIN_MACS_PER_PART / (h * w) + 1, most = items / per;
        int parts = threads <= 1 || most <= 1 ? 1 : (threads < most ? threads : (int)most);
        return opml_parallel_for(lut_planes_range, &lp, items, parts);
    }
    if (dwcb_wanted(&j, cfg[26])) return dwcb_run(&j, P64(27), threads);
    /* Units. Depthwise (cg 1): the taps of a kernel row that read the same phase at consecutive columns are
     * paired (3x3 stride 1: (0, 1) and 2; stride 2: (0, 2) and 1; a 1-D kernel of 9: four pairs and one).
     * cg >= 2: tap (i, j) of channels 2p and 2p + 1 (the pair's interleaved phases). */
    int64_t taps = j.cg * j.kh * j.kw;
    int64_t *mem = (int64_t *)malloc((size_t)(4 * taps) * sizeof(int64_t));
    if (!mem) return -1;
    int64_t *toff = mem + 3 * taps;
    j.uoff = mem, j.ulo = mem + taps, j.uhi = mem + 2 * taps;
    for (int64_t ci = 0; ci < j.cg; ci++)
        for (int64_t i = 0; i < j.kh; i++)
            for (int64_t t = 0; t < j.kw; t++) {
                int64_t dy = i * j.dh, dx = t * j.dw;
                toff[(ci * j.kh + i) * j.kw + t] = ((ci * j.sh + dy % j.sh) * j.sw + dx % j.sw) * j.psize +
                                                   dy / j.sh * j.qw + dx / j.sw;
            }
    j.units = 0;
#ifdef CONV_X86
    j.quads = j.cg >= 3 && have_avx512(j.isa) && have_vnni512(j.isa);
    for (int64_t k = 0; j.quads && k < j.m * taps; k++) j.quads = j.wt[k] >= -128 && j.wt[k] <= 127;
#endif
    for (int64_t q = 0; j.quads && q < (j.cg + 3) / 4; q++)
        for (int64_t k = 0; k < j.kh * j.kw; k++) {
            int64_t lo = 4 * q * j.kh * j.kw + k;
            j.uoff[j.units] = toff[lo] - 3 * q * nphase_of(&j) * j.psize; /* toff of channel 4q: 4q phase sets in */
            j.ulo[j.units] = lo, j.uhi[j.units] = j.cg - 4 * q < 4 ? j.cg - 4 * q : 4;
            j.units++;
        }
    j.pairs = j.cg >= 2 && !j.quads;
    for (int64_t p = 0; j.pairs && p < (j.cg + 1) / 2; p++)
        for (int64_t k = 0; k < j.kh * j.kw; k++) {
            int64_t lo = 2 * p * j.kh * j.kw + k;
            j.uoff[j.units] = toff[lo] - p * nphase_of(&j) * j.psize; /* toff of channel 2p: 2p phase sets in */
            j.ulo[j.units] = lo, j.uhi[j.units] = 2 * p + 1 < j.cg ? lo + j.kh * j.kw : -1;
            j.units++;
        }
    for (int64_t k = 0; !j.pairs && !j.quads && k < taps; k++) { /* k's partner: a later tap of its row reading the next element */
        if (toff[k] < 0) continue;
        int64_t hi = -1;
        for (int64_t k2 = k + 1; k2 < (k / j.kw + 1) * j.kw && hi < 0; k2++)
            if (toff[k2] == toff[k] + 1) hi = k2;
        j.uoff[j.units] = toff[k], j.ulo[j.units] = k, j.uhi[j.units] = hi;
        j.units++;
        if (hi >= 0) toff[hi] = -1; /* taken */
    }
    int64_t items = b * j.group, macs = j.mg * taps * j.v + j.cg * j.hp * j.wp;
    int64_t per = MIN_MACS_PER_PART / (macs > 0 ? macs : 1) + 1, most = items / per;
    int parts = threads <= 1 || most <= 1 ? 1 : (threads < most ? threads : (int)most);
    int rc = opml_parallel_for(conv_range, &j, items, parts);
    free(mem);
    return rc;
}

#undef P64

/* ------------------------------------------------------------------------------------ layout changes */

/* y[n, c, r] = x[n, r, c] for count matrices of rows x cols elements of itemsize bytes (1, 2 or 4): the conv's
 * NCHW <-> NHWC changes around the GEMM (per image, [C, H W] <-> [H W, C]). Pure copies: 16x16 byte tiles by
 * SSE2 unpacks on x86 (four rounds of interleaves), scalar tiles elsewhere and for the edges. */
struct transpose_job {
    const uint8_t *x;
    uint8_t *y;
    int64_t rows, cols, itemsize, row_tiles;
};

#define TT 16 /* tile side */

static void tile_scalar(const struct transpose_job *t, const uint8_t *x, uint8_t *y, int64_t r0, int64_t r1,
                        int64_t c0, int64_t c1) {
    int64_t sz = t->itemsize;
    for (int64_t c = c0; c < c1; c++)
        for (int64_t r = r0; r < r1; r++) memcpy(y + (c * t->rows + r) * sz, x + (r * t->cols + c) * sz, (size_t)sz);
}

#ifdef CONV_X86
static void tile16_bytes(const uint8_t *x, int64_t xstride, uint8_t *y, int64_t ystride) {
    __m128i a[16], b[16];
    for (int i = 0; i < 16; i++) a[i] = _mm_loadu_si128((const __m128i *)(x + i * xstride));
    for (int i = 0; i < 8; i++) { /* b[2i], b[2i+1]: rows 2i, 2i+1 interleaved by bytes */
        b[2 * i] = _mm_unpacklo_epi8(a[2 * i], a[2 * i + 1]);
        b[2 * i + 1] = _mm_unpackhi_epi8(a[2 * i], a[2 * i + 1]);
    }
    for (int q = 0; q < 4; q++) /* rows 4q .. 4q + 3: four columns per register */
        for (int h = 0; h < 2; h++) {
            a[4 * q + 2 * h] = _mm_unpacklo_epi16(b[4 * q + h], b[4 * q + h + 2]);
            a[4 * q + 2 * h + 1] = _mm_unpackhi_epi16(b[4 * q + h], b[4 * q + h + 2]);
        }
    for (int o = 0; o < 2; o++) /* rows 8o .. 8o + 7: two columns per register */
        for (int k = 0; k < 4; k++) {
            b[8 * o + 2 * k] = _mm_unpacklo_epi32(a[8 * o + k], a[8 * o + k + 4]);
            b[8 * o + 2 * k + 1] = _mm_unpackhi_epi32(a[8 * o + k], a[8 * o + k + 4]);
        }
    for (int k = 0; k < 8; k++) { /* column 2k and 2k + 1 of all 16 rows */
        _mm_storeu_si128((__m128i *)(y + (2 * k) * ystride), _mm_unpacklo_epi64(b[k], b[k + 8]));
        _mm_storeu_si128((__m128i *)(y + (2 * k + 1) * ystride), _mm_unpackhi_epi64(b[k], b[k + 8]));
    }
}
#endif

/* An item is RB rows of one matrix: for each 16 columns, its 16-row tiles in turn, so each output row gets
 * RB contiguous bytes (a whole cache line for bytes) at a time. */
#define RB 64
static int transpose_range(void *ctx, int64_t i0, int64_t i1) {
    const struct transpose_job *t = (const struct transpose_job *)ctx;
    int64_t sz = t->itemsize, plane = t->rows * t->cols * sz;
    for (int64_t item = i0; item < i1; item++) {
        int64_t n = item / t->row_tiles, r0 = item % t->row_tiles * RB, r1 = r0 + RB < t->rows ? r0 + RB : t->rows;
        const uint8_t *x = t->x + n * plane;
        uint8_t *y = t->y + n * plane;
        int64_t c0 = 0;
#ifdef CONV_X86
        if (sz == 1)
            for (; c0 + TT <= t->cols; c0 += TT)
                for (int64_t r = r0; r < r1; r += TT) {
                    if (r + TT <= r1)
                        tile16_bytes(x + r * t->cols + c0, t->cols, y + c0 * t->rows + r, t->rows);
                    else
                        tile_scalar(t, x, y, r, r1, c0, c0 + TT);
                }
#endif
        for (int64_t c = c0; c < t->cols; c += TT) tile_scalar(t, x, y, r0, r1, c, c + TT < t->cols ? c + TT : t->cols);
    }
    return 0;
}

int opml_transpose_batched(const void *x, int64_t count, int64_t rows, int64_t cols, int64_t itemsize, void *y,
                           int threads) {
    if (count < 0 || rows < 0 || cols < 0 || (itemsize != 1 && itemsize != 2 && itemsize != 4)) return -1;
    struct transpose_job t = {(const uint8_t *)x, (uint8_t *)y, rows, cols, itemsize, (rows + RB - 1) / RB};
    int64_t items = count * t.row_tiles;
    if (!items || !cols) return 0;
    int64_t per = (MIN_MACS_PER_PART / 4) / (RB * cols * itemsize) + 1, most = items / per;
    int parts = threads <= 1 || most <= 1 ? 1 : (threads < most ? threads : (int)most);
    return opml_parallel_for(transpose_range, &t, items, parts);
}

#undef TT
#undef RB

/* ------------------------------------------------------------- depthwise by channel blocks (small planes) */

/* Depthwise convs (cg = mg = 1) whose planes are small (MobileNet's and EfficientNet's late stages: 960
 * channels of 3x3, 576 of 6x6) spend the plane path above mostly on per-channel overhead (building one
 * channel's phases, one partial block of outputs, one epilogue call). Here 16 channels share each vector
 * instead, one 32-bit lane per channel (AVX-512, VPMADDWD / VPDPWSSD as above; the same products, the same
 * int32 sums, so the same bytes):
 *   - the block's 16 input planes are transposed to pixel-major bytes (16 channels per pixel, 16x16 tiles),
 *     then widened into the pair plane p2 [hp][wp][16] of int32: lane l of p2[r][q] holds the int16 pair
 *     (xp[l][r][q], xp[l][r][q + dw]), xp the input padded with the zero point (and zp past the right edge);
 *   - a unit is taps (i, 2t) and (i, 2t + 1) of a kernel row (or the row's last tap alone, weight pair (w, 0)),
 *     with one weight vector of 16 per-channel pairs; output (oy, ox) adds unit (i, t)'s term from
 *     p2[oy sh + i dh][ox sw + 2t dw]: the pair there is exactly its two taps' inputs;
 *   - the epilogue runs on the 16 channels of a pixel with per-lane constants, then the pixel-major outputs
 *     are transposed back to the NCHW planes.
 * Every p2 value is an input byte or the zero point, missing channels of a last partial block are 0 with
 * weight 0, so every partial sum lies within 255 * sum |w[oc]| < 2^31 (the caller's bound) as before. */
#define CB 16 /* channels per block: the 32-bit lanes of an AVX-512 register */
#define CB_HDR 81 /* int64 words of a block's constants before its weight pairs (see dwcb_consts) */

struct dwcb_job {
    const struct conv_job *j;
    int64_t blocks, units;
    int64_t *uoff; /* per unit: its offset in p2 vectors from an output's base */
    const int64_t *consts; /* per block: CB_HDR + 8 units words (dwcb_consts), or NULL: made per block */
};

/* The constants of the block of channels c0 .. c0 + nc - 1 into k (CB_HDR + 8 units int64 words): the lanes'
 * accumulator clamps lo, hi (16 int32 each), mul, add, shift and post split by even and odd lane (8 int64 each,
 * as VPMULDQ pairs them), whether any lane's final clamp can bind (needs_clamp), then per unit 16 weight pairs
 * (int32: taps (i, 2t) and (i, 2t + 1) as int16, 0 past the row's end). Missing lanes: all 0. */
/* Whether output channels can share vectors by blocks of 16: depthwise (cg = mg = 1), or grouped convs whose
 * block of 16 output channels reads at most 16 input channels (whole groups of mg dividing 16, or blocks inside
 * one group of a multiple of 16 output channels): then one 16-byte pixel vector holds them all. */
static int cb_shape(int64_t cg, int64_t mg, int64_t group) {
    if (cg == 1 && mg == 1) return 1;
    if (group < 2 || cg < 2 || cg > CB) return 0;
    return mg <= CB && CB % mg == 0 ? CB / mg * cg <= CB : mg % CB == 0;
}

/* Units of a block (one multiply-add per output pixel each): depthwise, tap pairs of a kernel row; grouped,
 * (input channel pair, tap). */
static int64_t cb_units(int64_t cg, int64_t mg, int64_t kh, int64_t kw) {
    return cg == 1 && mg == 1 ? kh * ((kw + 1) / 2) : (cg + 1) / 2 * kh * kw;
}

static void dwcb_consts(const struct conv_job *j, int64_t c0, int64_t nc, int64_t *k) {
    const struct conv_epilogue *e = &j->e;
    int32_t *lo = (int32_t *)(k), *hi = (int32_t *)(k + 8), *w = (int32_t *)(k + CB_HDR);
    memset(k, 0, (size_t)(CB_HDR + 8 * cb_units(j->cg, j->mg, j->kh, j->kw)) * sizeof(int64_t));
    for (int64_t l = 0; l < nc; l++) {
        int64_t c = c0 + l, half = l % 2 ? 8 : 0, q = l / 2;
        lo[l] = (int32_t)e->lo[c], hi[l] = (int32_t)e->hi[c];
        k[16 + half + q] = e->mul[c], k[32 + half + q] = e->add[c], k[48 + half + q] = e->shift[c];
        k[64 + half + q] = e->post[c];
        if (needs_clamp(e, c)) k[80] = 1;
    }
    int64_t taps = j->kh * j->kw;
    if (j->cg > 1 || j->mg > 1) { /* grouped: unit (q, i, t) pairs input channels 2q and 2q + 1 of the lane's group */
        for (int64_t u = 0, q = 0; q < (j->cg + 1) / 2; q++)
            for (int64_t tap = 0; tap < taps; tap++, u++)
                for (int64_t l = 0; l < nc; l++) {
                    const int16_t *wl = j->wt + (c0 + l) * j->cg * taps + 2 * q * taps + tap;
                    uint32_t a = (uint16_t)wl[0], b = 2 * q + 1 < j->cg ? (uint16_t)wl[taps] : 0;
                    w[u * CB + l] = (int32_t)(a | b << 16);
                }
        return;
    }
    for (int64_t u = 0, i = 0; i < j->kh; i++)
        for (int64_t t = 0; t < j->kw; t += 2, u++)
            for (int64_t l = 0; l < nc; l++) {
                const int16_t *wl = j->wt + (c0 + l) * taps + i * j->kw;
                uint32_t a = (uint16_t)wl[t], b = t + 1 < j->kw ? (uint16_t)wl[t + 1] : 0;
                w[u * CB + l] = (int32_t)(a | b << 16);
            }
}

#ifdef CONV_X86
/* 16 rows of 16 bytes (rows src + l * stride, count bytes each, rows >= nrows zero) -> dst[k * 16 + l], k < count. */
CONV_AVX512 static void gather16(const uint8_t *src, int64_t stride, int64_t nrows, int64_t count, uint8_t *dst) {
    if (count == 16 && nrows == 16) {
        tile16_bytes(src, stride, dst, 16);
        return;
    }
    uint8_t in[16 * 16], out[16 * 16];
    __mmask16 k = count >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1);
    for (int64_t l = 0; l < 16; l++)
        _mm_storeu_si128((__m128i *)(in + 16 * l),
                         l < nrows ? _mm_maskz_loadu_epi8(k, src + l * stride) : _mm_setzero_si128());
    tile16_bytes(in, 16, out, 16);
    memcpy(dst, out, (size_t)(16 * count));
}

/* p2 rows of one block: see the section's header. t: [h * w][16] pixel-major bytes of the block. */
CONV_AVX512 static void dwcb_build(const struct conv_job *j, const uint8_t *t, int32_t *p2) {
    const int64_t h = j->h, w = j->w, hp = j->hp, wp = j->wp, top = j->top, left = j->left, dw = j->dw;
    const int xsigned = j->xsigned;
    __m512i zp = _mm512_set1_epi32((int32_t)j->zp), low = _mm512_set1_epi32(0xFFFF);
    for (int64_t r = 0; r < hp; r++) {
        int32_t *row = p2 + r * wp * CB;
        int64_t yr = r - top;
        if (dw == 1) { /* one pass: xp[r][q + 1] is the next q's value; padding columns zp, no test inside */
            const uint8_t *src = t + yr * w * CB;
            int64_t a = yr >= 0 && yr < h ? (left < wp ? left : wp) : wp, e = yr >= 0 && yr < h ? (left + w < wp ? left + w : wp) : wp;
            __m512i cur = zp;
            if (a == 0 && e > 0) cur = xsigned ? _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)src))
                                               : _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)src));
            for (int64_t q = 0; q < wp; q++) {
                __m512i next = zp;
                if (q + 1 >= a && q + 1 < e) {
                    __m128i b = _mm_loadu_si128((const __m128i *)(src + (q + 1 - left) * CB));
                    next = xsigned ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b);
                }
                _mm512_storeu_si512(row + q * CB, _mm512_mask_blend_epi16(0xAAAAAAAA, cur, _mm512_slli_epi32(next, 16)));
                cur = next;
            }
            continue;
        }
        for (int64_t q = 0; q < wp; q++) { /* the low halves: xp[r][q] */
            int64_t xq = q - left;
            __m512i v = zp;
            if (yr >= 0 && yr < h && xq >= 0 && xq < w) {
                __m128i b = _mm_loadu_si128((const __m128i *)(t + (yr * w + xq) * CB));
                v = xsigned ? _mm512_cvtepi8_epi32(b) : _mm512_cvtepu8_epi32(b);
            }
            _mm512_storeu_si512(row + q * CB, v);
        }
        for (int64_t q = 0; q < wp; q++) { /* the high halves: xp[r][q + dw] (zp past the edge) */
            __m512i lo = _mm512_and_si512(_mm512_loadu_si512(row + q * CB), low);
            __m512i hi = q + dw < wp ? _mm512_loadu_si512(row + (q + dw) * CB) : zp;
            _mm512_storeu_si512(row + q * CB, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
    }
}

/* Grouped: p2 [q][hp][wp][16] (q: input channel pairs): lane l of p2[q][r][c] holds the int16 pair (xp[a][r][c],
 * xp[a + 1][r][c]), a = input channel 2q of lane l's group (its own channel again past an odd group's end, weight
 * 0), by VPERMW of the pixel's 16 widened input channels. t: [h * w][16] pixel-major bytes of the block's input
 * channels. */
CONV_AVX512 static void dwcb_build_grouped(const struct conv_job *j, const uint8_t *t, int64_t c0, int32_t *p2) {
    const int64_t h = j->h, w = j->w, hp = j->hp, wp = j->wp, top = j->top, left = j->left, cg = j->cg, mg = j->mg;
    const int64_t pairs = (cg + 1) / 2, g0 = c0 / mg, plane = hp * wp * CB;
    __m512i idx[CB / 2];
    for (int64_t q = 0; q < pairs; q++) {
        int16_t ix[32];
        for (int64_t l = 0; l < CB; l++) {
            int64_t a = ((c0 + l) / mg - g0) * cg + 2 * q;
            a = a < CB ? a : CB - 1; /* lanes past the last channel (weight 0) */
            ix[2 * l] = (int16_t)a, ix[2 * l + 1] = (int16_t)(2 * q + 1 < cg && a + 1 < CB ? a + 1 : a);
        }
        idx[q] = _mm512_loadu_si512(ix);
    }
    __m512i zp = _mm512_set1_epi16((int16_t)j->zp);
    for (int64_t r = 0; r < hp; r++) {
        int64_t yr = r - top;
        for (int64_t c = 0; c < wp; c++) {
            int64_t xq = c - left;
            int32_t *dst = p2 + (r * wp + c) * CB;
            if (yr < 0 || yr >= h || xq < 0 || xq >= w) {
                for (int64_t q = 0; q < pairs; q++) _mm512_storeu_si512(dst + q * plane, zp);
                continue;
            }
            __m128i b = _mm_loadu_si128((const __m128i *)(t + (yr * w + xq) * CB));
            __m512i v = _mm512_castsi256_si512(j->xsigned ? _mm256_cvtepi8_epi16(b) : _mm256_cvtepu8_epi16(b));
            for (int64_t q = 0; q < pairs; q++) _mm512_storeu_si512(dst + q * plane, _mm512_permutexvar_epi16(idx[q], v));
        }
    }
}

/* The epilogue of 16 channels (lanes) with per-lane constants (dwcb_consts' header). */
struct lane_epilogue {
    __m512i lo, hi, mul_e, mul_o, add_e, add_o, sh_e, sh_o, post_e, post_o, span, base;
    int clamp;
};

CONV_AVX512 static void lane_epilogue_load(const struct conv_epilogue *e, const int64_t *k, struct lane_epilogue *le) {
    le->lo = _mm512_loadu_si512(k), le->hi = _mm512_loadu_si512(k + 8);
    le->mul_e = _mm512_loadu_si512(k + 16), le->mul_o = _mm512_loadu_si512(k + 24);
    le->add_e = _mm512_loadu_si512(k + 32), le->add_o = _mm512_loadu_si512(k + 40);
    le->sh_e = _mm512_loadu_si512(k + 48), le->sh_o = _mm512_loadu_si512(k + 56);
    le->post_e = _mm512_loadu_si512(k + 64), le->post_o = _mm512_loadu_si512(k + 72);
    le->clamp = (int)k[80];
    le->span = _mm512_set1_epi64(e->span), le->base = _mm512_set1_epi32((int32_t)e->base);
}

/* As epilogue_avx512's lanes, each lane with its own channel's constants (mul < 2^31, as there). */
CONV_AVX512 static inline __m512i lane_y(const struct lane_epilogue *le, __m512i a) {
    a = _mm512_min_epi32(_mm512_max_epi32(a, le->lo), le->hi);
    __m512i ev = _mm512_mul_epi32(a, le->mul_e), od = _mm512_mul_epi32(_mm512_srli_epi64(a, 32), le->mul_o);
    ev = _mm512_add_epi64(_mm512_srlv_epi64(_mm512_add_epi64(ev, le->add_e), le->sh_e), le->post_e);
    od = _mm512_add_epi64(_mm512_srlv_epi64(_mm512_add_epi64(od, le->add_o), le->sh_o), le->post_o);
    if (le->clamp) {
        __m512i zero = _mm512_setzero_si512();
        ev = _mm512_min_epi64(_mm512_max_epi64(ev, zero), le->span);
        od = _mm512_min_epi64(_mm512_max_epi64(od, zero), le->span);
    }
    return _mm512_add_epi32(_mm512_mask_blend_epi32(0xAAAA, ev, _mm512_slli_epi64(od, 32)), le->base);
}

/* Outputs of one block: the lanes' sums over the units, PIX output pixels at a time (8, then 4 and 1 for the
 * tail: independent sums, each weight vector loaded once per step), then the epilogue into o (pixel-major
 * [oh * ow][16] int32). */
#define DWCB_STEP(PIX, DOT)                                                                                     \
    for (; n - p0 >= PIX; p0 += PIX) {                                                                          \
        int64_t base[PIX];                                                                                      \
        for (int k = 0; k < PIX; k++) { /* (oy, ox): output p0 + k */                                           \
            base[k] = (oy * sh * wp + ox * sw) * CB;                                                            \
            if (++ox == ow) ox = 0, oy++;                                                                       \
        }                                                                                                       \
        __m512i a[PIX];                                                                                         \
        for (int k = 0; k < PIX; k++) a[k] = _mm512_setzero_si512();                                            \
        for (int64_t u = 0; u < units; u++) {                                                                   \
            const int32_t *s = p2 + d->uoff[u] * CB;                                                            \
            __m512i w = _mm512_loadu_si512(wv + u * CB);                                                        \
            for (int k = 0; k < PIX; k++) a[k] = DOT(a[k], _mm512_loadu_si512(s + base[k]), w);                 \
        }                                                                                                       \
        for (int k = 0; k < PIX; k++) _mm512_storeu_si512(o + (p0 + k) * CB, lane_y(le, a[k]));                \
    }
#define DWCB_SUMS(NAME, ATTR, DOT)                                                                              \
    ATTR static void NAME(const struct dwcb_job *d, const int32_t *p2, const int32_t *wv,                       \
                          const struct lane_epilogue *le, int32_t *o) {                                         \
        const struct conv_job *j = d->j;                                                                        \
        const int64_t ow = j->ow, n = j->oh * j->ow, units = d->units, sh = j->sh, sw = j->sw, wp = j->wp;      \
        int64_t p0 = 0, oy = 0, ox = 0;                                                                         \
        DWCB_STEP(8, DOT)                                                                                       \
        DWCB_STEP(4, DOT)                                                                                       \
        DWCB_STEP(1, DOT)                                                                                       \
    }
#define MADD_ADD_CB(a, x, w) _mm512_add_epi32(a, _mm512_madd_epi16(x, w))
DWCB_SUMS(dwcb_sums_avx512, CONV_AVX512, MADD_ADD_CB)
DWCB_SUMS(dwcb_sums_avx512vnni, CONV_AVX512VNNI, _mm512_dpwssd_epi32)
#undef MADD_ADD_CB
#undef DWCB_SUMS
#undef DWCB_STEP

/* o (pixel-major [n][16] int32 outputs of channels c0 .. c0 + nc - 1) -> their NCHW planes at dst (planes of n);
 * y8: scratch for n * 16 bytes. */
CONV_AVX512 static void dwcb_store(const struct conv_job *j, const int32_t *o, int64_t n, int64_t nc, uint8_t *y8,
                                   uint8_t *dst) {
    int outkind = j->e.outkind;
    if (outkind == 1 || outkind == 2) { /* bytes: pack, then 16x16 tiles back to planes */
        for (int64_t p = 0; p < n; p++)
            _mm_storeu_si128((__m128i *)(y8 + p * CB), _mm512_cvtepi32_epi8(_mm512_loadu_si512(o + p * CB)));
        for (int64_t p0 = 0; p0 < n; p0 += 16) {
            int64_t cnt = n - p0 < 16 ? n - p0 : 16;
            if (cnt == 16 && nc == CB) {
                tile16_bytes(y8 + p0 * CB, CB, dst + p0, n); /* rows: pixels -> rows: channels */
                continue;
            }
            uint8_t tile[16 * 16];
            gather16(y8 + p0 * CB, CB, cnt, CB, tile);
            __mmask16 k = (__mmask16)((1u << cnt) - 1);
            for (int64_t l = 0; l < nc; l++) _mm_mask_storeu_epi8(dst + l * n + p0, k, _mm_loadu_si128((const __m128i *)(tile + 16 * l)));
        }
        return;
    }
    for (int64_t l = 0; l < nc; l++)
        for (int64_t p = 0; p < n; p++) store_one(outkind, dst, l * n + p, o[p * CB + l]);
}

CONV_AVX512 static int dwcb_range(void *ctx, int64_t i0, int64_t i1) {
    const struct dwcb_job *d = (const struct dwcb_job *)ctx;
    const struct conv_job *j = d->j;
    int64_t n = j->oh * j->ow, hw = j->h * j->w, words = CB_HDR + 8 * d->units, grouped = j->cg > 1 || j->mg > 1;
    int64_t planes = grouped ? (j->cg + 1) / 2 : 1;
    uint8_t *t = (uint8_t *)malloc((size_t)(hw * CB + n * CB));
    int32_t *p2 = (int32_t *)malloc((size_t)(planes * j->hp * j->wp * CB) * sizeof(int32_t));
    int32_t *o = (int32_t *)malloc((size_t)(n * CB) * sizeof(int32_t));
    int64_t *own = d->consts ? NULL : (int64_t *)malloc((size_t)words * sizeof(int64_t));
    if (!t || !p2 || !o || (!d->consts && !own)) {
        free(t), free(p2), free(o), free(own);
        return -1;
    }
    int vnni = have_vnni512(j->isa);
    size_t osz = out_size(j->e.outkind);
    for (int64_t item = i0; item < i1; item++) {
        int64_t bi = item / d->blocks, blk = item % d->blocks, c0 = blk * CB, nc = j->m - c0 < CB ? j->m - c0 : CB;
        /* the block's input channels: its output channels' groups (depthwise: the same channels) */
        int64_t ic0 = grouped ? c0 / j->mg * j->cg : c0;
        int64_t icn = grouped ? (j->mg <= CB ? (nc + j->mg - 1) / j->mg * j->cg : j->cg) : nc;
        icn = j->c - ic0 < icn ? j->c - ic0 : icn;
        const uint8_t *x = j->x + (bi * j->c + ic0) * hw;
        for (int64_t s0 = 0; s0 < hw; s0 += 16) gather16(x + s0, hw, icn, hw - s0 < 16 ? hw - s0 : 16, t + s0 * CB);
        if (grouped)
            dwcb_build_grouped(j, t, c0, p2);
        else
            dwcb_build(j, t, p2);
        const int64_t *k = d->consts ? d->consts + blk * words : own;
        if (!d->consts) dwcb_consts(j, c0, nc, own);
        struct lane_epilogue le;
        lane_epilogue_load(&j->e, k, &le);
        (vnni ? dwcb_sums_avx512vnni : dwcb_sums_avx512)(d, p2, (const int32_t *)(k + CB_HDR), &le, o);
        dwcb_store(j, o, n, nc, t, (uint8_t *)j->y + (size_t)((bi * j->m + c0) * n) * osz);
    }
    free(t), free(p2), free(o), free(own);
    return 0;
}
#endif

/* Whether the conv runs by channel blocks (mode: 0 when its planes are small, 1 never, 2 always): depthwise
 * (cg = mg = 1) on a CPU with AVX-512. */
static int dwcb_wanted(const struct conv_job *j, int64_t mode) {
#ifdef CONV_X86
    if (mode == 1 || !cb_shape(j->cg, j->mg, j->group) || !have_avx512(j->isa)) return 0;
    int64_t most = j->cg == 1 && j->mg == 1 ? DWCB_MAX_OUTPUTS : DWCB_MAX_OUTPUTS_GROUPED;
    return mode == 2 || (j->oh * j->ow <= most && j->ow <= DWCB_MAX_WIDTH);
#else
    (void)j, (void)mode;
    return 0;
#endif
}

static int dwcb_run(const struct conv_job *j, const int64_t *consts, int threads) {
#ifdef CONV_X86
    struct dwcb_job d;
    d.j = j;
    d.blocks = (j->m + CB - 1) / CB;
    d.units = cb_units(j->cg, j->mg, j->kh, j->kw);
    d.consts = consts;
    d.uoff = (int64_t *)malloc((size_t)d.units * sizeof(int64_t));
    if (!d.uoff) return -1;
    if (j->cg > 1 || j->mg > 1) /* unit (q, i, t): pair plane q, tap (i, t) */
        for (int64_t u = 0, q = 0; q < (j->cg + 1) / 2; q++)
            for (int64_t i = 0; i < j->kh; i++)
                for (int64_t t = 0; t < j->kw; t++, u++) d.uoff[u] = q * j->hp * j->wp + i * j->dh * j->wp + t * j->dw;
    else
        for (int64_t u = 0, i = 0; i < j->kh; i++)
            for (int64_t q = 0; q < j->kw; q += 2, u++) d.uoff[u] = i * j->dh * j->wp + q * j->dw;
    int64_t items = j->b * d.blocks, macs = CB * (d.units * 2 * j->oh * j->ow + j->hp * j->wp);
    int64_t per = MIN_MACS_PER_PART / (macs > 0 ? macs : 1) + 1, most = items / per;
    int parts = threads <= 1 || most <= 1 ? 1 : (threads < most ? threads : (int)most);
    int rc = opml_parallel_for(dwcb_range, &d, items, parts);
    free(d.uoff);
    return rc;
#else
    (void)j, (void)consts, (void)threads;
    return -1;
#endif
}

#define CFG64(i) ((const int64_t *)(intptr_t)cfg[i])
/* The per-block constants of a depthwise conv's channel-block path (cfg as opml_gconv_cfg's; group = c = m)
 * into out: ceil(c / 16) blocks of CB_HDR + 8 kh ceil(kw / 2) words (dwcb_consts), made once when the conv is
 * prepared and passed back as cfg[27]. Returns 0, or -1 when the conv is not depthwise or words is not that size. */
int opml_dwcb_consts(const int64_t *cfg, int64_t *out, int64_t words) {
    struct conv_job j;
    memset(&j, 0, sizeof j);
    j.c = cfg[1], j.m = cfg[2], j.group = cfg[3], j.kh = cfg[4], j.kw = cfg[5];
    j.wt = (const int16_t *)(intptr_t)cfg[15];
    j.e = (struct conv_epilogue){CFG64(20), CFG64(21), CFG64(22), CFG64(23), CFG64(24), CFG64(25), cfg[16], cfg[17], (int)cfg[18]};
    if (j.c < 1 || j.m < 1 || j.group < 1 || j.c % j.group || j.m % j.group || j.kh < 1 || j.kw < 1) return -1;
    j.cg = j.c / j.group, j.mg = j.m / j.group;
    if (!cb_shape(j.cg, j.mg, j.group)) return -1;
    int64_t per = CB_HDR + 8 * cb_units(j.cg, j.mg, j.kh, j.kw), blocks = (j.m + CB - 1) / CB;
    if (words != blocks * per) return -1;
    for (int64_t b = 0; b < blocks; b++) dwcb_consts(&j, b * CB, j.m - b * CB < CB ? j.m - b * CB : CB, out + b * per);
    return 0;
}

#undef CFG64

/* ----------------------------------------------------------------- per-plane reductions and lookups */

/* The CNN glue ops over the planes of an NCHW tensor (a plane: the last n elements of contiguous bytes), exact
 * integer arithmetic only (the same integers as opml.kernels' numpy forms, so the same bytes):
 *   opml_plane_reduce: global average / sum pooling and the spatial ReduceMean/Sum/Max ("reduce" over the
 *     trailing axes): mode 0 y[p] = clamp(floor((acc mult + den / 2) / den) + ozp, lo, hi), acc = sum over
 *     the plane of (x - zp) (round_div of intmath, den = count << shift > 0; the caller checks
 *     |acc mult| + den < 2^62, so no int64 step overflows); mode 1 y[p] = max over the plane.
 *   opml_plane_lut8: y[p, i] = table[(a[p] << 8) | b[p, i]] (or table[(b[p, i] << 8) | a[p]] when swap): a
 *     binary lookup-table op (kernels_pointwise's 65536-entry tables) of one value per plane and a full
 *     tensor, the SE block's channel scale times the feature map: a 256-entry row (or column) of the table
 *     per plane, applied by opml_lut8 (pointwise.c). */

static int64_t plane_sum_generic(const uint8_t *s, int64_t n, int xsigned) {
    int64_t acc = 0;
    if (xsigned)
        for (int64_t i = 0; i < n; i++) acc += (int8_t)s[i];
    else
        for (int64_t i = 0; i < n; i++) acc += s[i];
    return acc;
}

#ifdef CONV_X86
/* VPSADBW against 0 sums 8 unsigned bytes into each 64-bit lane; a signed byte v is (v ^ 0x80) - 128. */
CONV_AVX2 static int64_t plane_sum_avx2(const uint8_t *s, int64_t n, int xsigned) {
    __m256i acc = _mm256_setzero_si256(), flip = _mm256_set1_epi8(xsigned ? (char)0x80 : 0), zero = acc;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32)
        acc = _mm256_add_epi64(acc, _mm256_sad_epu8(_mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(s + i)),
                                                                      flip), zero));
    int64_t lanes[4];
    _mm256_storeu_si256((__m256i *)lanes, acc);
    return lanes[0] + lanes[1] + lanes[2] + lanes[3] - (xsigned ? 128 * i : 0) + plane_sum_generic(s + i, n - i, xsigned);
}

CONV_AVX512 static int64_t plane_sum_avx512(const uint8_t *s, int64_t n, int xsigned) {
    __m512i acc = _mm512_setzero_si512(), flip = _mm512_set1_epi8(xsigned ? (char)0x80 : 0), zero = acc;
    for (int64_t i = 0; i < n; i += 64) {
        __mmask64 k = n - i >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (n - i)) - 1);
        /* masked-off bytes load as 0 and become 0x80 ^ flip: count them as the flip's 128 too (subtracted below) */
        __m512i v = _mm512_maskz_loadu_epi8(k, s + i);
        acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_xor_si512(v, flip), zero));
    }
    int64_t padded = (n + 63) / 64 * 64;
    return _mm512_reduce_add_epi64(acc) - (xsigned ? 128 * padded : 0);
}
#endif

static int8_t byte_max(const uint8_t *s, int64_t n, int xsigned) {
    int v = xsigned ? (int8_t)s[0] : s[0];
    for (int64_t i = 1; i < n; i++) {
        int t = xsigned ? (int8_t)s[i] : s[i];
        v = t > v ? t : v;
    }
    return (int8_t)v;
}

int opml_plane_reduce(const uint8_t *x, int xsigned, int64_t planes, int64_t n, int mode, int64_t zp, int64_t mult,
                      int64_t den, int64_t ozp, int64_t lo, int64_t hi, uint8_t *y, int isa) {
    if (planes < 0 || n < 1 || den < 1 || (mode != 0 && mode != 1) || lo > hi) return -1;
    int64_t (*sum)(const uint8_t *, int64_t, int) = plane_sum_generic;
#ifdef CONV_X86
    if (have_avx512(isa)) /* (planes under 32 bytes, a 3x3 head: the scalar loop, inlined below) */
        sum = plane_sum_avx512;
    else if (isa >= 1)
        sum = plane_sum_avx2;
#else
    (void)isa;
#endif
    const double inv = 1.0 / (double)den;
    for (int64_t p = 0; p < planes; p++) {
        const uint8_t *s = x + p * n;
        if (mode == 1) {
            y[p] = (uint8_t)byte_max(s, n, xsigned);
            continue;
        }
        int64_t num = ((n < 32 ? plane_sum_generic(s, n, xsigned) : sum(s, n, xsigned)) - zp * n) * mult + den / 2;
        /* floor(num / den) as numpy's floor_divide: a double estimate (num times 1 / den: within a few units of
         * the quotient, |num| < 2^62), then corrected exactly in int64 (q den stays within |num| + 2 den < 2^63);
         * cheaper than an int64 division */
        int64_t q = (int64_t)((double)num * inv);
        while (q * den > num) q--;
        while ((q + 1) * den <= num) q++;
        q += ozp;
        q = q < lo ? lo : (q > hi ? hi : q);
        y[p] = (uint8_t)(int8_t)q;
    }
    return 0;
}

int opml_plane_lut8(const uint8_t *table, const uint8_t *a, const uint8_t *b, int64_t planes, int64_t n, int swap,
                    uint8_t *y, int isa) {
    if (planes < 0 || n < 1) return -1;
    uint8_t col[256];
    if (n < 64) { /* small planes: direct lookups (a row or column per plane costs more than it saves) */
        for (int64_t p = 0; p < planes; p++) {
            const uint8_t *s = b + p * n;
            uint8_t *d = y + p * n;
            if (swap)
                for (int64_t i = 0; i < n; i++) d[i] = table[((size_t)s[i] << 8) | a[p]];
            else
                for (int64_t i = 0; i < n; i++) d[i] = table[((size_t)a[p] << 8) | s[i]];
        }
        return 0;
    }
    for (int64_t p = 0; p < planes; p++) {
        const uint8_t *row = table + ((size_t)a[p] << 8);
        if (swap) { /* table[(b << 8) | a]: column a[p] */
            for (int k = 0; k < 256; k++) col[k] = table[((size_t)k << 8) | a[p]];
            row = col;
        }
        if (opml_lut8(row, b + p * n, y + p * n, 0, n, isa)) return -1;
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ max pooling */

/* opml_maxpool: y[p, oy, ox] = max over the window's taps inside the input of x[p, oy sh + i dh - pt, ox sw + j dw
 * - pl] (taps in the padding are the dtype's minimum, so they never win: the numpy path pads with it), for
 * int8/uint8 planes; int8 bytes compare as uint8 after flipping the sign bit. Max is exact, so any order of the
 * comparisons gives the same bytes. Per output row: the window's input rows are folded by a byte max into one
 * padded row (vrow), its columns by a max of kw shifted copies (hrow), then every sw-th column is kept. The loops
 * are plain C compiled per instruction set (the byte maxima vectorize). */
struct maxpool_job {
    const uint8_t *x;
    uint8_t *y;
    int64_t h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, span, reach;
    int flip, isa;
};

static inline __attribute__((always_inline)) void maxpool_plane(const struct maxpool_job *m, int64_t p,
                                                                 uint8_t *restrict vrow, uint8_t *restrict hrow) {
    const int64_t h = m->h, w = m->w, kh = m->kh, kw = m->kw, sh = m->sh, sw = m->sw, dh = m->dh, dw = m->dw;
    const int64_t pl = m->pl, oh = m->oh, ow = m->ow, span = m->span, reach = m->reach;
    const uint8_t flip = (uint8_t)m->flip;
    const uint8_t *restrict xp = m->x + p * h * w;
    uint8_t *restrict yp = m->y + p * oh * ow;
    /* vrow covers padded columns [0, reach): input column c - pl; outside the input 0 (the flipped minimum) */
    int64_t c0 = pl < reach ? pl : reach, c1 = pl + w < reach ? pl + w : reach;
    for (int64_t oy = 0; oy < oh; oy++) {
        for (int64_t c = 0; c < reach; c++) vrow[c] = 0;
        for (int64_t i = 0; i < kh; i++) {
            int64_t iy = oy * sh + i * dh - m->pt;
            if (iy < 0 || iy >= h) continue;
            const uint8_t *restrict row = xp + iy * w;
            for (int64_t c = c0; c < c1; c++) {
                uint8_t v = (uint8_t)(row[c - pl] ^ flip);
                vrow[c] = v > vrow[c] ? v : vrow[c];
            }
        }
        for (int64_t c = 0; c < span; c++) hrow[c] = vrow[c];
        for (int64_t j = 1; j < kw; j++)
            for (int64_t c = 0; c < span; c++) {
                uint8_t v = vrow[c + j * dw];
                hrow[c] = v > hrow[c] ? v : hrow[c];
            }
        uint8_t *restrict out = yp + oy * ow;
        if (sw == 1)
            for (int64_t ox = 0; ox < ow; ox++) out[ox] = (uint8_t)(hrow[ox] ^ flip);
        else
            for (int64_t ox = 0; ox < ow; ox++) out[ox] = (uint8_t)(hrow[ox * sw] ^ flip);
    }
}

static void maxpool_generic(const struct maxpool_job *m, int64_t p, uint8_t *vrow, uint8_t *hrow) {
    maxpool_plane(m, p, vrow, hrow);
}
#ifdef CONV_X86
CONV_AVX2 static void maxpool_avx2(const struct maxpool_job *m, int64_t p, uint8_t *vrow, uint8_t *hrow) {
    maxpool_plane(m, p, vrow, hrow);
}

/* Rows of at most 64 padded columns in one register (AVX-512 VBMI): the window's input rows folded by masked loads
 * and byte maxima, the columns' shifts by VPERMB (column c + j dw of the folded row; c < span keeps every read
 * inside it), the kept columns by VPMOVWB (stride 2: the low byte of each 16-bit lane) or a masked store. No
 * memory round trip (a masked store followed by a load of the same bytes does not forward). */
#define CONV_VBMI __attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi")))
CONV_VBMI static void maxpool_vbmi(const struct maxpool_job *m, int64_t p, uint8_t *vrow, uint8_t *hrow) {
    const int64_t h = m->h, w = m->w, kh = m->kh, kw = m->kw, sh = m->sh, sw = m->sw, dh = m->dh, dw = m->dw;
    const int64_t pl = m->pl, oh = m->oh, ow = m->ow;
    const __m512i flip = _mm512_set1_epi8((char)m->flip), lanes = _mm512_set_epi8(
        63, 62, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39, 38, 37, 36,
        35, 34, 33, 32, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7,
        6, 5, 4, 3, 2, 1, 0);
    const uint8_t *xp = m->x + p * h * w;
    uint8_t *yp = m->y + p * oh * ow;
    /* input columns 0 .. n - 1 land at padded columns pl .. pl + n - 1 (the rest of the row: padding) */
    int64_t n = w < m->reach - pl ? w : m->reach - pl;
    __mmask64 kin = n >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << n) - 1), kout = ow >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << ow) - 1);
    __m512i shifts[16];
    int64_t taps = kw < 16 ? kw : 16;
    for (int64_t j = 1; j < taps; j++) shifts[j] = _mm512_add_epi8(lanes, _mm512_set1_epi8((char)(j * dw)));
    (void)vrow, (void)hrow;
    for (int64_t oy = 0; oy < oh; oy++) {
        __m512i v = _mm512_setzero_si512();
        for (int64_t i = 0; i < kh; i++) {
            int64_t iy = oy * sh + i * dh - m->pt;
            if (iy < 0 || iy >= h || n <= 0) continue;
            v = _mm512_max_epu8(v, _mm512_maskz_mov_epi8(kin, _mm512_xor_si512(_mm512_maskz_loadu_epi8(kin, xp + iy * w), flip)));
        }
        if (pl) v = _mm512_permutexvar_epi8(_mm512_sub_epi8(lanes, _mm512_set1_epi8((char)pl)), v); /* column c: input c - pl */
        if (pl) v = _mm512_maskz_mov_epi8(~(__mmask64)0 << pl, v); /* the left padding: the flipped minimum 0 */
        __m512i hv = v;
        for (int64_t j = 1; j < taps; j++) hv = _mm512_max_epu8(hv, _mm512_permutexvar_epi8(shifts[j], v));
        hv = _mm512_xor_si512(hv, flip);
        uint8_t *out = yp + oy * ow;
        if (sw == 1)
            _mm512_mask_storeu_epi8(out, kout, hv);
        else if (sw == 2)
            _mm256_mask_storeu_epi8(out, (__mmask32)kout, _mm512_cvtepi16_epi8(hv));
        else {
            uint8_t tmp[64];
            _mm512_storeu_si512(tmp, hv);
            for (int64_t ox = 0; ox < ow; ox++) out[ox] = tmp[ox * sw];
        }
    }
}

/* The same steps with masked 64-byte rows, through memory, for rows wider than a register. */
CONV_AVX512 static void maxpool_avx512(const struct maxpool_job *m, int64_t p, uint8_t *vrow, uint8_t *hrow) {
    const int64_t h = m->h, w = m->w, kh = m->kh, kw = m->kw, sh = m->sh, sw = m->sw, dh = m->dh, dw = m->dw;
    const int64_t pl = m->pl, oh = m->oh, ow = m->ow, span = m->span, reach = m->reach;
    const __m512i flip = _mm512_set1_epi8((char)m->flip), zero = _mm512_setzero_si512();
    const uint8_t *xp = m->x + p * h * w;
    uint8_t *yp = m->y + p * oh * ow;
#define MASK(n) ((n) >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (n)) - 1))
    for (int64_t oy = 0; oy < oh; oy++) {
        for (int64_t c = 0; c < reach; c += 64) _mm512_mask_storeu_epi8(vrow + c, MASK(reach - c), zero);
        for (int64_t i = 0; i < kh; i++) {
            int64_t iy = oy * sh + i * dh - m->pt;
            if (iy < 0 || iy >= h) continue;
            const uint8_t *row = xp + iy * w;
            for (int64_t q = 0; q < w && pl + q < reach; q += 64) { /* input columns q.. at vrow pl + q.. */
                int64_t n = w - q < reach - pl - q ? w - q : reach - pl - q;
                __mmask64 k = MASK(n);
                __m512i v = _mm512_xor_si512(_mm512_maskz_loadu_epi8(k, row + q), flip);
                __m512i cur = _mm512_maskz_loadu_epi8(k, vrow + pl + q);
                _mm512_mask_storeu_epi8(vrow + pl + q, k, _mm512_max_epu8(v, cur));
            }
        }
        uint8_t *out = yp + oy * ow;
        for (int64_t c = 0; c < span; c += 64) {
            __mmask64 k = MASK(span - c);
            __m512i hv = _mm512_maskz_loadu_epi8(k, vrow + c);
            for (int64_t j = 1; j < kw; j++) hv = _mm512_max_epu8(hv, _mm512_maskz_loadu_epi8(k, vrow + c + j * dw));
            hv = _mm512_xor_si512(hv, flip);
            if (sw == 1)
                _mm512_mask_storeu_epi8(out + c, k, hv);
            else if (sw == 2) { /* outputs c / 2 .. : the even columns */
                int64_t n = ow - c / 2 < 32 ? ow - c / 2 : 32;
                _mm256_mask_storeu_epi8(out + c / 2, (__mmask32)MASK(n), _mm512_cvtepi16_epi8(hv));
            } else
                _mm512_mask_storeu_epi8(hrow + c, k, hv);
        }
        if (sw > 2)
            for (int64_t ox = 0; ox < ow; ox++) out[ox] = hrow[ox * sw];
    }
#undef MASK
}
#endif

static int maxpool_range(void *ctx, int64_t p0, int64_t p1) {
    const struct maxpool_job *m = (const struct maxpool_job *)ctx;
    uint8_t *buf = (uint8_t *)malloc((size_t)(2 * m->reach + 64));
    if (!buf) return -1;
    void (*fn)(const struct maxpool_job *, int64_t, uint8_t *, uint8_t *) = maxpool_generic;
#ifdef CONV_X86
    if (have_avx512(m->isa) && m->reach <= 64 && m->kw <= 16 && __builtin_cpu_supports("avx512vbmi"))
        fn = maxpool_vbmi;
    else if (have_avx512(m->isa))
        fn = maxpool_avx512;
    else if (m->isa >= 1)
        fn = maxpool_avx2;
#endif
    for (int64_t p = p0; p < p1; p++) fn(m, p, buf, buf + m->reach + 32);
    free(buf);
    return 0;
}

/* x: planes of h x w bytes; y: planes of oh x ow, which must be the window's output size over the padded input
 * (pads top pt and left pl; the bottom and right pads are what remains, ceil mode included). Returns 0, or -1 for
 * arguments outside the kernel's bounds or when memory runs out. */
int opml_maxpool(const uint8_t *x, int xsigned, int64_t planes, int64_t h, int64_t w, int64_t kh, int64_t kw,
                 int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t pt, int64_t pl, int64_t oh, int64_t ow,
                 uint8_t *y, int isa, int threads) {
    if (planes < 0 || h < 1 || w < 1 || kh < 1 || kw < 1 || sh < 1 || sw < 1 || dh < 1 || dw < 1 || pt < 0 ||
        pl < 0 || oh < 1 || ow < 1 || isa < 0)
        return -1;
    struct maxpool_job m = {x, y, h, w, kh, kw, sh, sw, dh, dw, pt, pl, oh, ow, 0, 0, xsigned ? 0x80 : 0, isa};
    m.span = (ow - 1) * sw + 1;        /* hrow's columns */
    m.reach = m.span + (kw - 1) * dw; /* vrow's columns */
    int64_t per = MIN_MACS_PER_PART / (oh * m.reach * kh + 1) + 1, most = planes / per;
    int parts = threads <= 1 || most <= 1 ? 1 : (threads < most ? threads : (int)most);
    return planes ? opml_parallel_for(maxpool_range, &m, planes, parts) : 0;
}
