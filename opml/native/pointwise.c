/* Table lookups of the elementwise ops on bytes: lut (256 entries) and add / mul (65536 entries).
 *
 * The tables are built at prepare time from the spec's formula for every possible input (opml/
 * kernels_pointwise.py); these kernels only gather, so they equal the formula by construction.
 *
 *   opml_lut8:      y[i] = table[x[i]]                                          (x, y bytes)
 *   opml_pair_lut8: y[i] = table[(a[i mod na] << 8) | b[i mod nb]]              (a, b, y bytes)
 *   opml_add_wide:  the requantized add itself in int64, for int16 operands or outputs (no table)
 *
 * The modulo form covers same-shape operands (na = nb = n) and one operand repeated over the leading
 * dimensions of the other (numpy broadcasting of a trailing-dims operand: na or nb divides n).
 * Variants by instruction set (the isa argument, as in qgemm.c): portable C; AVX2 (VPSHUFB rows, index
 * pairs formed 16 at a time); AVX-512 (isa 2 or a later code with AVX-512: the 256-entry lookup by
 * VPERMI2B when the CPU also has AVX-512 VBMI, the pair lookup by VPGATHERDD). All gather the same
 * table entries, so every variant writes the same bytes (tests/opml/test_native_avx512_ops.py).
 * Return 0, or -1 on bad arguments (nothing is written then).
 */
#include <stdint.h>
#include <string.h>

#include "kernels.h"

#if defined(__x86_64__) || defined(__i386__)
#define OPML_PW_X86 1
#include <immintrin.h>
#endif

static void lut8_generic(const uint8_t *table, const uint8_t *x, uint8_t *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) y[i] = table[x[i]];
}

#ifdef OPML_PW_X86
/* 32 lookups per step with VPSHUFB: the table is 16 rows of 16 bytes; for row h, (x ^ 16 h) +sat 0x70
 * keeps x's low nibble and has its top bit clear exactly when x's high nibble is h, and VPSHUFB gives
 * 0 for indices with the top bit set, so OR-ing the 16 rows' shuffles gives table[x]. */
__attribute__((target("avx2"))) static void lut8_avx2(const uint8_t *table, const uint8_t *x, uint8_t *y,
                                                      int64_t n) {
    __m256i rows[16], keys[16];
    for (int h = 0; h < 16; h++) {
        rows[h] = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(table + 16 * h)));
        keys[h] = _mm256_set1_epi8((char)(16 * h));
    }
    const __m256i bias = _mm256_set1_epi8(0x70);
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(x + i));
        __m256i acc = _mm256_setzero_si256();
        for (int h = 0; h < 16; h++) {
            __m256i idx = _mm256_adds_epu8(_mm256_xor_si256(v, keys[h]), bias);
            acc = _mm256_or_si256(acc, _mm256_shuffle_epi8(rows[h], idx));
        }
        _mm256_storeu_si256((__m256i *)(y + i), acc);
    }
    lut8_generic(table, x + i, y + i, n - i);
}

/* Whether the CPU has AVX-512 VBMI (VPERMI2B) with BW (masks on bytes): checked once per call, cheap. */
static int pw_have_vbmi(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vbmi");
}

/* 64 lookups per step with AVX-512 VBMI: VPERMI2B looks each byte's low 7 bits up in a 128-byte table
 * held in two registers, one for table[0:128] and one for table[128:256]; the byte's top bit (VPMOVB2M)
 * picks which result it takes, so the output is table[x] exactly. The tail by masks. */
__attribute__((target("avx512f,avx512bw,avx512vbmi"))) static void lut8_vbmi(const uint8_t *table,
                                                                           const uint8_t *x, uint8_t *y,
                                                                           int64_t n) {
    const __m512i t0 = _mm512_loadu_si512(table), t1 = _mm512_loadu_si512(table + 64);
    const __m512i t2 = _mm512_loadu_si512(table + 128), t3 = _mm512_loadu_si512(table + 192);
    int64_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i v = _mm512_loadu_si512(x + i);
        __m512i lo = _mm512_permutex2var_epi8(t0, v, t1), hi = _mm512_permutex2var_epi8(t2, v, t3);
        _mm512_storeu_si512(y + i, _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi));
    }
    if (i < n) {
        __mmask64 k = ((__mmask64)1 << (n - i)) - 1;
        __m512i v = _mm512_maskz_loadu_epi8(k, x + i);
        __m512i lo = _mm512_permutex2var_epi8(t0, v, t1), hi = _mm512_permutex2var_epi8(t2, v, t3);
        _mm512_mask_storeu_epi8(y + i, k, _mm512_mask_blend_epi8(_mm512_movepi8_mask(v), lo, hi));
    }
}

