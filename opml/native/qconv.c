/* Dense (group 1) convolution from the engine's NCHW input to its NCHW output in one call, through the
 * uint8 x int8 GEMM of qgemm.c: the wrapper's cfg array (opml.native.Gemm: packed weights [K, N] in the
 * (kernel row, kernel column, channel) order of opml_im2col_nhwc, epilogue constants, instruction set) is
 * used as it is.
 *
 * Two orientations, the same integers:
 *
 * - "pixels as columns" (Y^T = W^T X): for each image the im2col matrix is built as [K, P] (P = oh * ow
 *   output pixels; for a 1x1 stride-1 unpadded conv the NCHW input itself is that matrix, with no copy),
 *   packed 16 pixels at a time into the byte panels of the uint8 x int8 layout (four K rows per 64-byte
 *   group: what qgemm.c packs the weights into), and multiplied by the weights as the broadcast operand:
 *   VPDPBUSD(acc, activation panel (unsigned), 4 weight bytes of one output channel (signed)). Each output
 *   channel is one row of 16 pixels, written straight into the NCHW output: no layout change of the input
 *   or of the output, and the epilogue constants are the row's (broadcast). The weights are qgemm.c's own
 *   packed panels: channel n's group q is the 4 bytes at panel n / 16, offset q * 64 + (n % 16) * 4.
 *   It runs on the AVX-512 VNNI tile (isa avx512vnni) or AMX tiles (isa amx, with the row-major weight copy
 *   cfg[22]: the weights as TDPBSUD's A operand; without it the VNNI tile) for the uint8 x int8 packings
 *   (kinds 1, 2), and on the portable tile when forced (tests).
 * - "pixels as rows" (the other shapes, see opml_qconv_nchw's rule, and every other instruction set): the
 *   padded input is reordered to NHWC, opml_im2col_nhwc builds the GEMM rows (a 1x1 stride-1 conv uses the
 *   NHWC rows as they are), opml_qgemm_cfg multiplies, and the [P, N] result is transposed into NCHW; a 1x1
 *   conv of one pixel runs the GEMM on the NCHW arrays as they are.
 *
 * Exactness: every output is sum_k x w over the same K products in int32 (any order: integer addition is
 * associative, and every partial sum is within the bounds qgemm.c proves for the uint8 x int8 kernels:
 * |sum (x + 128) w| <= 32768 * 255 * 128 < 2^31), minus 128 * colsum(w) for signed inputs, then y_of with
 * channel n's constants: the same value as qgemm.c's epilogue of column n. The orientation and the thread
 * split change no bit (tests/opml/test_qgemm_conv.py compares both orientations at every ISA).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define QC_X86 1
#endif

/* AMX in this orientation: as qgemm.c (GCC 11 / clang 12, 64-bit Linux, not -DOPML_NO_AMX) */
#if defined(__x86_64__) && defined(__linux__) && !defined(OPML_NO_AMX) &&                                     \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#define QC_AMX 1
#endif

int opml_native_isa_mask(void); /* qgemm.c */
int64_t opml_qgemm_max_k(void);
int opml_transpose_batched(const void *x, int64_t count, int64_t rows, int64_t cols, int64_t itemsize, void *y,
                           int threads); /* conv.c */

#define NR 16          /* pixels per panel (and output channels per weight panel) */
#define KQ 4           /* K rows per group */
#define TR 8           /* output channels per tile */
#define ISA_AVX512VNNI 2
#define ISA_AMX 5
#define ISA_MAX 5
#define BLOCK_BYTES (192 * 1024) /* packed activation panels per block (L2-resident while every channel tile reads
                                    them: each block streams all the weights once) */
/* fewer output pixels than this (per image) run with pixels as rows: a 16-pixel panel would be mostly padding */
#define MIN_COLUMN_PIXELS 16
#define MAX_KXK_COLUMN_K 1152     /* other convs with larger K run with pixels as rows (see opml_qconv_nchw) */
#define MIN_KXK_COLUMN_PIXELS 256 /* and those with fewer pixels */
/* work below this many multiply-adds per thread is not split (as qgemm.c) */
#define MIN_MACS_PER_PART ((int64_t)1 << 18)

struct conv_epilogue {
    const int64_t *lo, *hi, *mul, *add, *shift, *post; /* natural column order (opml.native.Epilogue) */
    int64_t span, base;
    int outkind; /* 0 int32, 1 int8, 2 uint8, 3 int16 */
};

struct conv_job {
    struct conv_epilogue e;
    const int8_t *wp;     /* packed weights (uint8 x int8 panels) */
    const int32_t *corr;  /* 128 * column sums, for signed inputs */
    int xsigned, isa, simd;
    int64_t k, kq, n;
    const uint8_t *src;   /* [b, K, P] im2col matrices (or the input itself) */
    int64_t b, p, npan;
    void *y;              /* [b, N, P] */
    int split_panels;     /* parts are ranges of (image, panel) items; else ranges of 8-channel tiles */
    const int8_t *wrows;  /* AMX: the weights as rows [channel][kq16 groups of 4 K] (NULL: no AMX) */
    int64_t kq16;         /* AMX: groups rounded up to 16 (one 64-byte tile row) */
};

/* Scratch buffers: kept per thread and slot (the pool's threads persist), grown as needed, so a call does not
 * map fresh pages (a malloc above glibc's mmap threshold is mmap'ed and page-faulted on every call: at batch 1
 * that cost as much as the conv); freed when the thread exits (a pthread key's destructor). Above SCRATCH_KEEP
 * bytes a buffer is allocated and freed per call instead. */
