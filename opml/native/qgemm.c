/* Exact integer GEMM with the engine's requantization epilogue.
 *
 *   acc[m, n] = sum_k x[m, k] * w[k, n]          x int8 or uint8, w int16 with |w| <= 255
 *   y[m, n]   = clip_int32(acc[m, n] + off[n])                                (raw int32 output)
 *   y[m, n]   = clip(zp + round_shift(clip_int32(acc + off[n]) * mult[n], shift[n]), qmin, qmax)
 *
 * Every product is at most 255 * 255 = 65025 in magnitude and K <= OPML_QGEMM_MAX_K, so every partial
 * sum of acc lies within +-2^31 and the int32 accumulation is exact in any order: the AVX2 (VPMADDWD),
 * AVX-512 (VPDPWSSD) and portable kernels give the same bits by construction (integer addition is
 * associative). int8 weights also have a uint8 x int8 byte layout with VPMADDUBSW (|w| <= 64) and VNNI
 * (VPDPBUSD, any int8 w) kernels: see "uint8 x int8 kernels" below. Every SIMD kernel is compiled with a
 * per-function target attribute and chosen at run time (opml_native_isa_mask, the isa argument). On CPUs with
 * AMX-INT8 the uint8 x int8 kernel also runs on the tile unit (TDPBUSD): see "AMX-INT8" below.
 *
 * The epilogue is one formula for both outputs, with per-column constants prepared in Python
 * (opml.native.epilogue, which proves each rewrite; see its docstring):
 *
 *   y = clamp(((clamp(acc, lo[n], hi[n]) * mul[n] + add[n]) >>> shift[n]) + post[n], 0, span) + base
 *
 * where add carries a bias of 2^62 that makes the value non-negative (so the logical shift of the
 * uint64 is the floor) and post removes the shifted bias: see y_of. The AVX2 version evaluates the
 * same integers 8 columns at a time (VPMULDQ products, VPSRLVQ shifts), the AVX-512 one 16.
 *
 * Weights are packed once per plan (opml_qgemm_pack) into panels of 16 columns: for each pair of rows
 * k, k+1 of w, the 16 columns' (w[k, c], w[k+1, c]) int16 pairs, so one VPMADDWD of a broadcast
 * (x[m, k], x[m, k+1]) pair against 8 columns adds two products per int32 lane.
 */
#define _GNU_SOURCE /* syscall(): the Linux permission request for the AMX tile state */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define OPML_X86 1
/* AVX-VNNI's intrinsics and CPU test need GCC 11 / clang 12; an older compiler builds without that set */
#if (defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11)
#define OPML_AVXVNNI 1
#endif
/* AMX (64-bit Linux only: the tile state needs the kernel's permission, arch_prctl): GCC 11 / clang 12 have
 * the intrinsics; an older compiler, another OS, or -DOPML_NO_AMX builds without it and never offers the set */
#if defined(__x86_64__) && defined(__linux__) && !defined(OPML_NO_AMX) &&                                     \
    ((defined(__clang__) && __clang_major__ >= 12) || (!defined(__clang__) && defined(__GNUC__) && __GNUC__ >= 11))
#define OPML_AMX 1
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif
#endif

/* Instruction sets (the `isa` argument of every native kernel; each code above 0 implies AVX2): the GEMMs
 * use the one named, the other kernels their AVX2 versions for any code >= 1. */
#define OPML_ISA_GENERIC 0
#define OPML_ISA_AVX2 1
#define OPML_ISA_AVX512VNNI 2 /* AVX-512 F + BW + VL + VNNI (VPDPBUSD on 512-bit registers) */
#define OPML_ISA_AVXVNNI 3    /* AVX-VNNI (the VEX-encoded VPDPBUSD on 256-bit registers) */
#define OPML_ISA_AVXVNNI_EVEX 4 /* the AVX-VNNI kernel's code in EVEX encoding (AVX-512 VL + VNNI), for tests */
#define OPML_ISA_AMX 5 /* AMX-INT8 tiles for the uint8 x int8 GEMM; implies AVX512VNNI, whose code runs the rest */
#define OPML_ISA_MAX 5

/* 1 for the sets whose kernels (other than the AMX tile) are the AVX-512 ones */
static int is512(int isa) { return isa == OPML_ISA_AVX512VNNI || isa == OPML_ISA_AMX; }

#define NR 16 /* columns per panel */
#define MR 6  /* rows per micro-tile (portable and AVX2 int16-pair tiles) */
#define MRW 8 /* rows per micro-tile of the AVX-512 int16-pair tile (with two panels: 16 of the 32 registers) */
#define MRMAX 8
#define ACC_ROWS 32 /* rows of the tile buffer: MRMAX, or a 32-row AMX block */
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

/* x rows [m0, m0 + rows) -> int16 in xs (rows rounded up to mr, each 2 * kp values): K padded to even,
 * rows past m zero. */
static void load_rows(const void *x, int xsigned, int64_t m, int64_t k, int64_t lda, int64_t m0, int64_t rows,
                      int64_t kp, int64_t mr, int16_t *xs) {
    int64_t padded = (rows + mr - 1) / mr * mr;
    memset(xs, 0, (size_t)(padded * 2 * kp) * sizeof(int16_t));
    for (int64_t r = 0; r < rows && m0 + r < m; r++) {
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
static void tile_generic(const int16_t *xs, const int16_t *panel, int64_t kp, int32_t (*acc)[2 * NR]) {
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
/* Row r of a register tile (columns 0-7 in a, 8-15 in b) into acc[r]. */
#define OPML_STORE_ROWS(acc, r, a, b)                          \
    _mm256_storeu_si256((__m256i *)(acc)[r], a);               \
    _mm256_storeu_si256((__m256i *)((acc)[r] + 8), b);

/* rows (1..MR, a constant at every call site) x 16 columns; rows past `rows` are left untouched. */
__attribute__((target("avx2"), always_inline)) static inline void tile_avx2_rows(
    const int16_t *xs, const int16_t *panel, int64_t kp, int32_t (*acc)[2 * NR], const int rows, const int16_t *pf,
    int64_t tiles, int64_t phase) {
    __m256i c[MR][2];
    const int32_t *xr[MR];
    for (int r = 0; r < rows; r++) {
        c[r][0] = c[r][1] = _mm256_setzero_si256();
        xr[r] = (const int32_t *)xs + r * kp;
    }
    int64_t pq = pf ? phase : -1; /* the next group to prefetch (never, without pf) */
    for (int64_t q = 0; q < kp; q++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(panel + q * 2 * NR));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(panel + q * 2 * NR + 16));
        if (q == pq) { /* this tile's share of the next panel: groups phase, phase + tiles, ... */
            _mm_prefetch((const char *)(pf + q * 2 * NR), _MM_HINT_T0);
            pq += tiles;
        }
        for (int r = 0; r < rows; r++) {
            __m256i b = _mm256_set1_epi32(xr[r][q]);
            c[r][0] = _mm256_add_epi32(c[r][0], _mm256_madd_epi16(b, w0));
            c[r][1] = _mm256_add_epi32(c[r][1], _mm256_madd_epi16(b, w1));
        }
    }
    for (int r = 0; r < rows; r++) {
        _mm256_storeu_si256((__m256i *)acc[r], c[r][0]);
        _mm256_storeu_si256((__m256i *)(acc[r] + 8), c[r][1]);
    }
}

/* The full 6 x 16 tile, written out: 12 accumulators + 2 weight vectors + 1 broadcast in 16 registers.
 * pf, tiles, phase: as tile_v512_rows (the next panel, prefetched over the row tiles of this one). */
__attribute__((target("avx2"))) static void tile_avx2_full(const int16_t *xs, const int16_t *panel, int64_t kp,
                                                           int32_t (*acc)[2 * NR], const int16_t *pf, int64_t tiles,
                                                           int64_t phase) {
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
    __m256i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const int32_t *x0 = (const int32_t *)xs;
    const int32_t *x1 = x0 + kp, *x2 = x1 + kp, *x3 = x2 + kp, *x4 = x3 + kp, *x5 = x4 + kp;
    int64_t pq = pf ? phase : -1; /* the next group to prefetch (never, without pf) */
    for (int64_t q = 0; q < kp; q++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(panel + q * 2 * NR));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(panel + q * 2 * NR + 16));
        if (q == pq) { /* this tile's share of the next panel: groups phase, phase + tiles, ... */
            _mm_prefetch((const char *)(pf + q * 2 * NR), _MM_HINT_T0);
            pq += tiles;
        }
        __m256i b;
#define OPML_ROW(x, a, b_)                                       \
    b = _mm256_set1_epi32(x[q]);                                 \
    a = _mm256_add_epi32(a, _mm256_madd_epi16(b, w0));           \
    b_ = _mm256_add_epi32(b_, _mm256_madd_epi16(b, w1));
        OPML_ROW(x0, c00, c01)
        OPML_ROW(x1, c10, c11)
        OPML_ROW(x2, c20, c21)
        OPML_ROW(x3, c30, c31)
        OPML_ROW(x4, c40, c41)
        OPML_ROW(x5, c50, c51)
#undef OPML_ROW
    }
    OPML_STORE_ROWS(acc, 0, c00, c01)
    OPML_STORE_ROWS(acc, 1, c10, c11)
    OPML_STORE_ROWS(acc, 2, c20, c21)
    OPML_STORE_ROWS(acc, 3, c30, c31)
    OPML_STORE_ROWS(acc, 4, c40, c41)
    OPML_STORE_ROWS(acc, 5, c50, c51)
}

