/* Exact integer GEMM with the engine's requantization epilogue.
 *
 *   acc[m, n] = sum_k x[m, k] * w[k, n]          x int8 or uint8, w int16 with |w| <= 255
 *   y[m, n]   = clip_int32(acc[m, n] + off[n])                                (raw int32 output)
 *   y[m, n]   = clip(zp + round_shift(clip_int32(acc + off[n]) * mult[n], shift[n]), qmin, qmax)
 *
 * Every product is at most 255 * 255 = 65025 in magnitude and K <= OPML_QGEMM_MAX_K, so every partial
 * sum of acc lies within +-2^31 and the int32 accumulation is exact in any order: the AVX2 kernel and
 * the portable one give the same bits by construction (integer addition is associative). The epilogue
 * is int64 arithmetic (|clip_int32(a) * mult| < 2^62, plus 2^(shift-1) <= 2^61, no overflow) with
 * an arithmetic right shift, exactly the spec's requantize (opml.intmath.requantize).
 *
 * Weights are packed once per plan (opml_qgemm_pack) into panels of 16 columns: for each pair of rows
 * k, k+1 of w, the 16 columns' (w[k, c], w[k+1, c]) int16 pairs, so one VPMADDWD of a broadcast
 * (x[m, k], x[m, k+1]) pair against 8 columns adds two products per int32 lane.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OPML_X86 1
#endif

#define NR 16 /* columns per panel */
#define MR 6  /* rows per micro-tile */
#define OPML_QGEMM_MAX_K 32768

int64_t opml_qgemm_max_k(void) { return OPML_QGEMM_MAX_K; }

static int64_t kpairs_of(int64_t k) { return (k + 1) / 2; }
static int64_t panels_of(int64_t n) { return (n + NR - 1) / NR; }

/* Number of int16 values of the packed form of a [k, n] weight matrix. */
int64_t opml_qgemm_packed_size(int64_t k, int64_t n) { return panels_of(n) * kpairs_of(k) * 2 * NR; }

/* Pack w (int16 [k, n], row-major) into out (opml_qgemm_packed_size(k, n) int16), zero-padded. */
void opml_qgemm_pack(const int16_t *w, int64_t k, int64_t n, int16_t *out) {
    int64_t kp = kpairs_of(k), np_ = panels_of(n);
    memset(out, 0, (size_t)opml_qgemm_packed_size(k, n) * sizeof(int16_t));
    for (int64_t p = 0; p < np_; p++) {
        int16_t *panel = out + p * kp * 2 * NR;
        for (int64_t q = 0; q < kp; q++) {
            for (int64_t c = 0; c < NR; c++) {
                int64_t col = p * NR + c;
                if (col >= n) continue;
                int64_t k0 = 2 * q, k1 = 2 * q + 1;
                panel[q * 2 * NR + 2 * c] = w[k0 * n + col];
                panel[q * 2 * NR + 2 * c + 1] = k1 < k ? w[k1 * n + col] : 0;
            }
        }
    }
}

/* x rows [m0, m0 + MR) -> int16, K padded to even, rows past m zero: xs is MR * 2 * kp int16. */
static void load_rows(const void *x, int xsigned, int64_t m, int64_t k, int64_t lda, int64_t m0,
                      int64_t kp, int16_t *xs) {
    memset(xs, 0, (size_t)(MR * 2 * kp) * sizeof(int16_t));
    for (int64_t r = 0; r < MR && m0 + r < m; r++) {
        int16_t *dst = xs + r * 2 * kp;
        if (xsigned) {
            const int8_t *src = (const int8_t *)x + (m0 + r) * lda;
            for (int64_t i = 0; i < k; i++) dst[i] = src[i];
        } else {
            const uint8_t *src = (const uint8_t *)x + (m0 + r) * lda;
            for (int64_t i = 0; i < k; i++) dst[i] = src[i];
        }
    }
}

/* acc[MR][NR] = xs (MR rows of 2*kp int16) times one packed panel: portable version. */
static void tile_generic(const int16_t *xs, const int16_t *panel, int64_t kp, int32_t acc[MR][NR]) {
    for (int r = 0; r < MR; r++)
        for (int c = 0; c < NR; c++) acc[r][c] = 0;
    for (int64_t q = 0; q < kp; q++) {
        const int16_t *wq = panel + q * 2 * NR;
        for (int r = 0; r < MR; r++) {
            int32_t a0 = xs[r * 2 * kp + 2 * q], a1 = xs[r * 2 * kp + 2 * q + 1];
            if (!a0 && !a1) continue;
            for (int c = 0; c < NR; c++)
                acc[r][c] += a0 * (int32_t)wq[2 * c] + a1 * (int32_t)wq[2 * c + 1];
        }
    }
}

