/* 3x3 convolution (stride 1, zero padding 1) by Winograd's minimal filtering F(4x4, 3x3).
 *
 * Why: on a CPU the extractor's first stage (four 32->32 convolutions over 64x64 maps) is most of the
 * inference time, and the direct convolution of the convolution library already runs at the
 * machine's multiply-add peak. Winograd computes each 4x4 output tile from a 6x6 input tile with 36
 * products per channel pair instead of 144, at the price of cheap linear transforms before and after
 * and a slightly larger rounding error (still float32 rounding; see tests/model/test_winograd.py).
 *
 * Layout: activations are channels-last (N, H, W, C) float32, C a multiple of 16, H and W multiples
 * of 4. The filter arrives already transformed (G g G^T, computed in double by winograd.py) as
 * (36, C_in, C_out). Patches are split across OpenMP threads; the library links the same libgomp
 * as PyTorch, so the two share one thread pool instead of spinning against each other.
 *
 * bf16 products: where the compiler targets AVX512-BF16, the 36 tile products can instead take bf16
 * operands with float32 sums (one VDPBF16PS does the work of two float32 multiply-adds). The tiles are
 * transformed in float32 and rounded to bf16 once, as they are stored; the filters arrive rounded, laid out
 * as (36, C_in / 2, C_out, 2): each output channel's two consecutive input channels side by side, the
 * operand layout of the instruction. Only the products change; every sum stays float32.
 *
 * Transforms (Lavin & Gray, 2016, interpolation points 0, +-1, +-2, infinity):
 *   B^T = [4 0 -5 0 1 0; 0 -4 -4 1 1 0; 0 4 -4 -1 1 0; 0 -2 -1 2 1 0; 0 2 -1 -2 1 0; 0 4 0 -5 0 1]
 *   A^T = [1 1 1 1 1 0; 0 1 -1 2 -2 0; 0 1 1 4 4 0; 0 1 -1 8 -8 1]
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef __AVX512BF16__
#include <immintrin.h>
#endif


/* Everything is written in the CPU's own vector width, VL floats (16 with AVX-512, 8 with AVX, else 4): GCC
 * turns comparisons and conversions of wider vectors into scalar code, and products blocked for 32
 * registers spill on a CPU with 16; together they made the AVX2 build ten times slower than the
 * convolution library. TB: tiles per block of products, so that TB x 2 accumulators, two filter
 * vectors and a broadcast fit the register file (32 zmm or 16 ymm); TILES, the tiles transformed
 * per block, is a multiple of it. */
#ifdef __AVX512F__
#define VL 16
#define TB 8
#define TILES 8 /* output tiles per block */
#elif defined(__AVX__)
#define VL 8
#define TB 6
#define TILES 12
#else /* 128-bit vectors (SSE, NEON) */
#define VL 4
#define TB 6
#define TILES 12
#endif
typedef float vf __attribute__((vector_size(4 * VL)));
typedef float vfu __attribute__((vector_size(4 * VL), aligned(4)));
#define LOADV(p) ((vf)(*(const vfu *)(p)))
#define STOREV(p, v) (*(vfu *)(p) = (v))
typedef int vfi __attribute__((vector_size(4 * VL)));
typedef double vd __attribute__((vector_size(4 * VL))); /* VL / 2 doubles */

/* LayerNorm and clamp still owed to the input map: the previous layer's, applied as tiles are read,
 * so the normalised map is never written out. stats is (N, 2): each patch's mean and 1/std. */
typedef struct {
    const float *stats, *weight, *bias; /* weight, bias: (H, W, C), LayerNorm's affine map */
    float low, high;
} pending_norm;

static inline vf clamp(vf v, float low, float high) {
    vf lo = low - (vf){0}, hi = high - (vf){0};
    vfi below = v < lo, above = v > hi;
    v = (vf)(((vfi)v & ~below) | ((vfi)lo & below));
    return (vf)(((vfi)v & ~above) | ((vfi)hi & above));
}

/* One vector of the normalised, clamped map at offset at. */
static inline vf normalised(const float *x, const float *weight, const float *bias, long at, float mean,
                             float rstd, float low, float high) {
    return clamp((LOADV(x + at) - mean) * rstd * LOADV(weight + at) + LOADV(bias + at), low, high);
}