__attribute__((target("avx2"))) static void tile_avx2(const int16_t *xs, const int16_t *panel, int64_t kp,
                                                      int32_t (*acc)[2 * NR], int64_t rows, const int16_t *pf,
                                                      int64_t tiles, int64_t phase) {
    switch (rows) {
    case 1: tile_avx2_rows(xs, panel, kp, acc, 1, pf, tiles, phase); break;
    case 2: tile_avx2_rows(xs, panel, kp, acc, 2, pf, tiles, phase); break;
    case 3: tile_avx2_rows(xs, panel, kp, acc, 3, pf, tiles, phase); break;
    case 4: tile_avx2_rows(xs, panel, kp, acc, 4, pf, tiles, phase); break;
    case 5: tile_avx2_rows(xs, panel, kp, acc, 5, pf, tiles, phase); break;
    default: tile_avx2_full(xs, panel, kp, acc, pf, tiles, phase); break;
    }
}

/* AVX-512 (isa avx512vnni): `rows` rows x `panels` (1 or 2) panels of 16 columns, one zmm register per
 * panel and row. VPDPWSSD adds the two int16 products of each lane and the accumulator in int32 without
 * saturation (VPMADDWD + VPADDD in one instruction; the bounds above keep every sum exact). */
__attribute__((target("avx512f,avx512bw,avx512vnni"), always_inline)) static inline void tile_w512_rows(
    const int16_t *xs, const int16_t *panel0, const int16_t *panel1, int64_t kp, int32_t (*acc)[2 * NR],
    const int rows, const int panels) {
    __m512i c[MRW][2];
    const int32_t *xr[MRW];
    for (int r = 0; r < rows; r++) {
        c[r][0] = c[r][1] = _mm512_setzero_si512();
        xr[r] = (const int32_t *)xs + r * kp;
    }
    for (int64_t q = 0; q < kp; q++) {
        __m512i w0 = _mm512_loadu_si512((const void *)(panel0 + q * 2 * NR)), w1 = w0;
        if (panels == 2) w1 = _mm512_loadu_si512((const void *)(panel1 + q * 2 * NR));
        for (int r = 0; r < rows; r++) {
            __m512i b = _mm512_set1_epi32(xr[r][q]); /* the pair (x[r, 2q], x[r, 2q + 1]) */
            c[r][0] = _mm512_dpwssd_epi32(c[r][0], b, w0);
            if (panels == 2) c[r][1] = _mm512_dpwssd_epi32(c[r][1], b, w1);
        }
    }
    for (int r = 0; r < rows; r++) {
        _mm512_storeu_si512((void *)acc[r], c[r][0]);
        if (panels == 2) _mm512_storeu_si512((void *)(acc[r] + NR), c[r][1]);
    }
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void tile_w512(const int16_t *xs, const int16_t *panel0,
                                                                             const int16_t *panel1, int64_t kp,
                                                                             int32_t (*acc)[2 * NR], int64_t rows,
                                                                             int panels) {
#define OPML_W512_CASE(r)                                                      \
    case r:                                                                    \
        if (panels == 2)                                                       \
            tile_w512_rows(xs, panel0, panel1, kp, acc, r, 2);                 \
        else                                                                   \
            tile_w512_rows(xs, panel0, panel1, kp, acc, r, 1);                 \
        break;
    switch (rows) {
        OPML_W512_CASE(1)
        OPML_W512_CASE(2)
        OPML_W512_CASE(3)
        OPML_W512_CASE(4)
        OPML_W512_CASE(5)
        OPML_W512_CASE(6)
        OPML_W512_CASE(7)
    default:
        OPML_W512_CASE(8)
    }
#undef OPML_W512_CASE
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

/* Why AMX is or is not offered: 0 usable; 1 the library was built without it (compiler, OS); 2 the CPU
 * lacks amx_tile / amx_int8 (CPUID leaf 7 EDX bits 24, 25) or the AVX-512 VNNI set it builds on; 3 the OS
 * does not enable the tile state in XCR0 (bits 17 XTILECFG, 18 XTILEDATA); 4 Linux refused the permission
 * (arch_prctl ARCH_REQ_XCOMP_PERM for XFEATURE_XTILEDATA, e.g. an old kernel or a too small sigaltstack in
 * some thread). Probed once per process (the request is process-wide and idempotent; concurrent first calls
 * make the same request). */
#define ARCH_GET_XCOMP_PERM_ 0x1022
#define ARCH_REQ_XCOMP_PERM_ 0x1023
#define XFEATURE_XTILEDATA_ 18
static int amx_probe(void);
int opml_native_amx_status(void) {
    static int state = -1;
    int s = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
    if (s < 0) {
        s = amx_probe();
        __atomic_store_n(&state, s, __ATOMIC_RELEASE);
    }
    return s;
}

static int amx_probe(void) {
#ifdef OPML_AMX
    unsigned a, b, c, d;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512vnni"))
        return 2;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d >> 24 & 1) || !(d >> 25 & 1)) return 2;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c >> 27 & 1)) return 3; /* OSXSAVE: XGETBV is available */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo >> 17 & 3) != 3) return 3;
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM_, XFEATURE_XTILEDATA_) != 0) return 4;
    unsigned long perm = 0;
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM_, &perm) != 0 || !(perm >> XFEATURE_XTILEDATA_ & 1)) return 4;
    return 0;
#else
    return 1;
#endif
}

/* The instruction sets this CPU can run, as a bit mask (bit i: OPML_ISA code i). CPUID through libgcc's
 * __builtin_cpu_supports, which also requires the OS to save the registers' state (XGETBV: YMM for AVX2
 * and AVX-VNNI, ZMM and opmask state for AVX-512). The VNNI sets are only offered together with AVX2,
 * which every kernel other than the GEMMs uses at their codes. */
int opml_native_isa_mask(void) {
    int mask = 1 << OPML_ISA_GENERIC;
#ifdef OPML_X86
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2")) return mask;
    mask |= 1 << OPML_ISA_AVX2;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        mask |= 1 << OPML_ISA_AVX512VNNI;
#ifdef OPML_AVXVNNI
    if (__builtin_cpu_supports("avxvnni")) mask |= 1 << OPML_ISA_AVXVNNI;
#endif
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512vnni"))
        mask |= 1 << OPML_ISA_AVXVNNI_EVEX;
    if (opml_native_amx_status() == 0) mask |= 1 << OPML_ISA_AMX;
#endif
    return mask;
}

/* The epilogue's per-column constants, each array padded to a multiple of 16 columns (opml.native.Epilogue).
 * Natural column order, for the portable code: lo, hi (int32 range), mul (< 2^31), add (the true value plus
 * 2^62, modulo 2^64), shift (0..62) and post (minus 2^(62 - shift)): see y_of below. For the AVX2 code the
 * same values: lo32/hi32/mul32 as int32, and add/shift/post as int64 permuted within each group of 8
 * columns to (0, 2, 4, 6, 1, 3, 5, 7), the lanes of VPMULDQ's even and odd products. */
struct epilogue {
    const int64_t *lo, *hi, *mul, *add, *shift, *post;
    const int32_t *lo32, *hi32, *mul32;
    const int64_t *addp, *shiftp, *postp;
    int64_t span, base;
    int outkind; /* 0 int32, 1 int8, 2 uint8, 3 int16 */
};

/* One output: for clamped a, a * mul + add_true lies in (-2^62, 2^62 + 2^61) (opml.native.epilogue), so
 * with 2^62 added it lies in (0, 2^64) and the logical shift of the uint64 value is
 * floor(true / 2^s) + 2^(62 - s), which post's bias removes. */
static inline int64_t y_of(const struct epilogue *e, int64_t c, int64_t a) {
    a = a < e->lo[c] ? e->lo[c] : a;
    a = a > e->hi[c] ? e->hi[c] : a;
    int64_t v = (int64_t)(((uint64_t)a * (uint64_t)e->mul[c] + (uint64_t)e->add[c]) >> e->shift[c]) + e->post[c];
    v = v < 0 ? 0 : v;
    return (v > e->span ? e->span : v) + e->base;
}

static void epilogue_generic(const struct epilogue *e, int64_t c0, const int32_t *acc, void *dst, int64_t cols) {
    for (int64_t c = 0; c < cols; c++) {
        int64_t v = y_of(e, c0 + c, acc[c]);
        if (e->outkind == 0)
            ((int32_t *)dst)[c] = (int32_t)v;
        else if (e->outkind == 1)
            ((int8_t *)dst)[c] = (int8_t)v;
        else if (e->outkind == 2)
            ((uint8_t *)dst)[c] = (uint8_t)v;
        else
            ((int16_t *)dst)[c] = (int16_t)v;
    }
}