#define SCRATCH_SLOTS 3
#define SCRATCH_KEEP ((size_t)16 << 20)
struct scratch_slots {
    uint8_t *p[SCRATCH_SLOTS];
    size_t cap[SCRATCH_SLOTS];
};
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static int scratch_key_ok;

static void scratch_free(void *v) {
    struct scratch_slots *s = (struct scratch_slots *)v;
    for (int i = 0; i < SCRATCH_SLOTS; i++) free(s->p[i]);
    free(s);
}

static void scratch_make_key(void) { scratch_key_ok = pthread_key_create(&scratch_key, scratch_free) == 0; }

static uint8_t *scratch_get(int slot, size_t n) {
    pthread_once(&scratch_once, scratch_make_key);
    struct scratch_slots *s = scratch_key_ok ? (struct scratch_slots *)pthread_getspecific(scratch_key) : NULL;
    if (scratch_key_ok && !s) {
        s = (struct scratch_slots *)calloc(1, sizeof *s);
        if (s && pthread_setspecific(scratch_key, s)) {
            free(s);
            s = NULL;
        }
    }
    if (!s || n > SCRATCH_KEEP) return (uint8_t *)malloc(n); /* (freed by scratch_put) */
    if (n > s->cap[slot]) {
        free(s->p[slot]);
        s->p[slot] = (uint8_t *)malloc(n);
        s->cap[slot] = s->p[slot] ? n : 0;
    }
    return s->p[slot];
}

static void scratch_put(uint8_t *p, size_t n) { /* after scratch_get(.., n) */
    struct scratch_slots *s = scratch_key_ok ? (struct scratch_slots *)pthread_getspecific(scratch_key) : NULL;
    if (!s || n > SCRATCH_KEEP) free(p);
}

static int64_t osize_of(int outkind) { return outkind == 0 ? 4 : (outkind == 3 ? 2 : 1); }

/* qgemm.c's y_of: channel c's epilogue of one accumulator */
static inline int64_t conv_y_of(const struct conv_epilogue *e, int64_t c, int64_t a) {
    a = a < e->lo[c] ? e->lo[c] : a;
    a = a > e->hi[c] ? e->hi[c] : a;
    int64_t v = (int64_t)(((uint64_t)a * (uint64_t)e->mul[c] + (uint64_t)e->add[c]) >> e->shift[c]) + e->post[c];
    v = v < 0 ? 0 : v;
    return (v > e->span ? e->span : v) + e->base;
}

/* 1 when channel c's output before the final clamp is already within [0, span] for every clamped accumulator,
 * so the clamp may be skipped: when mul <= 2^shift. Proof: opml.native.epilogue's columns are (a) constant
 * (mul 0, shift 0: the value is post's constant, within [0, span]), (b) the int32 kind's (mul 1, shift 0: a is
 * clamped to [INT32_MIN - off, INT32_MAX - off], so a + off - INT32_MIN lies in [0, 2^32 - 1] = [0, span]), or
 * (c) requantizations, whose value for a + off in [L, H] is v(a + off) = zp - qmin + round_shift((a + off) m, s)
 * with [L, H] within [a_lo, a_hi] (requant.saturation_bounds). v is non-decreasing; a_lo is the largest a with
 * v(a) <= 0, so v(a_lo + 1) >= 1; with m <= 2^s one step of a adds at most 2^s to a m, so at most 1 to v:
 * v(a_lo) >= v(a_lo + 1) - 1 >= 0. Likewise v(a_hi) <= span. So v lies in [v(a_lo), v(a_hi)] within [0, span]. */
static int within_span(const struct conv_epilogue *e, int64_t c) {
    return e->shift[c] < 62 && e->mul[c] <= ((int64_t)1 << e->shift[c]);
}

static void store_value(int outkind, void *dst, int64_t i, int64_t v) {
    if (outkind == 0)
        ((int32_t *)dst)[i] = (int32_t)v;
    else if (outkind == 1)
        ((int8_t *)dst)[i] = (int8_t)v;
    else if (outkind == 2)
        ((uint8_t *)dst)[i] = (uint8_t)v;
    else
        ((int16_t *)dst)[i] = (int16_t)v;
}

/* ------------------------------------------------------------------------------ activation panels */

/* Groups [q0, q1) of pixels [p0, p0 + cols) of src ([k rows, ld bytes apart]) into one panel: dst[q * 64 + c * 4 +
 * t] = src[(4q + t) * ld + p0 + c] ^ flip (flip 0x80 for signed inputs: x + 128), K rows past k and pixels past
 * cols zero (their weights are zero / their outputs are not stored). */
static inline void pack_groups(const uint8_t *src, int64_t ld, int64_t k, int64_t q0, int64_t q1, int64_t p0, int64_t cols,
                        uint8_t flip, uint8_t *dst) {
    int64_t full = cols == NR ? k / KQ : 0; /* groups packed by the SSE2 transpose */
    full = full < q0 ? q0 : (full > q1 ? q1 : full);
#ifdef QC_X86
    const __m128i f = _mm_set1_epi8((char)flip);
    for (int64_t q = q0; q < full; q++) {
        const uint8_t *s = src + 4 * q * ld + p0;
        __m128i r0 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)s), f);
        __m128i r1 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(s + ld)), f);
        __m128i r2 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(s + 2 * ld)), f);
        __m128i r3 = _mm_xor_si128(_mm_loadu_si128((const __m128i *)(s + 3 * ld)), f);
        __m128i a = _mm_unpacklo_epi8(r0, r1), b = _mm_unpacklo_epi8(r2, r3);
        __m128i c = _mm_unpackhi_epi8(r0, r1), d = _mm_unpackhi_epi8(r2, r3);
        __m128i *o = (__m128i *)(dst + q * KQ * NR);
        _mm_storeu_si128(o, _mm_unpacklo_epi16(a, b));
        _mm_storeu_si128(o + 1, _mm_unpackhi_epi16(a, b));
        _mm_storeu_si128(o + 2, _mm_unpacklo_epi16(c, d));
        _mm_storeu_si128(o + 3, _mm_unpackhi_epi16(c, d));
    }