static inline void input_1d(vf *d, int s) { /* d <- B^T d along stride s */
    vf d0 = d[0], d1 = d[s], d2 = d[2 * s], d3 = d[3 * s], d4 = d[4 * s], d5 = d[5 * s];
    vf a = d4 - 4 * d2, b = d3 - 4 * d1, c = d4 - d2, e = 2 * (d3 - d1);
    d[0] = 4 * d0 - 5 * d2 + d4;
    d[s] = a + b;
    d[2 * s] = a - b;
    d[3 * s] = c + e;
    d[4 * s] = c - e;
    d[5 * s] = 4 * d1 - 5 * d3 + d5;
}

static inline void output_1d(const vf *m, int s, vf *o, int os) { /* o <- A^T m */
    vf p12 = m[s] + m[2 * s], q12 = m[s] - m[2 * s], p34 = m[3 * s] + m[4 * s], q34 = m[3 * s] - m[4 * s];
    o[0] = m[0] + p12 + p34;
    o[os] = q12 + 2 * q34;
    o[2 * os] = p12 + 4 * p34;
    o[3 * os] = q12 + 8 * q34 + m[5 * s];
}

static inline vd widen(vf s) { /* the lanes, summed in pairs into doubles */
#if VL == 16
    return __builtin_convertvector(__builtin_shufflevector(s, s, 0, 1, 2, 3, 4, 5, 6, 7), vd)
         + __builtin_convertvector(__builtin_shufflevector(s, s, 8, 9, 10, 11, 12, 13, 14, 15), vd);
#elif VL == 8
    return __builtin_convertvector(__builtin_shufflevector(s, s, 0, 1, 2, 3), vd)
         + __builtin_convertvector(__builtin_shufflevector(s, s, 4, 5, 6, 7), vd);
#else
    return __builtin_convertvector(__builtin_shufflevector(s, s, 0, 1), vd)
         + __builtin_convertvector(__builtin_shufflevector(s, s, 2, 3), vd);
#endif
}

#ifdef __AVX512BF16__
/* m <- v @ u for the 36 tile positions, bf16 operands (v: (36, TILES, C), u: (36, C/2, C, 2)), float32 sums */
static void products_bf16(const uint16_t *v, const uint16_t *u, int C, int T, float *m) {
    for (int k = 0; k < 36; k++) {
        const uint16_t *uk = u + (long)k * C * C, *vk = v + k * TILES * C;
        for (int o = 0; o < C; o += 32) {
            int two = o + 16 < C;
            __m512 acc0[TILES], acc1[TILES];
            for (int t = 0; t < TILES; t++) acc0[t] = acc1[t] = _mm512_setzero_ps();
            for (int ci = 0; ci < C; ci += 2) {
                const uint16_t *row = uk + (long)ci * C; /* the pair (ci, ci + 1): C outputs x 2 */
                __m512bh u0 = (__m512bh)_mm512_loadu_si512(row + 2 * o);
                __m512bh u1 = two ? (__m512bh)_mm512_loadu_si512(row + 2 * (o + 16)) : (__m512bh)_mm512_setzero_si512();
                for (int t = 0; t < TILES; t++) {
                    int32_t pair;
                    memcpy(&pair, vk + t * C + ci, sizeof pair);
                    __m512bh b = (__m512bh)_mm512_set1_epi32(pair);
                    acc0[t] = _mm512_dpbf16_ps(acc0[t], b, u0);
                    acc1[t] = _mm512_dpbf16_ps(acc1[t], b, u1);
                }
            }
            for (int t = 0; t < T; t++) {
                _mm512_storeu_ps(m + (k * TILES + t) * C + o, acc0[t]);
                if (two) _mm512_storeu_ps(m + (k * TILES + t) * C + o + 16, acc1[t]);
            }
        }
    }
}
#endif

/* m <- v @ u for one tile position: v (T, C) tiles, u (C, C) filters, m (T, C), float32 throughout */
static void products_f32(const float *v, const float *u, int C, int T, float *m) {
    const vf zero = {0};
    for (int t0 = 0; t0 < T; t0 += TB) {
        int tn = T - t0 < TB ? T - t0 : TB;
        for (int o = 0; o < C; o += 2 * VL) {
            int two = o + VL < C;
            vf acc0[TB], acc1[TB];
            for (int t = 0; t < TB; t++) acc0[t] = acc1[t] = zero;
            for (int ci = 0; ci < C; ci++) {
                vf u0 = LOADV(u + ci * C + o), u1 = two ? LOADV(u + ci * C + o + VL) : zero;
                for (int t = 0; t < TB; t++) {
                    float b = v[(t0 + t) * C + ci];
                    acc0[t] += b * u0;
                    acc1[t] += b * u1;
                }
            }
            for (int t = 0; t < tn; t++) {
                STOREV(m + (t0 + t) * C + o, acc0[t]);
                if (two) STOREV(m + (t0 + t) * C + o + VL, acc1[t]);
            }
        }
    }
}