#ifdef OPML_X86
/* 8 columns c0..c0+7 of y_of, as int32 lanes. */
__attribute__((target("avx2"))) static inline __m256i y_of8(const struct epilogue *e, int64_t c0, __m256i a) {
    a = _mm256_max_epi32(a, _mm256_loadu_si256((const __m256i *)(e->lo32 + c0)));
    a = _mm256_min_epi32(a, _mm256_loadu_si256((const __m256i *)(e->hi32 + c0)));
    __m256i m = _mm256_loadu_si256((const __m256i *)(e->mul32 + c0));
    __m256i ev = _mm256_mul_epi32(a, m); /* columns 0, 2, 4, 6: exact signed 32 x 32 -> 64 */
    __m256i od = _mm256_mul_epi32(_mm256_srli_epi64(a, 32), _mm256_srli_epi64(m, 32));
    const __m256i *ad = (const __m256i *)(e->addp + c0), *sh = (const __m256i *)(e->shiftp + c0);
    const __m256i *po = (const __m256i *)(e->postp + c0);
    ev = _mm256_add_epi64(_mm256_srlv_epi64(_mm256_add_epi64(ev, _mm256_loadu_si256(ad)), _mm256_loadu_si256(sh)),
                          _mm256_loadu_si256(po));
    od = _mm256_add_epi64(
        _mm256_srlv_epi64(_mm256_add_epi64(od, _mm256_loadu_si256(ad + 1)), _mm256_loadu_si256(sh + 1)),
        _mm256_loadu_si256(po + 1));
    __m256i zero = _mm256_setzero_si256(), span = _mm256_set1_epi64x(e->span), base = _mm256_set1_epi64x(e->base);
    ev = _mm256_blendv_epi8(ev, zero, _mm256_cmpgt_epi64(zero, ev));
    ev = _mm256_blendv_epi8(ev, span, _mm256_cmpgt_epi64(ev, span));
    od = _mm256_blendv_epi8(od, zero, _mm256_cmpgt_epi64(zero, od));
    od = _mm256_blendv_epi8(od, span, _mm256_cmpgt_epi64(od, span));
    ev = _mm256_add_epi64(ev, base); /* now within the output dtype: the low 32 bits are the value */
    od = _mm256_add_epi64(od, base);
    return _mm256_blend_epi32(ev, _mm256_slli_epi64(od, 32), 0xAA);
}

__attribute__((target("avx2"))) static void epilogue_avx2(const struct epilogue *e, int64_t c0, const int32_t *acc,
                                                          void *dst, int64_t cols) {
    __m256i v0 = y_of8(e, c0, _mm256_loadu_si256((const __m256i *)acc));
    __m256i v1 = y_of8(e, c0 + 8, _mm256_loadu_si256((const __m256i *)(acc + 8)));
    if (e->outkind == 0) {
        if (cols == NR) {
            _mm256_storeu_si256((__m256i *)dst, v0);
            _mm256_storeu_si256((__m256i *)dst + 1, v1);
        } else {
            int32_t tmp[NR];
            _mm256_storeu_si256((__m256i *)tmp, v0);
            _mm256_storeu_si256((__m256i *)(tmp + 8), v1);
            memcpy(dst, tmp, (size_t)cols * sizeof(int32_t));
        }
        return;
    }
    /* values are already within the output dtype: the saturating packs only narrow them */
    __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(v0, v1), 0xD8); /* 16 int16 in column order */
    if (e->outkind == 3) {
        if (cols == NR)
            _mm256_storeu_si256((__m256i *)dst, w);
        else {
            int16_t tmp[NR];
            _mm256_storeu_si256((__m256i *)tmp, w);
            memcpy(dst, tmp, (size_t)cols * sizeof(int16_t));
        }
        return;
    }
    __m128i lo = _mm256_castsi256_si128(w), hi = _mm256_extracti128_si256(w, 1);
    __m128i b = e->outkind == 1 ? _mm_packs_epi16(lo, hi) : _mm_packus_epi16(lo, hi);
    if (cols == NR)
        _mm_storeu_si128((__m128i *)dst, b);
    else {
        uint8_t tmp[NR];
        _mm_storeu_si128((__m128i *)tmp, b);
        memcpy(dst, tmp, (size_t)cols);
    }
}
/* The same 16 columns at once on AVX-512 (isa avx512vnni, whose CPUs have F, BW and VL): VPMULDQ on the
 * 8 even and the 8 odd columns, 64-bit VPMINSQ/VPMAXSQ clamps, and narrowing stores (VPMOVDB/VPMOVDW
 * truncate, which is exact: every value is already within the output dtype). The even products are
 * columns 0, 2, .., 14, whose add/shift/post constants are the first halves of the two 8-column groups of
 * the AVX2 layout (the odd ones the second halves). */
#define OPML_TARGET_512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#define OPML_HALVES(p, off)                                                                                \
    _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)((p) + (off)))),          \
                       _mm256_loadu_si256((const __m256i *)((p) + (off) + 8)), 1)
/* rows [0, rows) of 16 columns (row r at acc + r * stride; corr, if not NULL, subtracted first: the signed-input
 * correction of the uint8 x int8 kernels, exact in int32) into dst + r * row_bytes, the first cols columns;
 * the column constants are loaded once for all the rows. */
OPML_TARGET_512 static void epilogue_avx512(const struct epilogue *e, int64_t c0, const int32_t *corr, const int32_t *acc,
                                            int64_t stride, int64_t rows, char *dst, int64_t row_bytes, int64_t cols) {
    const __m512i lo = _mm512_loadu_si512((const void *)(e->lo32 + c0));
    const __m512i hi = _mm512_loadu_si512((const void *)(e->hi32 + c0));
    const __m512i m = _mm512_loadu_si512((const void *)(e->mul32 + c0)), mo = _mm512_srli_epi64(m, 32);
    const int64_t *ad = e->addp + c0, *sh = e->shiftp + c0, *po = e->postp + c0;
    /* clamp(v + post, 0, span) + base == clamp(v + (post + base), base, span + base): one add fewer per lane */
    const __m512i base = _mm512_set1_epi64(e->base), top = _mm512_set1_epi64(e->span + e->base);
    const __m512i ad0 = OPML_HALVES(ad, 0), sh0 = OPML_HALVES(sh, 0), po0 = _mm512_add_epi64(OPML_HALVES(po, 0), base);
    const __m512i ad1 = OPML_HALVES(ad, 4), sh1 = OPML_HALVES(sh, 4), po1 = _mm512_add_epi64(OPML_HALVES(po, 4), base);
    const __m512i zero = _mm512_setzero_si512();
    const __m512i cv = corr ? _mm512_loadu_si512((const void *)corr) : zero;
    const __mmask16 mask = (__mmask16)(cols >= NR ? 0xFFFF : (1u << cols) - 1);
    for (int64_t r = 0; r < rows; r++) {
        __m512i a = _mm512_sub_epi32(_mm512_loadu_si512((const void *)(acc + r * stride)), cv);
        a = _mm512_min_epi32(_mm512_max_epi32(a, lo), hi);
        __m512i ev = _mm512_mul_epi32(a, m); /* exact signed 32 x 32 -> 64 */
        __m512i od = _mm512_mul_epi32(_mm512_srli_epi64(a, 32), mo);
        ev = _mm512_add_epi64(_mm512_srlv_epi64(_mm512_add_epi64(ev, ad0), sh0), po0);
        od = _mm512_add_epi64(_mm512_srlv_epi64(_mm512_add_epi64(od, ad1), sh1), po1);
        ev = _mm512_min_epi64(_mm512_max_epi64(ev, base), top);
        od = _mm512_min_epi64(_mm512_max_epi64(od, base), top);
        __m512i v = _mm512_mask_blend_epi32((__mmask16)0xAAAA, ev, _mm512_slli_epi64(od, 32)); /* low 32 bits */
        void *d = dst + r * row_bytes;
        if (e->outkind == 0)
            _mm512_mask_storeu_epi32(d, mask, v);
        else if (e->outkind == 3)
            _mm512_mask_cvtepi32_storeu_epi16(d, mask, v);
        else
            _mm512_mask_cvtepi32_storeu_epi8(d, mask, v);
    }
}
#undef OPML_HALVES
#endif

/* 1 when the epilogue's kind, span and first n columns' constants are the ones C may evaluate (what
 * opml.native.epilogue makes); the kernels below assume it. */
static int epilogue_ok(const struct epilogue *e, int64_t n) {
    if (e->outkind < 0 || e->outkind > 3 || e->span < 0) return 0;
    for (int64_t c = 0; c < n; c++)
        if (e->shift[c] < 0 || e->shift[c] > 62 || e->lo[c] > e->hi[c] || e->mul[c] < 0 || e->mul[c] > INT32_MAX ||
            e->lo[c] < INT32_MIN || e->hi[c] > INT32_MAX)
            return 0;
    return 1;
}

static size_t out_size(const struct epilogue *e) { return e->outkind == 0 ? 4 : (e->outkind == 3 ? 2 : 1); }

/* Rows [0, rows) of a finished tile (row r at acc + r * stride, at least cols rounded up to 16 values), minus
 * corr[0 .. cols) if corr is not NULL (the uint8 x int8 kernels' signed-input correction),
 * through the epilogue's columns ec0 .. ec0 + cols - 1 into y, row r at y0 + r * row_bytes; with `uniform`
 * every 16-column block uses the epilogue's columns ec0 .. ec0 + 15 (qmatmul's one 16-column epilogue). */
static void finish_tile(const struct epilogue *e, int64_t ec0, int uniform, const int32_t *corr, const int32_t *acc,
                        int64_t stride, int64_t rows, char *y0, int64_t row_bytes, int64_t cols, int isa) {
    int64_t osize = (int64_t)out_size(e);
    for (int64_t b = 0; b < cols; b += NR) {
        int64_t bc = cols - b < NR ? cols - b : NR, ec = uniform ? ec0 : ec0 + b;
#ifdef OPML_X86
        if (is512(isa)) {
            epilogue_avx512(e, ec, corr ? corr + b : NULL, acc + b, stride, rows, y0 + b * osize, row_bytes, bc);
            continue;
        }
#endif
        int32_t row[NR];
        for (int64_t r = 0; r < rows; r++) {
            const int32_t *src = acc + r * stride + b;
            if (corr) {
                for (int64_t c = 0; c < NR; c++) row[c] = src[c] - corr[b + c];
                src = row;
            }
            char *dst = y0 + r * row_bytes + b * osize;
#ifdef OPML_X86
            if (isa >= OPML_ISA_AVX2) {
                epilogue_avx2(e, ec, src, dst, bc);
                continue;
            }
#endif
            (void)isa;
            epilogue_generic(e, ec, src, dst, bc);
        }
    }
}

