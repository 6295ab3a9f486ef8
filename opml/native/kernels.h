/* Entry points of the native kernels that other C files call (plan.c), with the signatures their
 * definitions have (qgemm.c, norm.c, pointwise.c, conv.c, qconv.c). Each returns 0, or -1 for arguments outside its bounds. */
#ifndef OPML_KERNELS_H
#define OPML_KERNELS_H
#include <stdint.h>

int opml_qgemm_cfg(const int64_t *cfg, const void *x, int64_t m, void *y, int threads);
int opml_qmatmul_cfg(const int64_t *cfg, const void *a, const void *bb, int64_t count, int64_t m, int64_t k,
                     int64_t n, void *y, int threads);
int opml_im2col_nhwc(const uint8_t *x, int64_t b, int64_t h, int64_t w, int64_t c, int64_t kh, int64_t kw,
                     int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t oh, int64_t ow, int64_t c0, int64_t cg,
                     uint8_t *out);
int opml_softmax(const uint8_t *x, int xsigned, int64_t r0, int64_t r1, int64_t len, const int64_t *table,
                 int64_t zp, int64_t lo, int64_t hi, uint8_t *y, int isa);
int opml_layernorm(const void *x, int xkind, int64_t xmax, int64_t r0, int64_t r1, int64_t n,
                   const int64_t *gamma, const int64_t *beta, int64_t eps, int frac, int g, int64_t mult,
                   int shift, int64_t zp, int64_t qmin, int64_t qmax, uint8_t *y, int isa);
int opml_lut8(const uint8_t *table, const uint8_t *x, uint8_t *y, int64_t i0, int64_t i1, int isa);
int opml_pair_lut8(const uint8_t *table, const uint8_t *a, int64_t na, const uint8_t *b, int64_t nb, uint8_t *y,
                   int64_t i0, int64_t i1, int isa);

int opml_add_wide(const void *a, int ak, int64_t na, const void *b, int bk, int64_t nb, int64_t za, int64_t zb,
                  int64_t am, int64_t bm, int shift, int64_t zo, int64_t qmin, int64_t qmax, void *y, int yk,
                  int64_t i0, int64_t i1, int isa);
int opml_gconv_cfg(const int64_t *cfg, const void *x, int64_t b, int64_t h, int64_t w, void *y, int threads);
int opml_transpose_batched(const void *x, int64_t count, int64_t rows, int64_t cols, int64_t itemsize, void *y,
                           int threads);
int opml_qconv_nchw(const int64_t *cfg, const uint8_t *x, int64_t b, int64_t c, int64_t h, int64_t w, int64_t pt,
                    int64_t pl, int64_t hp, int64_t wp, int64_t zp, int64_t kh, int64_t kw, int64_t sh, int64_t sw,
                    int64_t dh, int64_t dw, void *y, int mode, int threads);
int opml_maxpool(const uint8_t *x, int xsigned, int64_t planes, int64_t h, int64_t w, int64_t kh, int64_t kw,
                 int64_t sh, int64_t sw, int64_t dh, int64_t dw, int64_t pt, int64_t pl, int64_t oh, int64_t ow,
                 uint8_t *y, int isa, int threads);
int opml_plane_reduce(const uint8_t *x, int xsigned, int64_t planes, int64_t n, int mode, int64_t zp, int64_t mult,
                      int64_t den, int64_t ozp, int64_t lo, int64_t hi, uint8_t *y, int isa);

#endif