#else
    full = q0;
#endif
    if (full == q1) return;
    memset(dst + full * KQ * NR, 0, (size_t)((q1 - full) * KQ * NR));
    for (int64_t q = full; q < q1; q++)
        for (int t = 0; t < KQ && KQ * q + t < k; t++) {
            const uint8_t *s = src + (KQ * q + t) * ld + p0;
            for (int64_t c = 0; c < cols; c++) dst[q * KQ * NR + c * KQ + t] = (uint8_t)(s[c] ^ flip);
        }
}

/* Panels [p0, p1) of src into dst (pbytes apart): 2 groups (8 K rows) of every panel at a time, so the source
 * rows' cache lines serve four consecutive panels while they are in L1 (8 lines: within one L1 set's ways even
 * when the rows are a multiple of 4 KiB apart). */
static void pack_block(const uint8_t *src, int64_t ld, int64_t k, int64_t kq, int64_t p0, int64_t p1, int64_t pixels,
                       uint8_t flip, uint8_t *dst, int64_t pbytes) {
    for (int64_t q0 = 0; q0 < kq; q0 += 2) {
        int64_t q1 = q0 + 2 < kq ? q0 + 2 : kq;
        for (int64_t p = p0; p < p1; p++) {
            int64_t cols = pixels - p * NR < NR ? pixels - p * NR : NR;
            pack_groups(src, ld, k, q0, q1, p * NR, cols, flip, dst + (p - p0) * pbytes);
        }
    }
}

/* ---------------------------------------------------------------------------------------- tiles */

/* acc[r][0 .. 16 * panels) = sum over K of weight row (channel n0 + r) times panels b0 (and b1): portable. */
static void tile_generic(const uint8_t *b0, const uint8_t *b1, const int8_t *w0, int64_t kq, int32_t (*acc)[2 * NR],
                         int rows, int panels) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < panels * NR; c++) {
            const uint8_t *bp = (c < NR ? b0 : b1) + (c % NR) * KQ;
            int32_t sum = 0;
            for (int64_t q = 0; q < kq; q++)
                for (int t = 0; t < KQ; t++)
                    sum += (int32_t)bp[q * KQ * NR + t] * (int32_t)w0[q * KQ * NR + r * KQ + t];
            acc[r][c] = sum;
        }
}

#ifdef QC_X86
#define QC_TARGET_V512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))
/* The AVX-512 VNNI tile: `rows` channels (consecutive in one weight panel, row r's 4 bytes of group q at
 * w0 + q * 64 + r * 4) x `panels` activation panels; both constants at each call site. */
QC_TARGET_V512 __attribute__((always_inline)) static inline void tile_v512_rows(const uint8_t *b0, const uint8_t *b1,
                                                                                const int8_t *w0, int64_t kq,
                                                                                int32_t (*acc)[2 * NR], const int rows,
                                                                                const int panels) {
    __m512i c[TR][2];
    for (int r = 0; r < rows; r++) c[r][0] = c[r][1] = _mm512_setzero_si512();
    for (int64_t q = 0; q < kq; q++) {
        __m512i x0 = _mm512_loadu_si512((const void *)(b0 + q * KQ * NR)), x1 = x0;
        if (panels == 2) x1 = _mm512_loadu_si512((const void *)(b1 + q * KQ * NR));
        const int32_t *wq = (const int32_t *)(const void *)(w0 + q * KQ * NR);
        for (int r = 0; r < rows; r++) {
            __m512i wb = _mm512_set1_epi32(wq[r]); /* the signed operand: channel r's 4 weights */
            c[r][0] = _mm512_dpbusd_epi32(c[r][0], x0, wb);
            if (panels == 2) c[r][1] = _mm512_dpbusd_epi32(c[r][1], x1, wb);
        }
    }
    for (int r = 0; r < rows; r++) {
        _mm512_storeu_si512((void *)acc[r], c[r][0]);
        if (panels == 2) _mm512_storeu_si512((void *)(acc[r] + NR), c[r][1]);
    }
}

QC_TARGET_V512 static void tile_v512(const uint8_t *b0, const uint8_t *b1, const int8_t *w0, int64_t kq,
                                     int32_t (*acc)[2 * NR], int rows, int panels) {
#define QC_CASE(r)                                                                                      \
    case r:                                                                                             \
        if (panels == 2)                                                                                \
            tile_v512_rows(b0, b1, w0, kq, acc, r, 2);                                                  \
        else                                                                                            \
            tile_v512_rows(b0, b1, w0, kq, acc, r, 1);                                                  \
        break;
    switch (rows) {
        QC_CASE(1)
        QC_CASE(2)
        QC_CASE(3)
        QC_CASE(4)
        QC_CASE(5)
        QC_CASE(6)
        QC_CASE(7)
    default:
        QC_CASE(8)
    }
#undef QC_CASE
}