/* The row buffer of a GEMM call (at most one chunk of rows: about 192 KiB, or one row block when K is large), kept
 * per thread and grown as needed: a fresh malloc of that size is mmap'ed and page-faulted on every call once it
 * passes glibc's mmap threshold, a measurable share of a batch-1 GEMM. The pool's threads persist; a thread's
 * buffer is freed when it exits (a pthread key's destructor). row_buffer_done frees what row_buffer_get gave
 * when it is not the thread's kept buffer. */
struct row_buffer {
    void *p;
    size_t cap;
};
static pthread_key_t row_buffer_key;
static pthread_once_t row_buffer_once = PTHREAD_ONCE_INIT;
static int row_buffer_key_ok;

static void row_buffer_free(void *v) {
    free(((struct row_buffer *)v)->p);
    free(v);
}

static void row_buffer_make_key(void) { row_buffer_key_ok = pthread_key_create(&row_buffer_key, row_buffer_free) == 0; }

static void *row_buffer_get(size_t n) {
    pthread_once(&row_buffer_once, row_buffer_make_key);
    struct row_buffer *b = row_buffer_key_ok ? (struct row_buffer *)pthread_getspecific(row_buffer_key) : NULL;
    if (row_buffer_key_ok && !b) {
        b = (struct row_buffer *)calloc(1, sizeof *b);
        if (b && pthread_setspecific(row_buffer_key, b)) {
            free(b);
            b = NULL;
        }
    }
    if (!b) return malloc(n);
    if (n > b->cap) {
        free(b->p);
        b->p = malloc(n);
        b->cap = b->p ? n : 0;
    }
    return b->p;
}

static void row_buffer_done(void *p) {
    struct row_buffer *b = row_buffer_key_ok ? (struct row_buffer *)pthread_getspecific(row_buffer_key) : NULL;
    if (!b || b->p != p) free(p);
}

/* Rows per tile and panels per tile (where two remain) of the int16-pair kernels for an instruction set. */
static int64_t pair_rows(int isa) { return is512(isa) ? MRW : MR; }
static int pair_panels(int isa, int64_t cols_left) { return is512(isa) && cols_left > NR ? 2 : 1; }

/* One int16-pair tile: rows [0, rows) of xs times `panels` panels (the second at panel + panel_size); the AVX2
 * tile also prefetches its share (phase of tiles) of the panel at pf (or NULL). */
static void pair_tile(const int16_t *xs, const int16_t *panel, int64_t panel_size, int64_t kp, int32_t (*acc)[2 * NR],
                      int64_t rows, int panels, int isa, const int16_t *pf, int64_t tiles, int64_t phase) {
#ifdef OPML_X86
    if (is512(isa))
        tile_w512(xs, panel, panel + panel_size, kp, acc, rows, panels);
    else if (isa >= OPML_ISA_AVX2)
        tile_avx2(xs, panel, kp, acc, rows, pf, tiles, phase);
    else
#endif
        tile_generic(xs, panel, kp, acc);
    (void)rows;
    (void)isa;
    (void)panel_size;
    (void)panels;
    (void)pf;
    (void)tiles;
    (void)phase;
}

/* Columns [n0, n1) of y = epilogue(x @ w); n0 a multiple of 16.
 * Returns 0, or -1 on bad arguments / out of memory (nothing is written then). */
static int qgemm(const void *x, int xsigned, int64_t m, int64_t k, const int16_t *wp, int64_t n, int64_t n0,
                 int64_t n1, const struct epilogue *e, void *y, int isa) {
    if (k < 0 || k > OPML_QGEMM_MAX_K || m < 0 || n0 < 0 || n0 % NR || n1 > n || n0 > n1) return -1;
#ifndef OPML_X86
    isa = 0;
#endif
    int64_t osize = (int64_t)out_size(e);
    int64_t kp = kpairs_of(k);
    /* GEBP blocking: a chunk of rows (about 192 KiB as int16, an L2-sized block) is converted once; each
     * 16-column weight panel then stays in cache while every micro-tile of rows of the chunk uses it. */
    int64_t mr = pair_rows(isa);
    int64_t chunk = (192 * 1024 / (int64_t)sizeof(int16_t)) / (2 * (kp ? kp : 1)) / mr * mr;
    if (chunk < mr) chunk = mr;
    if (chunk > (m + mr - 1) / mr * mr) chunk = (m + mr - 1) / mr * mr;
    int16_t *xs = (int16_t *)row_buffer_get((size_t)((chunk ? chunk : mr) * 2 * (kp ? kp : 1)) * sizeof(int16_t));
    if (!xs) return -1;
    int32_t acc[MRMAX][2 * NR];
    for (int64_t mc = 0; mc < m; mc += chunk) {
        int64_t mrows = m - mc < chunk ? m - mc : chunk;
        load_rows(x, xsigned, m, k, k, mc, mrows, kp, mr, xs);
        for (int64_t c0 = n0; c0 < n1; c0 += NR) {
            const int16_t *panel = wp + (c0 / NR) * kp * 2 * NR;
            int panels = pair_panels(isa, n1 - c0);
            int64_t cols = n1 - c0 < panels * NR ? n1 - c0 : panels * NR;
            for (int64_t r0 = 0; r0 < mrows; r0 += mr) {
                int64_t rows = mrows - r0 < mr ? mrows - r0 : mr;
                pair_tile(xs + r0 * 2 * kp, panel, kp * 2 * NR, kp, acc, rows, panels, isa,
                          c0 + panels * NR < n1 ? panel + panels * kp * 2 * NR : NULL, (mrows + mr - 1) / mr, r0 / mr);
                finish_tile(e, c0, 0, NULL, &acc[0][0], 2 * NR, rows, (char *)y + ((mc + r0) * n + c0) * osize,
                            n * osize, cols, isa);
            }
            c0 += (panels - 1) * NR;
        }
    }
    row_buffer_done(xs);
    return 0;
}

#ifdef OPML_X86
/* Pair q of qmatmul's right operand into its int16 panels: rows r0 and r1 (NULL past K: zero lane) of n
 * bytes, minus zb. 16 columns at a time: both rows widened to int16 and shifted (|b - zb| <= 255 fits
 * int16), interleaved (VPUNPCKLWD/HWD work within 128-bit lanes, VPERM2I128 restores column order) and
 * stored as the 16 (b[2q, c], b[2q + 1, c]) pairs of the panel; the last n % 16 columns in scalar code. */
__attribute__((target("avx2"))) static void pack_pair_avx2(const void *r0, const void *r1, int bsigned, int64_t zb,
                                                           int64_t n, int64_t kp, int64_t q, int16_t *wp) {
    const __m256i z = _mm256_set1_epi16((int16_t)zb);
    int64_t col = 0;
    for (; col + NR <= n; col += NR) {
        __m128i v0 = _mm_loadu_si128((const __m128i *)((const uint8_t *)r0 + col));
        __m256i a = _mm256_sub_epi16(bsigned ? _mm256_cvtepi8_epi16(v0) : _mm256_cvtepu8_epi16(v0), z);
        __m256i b = _mm256_setzero_si256();
        if (r1) {
            __m128i v1 = _mm_loadu_si128((const __m128i *)((const uint8_t *)r1 + col));
            b = _mm256_sub_epi16(bsigned ? _mm256_cvtepi8_epi16(v1) : _mm256_cvtepu8_epi16(v1), z);
        }
        __m256i lo = _mm256_unpacklo_epi16(a, b), hi = _mm256_unpackhi_epi16(a, b);
        int16_t *dst = wp + (col / NR) * kp * 2 * NR + q * 2 * NR;
        _mm256_storeu_si256((__m256i *)dst, _mm256_permute2x128_si256(lo, hi, 0x20));
        _mm256_storeu_si256((__m256i *)(dst + 16), _mm256_permute2x128_si256(lo, hi, 0x31));
    }
    for (; col < n; col++) {
        int16_t *dst = wp + (col / NR) * kp * 2 * NR + q * 2 * NR + 2 * (col % NR);
        dst[0] = (int16_t)((bsigned ? ((const int8_t *)r0)[col] : ((const uint8_t *)r0)[col]) - zb);
        dst[1] = r1 ? (int16_t)((bsigned ? ((const int8_t *)r1)[col] : ((const uint8_t *)r1)[col]) - zb) : 0;
    }
}
#endif

/* Batched y[b] = epilogue((a[b] - za) @ (bb[b] - zb)) for two run-time operands (attention's matmuls):
 * a [batch, m, k], bb [batch, k, n], both int8 or uint8 (asigned / bsigned), contiguous, with
 * |a - za|, |b - zb| <= 255 (checked by the caller), so every product is at most 65025 and, with
 * k <= OPML_QGEMM_MAX_K, every partial sum of the int32 accumulator is exact (within +-2^31; no int32
 * clip can then bind). The epilogue has the same constants in all 16 columns (a per-tensor
 * requantization with offset 0, or the raw int32 value). Slices [b0, b1) only (threads split the batch).
 * Returns 0, or -1 (nothing written). */