/* Whether instruction-set code isa (qgemm.c OPML_ISA_*) may use AVX-512 here: 2 (AVX-512 VNNI, offered
 * only with AVX-512 F, BW, VL), or a later code on a CPU with AVX-512 F, BW and VL; 1 (AVX2), 3 and 4
 * keep the AVX2 loops. */
static int pw_avx512(int isa) {
    if (isa == 2) return 1;
    if (isa < 5) return 0;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl");
}
#endif

/* y[i0:i1] = table[x[i0:i1]] (table: 256 bytes). */
int opml_lut8(const uint8_t *table, const uint8_t *x, uint8_t *y, int64_t i0, int64_t i1, int isa) {
    if (i0 < 0 || i1 < i0) return -1;
#ifdef OPML_PW_X86
    if (pw_avx512(isa) && pw_have_vbmi()) {
        lut8_vbmi(table, x + i0, y + i0, i1 - i0);
        return 0;
    }
    if (isa >= 1) { /* AVX2, or a VNNI set (which implies it) */
        lut8_avx2(table, x + i0, y + i0, i1 - i0);
        return 0;
    }
#endif
    (void)isa;
    lut8_generic(table, x + i0, y + i0, i1 - i0);
    return 0;
}

static void pair_run(const uint8_t *table, const uint8_t *a, const uint8_t *b, uint8_t *y, int64_t len) {
    for (int64_t i = 0; i < len; i++) y[i] = table[((unsigned)a[i] << 8) | b[i]];
}

#ifdef OPML_PW_X86
/* The same gathers with the indices formed 16 at a time (byte interleaving b, a gives b | a << 8 as
 * little-endian uint16, which x86 is) and the table loads issued back to back. */
__attribute__((target("avx2"))) static void pair_run_avx2(const uint8_t *table, const uint8_t *a, const uint8_t *b,
                                                          uint8_t *y, int64_t len) {
    int64_t i = 0;
    for (; i + 16 <= len; i += 16) {
        __m128i va = _mm_loadu_si128((const __m128i *)(a + i)), vb = _mm_loadu_si128((const __m128i *)(b + i));
        uint16_t ix[16];
        _mm256_storeu_si256((__m256i *)ix, _mm256_set_m128i(_mm_unpackhi_epi8(vb, va), _mm_unpacklo_epi8(vb, va)));
        uint8_t o[16];
        for (int k = 0; k < 16; k++) o[k] = table[ix[k]];
        memcpy(y + i, o, 16);
    }
    pair_run(table, a + i, b + i, y + i, len - i);
}
#endif

#ifdef OPML_PW_X86
/* 16 lookups per step with AVX-512 gathers: the index b | a << 8 of each byte pair widened to int32,
 * VPGATHERDD of the four bytes at table + index (scale 1) for the lanes whose four bytes lie inside the
 * table (index <= 65532), the low byte of each (VPMOVDB) stored; the rare lanes with a larger index (the
 * table's last three entries) are looked up one by one. */
__attribute__((target("avx2,avx512f,avx512bw,avx512vl"))) static void pair_run_avx512(
    const uint8_t *table, const uint8_t *a, const uint8_t *b, uint8_t *y, int64_t len) {
    const __m512i limit = _mm512_set1_epi32(65532);
    int64_t i = 0;
    for (; i + 16 <= len; i += 16) {
        __m512i ia = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(a + i)));
        __m512i ib = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(b + i)));
        __m512i ix = _mm512_or_si512(_mm512_slli_epi32(ia, 8), ib);
        __mmask16 in = _mm512_cmple_epi32_mask(ix, limit);
        __m512i v = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), in, ix, table, 1);
        _mm_storeu_si128((__m128i *)(y + i), _mm512_cvtepi32_epi8(v));
        if (in != 0xffff)
            for (int k = 0; k < 16; k++)
                if (!(in >> k & 1)) y[i + k] = table[((unsigned)a[i + k] << 8) | b[i + k]];
    }
    pair_run(table, a + i, b + i, y + i, len - i);
}
#endif