/* Rows [0, rows) of a tile (channel n0 + r, `cols` pixels) through the epilogue into dst + r * row_bytes:
 * qgemm.c's AVX-512 epilogue with the channel's constants broadcast (one channel per row). */
QC_TARGET_V512 static void epilogue_v512(const struct conv_epilogue *e, int64_t n0, const int32_t *corr,
                                         int32_t (*acc)[2 * NR], int rows, char *dst, int64_t row_bytes, int64_t cols) {
    const __m512i zero = _mm512_setzero_si512();
    const __m512i base = _mm512_set1_epi64(e->base), top = _mm512_set1_epi64(e->span + e->base);
    for (int r = 0; r < rows; r++) {
        int64_t n = n0 + r;
        const __m512i lo = _mm512_set1_epi32((int32_t)e->lo[n]), hi = _mm512_set1_epi32((int32_t)e->hi[n]);
        const __m512i m = _mm512_set1_epi64(e->mul[n]), ad = _mm512_set1_epi64(e->add[n]);
        const __m512i po = _mm512_add_epi64(_mm512_set1_epi64(e->post[n]), base);
        const __m512i po32 = _mm512_set1_epi32((int32_t)(uint32_t)(uint64_t)(e->post[n] + e->base)); /* mod 2^32 */
        const __m128i sh = _mm_cvtsi64_si128(e->shift[n]);
        const __m512i cv = corr ? _mm512_set1_epi32(corr[n]) : zero;
        const int clamp = !within_span(e, n);
        for (int64_t b = 0; b < cols; b += NR) {
            int64_t bc = cols - b < NR ? cols - b : NR;
            const __mmask16 mask = (__mmask16)(bc >= NR ? 0xFFFF : (1u << bc) - 1);
            __m512i a = _mm512_sub_epi32(_mm512_loadu_si512((const void *)(acc[r] + b)), cv);
            a = _mm512_min_epi32(_mm512_max_epi32(a, lo), hi);
            /* exact signed 32 x 32 -> 64 products of the even lanes and of the odd ones (moved down by a shuffle) */
            __m512i ev = _mm512_mul_epi32(a, m);
            __m512i od = _mm512_mul_epi32(_mm512_shuffle_epi32(a, (_MM_PERM_ENUM)0xF5), m);
            ev = _mm512_srl_epi64(_mm512_add_epi64(ev, ad), sh);
            od = _mm512_srl_epi64(_mm512_add_epi64(od, ad), sh);
            __m512i v;
            if (clamp) {
                ev = _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(ev, po), base), top);
                od = _mm512_min_epi64(_mm512_max_epi64(_mm512_add_epi64(od, po), base), top);
                v = _mm512_mask_shuffle_epi32(ev, (__mmask16)0xAAAA, od, (_MM_PERM_ENUM)0xA0);
            } else { /* the result fits in 32 bits: add post + base to the low halves, modulo 2^32 */
                v = _mm512_add_epi32(_mm512_mask_shuffle_epi32(ev, (__mmask16)0xAAAA, od, (_MM_PERM_ENUM)0xA0), po32);
            }
            char *d = dst + r * row_bytes + b * osize_of(e->outkind);
            if (e->outkind == 0)
                _mm512_mask_storeu_epi32(d, mask, v);
            else if (e->outkind == 3)
                _mm512_mask_cvtepi32_storeu_epi16(d, mask, v);
            else
                _mm512_mask_cvtepi32_storeu_epi8(d, mask, v);
        }
    }
}
#endif

static void epilogue_generic(const struct conv_epilogue *e, int64_t n0, const int32_t *corr, int32_t (*acc)[2 * NR],
                             int rows, char *dst, int64_t row_bytes, int64_t cols) {
    for (int r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            int64_t a = (int64_t)acc[r][c] - (corr ? corr[n0 + r] : 0);
            store_value(e->outkind, dst + r * row_bytes, c, conv_y_of(e, n0 + r, a));
        }
}

#ifdef QC_AMX
/* AMX-INT8 with the weights as the A operand: TDPBSUD multiplies signed A bytes (16 channels x 16 groups of
 * 4 K: the row-major weight copy, row stride lda) by unsigned B bytes (16 groups x 16 pixels x 4: an
 * activation panel as packed above, row stride 64) and adds each group's four products to the int32 C
 * element without saturation: the VPDPBUSD sums with the operands' roles swapped, so the same bounds hold and
 * the result is exact. K is zero-padded to whole tiles (64 bytes) in both operands. One block is up to 2 x 2
 * C tiles (32 channels x 32 pixels: tmm0-3, A in tmm4-5, B in tmm6-7); the configuration is loaded once per
 * thread's part and released at its end. */
#define QC_TARGET_AMX __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vnni")))
struct qc_amx_config { /* LDTILECFG's 64-byte memory operand (palette 1) */
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
};

QC_TARGET_AMX static void qc_amx_begin(void) {
    struct qc_amx_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = 16;
    }
    __asm__ volatile("" : : "m"(cfg) : "memory");
    _tile_loadconfig(&cfg);
}

QC_TARGET_AMX static void qc_amx_end(void) { _tile_release(); }