static int qmatmul(const void *a, int asigned, int64_t za, const void *bb, int bsigned, int64_t zb, int64_t b0,
                   int64_t b1, int64_t m, int64_t k, int64_t n, const struct epilogue *e, void *y, int isa) {
    if (k < 0 || k > OPML_QGEMM_MAX_K || m < 0 || n < 0 || b0 < 0 || b0 > b1) return -1;
#ifndef OPML_X86
    isa = 0;
#endif
    int64_t osize = (int64_t)out_size(e);
    int64_t mr = pair_rows(isa);
    int64_t kp = kpairs_of(k), np_ = panels_of(n), mpad = (m + mr - 1) / mr * mr;
    int16_t *xs = (int16_t *)malloc((size_t)((mpad ? mpad : mr) * 2 * (kp ? kp : 1)) * sizeof(int16_t));
    int16_t *wp = (int16_t *)malloc((size_t)((np_ ? np_ : 1) * (kp ? kp : 1) * 2 * NR) * sizeof(int16_t));
    if (!xs || !wp) {
        free(xs);
        free(wp);
        return -1;
    }
    int32_t acc[MRMAX][2 * NR];
    for (int64_t bi = b0; bi < b1; bi++) {
        /* a - za -> int16 rows (K padded to even, rows padded to mr with zeros) */
        memset(xs, 0, (size_t)(mpad * 2 * kp) * sizeof(int16_t));
        for (int64_t r = 0; r < m; r++) {
            int16_t *dst = xs + r * 2 * kp;
            if (asigned) {
                const int8_t *src = (const int8_t *)a + (bi * m + r) * k;
                for (int64_t i = 0; i < k; i++) dst[i] = (int16_t)(src[i] - za);
            } else {
                const uint8_t *src = (const uint8_t *)a + (bi * m + r) * k;
                for (int64_t i = 0; i < k; i++) dst[i] = (int16_t)(src[i] - za);
            }
        }
        /* bb - zb -> packed panels (zero padded): row t of b goes to lane (t & 1) of pair t / 2 */
        memset(wp, 0, (size_t)(np_ * kp * 2 * NR) * sizeof(int16_t));
#ifdef OPML_X86
        if (isa >= OPML_ISA_AVX2) {
            const uint8_t *b0 = (const uint8_t *)bb + bi * k * n; /* bytes of either signedness */
            for (int64_t q = 0; q < kp; q++)
                pack_pair_avx2(b0 + 2 * q * n, 2 * q + 1 < k ? b0 + (2 * q + 1) * n : NULL, bsigned, zb, n, kp, q, wp);
        } else
#endif
        for (int64_t t = 0; t < k; t++) {
            int16_t *dst = wp + (t / 2) * 2 * NR + (t & 1);
            if (bsigned) {
                const int8_t *src = (const int8_t *)bb + (bi * k + t) * n;
                for (int64_t col = 0; col < n; col++)
                    dst[(col / NR) * kp * 2 * NR + 2 * (col % NR)] = (int16_t)(src[col] - zb);
            } else {
                const uint8_t *src = (const uint8_t *)bb + (bi * k + t) * n;
                for (int64_t col = 0; col < n; col++)
                    dst[(col / NR) * kp * 2 * NR + 2 * (col % NR)] = (int16_t)(src[col] - zb);
            }
        }
        for (int64_t p = 0; p < np_; p++) {
            const int16_t *panel = wp + p * kp * 2 * NR;
            int64_t c0 = p * NR;
            int panels = pair_panels(isa, n - c0);
            int64_t cols = n - c0 < panels * NR ? n - c0 : panels * NR;
            for (int64_t r0 = 0; r0 < m; r0 += mr) {
                int64_t rows = m - r0 < mr ? m - r0 : mr;
                pair_tile(xs + r0 * 2 * kp, panel, kp * 2 * NR, kp, acc, rows, panels, isa, NULL, 1, 0);
                finish_tile(e, 0, 1, NULL, &acc[0][0], 2 * NR, rows, (char *)y + ((bi * m + r0) * n + c0) * osize,
                            n * osize, cols, isa);
            }
            p += panels - 1;
        }
    }
    free(xs);
    free(wp);
    return 0;
}

/* ---- uint8 x int8 kernels: 7-bit weights on AVX2, any int8 weights with VNNI ----
 *
 * Weights are packed into 16-column panels of 4-row groups: 64 bytes per group, (w[4q .. 4q+3, c]) for
 * the 16 columns c; rows are converted to uint8 with K padded to a multiple of 4. Signed activations are
 * shifted to x + 128 in [0, 255] (x ^ 0x80), and corr[c] = 128 * colsum(w) is subtracted after the tile,
 * so the accumulator handed to the epilogue is sum x w, as in the int16 kernel (the choice of kernel
 * changes no bit).
 *
 * AVX2 (kind 1, |w| <= 64: opml.convert weight_bits=7): VPMADDUBSW multiplies 32 unsigned bytes by 32
 * signed bytes and adds adjacent pairs into int16 with saturation. With x in [0, 255] and |w| <= 64 a
 * pair is at most 255 * 64 * 2 = 32640 in magnitude, so it never saturates and is exact; VPMADDWD by
 * ones then adds the two pairs of each 4-byte group into int32, exactly.
 *
 * VNNI (kind 1 or 2, any int8 w): VPDPBUSD (AVX-512 VNNI, 16 int32 lanes; AVX-VNNI, its 256-bit VEX
 * form, 8 lanes) multiplies the four unsigned bytes of each lane by the four signed bytes of the other
 * operand, and adds the four products and the accumulator lane in int32 without saturation (the
 * saturating form is VPDPBUSDS, not used). The group sum is at most 4 * 255 * 128 = 130560 in magnitude,
 * and every partial sum of the shifted accumulation, sum (x + 128) w over at most K <= 32768 rows, lies
 * within 32768 * 255 * 128 = 1069547520 < 2^31; the correction 128 * colsum(w) is within 2^29, and the
 * corrected sum x w within 32768 * 128 * 128 = 2^29: every int32 operation is exact. The portable tile
 * computes the same sums in scalar int32 (any int8 w).
 *
 * kind 2 marks int8 weights beyond +-64 in this layout (packed where a VNNI kernel runs): the AVX2 tile
 * would not be exact for them, so a kind 2 GEMM refuses isa 1 (OPML_ISA_AVX2). */
#define KQ 4
#define MR4 4   /* rows per tile: portable and AVX2 */
#define MRV 8   /* AVX-512 VNNI: rows per tile (with two panels: 16 accumulators of the 32 registers) */
#define MRY 6   /* AVX-VNNI: rows per tile (12 accumulators of the 16 registers) */

static int64_t kquads_of(int64_t k) { return (k + KQ - 1) / KQ; }

/* Number of bytes of the packed form of a [k, n] weight matrix. */
int64_t opml_qgemm_packed_size_u8s8(int64_t k, int64_t n) { return panels_of(n) * kquads_of(k) * KQ * NR; }

/* Pack w (int8 [k, n]) and write corr[c] = 128 * sum_k w[k, c] (for the signed-input shift; n padded to 16). */
void opml_qgemm_pack_u8s8(const int8_t *w, int64_t k, int64_t n, int8_t *out, int32_t *corr) {
    int64_t kq = kquads_of(k), np_ = panels_of(n);
    memset(out, 0, (size_t)opml_qgemm_packed_size_u8s8(k, n));
    memset(corr, 0, (size_t)(np_ * NR) * sizeof(int32_t));
    for (int64_t p = 0; p < np_; p++)
        for (int64_t c = 0; c < NR; c++) {
            int64_t col = p * NR + c;
            if (col >= n) continue;
            int32_t sum = 0;
            for (int64_t kk = 0; kk < k; kk++) {
                int8_t v = w[kk * n + col];
                out[p * kq * KQ * NR + (kk / KQ) * KQ * NR + KQ * c + (kk % KQ)] = v;
                sum += v;
            }
            corr[col] = 128 * sum;
        }
}

/* Rows [m0, m0 + rows) of x as uint8 (signed input shifted by 128) into xs, each KQ * kq bytes, rows
 * rounded up to a multiple of mr (the padding rows and K padding zero). */
static void load_rows_u8(const void *x, int xsigned, int64_t m, int64_t k, int64_t m0, int64_t rows, int64_t kq,
                         int64_t mr, uint8_t *xs) {
    int64_t padded = (rows + mr - 1) / mr * mr;
    memset(xs, 0, (size_t)(padded * KQ * kq));
    for (int64_t r = 0; r < rows && m0 + r < m; r++) {
        const uint8_t *src = (const uint8_t *)x + (m0 + r) * k;
        uint8_t *dst = xs + r * KQ * kq;
        if (xsigned)
            for (int64_t i = 0; i < k; i++) dst[i] = (uint8_t)(src[i] ^ 0x80); /* x + 128 */
        else
            memcpy(dst, src, (size_t)k);
    }
}

/* acc (row stride NR) = rows [0, rows) of xs times one panel: portable version, any int8 w. */
static void tile_u8s8_generic(const uint8_t *xs, const int8_t *panel, int64_t kq, int32_t (*acc)[2 * NR], int rows) {
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < NR; c++) {
            int32_t sum = 0;
            for (int64_t q = 0; q < kq; q++)
                for (int t = 0; t < KQ; t++)
                    sum += (int32_t)xs[r * KQ * kq + KQ * q + t] * (int32_t)panel[q * KQ * NR + KQ * c + t];
            acc[r][c] = sum;
        }
}