/* One block of up to TILES consecutive tiles (row-major, rows may wrap) of one patch; v and m are
 * (36, TILES, C). ub: the bf16 filters, or NULL for float32 products with u; vb: room for the bf16 tiles */
static void block(const float *x, const pending_norm *pre, long n, int H, int W, int C, int q0, int T,
                  const float *u, const uint16_t *ub, const float *bias, float *y, float *v, uint16_t *vb,
                  float *m, vd *sums) {
    const vf zero = {0};
    float mean = pre ? pre->stats[2 * n] : 0, rstd = pre ? pre->stats[2 * n + 1] : 0;
    for (int t = 0; t < T; t++) {
        int x0 = (q0 + t) % (W / 4) * 4 - 1, y0 = (q0 + t) / (W / 4) * 4 - 1;
        for (int c = 0; c < C; c += VL) {
            vf d[36];
            int inside = y0 >= 0 && y0 + 6 <= H && x0 >= 0 && x0 + 6 <= W;
            for (int i = 0; i < 6; i++) {
                int yy = y0 + i;
                for (int j = 0; j < 6; j++) {
                    int xx = x0 + j;
                    long at = ((long)yy * W + xx) * C + c;
                    if (!inside && (yy < 0 || yy >= H || xx < 0 || xx >= W))
                        d[i * 6 + j] = zero;  /* padding of the normalised map, as in the reference */
                    else if (pre)
                        d[i * 6 + j] = normalised(x, pre->weight, pre->bias, at, mean, rstd, pre->low, pre->high);
                    else
                        d[i * 6 + j] = LOADV(x + at);
                }
            }
            for (int j = 0; j < 6; j++) input_1d(d + j, 6);
            for (int i = 0; i < 6; i++) input_1d(d + 6 * i, 1);
#ifdef __AVX512BF16__
            if (ub) {
                for (int k = 0; k < 36; k++)
                    _mm256_storeu_si256((__m256i *)(vb + (k * TILES + t) * C + c), (__m256i)_mm512_cvtneps_pbh(d[k]));
                continue;
            }
#endif
            for (int k = 0; k < 36; k++) STOREV(v + (k * TILES + t) * C + c, d[k]);
        }
    }
#ifdef __AVX512BF16__
    if (ub)
        products_bf16(vb, ub, C, T, m); /* rows past T of a short block are computed from stale tiles, never stored */
    else
#endif
    for (int k = 0; k < 36; k++) /* 36 independent (T x C) @ (C x C) products */
        products_f32(v + k * TILES * C, u + (long)k * C * C, C, T, m + k * TILES * C);
    for (int t = 0; t < T; t++) {
        int x0 = (q0 + t) % (W / 4) * 4, y0 = (q0 + t) / (W / 4) * 4;
        for (int c = 0; c < C; c += VL) {
            vf mm[36], r[24], out[16], s1 = zero, s2 = zero, bv = LOADV(bias + c);
            for (int k = 0; k < 36; k++) mm[k] = LOADV(m + (k * TILES + t) * C + c);
            for (int j = 0; j < 6; j++) output_1d(mm + j, 6, r + j, 6);
            for (int i = 0; i < 4; i++) output_1d(r + 6 * i, 1, out + 4 * i, 1);
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    vf val = out[i * 4 + j] + bv;
                    s1 += val;
                    s2 += val * val;
                    STOREV(y + ((long)(y0 + i) * W + x0 + j) * C + c, val);
                }
            sums[0] += widen(s1);
            sums[1] += widen(s2);
        }
    }
}

/* Whether this build has the bf16 products (compiled for a CPU with AVX512-BF16). */
int exifkit_winograd_bf16(void) {
#ifdef __AVX512BF16__
    return 1;
#else
    return 0;
#endif
}

/* x, y: (N, H, W, C); u: (36, C, C), or NULL with u_bf16: (36, C/2, C, 2) bf16 bits; bias: (C); pre: NULL, or the LayerNorm + clamp to apply to x
 * first (pre_stats NULL means none); sums: (N, 2), the sum and the sum of squares of each patch's
 * output (what the next LayerNorm needs), or NULL. Returns 0, -1 for a shape it does not handle,
 * -2 when out of memory. */