/* acc (32 x 32 int32) = mt (1, 2) x 16 channels from wr times nt (1, 2) panels b0 (b1), groups [0, kq16) */
QC_TARGET_AMX __attribute__((always_inline)) static inline void qc_amx_block_mn(const int8_t *wr, int64_t lda,
                                                                                const uint8_t *b0, const uint8_t *b1,
                                                                                int64_t kq16, int32_t *acc,
                                                                                const int mt, const int nt) {
    const int64_t cstride = 2 * NR * (int64_t)sizeof(int32_t);
    __asm__ volatile("" : : : "memory"); /* the panels are written before the (asm) tile loads read them */
    _tile_zero(0);
    if (nt == 2) _tile_zero(1);
    if (mt == 2) _tile_zero(2);
    if (mt == 2 && nt == 2) _tile_zero(3);
    for (int64_t q = 0; q < kq16; q += 16) {
        _tile_loadd(4, wr + q * KQ, lda);
        _tile_loadd(6, b0 + q * KQ * NR, KQ * NR);
        if (mt == 2) _tile_loadd(5, wr + 16 * lda + q * KQ, lda);
        if (nt == 2) _tile_loadd(7, b1 + q * KQ * NR, KQ * NR);
        _tile_dpbsud(0, 4, 6);
        if (nt == 2) _tile_dpbsud(1, 4, 7);
        if (mt == 2) _tile_dpbsud(2, 5, 6);
        if (mt == 2 && nt == 2) _tile_dpbsud(3, 5, 7);
    }
    _tile_stored(0, acc, cstride);
    if (nt == 2) _tile_stored(1, acc + NR, cstride);
    if (mt == 2) _tile_stored(2, acc + 16 * 2 * NR, cstride);
    if (mt == 2 && nt == 2) _tile_stored(3, acc + 16 * 2 * NR + NR, cstride);
    __asm__ volatile("" : : : "memory"); /* acc is read after the (asm) stores */
}

QC_TARGET_AMX static void qc_amx_block(const int8_t *wr, int64_t lda, const uint8_t *b0, const uint8_t *b1,
                                       int64_t kq16, int32_t *acc, int mt, int nt) {
    if (mt == 2 && nt == 2)
        qc_amx_block_mn(wr, lda, b0, b1, kq16, acc, 2, 2);
    else if (mt == 2)
        qc_amx_block_mn(wr, lda, b0, b1, kq16, acc, 2, 1);
    else if (nt == 2)
        qc_amx_block_mn(wr, lda, b0, b1, kq16, acc, 1, 2);
    else
        qc_amx_block_mn(wr, lda, b0, b1, kq16, acc, 1, 1);
}
#endif

/* ------------------------------------------------------------------------- pixels as columns */

/* Items [i0, i1): (image, panel) pairs when split_panels, else 8-channel tiles (every panel of every image). */
static int columns_range(void *ctx, int64_t i0, int64_t i1) {
    const struct conv_job *j = (const struct conv_job *)ctx;
    int amx = j->wrows != NULL;
    int64_t kq = amx ? j->kq16 : j->kq, pbytes = kq * KQ * NR, osz = osize_of(j->e.outkind);
    int64_t nb = BLOCK_BYTES / pbytes; /* panels per block: an even number, or all of them */
    nb = nb >= j->npan ? j->npan : (nb < 2 ? 2 : nb / 2 * 2);
    int64_t it0 = j->split_panels ? i0 : 0, it1 = j->split_panels ? i1 : j->b * j->npan;
    int64_t n_lo = j->split_panels ? 0 : i0 * TR, n_hi = j->split_panels ? j->n : (i1 * TR < j->n ? i1 * TR : j->n);
    int64_t span = it1 - it0 < nb ? it1 - it0 : nb;
    uint8_t *xb = scratch_get(1, (size_t)(span * pbytes));
    if (!xb) return -1;
    uint8_t flip = j->xsigned ? 0x80 : 0;
    int32_t acc[2 * 16][2 * NR];
#ifdef QC_AMX
    if (amx) qc_amx_begin();
#endif
    for (int64_t it = it0; it < it1;) {
        int64_t bi = it / j->npan, p0 = it % j->npan;
        int64_t p1 = j->npan - p0 < nb ? j->npan : p0 + nb;
        if (p1 - p0 > it1 - it) p1 = p0 + (it1 - it);
        const uint8_t *src = j->src + bi * j->k * j->p;
        pack_block(src, j->p, j->k, kq, p0, p1, j->p, flip, xb, pbytes);
        char *yimg = (char *)j->y + bi * j->n * j->p * osz;
#ifdef QC_AMX
        if (amx) {
            for (int64_t n0 = n_lo; n0 < n_hi; n0 += 32) { /* 32 channels x 32 pixels per block */
                int rows = (int)(n_hi - n0 < 32 ? n_hi - n0 : 32);
                for (int64_t p = p0; p < p1; p += 2) {
                    int panels = p + 1 < p1 ? 2 : 1;
                    int64_t cols = j->p - p * NR < panels * NR ? j->p - p * NR : panels * NR;
                    const uint8_t *b0 = xb + (p - p0) * pbytes;
                    qc_amx_block(j->wrows + n0 * kq * KQ, kq * KQ, b0, b0 + pbytes, kq, &acc[0][0], rows > 16 ? 2 : 1,
                                 panels);
                    epilogue_v512(&j->e, n0, j->xsigned ? j->corr : NULL, acc, rows,
                                  yimg + (n0 * j->p + p * NR) * osz, j->p * osz, cols);
                }
            }
            it += p1 - p0;
            continue;
        }
#endif
        for (int64_t n0 = n_lo; n0 < n_hi; n0 += TR) {
            int rows = (int)(n_hi - n0 < TR ? n_hi - n0 : TR);
            const int8_t *w0 = j->wp + (n0 / NR) * kq * KQ * NR + (n0 % NR) * KQ;
            for (int64_t p = p0; p < p1; p += 2) {
                int panels = p + 1 < p1 ? 2 : 1;
                int64_t cols = j->p - p * NR < panels * NR ? j->p - p * NR : panels * NR;
                const uint8_t *b0 = xb + (p - p0) * pbytes;
                char *dst = yimg + (n0 * j->p + p * NR) * osz;
#ifdef QC_X86
                if (j->simd) {
                    tile_v512(b0, b0 + pbytes, w0, kq, acc, rows, panels);
                    epilogue_v512(&j->e, n0, j->xsigned ? j->corr : NULL, acc, rows, dst, j->p * osz, cols);
                    continue;
                }
#endif
                tile_generic(b0, b0 + pbytes, w0, kq, acc, rows, panels);
                epilogue_generic(&j->e, n0, j->xsigned ? j->corr : NULL, acc, rows, dst, j->p * osz, cols);
            }
        }
        it += p1 - p0;
    }
#ifdef QC_AMX
    if (amx) qc_amx_end();
#endif
    scratch_put(xb, (size_t)(span * pbytes));
    return 0;
}