#ifdef OPML_X86
__attribute__((target("avx2"))) static void tile_u8s8_avx2(const uint8_t *xs, const int8_t *panel, int64_t kq,
                                                           int32_t (*acc)[2 * NR], const int8_t *pf, int64_t tiles,
                                                           int64_t phase) {
    __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
            c31 = c00;
    const __m256i ones = _mm256_set1_epi16(1);
    const int32_t *x0 = (const int32_t *)xs, *x1 = x0 + kq, *x2 = x1 + kq, *x3 = x2 + kq;
    int64_t pq = pf ? phase : -1; /* as tile_v512_rows: this tile's share of the next panel */
    for (int64_t q = 0; q < kq; q++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(panel + q * KQ * NR));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(panel + q * KQ * NR + 32));
        if (q == pq) {
            _mm_prefetch((const char *)(pf + q * KQ * NR), _MM_HINT_T0);
            pq += tiles;
        }
        __m256i b;
#define OPML_ROW4(x, a, b_)                                                              \
    b = _mm256_set1_epi32(x[q]);                                                        \
    a = _mm256_add_epi32(a, _mm256_madd_epi16(_mm256_maddubs_epi16(b, w0), ones));      \
    b_ = _mm256_add_epi32(b_, _mm256_madd_epi16(_mm256_maddubs_epi16(b, w1), ones));
        OPML_ROW4(x0, c00, c01)
        OPML_ROW4(x1, c10, c11)
        OPML_ROW4(x2, c20, c21)
        OPML_ROW4(x3, c30, c31)
#undef OPML_ROW4
    }
    OPML_STORE_ROWS(acc, 0, c00, c01)
    OPML_STORE_ROWS(acc, 1, c10, c11)
    OPML_STORE_ROWS(acc, 2, c20, c21)
    OPML_STORE_ROWS(acc, 3, c30, c31)
}

/* AVX-512 VNNI: `rows` rows x `panels` (1 or 2) panels, both constants at each call site (the compiler
 * keeps the 16-column accumulators in registers); acc has row stride 2 * NR. pf: the next two panels (NULL
 * at the last), of which this tile prefetches the 128-byte groups q with q % tiles == phase: the row tiles
 * of a panel pair together fetch the next pair once, spread over all of them (at small batches the weights
 * stream from memory once per call; only the first tile would otherwise wait for them). */
#define OPML_TARGET_V512 __attribute__((target("avx512f,avx512bw,avx512vnni")))
OPML_TARGET_V512 __attribute__((always_inline)) static inline void tile_v512_rows(
    const uint8_t *xs, const int8_t *panel0, const int8_t *panel1, int64_t kq, int32_t (*acc)[2 * NR],
    const int rows, const int panels, const int8_t *pf, int64_t tiles, int64_t phase) {
    __m512i c[MRV][2];
    const int32_t *xr[MRV];
    for (int r = 0; r < rows; r++) {
        c[r][0] = c[r][1] = _mm512_setzero_si512();
        xr[r] = (const int32_t *)xs + r * kq;
    }
    int64_t pq = pf ? phase : -1; /* the next group to prefetch (never, without pf) */
    for (int64_t q = 0; q < kq; q++) {
        __m512i w0 = _mm512_loadu_si512((const void *)(panel0 + q * KQ * NR)), w1 = w0;
        if (panels == 2) w1 = _mm512_loadu_si512((const void *)(panel1 + q * KQ * NR));
        if (q == pq) { /* this tile's share of the next pair: groups phase, phase + tiles, ... */
            _mm_prefetch((const char *)(pf + q * 2 * KQ * NR), _MM_HINT_T0);
            _mm_prefetch((const char *)(pf + q * 2 * KQ * NR + KQ * NR), _MM_HINT_T0);
            pq += tiles;
        }
        for (int r = 0; r < rows; r++) {
            __m512i b = _mm512_set1_epi32(xr[r][q]); /* x's 4 bytes of group q: the unsigned operand */
            c[r][0] = _mm512_dpbusd_epi32(c[r][0], b, w0);
            if (panels == 2) c[r][1] = _mm512_dpbusd_epi32(c[r][1], b, w1);
        }
    }
    for (int r = 0; r < rows; r++) {
        _mm512_storeu_si512((void *)acc[r], c[r][0]);
        if (panels == 2) _mm512_storeu_si512((void *)(acc[r] + NR), c[r][1]);
    }
}

OPML_TARGET_V512 static void tile_v512(const uint8_t *xs, const int8_t *panel0, const int8_t *panel1, int64_t kq,
                                       int32_t (*acc)[2 * NR], int64_t rows, int panels, const int8_t *pf,
                                       int64_t tiles, int64_t phase) {
#define OPML_V512_CASE(r)                                                      \
    case r:                                                                    \
        if (panels == 2)                                                       \
            tile_v512_rows(xs, panel0, panel1, kq, acc, r, 2, pf, tiles, phase); \
        else                                                                   \
            tile_v512_rows(xs, panel0, panel1, kq, acc, r, 1, pf, tiles, phase); \
        break;
    switch (rows) {
        OPML_V512_CASE(1)
        OPML_V512_CASE(2)
        OPML_V512_CASE(3)
        OPML_V512_CASE(4)
        OPML_V512_CASE(5)
        OPML_V512_CASE(6)
        OPML_V512_CASE(7)
    default:
        OPML_V512_CASE(8)
    }
#undef OPML_V512_CASE
}

/* The 256-bit VNNI tile: `rows` rows x one panel (two registers of 8 columns), written once for two
 * encodings of the same operation. AVX-VNNI (VEX, _mm256_dpbusd_avx_epi32) is what avx_vnni CPUs run;
 * AVX-512 VL + VNNI (EVEX, _mm256_dpbusd_epi32) is isa "avxvnni-evex", which runs this tile's code on CPUs
 * that have AVX-512 VNNI but not AVX-VNNI, so that the tile is tested there too. */
#define OPML_VY_TILE(name, target, dpbusd)                                                                  \
    target __attribute__((always_inline)) static inline void name##_rows(                                  \
        const uint8_t *xs, const int8_t *panel, int64_t kq, int32_t (*acc)[2 * NR], const int rows,        \
        const int8_t *pf, int64_t tiles, int64_t phase) {                                                   \
        __m256i c[MRY][2];                                                                                  \
        const int32_t *xr[MRY];                                                                             \
        for (int r = 0; r < rows; r++) {                                                                    \
            c[r][0] = c[r][1] = _mm256_setzero_si256();                                                     \
            xr[r] = (const int32_t *)xs + r * kq;                                                           \
        }                                                                                                   \
        int64_t pq = pf ? phase : -1; /* as tile_v512_rows: this tile's share of the next panel */          \
        for (int64_t q = 0; q < kq; q++) {                                                                  \
            __m256i w0 = _mm256_loadu_si256((const __m256i *)(panel + q * KQ * NR));                        \
            __m256i w1 = _mm256_loadu_si256((const __m256i *)(panel + q * KQ * NR + 32));                   \
            if (q == pq) {                                                                                  \
                _mm_prefetch((const char *)(pf + q * KQ * NR), _MM_HINT_T0);                                \
                pq += tiles;                                                                                \
            }                                                                                               \
            for (int r = 0; r < rows; r++) {                                                                \
                __m256i b = _mm256_set1_epi32(xr[r][q]);                                                    \
                c[r][0] = dpbusd(c[r][0], b, w0);                                                           \
                c[r][1] = dpbusd(c[r][1], b, w1);                                                           \
            }                                                                                               \
        }                                                                                                   \
        for (int r = 0; r < rows; r++) {                                                                    \
            _mm256_storeu_si256((__m256i *)acc[r], c[r][0]);                                                \
            _mm256_storeu_si256((__m256i *)(acc[r] + 8), c[r][1]);                                          \
        }                                                                                                   \
    }                                                                                                       \
    target static void name(const uint8_t *xs, const int8_t *panel, int64_t kq, int32_t (*acc)[2 * NR],    \
                            int64_t rows, const int8_t *pf, int64_t tiles, int64_t phase) {                 \
        switch (rows) {                                                                                     \
        case 1: name##_rows(xs, panel, kq, acc, 1, pf, tiles, phase); break;                                \
        case 2: name##_rows(xs, panel, kq, acc, 2, pf, tiles, phase); break;                                \
        case 3: name##_rows(xs, panel, kq, acc, 3, pf, tiles, phase); break;                                \
        case 4: name##_rows(xs, panel, kq, acc, 4, pf, tiles, phase); break;                                \
        case 5: name##_rows(xs, panel, kq, acc, 5, pf, tiles, phase); break;                                \
        default: name##_rows(xs, panel, kq, acc, 6, pf, tiles, phase); break;                              \
        }                                                                                                   \
    }

#ifdef OPML_AVXVNNI
OPML_VY_TILE(tile_vy, __attribute__((target("avx2,avxvnni"))), _mm256_dpbusd_avx_epi32)
#endif
OPML_VY_TILE(tile_vy_evex, __attribute__((target("avx2,avx512f,avx512vl,avx512vnni"))), _mm256_dpbusd_epi32)
#undef OPML_VY_TILE
#endif