#ifdef OPML_X86
__attribute__((target("avx2"))) static void tile_avx2(const int16_t *xs, const int16_t *panel, int64_t kp,
                                                      int32_t acc[MR][NR]) {
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const int32_t *x0 = (const int32_t *)xs;
    const int32_t *x1 = x0 + kp, *x2 = x1 + kp, *x3 = x2 + kp, *x4 = x3 + kp, *x5 = x4 + kp;
    for (int64_t q = 0; q < kp; q++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(panel + q * 2 * NR));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(panel + q * 2 * NR + 16));
        __m256i b;
        b = _mm256_set1_epi32(x0[q]);
        c00 = _mm256_add_epi32(c00, _mm256_madd_epi16(b, w0));
        c01 = _mm256_add_epi32(c01, _mm256_madd_epi16(b, w1));
        b = _mm256_set1_epi32(x1[q]);
        c10 = _mm256_add_epi32(c10, _mm256_madd_epi16(b, w0));
        c11 = _mm256_add_epi32(c11, _mm256_madd_epi16(b, w1));
        b = _mm256_set1_epi32(x2[q]);
        c20 = _mm256_add_epi32(c20, _mm256_madd_epi16(b, w0));
        c21 = _mm256_add_epi32(c21, _mm256_madd_epi16(b, w1));
        b = _mm256_set1_epi32(x3[q]);
        c30 = _mm256_add_epi32(c30, _mm256_madd_epi16(b, w0));
        c31 = _mm256_add_epi32(c31, _mm256_madd_epi16(b, w1));
        b = _mm256_set1_epi32(x4[q]);
        c40 = _mm256_add_epi32(c40, _mm256_madd_epi16(b, w0));
        c41 = _mm256_add_epi32(c41, _mm256_madd_epi16(b, w1));
        b = _mm256_set1_epi32(x5[q]);
        c50 = _mm256_add_epi32(c50, _mm256_madd_epi16(b, w0));
        c51 = _mm256_add_epi32(c51, _mm256_madd_epi16(b, w1));
    }
    _mm256_storeu_si256((__m256i *)acc[0], c00);
    _mm256_storeu_si256((__m256i *)(acc[0] + 8), c01);
    _mm256_storeu_si256((__m256i *)acc[1], c10);
    _mm256_storeu_si256((__m256i *)(acc[1] + 8), c11);
    _mm256_storeu_si256((__m256i *)acc[2], c20);
    _mm256_storeu_si256((__m256i *)(acc[2] + 8), c21);
    _mm256_storeu_si256((__m256i *)acc[3], c30);
    _mm256_storeu_si256((__m256i *)(acc[3] + 8), c31);
    _mm256_storeu_si256((__m256i *)acc[4], c40);
    _mm256_storeu_si256((__m256i *)(acc[4] + 8), c41);
    _mm256_storeu_si256((__m256i *)acc[5], c50);
    _mm256_storeu_si256((__m256i *)(acc[5] + 8), c51);
}
#endif

/* 1 when the AVX2 kernel can run on this CPU. */
int opml_qgemm_has_avx2(void) {
#ifdef OPML_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") ? 1 : 0;
#else
    return 0;
#endif
}

static inline int64_t clip32(int64_t v) {
    return v < INT32_MIN ? INT32_MIN : (v > INT32_MAX ? INT32_MAX : v);
}

/* Columns [n0, n1) of y = epilogue(x @ w); n0 a multiple of 16. isa: 0 portable, 1 AVX2.
 * outkind: 0 int32 (clip only), 1 int8, 2 uint8. mult and shift have n entries (per column).
 * Returns 0, or -1 on bad arguments / out of memory (nothing is written then). */
int opml_qgemm(const void *x, int xsigned, int64_t m, int64_t k, int64_t lda, const int16_t *wp, int64_t n,
               int64_t n0, int64_t n1, const int64_t *off, const int64_t *mult, const int64_t *shift, int64_t zp,
               int64_t qmin, int64_t qmax, int outkind, void *y, int64_t ldy, int isa) {
    if (k < 0 || k > OPML_QGEMM_MAX_K || m < 0 || n0 < 0 || n0 % NR || n1 > n || n0 > n1) return -1;
    if (outkind == 0 ? 0 : (outkind != 1 && outkind != 2)) return -1;
    for (int64_t c = n0; c < n1 && outkind; c++)
        if (shift[c] < 1 || shift[c] > 62 || mult[c] < 0 || mult[c] >= ((int64_t)1 << 31)) return -1;
#ifndef OPML_X86
    isa = 0;
#endif
    int64_t kp = kpairs_of(k);
    int16_t *xs = (int16_t *)malloc((size_t)(MR * 2 * (kp ? kp : 1)) * sizeof(int16_t));
    if (!xs) return -1;
    int32_t acc[MR][NR];
    for (int64_t m0 = 0; m0 < m; m0 += MR) {
        load_rows(x, xsigned, m, k, lda, m0, kp, xs);
        int64_t rows = m - m0 < MR ? m - m0 : MR;
        for (int64_t c0 = n0; c0 < n1; c0 += NR) {
            const int16_t *panel = wp + (c0 / NR) * kp * 2 * NR;
#ifdef OPML_X86
            if (isa == 1)
                tile_avx2(xs, panel, kp, acc);
            else
#endif
                tile_generic(xs, panel, kp, acc);
            int64_t cols = n1 - c0 < NR ? n1 - c0 : NR;
            for (int64_t r = 0; r < rows; r++) {
                int64_t row = m0 + r;
                if (outkind == 0) {
                    int32_t *dst = (int32_t *)y + row * ldy + c0;
                    for (int64_t c = 0; c < cols; c++) dst[c] = (int32_t)clip32((int64_t)acc[r][c] + off[c0 + c]);
                    continue;
                }
                for (int64_t c = 0; c < cols; c++) {
                    int64_t col = c0 + c, s = shift[col];
                    int64_t v = clip32((int64_t)acc[r][c] + off[col]) * mult[col];
                    int64_t q = ((v + ((int64_t)1 << (s - 1))) >> s) + zp;
                    q = q < qmin ? qmin : (q > qmax ? qmax : q);
                    if (outkind == 1)
                        ((int8_t *)y)[row * ldy + col] = (int8_t)q;
                    else
                        ((uint8_t *)y)[row * ldy + col] = (uint8_t)q;
                }
            }
        }
    }
    free(xs);
    return 0;
}