/* dst[i] = src[2 i] for i < n, reading at most `avail` bytes from src: SSE2 (the even bytes of 32 by a mask and an
 * unsigned saturating pack of 16-bit lanes, which are all below 256) while 32 bytes remain, then a loop */
static void gather_even(const uint8_t *src, uint8_t *dst, int64_t n, int64_t avail) {
    int64_t i = 0;
#ifdef QC_X86
    const __m128i lo8 = _mm_set1_epi16(0xFF);
    for (; i + 16 <= n && 2 * i + 32 <= avail; i += 16) {
        __m128i a = _mm_and_si128(_mm_loadu_si128((const __m128i *)(src + 2 * i)), lo8);
        __m128i b = _mm_and_si128(_mm_loadu_si128((const __m128i *)(src + 2 * i + 16)), lo8);
        _mm_storeu_si128((__m128i *)(dst + i), _mm_packus_epi16(a, b));
    }
#else
    (void)avail;
#endif
    for (; i < n; i++) dst[i] = src[2 * i];
}

/* im2col as [K, P] per image, K in (kernel row, kernel column, channel) order, padding = zp */
struct cols_job {
    const uint8_t *x;
    uint8_t *out;
    int64_t c, h, w, pt, pl, kw, sh, sw, dh, dw, oh, ow, k;
    uint8_t zp;
};

static int cols_range(void *ctx, int64_t r0, int64_t r1) { /* rows r = image * K + kk */
    const struct cols_job *j = (const struct cols_job *)ctx;
    int64_t p = j->oh * j->ow;
    for (int64_t r = r0; r < r1; r++) {
        int64_t bi = r / j->k, kk = r % j->k, ci = kk % j->c, ij = kk / j->c, i = ij / j->kw, jj = ij % j->kw;
        const uint8_t *plane = j->x + (bi * j->c + ci) * j->h * j->w;
        uint8_t *dst = j->out + r * p;
        int64_t dx = jj * j->dw - j->pl; /* source column of output column ox: ox * sw + dx */
        if (j->sh == 1 && j->sw == 1 && j->ow == j->w && (dx < 0 ? -dx : dx) < j->w) {
            /* stride 1 and ow == w ("same" padding): the valid rows read one contiguous range of the plane,
             * shifted by dx; only the |dx| edge columns of each row fall outside their source row */
            int64_t oy0 = j->pt - i * j->dh, oy1 = j->h + oy0; /* sy = oy - oy0 lies in [0, h) */
            oy0 = oy0 < 0 ? 0 : (oy0 > j->oh ? j->oh : oy0);
            oy1 = oy1 < oy0 ? oy0 : (oy1 > j->oh ? j->oh : oy1);
            memset(dst, j->zp, (size_t)(oy0 * j->ow));
            memset(dst + oy1 * j->ow, j->zp, (size_t)((j->oh - oy1) * j->ow));
            int64_t s0 = (oy0 + i * j->dh - j->pt) * j->w + dx, len = (oy1 - oy0) * j->ow, plane_len = j->h * j->w;
            int64_t a = s0 < 0 ? -s0 : 0, e = s0 + len > plane_len ? plane_len - s0 : len; /* copied: [a, e) */
            uint8_t *d = dst + oy0 * j->ow;
            if (e > a) memcpy(d + a, plane + s0 + a, (size_t)(e - a));
            int64_t e0 = dx < 0 ? 0 : j->ow - dx, e1 = dx < 0 ? -dx : j->ow; /* each row's edge columns */
            for (int64_t oy = oy0; oy < oy1 && dx; oy++, d += j->ow) /* (they include a, e's clipped bytes) */
                for (int64_t ox = e0; ox < e1; ox++) d[ox] = j->zp;
            continue;
        }
        /* output columns [xa, xb) read inside the row */
        int64_t xa = dx >= 0 ? 0 : (-dx + j->sw - 1) / j->sw;
        int64_t xb = j->w - dx <= 0 ? 0 : (j->w - dx + j->sw - 1) / j->sw;
        xb = xb > j->ow ? j->ow : xb;
        if (xa > xb) xa = xb;
        for (int64_t oy = 0; oy < j->oh; oy++, dst += j->ow) {
            int64_t sy = oy * j->sh + i * j->dh - j->pt;
            if (sy < 0 || sy >= j->h) {
                for (int64_t ox = 0; ox < j->ow; ox++) dst[ox] = j->zp;
                continue;
            }
            const uint8_t *srow = plane + sy * j->w + xa * j->sw + dx; /* output column xa's source */
            /* plain loops for short rows: a library call per row cost more than the copy at small planes */
            for (int64_t ox = 0; ox < xa; ox++) dst[ox] = j->zp;
            if (j->sw == 1 && xb - xa >= 64)
                memcpy(dst + xa, srow, (size_t)(xb - xa));
            else if (j->sw == 2 && xb - xa >= 16)
                gather_even(srow, dst + xa, xb - xa, plane + j->h * j->w - srow);
            else
                for (int64_t ox = xa; ox < xb; ox++) dst[ox] = srow[(ox - xa) * j->sw];
            for (int64_t ox = xb; ox < j->ow; ox++) dst[ox] = j->zp;
        }
    }
    return 0;
}