/* ---- AMX-INT8 (isa amx) ----
 *
 * The packed panels above are already the B operand of TDPBUSD: a tile of 16 rows x 64 bytes whose row q
 * holds, for each of the 16 columns, the four weight bytes of group q (w[4q .. 4q+3, c]); 16 consecutive
 * groups of a panel are one B tile (1 KiB, row stride 64). The A operand is 16 rows of the uint8 row
 * buffer (64 bytes = 16 groups of K each, row stride KQ * kq), and C is 16 rows x 16 int32 columns.
 * TDPBUSD adds, to each int32 C element, the four products of unsigned A bytes and signed B bytes of each
 * of the 16 groups, in int32 without saturation: the same operation as VPDPBUSD with the same bounds
 * (every partial sum of sum (x + 128) w is within 32768 * 255 * 128 < 2^31 for K <= 32768; the corrected
 * sum within 2^29), so the result is exact and equal to every other kernel's, bit for bit.
 *
 * A block is up to 2 x 2 tiles (32 rows x 32 columns: C in tmm0-3, A in tmm4-5, B in tmm6-7), each tile
 * 16 x 64 bytes (one configuration per call: LDTILECFG at the start, TILERELEASE at the end, so the state
 * is not carried to other code of the thread). Groups past the last multiple of 16 (K mod 64) are added to
 * the stored C tile with AVX-512 VPDPBUSD (the tail); row blocks of fewer than AMX_MIN_ROWS rows (the
 * last block, and batch-1 GEMMs) run the AVX-512 VNNI tile instead, which is faster there (a 16-row A
 * tile of mostly padding rows costs the same as a full one). The epilogue is the AVX-512 one. */
#ifdef OPML_AMX
#define AMX_ROWS 16   /* rows of an A / C tile */
#define AMX_GROUPS 16 /* groups of 4 K per A tile row (64 bytes), rows of a B tile */
#ifndef AMX_MIN_ROWS
#define AMX_MIN_ROWS 4
#endif
#define OPML_TARGET_AMX __attribute__((target("amx-tile,amx-int8,avx512f,avx512bw,avx512vnni")))

struct amx_config { /* LDTILECFG's 64-byte memory operand (palette 1) */
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16]; /* bytes per row of tmm0..7 (8..15 reserved) */
    uint8_t rows[16];
};

OPML_TARGET_AMX static void amx_begin(void) {
    struct amx_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette = 1;
    for (int t = 0; t < 8; t++) {
        cfg.colsb[t] = 64;
        cfg.rows[t] = AMX_ROWS;
    }
    __asm__ volatile("" : : "m"(cfg) : "memory"); /* the whole struct is written before LDTILECFG reads it */
    _tile_loadconfig(&cfg);
}

OPML_TARGET_AMX static void amx_end(void) { _tile_release(); }

/* acc (row stride 2 * NR int32) = mt (1, 2) x 16 rows of xs (row stride lda bytes) times nt (1, 2) panels,
 * groups [0, kq16) (a multiple of 16); the tile numbers are literals, so mt and nt are constants here. */
OPML_TARGET_AMX __attribute__((always_inline)) static inline void amx_block_mn(const uint8_t *xs, int64_t lda,
                                                                               const int8_t *p0, const int8_t *p1,
                                                                               int64_t kq16, int32_t *acc,
                                                                               const int mt, const int nt,
                                                                               const int8_t *pf) {
    const int64_t bstride = KQ * NR, cstride = 2 * NR * (int64_t)sizeof(int32_t);
    __asm__ volatile("" : : : "memory"); /* xs is written before the (asm) tile loads read it */
    _tile_zero(0);
    if (nt == 2) _tile_zero(1);
    if (mt == 2) _tile_zero(2);
    if (mt == 2 && nt == 2) _tile_zero(3);
    for (int64_t q = 0; q < kq16; q += AMX_GROUPS) {
        _tile_loadd(4, xs + q * KQ, lda);
        _tile_loadd(6, p0 + q * KQ * NR, bstride);
        if (pf) /* the next panel pair's groups 2q .. 2q + 31 (2 KiB): all of it over this block's steps */
            for (int i = 0; i < 2 * AMX_GROUPS; i++)
                _mm_prefetch((const char *)(pf + (2 * q + i) * KQ * NR), _MM_HINT_T0);
        if (mt == 2) _tile_loadd(5, xs + AMX_ROWS * lda + q * KQ, lda);
        if (nt == 2) _tile_loadd(7, p1 + q * KQ * NR, bstride);
        _tile_dpbusd(0, 4, 6);
        if (nt == 2) _tile_dpbusd(1, 4, 7);
        if (mt == 2) _tile_dpbusd(2, 5, 6);
        if (mt == 2 && nt == 2) _tile_dpbusd(3, 5, 7);
    }
    _tile_stored(0, acc, cstride);
    if (nt == 2) _tile_stored(1, acc + NR, cstride);
    if (mt == 2) _tile_stored(2, acc + AMX_ROWS * 2 * NR, cstride);
    if (mt == 2 && nt == 2) _tile_stored(3, acc + AMX_ROWS * 2 * NR + NR, cstride);
    __asm__ volatile("" : : : "memory"); /* acc is read after the (asm) stores */
}

OPML_TARGET_AMX static void amx_block(const uint8_t *xs, int64_t lda, const int8_t *p0, const int8_t *p1,
                                      int64_t kq16, int32_t *acc, int mt, int nt, const int8_t *pf) {
    if (mt == 2 && nt == 2)
        amx_block_mn(xs, lda, p0, p1, kq16, acc, 2, 2, pf);
    else if (mt == 2)
        amx_block_mn(xs, lda, p0, p1, kq16, acc, 2, 1, pf);
    else if (nt == 2)
        amx_block_mn(xs, lda, p0, p1, kq16, acc, 1, 2, pf);
    else
        amx_block_mn(xs, lda, p0, p1, kq16, acc, 1, 1, pf);
}

/* The tail: acc rows [0, rows) += groups [q0, kq) of xs times nt panels (AVX-512 VPDPBUSD, exact as above). */
OPML_TARGET_V512 static void amx_tail(const uint8_t *xs, int64_t lda, const int8_t *p0, const int8_t *p1, int64_t q0,
                                      int64_t kq, int32_t (*acc)[2 * NR], int64_t rows, int nt) {
    for (int64_t r = 0; r < rows; r++) {
        const int32_t *xr = (const int32_t *)(xs + r * lda);
        __m512i c0 = _mm512_loadu_si512((const void *)acc[r]), c1 = _mm512_loadu_si512((const void *)(acc[r] + NR));
        for (int64_t q = q0; q < kq; q++) {
            __m512i b = _mm512_set1_epi32(xr[q]);
            c0 = _mm512_dpbusd_epi32(c0, b, _mm512_loadu_si512((const void *)(p0 + q * KQ * NR)));
            if (nt == 2) c1 = _mm512_dpbusd_epi32(c1, b, _mm512_loadu_si512((const void *)(p1 + q * KQ * NR)));
        }
        _mm512_storeu_si512((void *)acc[r], c0);
        if (nt == 2) _mm512_storeu_si512((void *)(acc[r] + NR), c1);
    }
}
#endif

/* Rows per tile of the u8 x s8 kernel for an instruction set. */
static int64_t u8s8_rows(int isa) {
    return isa == OPML_ISA_AVX512VNNI ? MRV : (isa == OPML_ISA_AVXVNNI || isa == OPML_ISA_AVXVNNI_EVEX ? MRY : MR4);
}

/* Columns [n0, n1) of y = epilogue(x @ w) with w packed by opml_qgemm_pack_u8s8; kind 2 (|w| > 64) refuses
 * the AVX2 tile. Returns 0, or -1 (nothing written). */