/* y[i] = table[(a[i mod na] << 8) | b[i mod nb]] for i in [i0, i1) (table: 65536 bytes). */
int opml_pair_lut8(const uint8_t *table, const uint8_t *a, int64_t na, const uint8_t *b, int64_t nb, uint8_t *y,
                   int64_t i0, int64_t i1, int isa) {
    if (i0 < 0 || i1 < i0 || (i1 > i0 && (na < 1 || nb < 1))) return -1;
#ifndef OPML_PW_X86
    (void)isa;
#endif
    int64_t i = i0;
    if (i1 > i0 && (na == 1 || nb == 1)) { /* one operand constant (a per-channel scale): no run of one element each */
        if (na == 1 && nb == 1) {
            memset(y + i0, table[((unsigned)a[0] << 8) | b[0]], (size_t)(i1 - i0));
            return 0;
        }
        const uint8_t *x = na == 1 ? b : a, *row = table + ((size_t)a[0] << 8);
        int64_t nx = na == 1 ? nb : na;
        uint8_t col[256];
        if (nb == 1) { /* b fixed: column b[0] of the table, by a's bytes */
            if (i1 - i0 < 1024) {
                for (int64_t ix = i0 % na; i < i1; i++, ix = ix + 1 == na ? 0 : ix + 1)
                    y[i] = table[((unsigned)a[ix] << 8) | b[0]];
                return 0;
            }
            for (int k = 0; k < 256; k++) col[k] = table[((unsigned)k << 8) | b[0]];
            row = col;
        }
        while (i < i1) { /* the row by runs of the other operand's period */
            int64_t ix = i % nx, len = nx - ix < i1 - i ? nx - ix : i1 - i;
            opml_lut8(row, x + ix, y + i, 0, len, isa);
            i += len;
        }
        return 0;
    }
    while (i < i1) {
        int64_t ia = i % na, ib = i % nb;
        int64_t len = i1 - i;
        len = na - ia < len ? na - ia : len;
        len = nb - ib < len ? nb - ib : len;
#ifdef OPML_PW_X86
        if (pw_avx512(isa))
            pair_run_avx512(table, a + ia, b + ib, y + i, len);
        else if (isa >= 1)
            pair_run_avx2(table, a + ia, b + ib, y + i, len);
        else
#endif
            pair_run(table, a + ia, b + ib, y + i, len);
        i += len;
    }
    return 0;
}

/* ------------------------------------------------------------------ add of wide (int16) operands */

/* y[i] = clip(((a_i - za) am + (b_i - zb) bm + 2^(s-1)) >> s + zo, qmin, qmax) in int64, for the adds the
 * 65536-entry table cannot take (an int16 operand or output: the wide residual path), a_i = a[i mod na],
 * b_i = b[i mod nb]. Kinds: 0 int8, 1 uint8, 2 int16. The bounds checked below keep every intermediate
 * below 2^62 (the same sum opml.kernels_pointwise checks), so the int64 arithmetic is exact and >> of a
 * negative value is written as ~(~v >> s), the floor. */
static inline int64_t wide_load(const void *p, int kind, int64_t i) {
    if (kind == 0) return ((const int8_t *)p)[i];
    if (kind == 1) return ((const uint8_t *)p)[i];
    return ((const int16_t *)p)[i];
}

/* One run of consecutive elements, specialised for the common kinds (int16 + int16 -> int16/int8) so the
 * loop vectorises; other kinds through wide_load. */