int exifkit_winograd_conv3x3(const float *x, long N, int H, int W, int C, const float *pre_stats,
                             const float *pre_weight, const float *pre_bias, float pre_low, float pre_high,
                             const float *u, const uint16_t *u_bf16, const float *bias, float *y, double *sums,
                             int threads) {
    pending_norm pending = {pre_stats, pre_weight, pre_bias, pre_low, pre_high};
    const pending_norm *pre = pre_stats ? &pending : NULL;
    if (C <= 0 || C % 16 || H <= 0 || W <= 0 || H % 4 || W % 4 || !u == !u_bf16) return -1;
    if (u_bf16 && !exifkit_winograd_bf16()) return -1;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *v = aligned_alloc(64, sizeof(float) * 36 * TILES * C);
        float *m = aligned_alloc(64, sizeof(float) * 36 * TILES * C);
        uint16_t *vb = aligned_alloc(64, sizeof(uint16_t) * 36 * TILES * C);
        if (!v || !m || !vb) failed = 1;
#pragma omp for schedule(static)
        for (long n = 0; n < N; n++) {
            vd s[2] = {{0}, {0}};
            if (failed) continue;
            for (int q0 = 0, tiles = H / 4 * (W / 4); q0 < tiles; q0 += TILES)
                block(x + n * H * W * C, pre, n, H, W, C, q0, tiles - q0 < TILES ? tiles - q0 : TILES, u, u_bf16,
                      bias, y + n * H * W * C, v, vb, m, s);
            if (sums) {
                sums[2 * n] = sums[2 * n + 1] = 0;
                for (int l = 0; l < VL / 2; l++) {
                    sums[2 * n] += s[0][l];
                    sums[2 * n + 1] += s[1][l];
                }
            }
        }
        free(v);
        free(m);
        free(vb);
    }
    return failed ? -2 : 0;
}

/* The stage's last LayerNorm + clamp, then its 3x3 average pool (stride 2, zero padding 1, divided
 * by 9 as nn.AvgPool2d counts the padding), in one pass: each normalised row is summed across in
 * threes once and used by the two output rows that cover it. x: (N, H, W, C), y: (N, H/2, W/2, C). */
int exifkit_norm_pool(const float *x, long N, int H, int W, int C, const float *stats, const float *weight,
                      const float *bias, float low, float high, float *y, int threads) {
    if (C <= 0 || C % 16 || H <= 0 || W <= 0 || H % 2 || W % 2) return -1;
    const int Wo = W / 2;
    int failed = 0;
#pragma omp parallel num_threads(threads) reduction(| : failed)
    {
        float *rows = aligned_alloc(64, sizeof(float) * 3 * Wo * C); /* three row sums */
        if (!rows) failed = 1;
#pragma omp for schedule(static)
        for (long n = 0; n < N; n++) {
            if (failed) continue;
            const float *xn = x + n * H * W * C;
            float mean = stats[2 * n], rstd = stats[2 * n + 1];
            float *prev = rows, *a = rows + Wo * C, *b = rows + 2 * Wo * C;
            for (long i = 0; i < (long)Wo * C; i++) prev[i] = 0; /* the zero row above the map */
            for (int oy = 0; oy < H / 2; oy++) {
                float *pair[2] = {a, b};
                for (int r = 0; r < 2; r++) { /* rows 2 oy and 2 oy + 1, summed across in threes */
                    long row = (long)(2 * oy + r) * W * C;
                    for (int c = 0; c < C; c += VL) {
                        vf left = {0}; /* column 2 ox - 1 */
                        for (int ox = 0; ox < Wo; ox++) {
                            long at = row + (long)(2 * ox) * C + c;
                            vf p = normalised(xn, weight, bias, at, mean, rstd, low, high);
                            vf q = normalised(xn, weight, bias, at + C, mean, rstd, low, high);
                            STOREV(pair[r] + (long)ox * C + c, left + p + q);
                            left = q;
                        }
                    }
                }
                float *out = y + (n * (H / 2) + oy) * (long)Wo * C;
                for (long i = 0; i < (long)Wo * C; i += VL)
                    STOREV(out + i, (LOADV(prev + i) + LOADV(a + i) + LOADV(b + i)) / 9);
                float *t = prev; /* row 2 oy + 1 is the top row of the next window */
                prev = b;
                b = t;
            }
        }
        free(rows);
    }
    return failed ? -2 : 0;
}