static int parts_for(int64_t items, int64_t macs, int threads) {
    int64_t most = macs / MIN_MACS_PER_PART;
    if (most > items) most = items;
    if (threads <= 1 || most <= 1) return 1;
    return threads < most ? threads : (int)most;
}

/* --------------------------------------------------------------------------- pixels as rows */

/* y[i] (rows x cols of `size`-byte items) = x[i] transposed, for i < count: conv.c's 16 x 16 byte tiles where both
 * sides have 16, else a plain loop (few pixels: the tiles' scalar edges cost more than this) */
static int transpose(const uint8_t *x, int64_t count, int64_t rows, int64_t cols, int64_t size, uint8_t *y,
                     int threads) {
    if (rows >= 16 && cols >= 16) return opml_transpose_batched(x, count, rows, cols, size, y, threads);
    for (int64_t i = 0; i < count; i++, x += rows * cols * size, y += rows * cols * size)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++) {
                if (size == 1)
                    y[c * rows + r] = x[r * cols + c];
                else
                    memcpy(y + (c * rows + r) * size, x + (r * cols + c) * size, (size_t)size);
            }
    return 0;
}

static int conv_rows(const int64_t *cfg, const uint8_t *x, int64_t b, int64_t c, int64_t h, int64_t w, int64_t pt,
                     int64_t pl, int64_t hp, int64_t wp, uint8_t zp, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                     int64_t dh, int64_t dw, int64_t oh, int64_t ow, void *y, int threads) {
    int64_t n = cfg[3], s = osize_of((int)cfg[6]), rows = b * oh * ow, k = kh * kw * c;
    int direct = kh == 1 && kw == 1 && sh == 1 && sw == 1; /* NHWC rows are the GEMM's rows */
    int padded = hp != h || wp != w;
    size_t sizes[4] = {(size_t)(b * hp * wp * c), padded ? (size_t)(b * h * w * c) : 0, direct ? 0 : (size_t)(rows * k),
                       (size_t)(rows * n * s)};
    size_t total = sizes[0] + sizes[1] + sizes[2] + sizes[3] + 1;
    uint8_t *xh = scratch_get(2, total);
    if (!xh) return -1;
    uint8_t *xt = xh + sizes[0], *cols = direct ? xh : xt + sizes[1], *t = xt + sizes[1] + sizes[2];
    /* NCHW -> NHWC (16 x 16 byte tiles), then the padding around it */
    if (transpose(x, b, c, h * w, 1, padded ? xt : xh, threads)) {
        scratch_put(xh, total);
        return -1;
    }
    if (padded)
        for (int64_t bi = 0; bi < b; bi++)
            for (int64_t yy = 0; yy < hp; yy++) {
                uint8_t *drow = xh + (bi * hp + yy) * wp * c;
                int64_t sy = yy - pt;
                if (sy < 0 || sy >= h) {
                    memset(drow, zp, (size_t)(wp * c));
                    continue;
                }
                memset(drow, zp, (size_t)(pl * c));
                memcpy(drow + pl * c, xt + (bi * h + sy) * w * c, (size_t)(w * c));
                memset(drow + (pl + w) * c, zp, (size_t)((wp - pl - w) * c));
            }
    int rc = 0;
    if (!direct) rc = opml_im2col_nhwc(xh, b, hp, wp, c, kh, kw, sh, sw, dh, dw, oh, ow, 0, c, cols);
    if (!rc && rows) rc = opml_qgemm_cfg(cfg, cols, rows, t, threads);
    if (!rc) rc = transpose(t, b, oh * ow, n, s, (uint8_t *)y, threads); /* [b, P, N] -> [b, N, P] */
    scratch_put(xh, total);
    return rc;
}

/* --------------------------------------------------------------------------------- the entry */

/* y [b, n, oh, ow] = the conv of x [b, c, h, w] (1-byte elements, NCHW) padded to hp x wp (pt rows on top,
 * pl columns on the left, the rest at the bottom / right) with zp, by the kh x kw kernel with strides and
 * dilations, through the GEMM cfg (opml_qgemm_cfg's layout; its K is kh * kw * c). mode 0: the faster
 * orientation for the shape and instruction set; 1: pixels as columns (on any instruction set: the AVX-512
 * tile where the set has it, else the portable one; -1 for the int16-pair packing); 2: pixels as rows.
 * Returns 0, or -1 for arguments outside the bounds (nothing is written then) or out of memory. */