static int qgemm_u8s8(const void *x, int xsigned, int64_t m, int64_t k, const int8_t *wp, const int32_t *corr,
                      int64_t n, int64_t n0, int64_t n1, const struct epilogue *e, void *y, int isa, int kind) {
    if (k < 0 || k > OPML_QGEMM_MAX_K || m < 0 || n0 < 0 || n0 % NR || n1 > n || n0 > n1) return -1;
    if (kind == 2 && isa == OPML_ISA_AVX2) return -1;
#ifndef OPML_X86
    isa = 0;
#endif
    int64_t osize = (int64_t)out_size(e);
    int64_t kq = kquads_of(k);
    /* AMX: 32-row blocks of 16-row tiles (padded with zero rows) where K has at least one 64-byte step;
     * the AVX-512 VNNI tile for everything else (isa amx implies avx512vnni) */
    int amx = 0;
    if (isa == OPML_ISA_AMX) {
#ifdef OPML_AMX
        amx = kq >= AMX_GROUPS;
#endif
        isa = OPML_ISA_AVX512VNNI;
    }
    int64_t mr = u8s8_rows(isa), pad = mr, block = mr;
#ifdef OPML_AMX
    if (amx) {
        pad = AMX_ROWS;
        block = 2 * AMX_ROWS;
    }
#endif
    int64_t chunk = (192 * 1024) / (KQ * (kq ? kq : 1)) / block * block;
    if (chunk < block) chunk = block;
    if (chunk > (m + block - 1) / block * block) chunk = (m + block - 1) / block * block;
    uint8_t *xs = (uint8_t *)row_buffer_get((size_t)((chunk ? chunk : block) * KQ * (kq ? kq : 1)));
    if (!xs) return -1;
    int32_t acc[ACC_ROWS][2 * NR];
#ifdef OPML_AMX
    if (amx) amx_begin();
#endif
    for (int64_t mc = 0; mc < m; mc += chunk) {
        int64_t mrows = m - mc < chunk ? m - mc : chunk;
        load_rows_u8(x, xsigned, m, k, mc, mrows, kq, pad, xs);
        for (int64_t c0 = n0; c0 < n1; c0 += NR) {
            const int8_t *panel = wp + (c0 / NR) * kq * KQ * NR;
            /* AVX-512 and AMX: two panels per tile where two remain */
            int panels = isa == OPML_ISA_AVX512VNNI && n1 - c0 > NR ? 2 : 1;
            int64_t cols = n1 - c0 < panels * NR ? n1 - c0 : panels * NR;
            /* the next panel (single-panel tiles), prefetched in shares by the row tiles */
            const int8_t *pf1 = c0 + NR < n1 ? panel + kq * KQ * NR : NULL;
            int64_t tiles = (mrows + mr - 1) / mr;
            (void)pf1;
            for (int64_t r0 = 0; r0 < mrows; r0 += block) {
                const uint8_t *xt = xs + r0 * KQ * kq;
                int64_t rows = mrows - r0 < block ? mrows - r0 : block;
#ifdef OPML_AMX
                if (amx && rows >= AMX_MIN_ROWS) {
                    int64_t kq16 = kq / AMX_GROUPS * AMX_GROUPS;
                    const int8_t *panel1 = panel + kq * KQ * NR;
                    /* the first block of a pair prefetches the next pair (only with two A tiles: measured, a
                     * one-tile block has too few tile steps to hide the prefetches) */
                    amx_block(xt, KQ * kq, panel, panel1, kq16, &acc[0][0], rows > AMX_ROWS ? 2 : 1, panels,
                              r0 == 0 && rows > AMX_ROWS && c0 + 2 * NR < n1 ? panel + 2 * kq * KQ * NR : NULL);
                    if (kq16 < kq) amx_tail(xt, KQ * kq, panel, panel1, kq16, kq, acc, rows, panels);
                } else
#endif
                for (int64_t s = 0; s < rows; s += mr) { /* row tiles of mr rows (one, without AMX) */
                    int64_t srows = rows - s < mr ? rows - s : mr, phase = (r0 + s) / mr;
                    const uint8_t *xr = xt + s * KQ * kq;
#ifdef OPML_X86
                    if (isa == OPML_ISA_AVX512VNNI)
                        tile_v512(xr, panel, panel + kq * KQ * NR, kq, acc + s, srows, panels,
                                  c0 + 2 * NR < n1 ? panel + 2 * kq * KQ * NR : NULL, tiles, phase);
#ifdef OPML_AVXVNNI
                    else if (isa == OPML_ISA_AVXVNNI)
                        tile_vy(xr, panel, kq, acc + s, srows, pf1, tiles, phase);
#endif
                    else if (isa == OPML_ISA_AVXVNNI_EVEX)
                        tile_vy_evex(xr, panel, kq, acc + s, srows, pf1, tiles, phase);
                    else if (isa == OPML_ISA_AVX2)
                        tile_u8s8_avx2(xr, panel, kq, acc + s, pf1, tiles, phase);
                    else
#endif
                        tile_u8s8_generic(xr, panel, kq, acc + s, (int)srows);
                }
                /* signed x: sum (x + 128) w - 128 sum w, exact in int32 (see above) */
                finish_tile(e, c0, 0, xsigned ? corr + c0 : NULL, &acc[0][0], 2 * NR, rows,
                            (char *)y + ((mc + r0) * n + c0) * osize, n * osize, cols, isa);
            }
            c0 += (panels - 1) * NR;
        }
    }
#ifdef OPML_AMX
    if (amx) amx_end();
#endif
    (void)amx;
    row_buffer_done(xs);
    return 0;
}

/* Work below this many multiply-adds per thread is not split (waking a thread costs microseconds). */
#define MIN_MACS_PER_THREAD (1 << 18)

struct gemm_job {
    struct epilogue e;
    const void *x;
    const void *wp;
    int64_t m, k, n;
    int xsigned, isa;
    void *y;
    int kind;           /* 0: int16 pairs (VPMADDWD); 1: uint8 x int8 bytes, |w| <= 64 (VPMADDUBSW or VNNI);
                           2: the same layout with any int8 w (VNNI or portable only) */
    const int32_t *corr; /* kinds 1, 2: 128 * column sums of w */
};

static int gemm_range(void *ctx, int64_t p0, int64_t p1) {
    const struct gemm_job *j = (const struct gemm_job *)ctx;
    int64_t c1 = p1 * NR < j->n ? p1 * NR : j->n;
    if (j->kind != 0)
        return qgemm_u8s8(j->x, j->xsigned, j->m, j->k, (const int8_t *)j->wp, j->corr, j->n, p0 * NR, c1, &j->e,
                          j->y, j->isa, j->kind);
    return qgemm(j->x, j->xsigned, j->m, j->k, (const int16_t *)j->wp, j->n, p0 * NR, c1, &j->e, j->y, j->isa);
}

static int parts_for(int64_t items, int64_t macs_per_item, int threads) {
    int64_t most = items * macs_per_item / MIN_MACS_PER_THREAD;
    if (most < 1) most = 1;
    return threads < most ? threads : (int)most;
}

#define P64(i) ((const int64_t *)(intptr_t)cfg[i])
#define P32(i) ((const int32_t *)(intptr_t)cfg[i])

/* y [m, n] = epilogue(x [m, k] @ w). cfg: xsigned, k, packed w, n, span, base, outkind, isa, then the
 * addresses of lo, hi, mul, add, shift, post, lo32, hi32, mul32, addp, shiftp, postp (struct epilogue),
 * then the packing kind and (kind 1) the address of the column-sum corrections. */
int opml_qgemm_cfg(const int64_t *cfg, const void *x, int64_t m, void *y, int threads) {
    struct gemm_job j = {{P64(8), P64(9), P64(10), P64(11), P64(12), P64(13), P32(14), P32(15), P32(16), P64(17),
                          P64(18), P64(19), cfg[4], cfg[5], (int)cfg[6]},
                         x, (const void *)(intptr_t)cfg[2], m, cfg[1], cfg[3], (int)cfg[0], (int)cfg[7], y,
                         (int)cfg[20], P32(21)};
    if (j.kind < 0 || j.kind > 2 || j.isa < OPML_ISA_GENERIC || j.isa > OPML_ISA_MAX ||
        !(opml_native_isa_mask() & (1 << j.isa)) || (j.kind == 2 && j.isa == OPML_ISA_AVX2) ||
        !epilogue_ok(&j.e, j.n))
        return -1;
    int64_t panels = (j.n + NR - 1) / NR;
    if (!panels || !m) return 0;
    return opml_parallel_for(gemm_range, &j, panels, parts_for(panels, m * j.k * NR, threads));
}

#undef P64
#undef P32

struct matmul_job {
    struct epilogue e;
    const void *a, *bb;
    int64_t m, k, n, za, zb;
    int asigned, bsigned, isa;
    void *y;
};

static int matmul_range(void *ctx, int64_t b0, int64_t b1) {
    const struct matmul_job *j = (const struct matmul_job *)ctx;
    return qmatmul(j->a, j->asigned, j->za, j->bb, j->bsigned, j->zb, b0, b1, j->m, j->k, j->n, &j->e, j->y, j->isa);
}

#define P64(i) ((const int64_t *)(intptr_t)cfg[i])
#define P32(i) ((const int32_t *)(intptr_t)cfg[i])

/* cfg: asigned, za, bsigned, zb, span, base, outkind, isa, then the 12 addresses of a 16-column
 * struct epilogue (as opml_qgemm_cfg). */
int opml_qmatmul_cfg(const int64_t *cfg, const void *a, const void *bb, int64_t count, int64_t m, int64_t k,
                     int64_t n, void *y, int threads) {
    if (count < 0) return -1;
    struct matmul_job j = {{P64(8), P64(9), P64(10), P64(11), P64(12), P64(13), P32(14), P32(15), P32(16), P64(17),
                            P64(18), P64(19), cfg[4], cfg[5], (int)cfg[6]},
                           a, bb, m, k, n, cfg[1], cfg[3], (int)cfg[0], (int)cfg[2], (int)cfg[7], y};
    if (j.isa < OPML_ISA_GENERIC || j.isa > OPML_ISA_MAX || !(opml_native_isa_mask() & (1 << j.isa)) ||
        !epilogue_ok(&j.e, NR))
        return -1;
    if (!count) return 0;
    return opml_parallel_for(matmul_range, &j, count, parts_for(count, m * k * n, threads));
}

#undef P64
#undef P32

/* im2col for the native conv: x is the padded input in NHWC order ([b, h, w, c], 1-byte elements);
 * out gets, for each output position (b, oy, ox), the kernel window's channels [c0, c0 + cg) in
 * (kernel row, kernel column, channel) order: out [b * oh * ow, kh * kw * cg]. Pure copies.
 * Returns 0, or -1 when a window would read outside x. */
int opml_im2col_nhwc(const uint8_t *x, int64_t b, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                     int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t oh, int64_t ow, int64_t c0, int64_t cg,
                     uint8_t *out) {
    if (b < 0 || oh < 0 || ow < 0 || kh < 1 || kw < 1 || sh < 1 || sw < 1 || dh < 1 || dw < 1 || c0 < 0 ||
        cg < 0 || c0 + cg > c)
        return -1;
    if (oh && ow && ((oh - 1) * sh + (kh - 1) * dh >= h || (ow - 1) * sw + (kw - 1) * dw >= w)) return -1;
    size_t n = (size_t)cg;
    for (int64_t bi = 0; bi < b; bi++)
        for (int64_t oy = 0; oy < oh; oy++)
            for (int64_t ox = 0; ox < ow; ox++)
                for (int64_t i = 0; i < kh; i++) {
                    const uint8_t *src = x + ((bi * h + oy * sh + i * dh) * w + ox * sw) * c + c0;
                    for (int64_t j = 0; j < kw; j++) {
                        memcpy(out, src + j * dw * c, n);
                        out += n;
                    }
                }
    return 0;
}
