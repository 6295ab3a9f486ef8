/* Table lookups of the elementwise ops on bytes: lut (256 entries) and add / mul (65536 entries).
 *
 * The tables are built at prepare time from the spec's formula for every possible input (opml/
 * kernels_pointwise.py); these kernels only gather, so they equal the formula by construction.
 *
 *   opml_lut8:      y[i] = table[x[i]]                                          (x, y bytes)
 *   opml_pair_lut8: y[i] = table[(a[i mod na] << 8) | b[i mod nb]]              (a, b, y bytes)
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