int opml_qconv_nchw(const int64_t *cfg, const uint8_t *x, int64_t b, int64_t c, int64_t h, int64_t w, int64_t pt,
                    int64_t pl, int64_t hp, int64_t wp, int64_t zp, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                    int64_t dh, int64_t dw, void *y, int mode, int threads) {
    if (b < 0 || c < 1 || h < 1 || w < 1 || pt < 0 || pl < 0 || hp < h + pt || wp < w + pl || kh < 1 || kw < 1 ||
        sh < 1 || sw < 1 || dh < 1 || dw < 1 || mode < 0 || mode > 2 || zp < -128 || zp > 255)
        return -1;
    int64_t k = cfg[1], n = cfg[3], isa = cfg[7], kind = cfg[20];
    if (k != kh * kw * c || k > opml_qgemm_max_k() || n < 1 || isa < 0 || isa > ISA_MAX || !(opml_native_isa_mask() & (1 << isa)))
        return -1;
    int64_t oh = (hp - (kh - 1) * dh - 1) / sh + 1, ow = (wp - (kw - 1) * dw - 1) / sw + 1;
    if (hp - (kh - 1) * dh - 1 < 0 || wp - (kw - 1) * dw - 1 < 0) return -1;
    int64_t p = oh * ow;
    int simd = isa == ISA_AVX512VNNI || isa == ISA_AMX;
    /* measured (one thread, scripts/bench/qgemm.py --conv and per layer of the corpus CNNs): pixels as columns win for
     * 1x1 stride-1 convs of at least 16 pixels (1.1-2.6x: no layout change; AMX or VNNI tiles), for fewer than 16
     * output channels (a panel of 16 channels is mostly padding with pixels as rows: PP-OCR's 24 -> 1 channel 2x2
     * conv at 95x95 136 vs 512 us), and for convs of at least 256 pixels up to K = 1152 (1.1-1.8x; the 1-D audio
     * stem, 1 channel, stride 16, 500 pixels: 32 vs 89 us); fewer pixels (ResNet-18's strided convs, 144 pixels and
     * fewer: 2-2.7x slower, mostly in the im2col) and larger K run faster with pixels as rows */
    int columns = mode == 1 || (mode == 0 && simd && (kind == 1 || kind == 2) && p >= MIN_COLUMN_PIXELS &&
                                ((kh * kw == 1 && sh == 1 && sw == 1) || n < NR ||
                                 (p >= MIN_KXK_COLUMN_PIXELS && k <= MAX_KXK_COLUMN_K)));
    if (!columns && b && kh == 1 && kw == 1 && hp == h && wp == w && h == 1 && w == 1 && oh == 1 && ow == 1)
        return opml_qgemm_cfg(cfg, x, b, y, threads); /* one pixel: NCHW [b, c, 1, 1] is the rows, the output too */
    if (!columns || !b)
        return b ? conv_rows(cfg, x, b, c, h, w, pt, pl, hp, wp, (uint8_t)zp, kh, kw, sh, sw, dh, dw, oh, ow, y,
                             threads)
                 : 0;
    if (kind != 1 && kind != 2) return -1;
    struct conv_job j = {{(const int64_t *)(intptr_t)cfg[8], (const int64_t *)(intptr_t)cfg[9],
                          (const int64_t *)(intptr_t)cfg[10], (const int64_t *)(intptr_t)cfg[11],
                          (const int64_t *)(intptr_t)cfg[12], (const int64_t *)(intptr_t)cfg[13], cfg[4], cfg[5],
                          (int)cfg[6]},
                         (const int8_t *)(intptr_t)cfg[2], (const int32_t *)(intptr_t)cfg[21], (int)cfg[0], (int)isa,
                         simd, k, (k + KQ - 1) / KQ, n, x, b, p, (p + NR - 1) / NR, y, 1, NULL, 0};
#ifdef QC_AMX
    if (isa == ISA_AMX && cfg[22]) { /* the row-major weight copy (opml.native.PackedWeights.rows) */
        j.wrows = (const int8_t *)(intptr_t)cfg[22];
        j.kq16 = (j.kq + 15) / 16 * 16;
    }
#endif
    struct conv_epilogue *e = &j.e;
    if (e->outkind < 0 || e->outkind > 3 || e->span < 0) return -1;
    for (int64_t i = 0; i < n; i++)
        if (e->shift[i] < 0 || e->shift[i] > 62 || e->lo[i] > e->hi[i] || e->mul[i] < 0 || e->mul[i] > INT32_MAX ||
            e->lo[i] < INT32_MIN || e->hi[i] > INT32_MAX)
            return -1;
    uint8_t *cols = NULL;
    if (!(kh == 1 && kw == 1 && sh == 1 && sw == 1 && hp == h && wp == w)) {
        cols = scratch_get(0, (size_t)(b * k * p));
        if (!cols) return -1;
        struct cols_job cj = {x, cols, c, h, w, pt, pl, kw, sh, sw, dh, dw, oh, ow, k, (uint8_t)zp};
        opml_parallel_for(cols_range, &cj, b * k, parts_for(b * k, b * k * p * 16, threads));
        j.src = cols;
    }
    int64_t macs = b * p * k * n, items = b * j.npan, tiles = (n + TR - 1) / TR;
    int parts = parts_for(items > tiles ? items : tiles, macs, threads);
    /* split what each thread would otherwise read in full: the weights (N x K) or the packed pixels (P x K) */
    j.split_panels = items >= 2 * parts && n <= b * p;
    int rc = opml_parallel_for(columns_range, &j, j.split_panels ? items : tiles, parts);
    if (cols) scratch_put(cols, (size_t)(b * k * p));
    return rc;
}