#define OPML_ADD_WIDE_FN(name, attr)                                                                         \
    attr static void name(const void *a, int ak, const void *b, int bk, void *y, int yk, int64_t len,       \
                          int64_t za, int64_t zb, int64_t am, int64_t bm, int shift, int64_t zo,            \
                          int64_t qmin, int64_t qmax) {                                                      \
        int64_t rnd = (int64_t)1 << (shift - 1);                                                             \
        if (ak == 2 && bk == 2 && yk == 2) {                                                                 \
            const int16_t *pa = (const int16_t *)a, *pb = (const int16_t *)b;                                \
            int16_t *py = (int16_t *)y;                                                                      \
            _Pragma("GCC ivdep") for (int64_t i = 0; i < len; i++) {                                         \
                int64_t v = ((int64_t)pa[i] - za) * am + ((int64_t)pb[i] - zb) * bm + rnd;                   \
                v = (v >= 0 ? v >> shift : ~((~v) >> shift)) + zo;                                           \
                v = v < qmin ? qmin : v;                                                                     \
                v = v > qmax ? qmax : v;                                                                     \
                py[i] = (int16_t)v;                                                                          \
            }                                                                                                \
            return;                                                                                          \
        }                                                                                                    \
        for (int64_t i = 0; i < len; i++) {                                                                  \
            int64_t v = (wide_load(a, ak, i) - za) * am + (wide_load(b, bk, i) - zb) * bm + rnd;             \
            v = (v >= 0 ? v >> shift : ~((~v) >> shift)) + zo;                                               \
            v = v < qmin ? qmin : v;                                                                         \
            v = v > qmax ? qmax : v;                                                                         \
            if (yk == 2)                                                                                     \
                ((int16_t *)y)[i] = (int16_t)v;                                                              \
            else                                                                                             \
                ((uint8_t *)y)[i] = (uint8_t)v;                                                              \
        }                                                                                                    \
    }

OPML_ADD_WIDE_FN(add_wide_run, )
#ifdef OPML_PW_X86
OPML_ADD_WIDE_FN(add_wide_run_avx512, __attribute__((target("avx2,avx512f,avx512bw,avx512vl,avx512dq"))))
#endif

static const int wide_size[3] = {1, 1, 2};

int opml_add_wide(const void *a, int ak, int64_t na, const void *b, int bk, int64_t nb, int64_t za, int64_t zb,
                  int64_t am, int64_t bm, int shift, int64_t zo, int64_t qmin, int64_t qmax, void *y, int yk,
                  int64_t i0, int64_t i1, int isa) {
    if (i0 < 0 || i1 < i0 || (i1 > i0 && (na < 1 || nb < 1))) return -1;
    if (ak < 0 || ak > 2 || bk < 0 || bk > 2 || yk < 0 || yk > 2 || shift < 1 || shift > 62) return -1;
    int64_t lim = (int64_t)1 << 20, mlim = (int64_t)1 << 40;
    if (za < -lim || za > lim || zb < -lim || zb > lim || zo < -lim || zo > lim) return -1;
    if (am <= -mlim || am >= mlim || bm <= -mlim || bm >= mlim) return -1;
    int64_t ylo = yk == 0 ? -128 : (yk == 1 ? 0 : -32768), yhi = yk == 0 ? 127 : (yk == 1 ? 255 : 32767);
    if (qmin > qmax || qmin < ylo || qmax > yhi) return -1;
    /* |(a - za) am| + |(b - zb) bm| + 2^(s-1) < 2^62 (each product < 2^61 by the limits above) */
    int64_t ta = ((za < 0 ? -za : za) + 32768) * (am < 0 ? -am : am);
    int64_t tb = ((zb < 0 ? -zb : zb) + 32768) * (bm < 0 ? -bm : bm);
    if (ta + tb + ((int64_t)1 << (shift - 1)) >= ((int64_t)1 << 62)) return -1;
    int64_t i = i0;
    while (i < i1) {
        int64_t ia = i % na, ib = i % nb;
        int64_t len = i1 - i;
        len = na - ia < len ? na - ia : len;
        len = nb - ib < len ? nb - ib : len;
        const void *pa = (const uint8_t *)a + ia * wide_size[ak], *pb = (const uint8_t *)b + ib * wide_size[bk];
        void *py = (uint8_t *)y + i * wide_size[yk];
#ifdef OPML_PW_X86
        if (pw_avx512(isa))
            add_wide_run_avx512(pa, ak, pb, bk, py, yk, len, za, zb, am, bm, shift, zo, qmin, qmax);
        else
#endif
            add_wide_run(pa, ak, pb, bk, py, yk, len, za, zb, am, bm, shift, zo, qmin, qmax);
        i += len;
    }
#ifndef OPML_PW_X86
    (void)isa;
#endif
    return 0;
}
