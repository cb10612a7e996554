/* LayerNorm over a whole (H, W, C) map followed by a clamp (ReLU: [0, inf); the stem's hardtanh:
 * [-5, 5]), and optionally the stage's 3x3 average pool (stride 2, zero padding 1, divisor 9), forward
 * and backward in one kernel each, for training on a CPU.
 *
 * Why: in a training step the convolutions run at the machine's multiply-add peak; what is left is
 * memory traffic. PyTorch computes LayerNorm, the activation, the pool and (under bf16 autocast) the
 * casts between them as separate passes over float32 copies of each map. Here a map is read in its own
 * precision (bf16 or float32), the statistics and every sum are float32 within a block and double
 * across blocks, and the output and the input gradient are written once, in the map's precision. With
 * the pool, the normalised full-size map is never written, and its gradient is expanded from the pooled
 * one row by row as the backward pass needs it. One map of the paper network's first stage (64 x 64 x 32,
 * 256 KB in bf16) stays in the L2 cache between the passes over it.
 *
 * Layout: x is (N, S) with each map's S = H * W * C values contiguous (a channels-last map), the affine
 * weight and bias are (S) float32 in the same order; the pooled output is (N, H/2, W/2, C). Maps are
 * split across OpenMP threads; each thread sums its weight and bias gradients into a buffer of its own,
 * added up at the end (no atomics).
 *
 * Backward, with xh = (x - mean) * rstd, o = xh * w + b, g the output gradient zeroed where the clamp
 * was active (o outside (low, high), as PyTorch's relu and hardtanh backward do):
 *   dx = rstd * (g w - mean(g w) - xh * mean(g w xh)),   dw = sum over maps of g xh,   db = sum of g.
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 2048 /* values summed in float32 before the block's sum goes into a double */

static inline float from_bf16(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline uint16_t to_bf16(float f) { /* round to nearest even; NaN stays NaN */
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    return (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 0x40u) : (uint16_t)r;
}

#define SAME(v) (v)

/* Each kernel below is written once for float32 maps (f32) and once for bf16 maps (bf16): the values are
 * converted in registers as they are read and written. */
#define STATISTICS(SUFFIX, T, LOAD)                                                                      \
    static void statistics_##SUFFIX(const T *x, long S, float eps, float *stats) {                      \
        double total = 0, squares = 0, shift = 0;                                                        \
        for (long s0 = 0; s0 < S; s0 += BLOCK) {                                                         \
            long s1 = s0 + BLOCK < S ? s0 + BLOCK : S;                                                   \
            float part = 0;                                                                              \
            _Pragma("omp simd reduction(+ : part)") for (long i = s0; i < s1; i++) part += LOAD(x[i]);   \
            total += part;                                                                               \
        }                                                                                                \
        float mean = (float)(total / S);                                                                 \
        for (long s0 = 0; s0 < S; s0 += BLOCK) { /* centred; shift is what the float mean left */        \
            long s1 = s0 + BLOCK < S ? s0 + BLOCK : S;                                                   \
            float sq = 0, d = 0;                                                                         \
            _Pragma("omp simd reduction(+ : sq, d)") for (long i = s0; i < s1; i++) {                    \
                float c = LOAD(x[i]) - mean;                                                             \
                sq += c * c;                                                                             \
                d += c;                                                                                  \
            }                                                                                            \
            squares += sq;                                                                               \
            shift += d;                                                                                  \
        }                                                                                                \
        double var = squares / S - (shift / S) * (shift / S);                                            \
        stats[0] = mean;                                                                                 \
        stats[1] = (float)(1.0 / sqrt((var > 0 ? var : 0) + eps));                                       \
    }

/* o = clamp(LayerNorm(x)) of len values, into float32 or the map's precision */
#define NORMALISE(SUFFIX, T, LOAD, OUT, STORE)                                                           \
    static inline void normalise_##SUFFIX(const T *x, long len, const float *w, const float *b,          \
                                          const float *st, float low, float high, OUT *out) {            \
        float mean = st[0], rstd = st[1];                                                                \
        _Pragma("omp simd") for (long i = 0; i < len; i++) {                                             \
            float o = (LOAD(x[i]) - mean) * rstd * w[i] + b[i];                                          \
            o = o < low ? low : o;                                                                       \
            out[i] = STORE(o > high ? high : o);                                                         \
        }                                                                                                \
    }

/* One map's backward pass: g is the output gradient at full size (the map's precision, or float32 when
 * it was expanded from a pooled one); dw and db are this thread's sums. */
#define BACKWARD_MAP(NAME, T, LOAD, G, LOADG, STORE)                                                     \
    static void NAME(const G *g, const T *x, long S, const float *st, const float *w, const float *b,    \
                     float low, float high, T *dx, float *dw, float *db) {                               \
        float mean = st[0], rstd = st[1];                                                                \
        double sum_gw = 0, sum_gwx = 0;                                                                  \
        for (long s0 = 0; s0 < S; s0 += BLOCK) {                                                         \
            long s1 = s0 + BLOCK < S ? s0 + BLOCK : S;                                                   \
            float a = 0, c = 0;                                                                          \
            _Pragma("omp simd reduction(+ : a, c)") for (long i = s0; i < s1; i++) {                     \
                float xh = (LOAD(x[i]) - mean) * rstd, o = xh * w[i] + b[i];                             \
                float gz = (o > low && o < high) ? LOADG(g[i]) : 0.0f, gw = gz * w[i];                   \
                a += gw;                                                                                 \
                c += gw * xh;                                                                            \
                dw[i] += gz * xh;                                                                        \
                db[i] += gz;                                                                             \
            }                                                                                            \
            sum_gw += a;                                                                                 \
            sum_gwx += c;                                                                                \
        }                                                                                                \
        float m1 = (float)(sum_gw / S), m2 = (float)(sum_gwx / S);                                       \
        _Pragma("omp simd") for (long i = 0; i < S; i++) {                                               \
            float xh = (LOAD(x[i]) - mean) * rstd, o = xh * w[i] + b[i];                                 \
            float gz = (o > low && o < high) ? LOADG(g[i]) : 0.0f;                                       \
            dx[i] = STORE(rstd * (gz * w[i] - m1 - xh * m2));                                            \
        }                                                                                                \
    }

STATISTICS(f32, float, SAME)
STATISTICS(bf16, uint16_t, from_bf16)
NORMALISE(f32, float, SAME, float, SAME)
NORMALISE(bf16, uint16_t, from_bf16, uint16_t, to_bf16)
NORMALISE(bf16_to_f32, uint16_t, from_bf16, float, SAME)
BACKWARD_MAP(backward_f32, float, SAME, float, SAME, SAME)
BACKWARD_MAP(backward_bf16, uint16_t, from_bf16, uint16_t, from_bf16, to_bf16)
BACKWARD_MAP(backward_bf16_pooled, uint16_t, from_bf16, float, SAME, to_bf16)

/* The normalised rows of one map, each summed over its 3-column windows and added to the 1 or 2 output
 * rows whose windows hold it; out is (H/2, W/2, C) float32, divided by 9 at the end. */
static void pool_rows(const float *line, long r, long Ho, long Wo, long C, float *across, float *out) {
    for (long j = 0; j < Wo; j++) {
        const float *mid = line + 2 * j * C;
        float *sum = across + j * C;
#pragma omp simd
        for (long c = 0; c < C; c++) sum[c] = mid[c] + mid[C + c];
        if (j > 0) {
#pragma omp simd
            for (long c = 0; c < C; c++) sum[c] += mid[c - C];
        }
    }
    for (long i = r / 2; i <= (r + 1) / 2 && i < Ho; i++) {
        float *o = out + i * Wo * C;
#pragma omp simd
        for (long k = 0; k < Wo * C; k++) o[k] += across[k];
    }
}

int exifkit_norm_act_forward(const void *x, int bf16, long N, long H, long W, long C, const float *w,
                             const float *b, float eps, float low, float high, int pool, void *y, float *stats,
                             int threads) {
    long S = H * W * C, row = W * C, Ho = H / 2, Wo = W / 2, So = Ho * Wo * C;
    int failed = 0;
#pragma omp parallel num_threads(threads)
    {
        float *buf = pool ? malloc(sizeof(float) * (size_t)(row + Wo * C + So)) : NULL;
        if (pool && !buf) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (long n = 0; n < N; n++) {
            const float *xf = (const float *)x + n * S;
            const uint16_t *xh = (const uint16_t *)x + n * S;
            float *st = stats + 2 * n;
            if (bf16) statistics_bf16(xh, S, eps, st);
            else statistics_f32(xf, S, eps, st);
            if (!pool) {
                if (bf16) normalise_bf16(xh, S, w, b, st, low, high, (uint16_t *)y + n * S);
                else normalise_f32(xf, S, w, b, st, low, high, (float *)y + n * S);
                continue;
            }
            if (!buf) continue;
            float *line = buf, *across = buf + row, *out = across + Wo * C;
            memset(out, 0, sizeof(float) * (size_t)So);
            for (long r = 0; r < H; r++) {
                if (bf16) normalise_bf16_to_f32(xh + r * row, row, w + r * row, b + r * row, st, low, high, line);
                else normalise_f32(xf + r * row, row, w + r * row, b + r * row, st, low, high, line);
                pool_rows(line, r, Ho, Wo, C, across, out);
            }
            if (bf16) {
                uint16_t *yn = (uint16_t *)y + n * So;
#pragma omp simd
                for (long k = 0; k < So; k++) yn[k] = to_bf16(out[k] * (1.0f / 9.0f));
            } else {
                float *yn = (float *)y + n * So;
#pragma omp simd
                for (long k = 0; k < So; k++) yn[k] = out[k] * (1.0f / 9.0f);
            }
        }
        free(buf);
    }
    return failed;
}

/* The full-size gradient of one map from its pooled gradient gp (H/2, W/2, C): each value gets a ninth
 * of the pooled gradients of the 1, 2 or 4 windows that hold it. */
static void unpool(const void *gp, int bf16, long at, long H, long W, long C, float *g, float *down) {
    long Ho = H / 2, Wo = W / 2, prow = Wo * C;
    for (long r = 0; r < H; r++) {
        memset(down, 0, sizeof(float) * (size_t)prow);
        for (long i = r / 2; i <= (r + 1) / 2 && i < Ho; i++) {
            if (bf16) {
                const uint16_t *src = (const uint16_t *)gp + at + i * prow;
#pragma omp simd
                for (long k = 0; k < prow; k++) down[k] += from_bf16(src[k]);
            } else {
                const float *src = (const float *)gp + at + i * prow;
#pragma omp simd
                for (long k = 0; k < prow; k++) down[k] += src[k];
            }
        }
        float *gr = g + r * W * C;
        for (long col = 0; col < W; col++) {
            const float *a = down + (col / 2) * C;
            float *out = gr + col * C;
            if (col % 2 && col / 2 + 1 < Wo) {
#pragma omp simd
                for (long c = 0; c < C; c++) out[c] = (a[c] + a[C + c]) * (1.0f / 9.0f);
            } else {
#pragma omp simd
                for (long c = 0; c < C; c++) out[c] = a[c] * (1.0f / 9.0f);
            }
        }
    }
}

int exifkit_norm_act_backward(const void *g, const void *x, int bf16, long N, long H, long W, long C,
                              const float *stats, const float *w, const float *b, float low, float high, int pool,
                              void *dx, float *dw, float *db, int threads) {
    long S = H * W * C, So = (H / 2) * (W / 2) * C;
    int used = threads < N ? threads : (int)N, failed = 0;
    if (used < 1) used = 1;
    float *acc = calloc((size_t)used * 2 * S, sizeof(float)); /* per thread: dw, then db */
    if (!acc) return 1;
#pragma omp parallel num_threads(used)
    {
        int t = omp_get_thread_num();
        float *dwt = acc + (size_t)t * 2 * S, *dbt = dwt + S;
        float *full = pool ? malloc(sizeof(float) * (size_t)(S + (W / 2) * C)) : NULL;
        if (pool && !full) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (long n = 0; n < N; n++) {
            const float *st = stats + 2 * n;
            if (pool) {
                if (!full) continue;
                unpool(g, bf16, n * So, H, W, C, full, full + S);
                if (bf16) backward_bf16_pooled(full, (const uint16_t *)x + n * S, S, st, w, b, low, high,
                                               (uint16_t *)dx + n * S, dwt, dbt);
                else backward_f32(full, (const float *)x + n * S, S, st, w, b, low, high, (float *)dx + n * S,
                                  dwt, dbt);
            } else if (bf16) {
                backward_bf16((const uint16_t *)g + n * S, (const uint16_t *)x + n * S, S, st, w, b, low, high,
                              (uint16_t *)dx + n * S, dwt, dbt);
            } else {
                backward_f32((const float *)g + n * S, (const float *)x + n * S, S, st, w, b, low, high,
                             (float *)dx + n * S, dwt, dbt);
            }
        }
        free(full);
#pragma omp for schedule(static)
        for (long i = 0; i < S; i++) {
            float sw = 0, sb = 0;
            for (int k = 0; k < used; k++) {
                sw += acc[(size_t)k * 2 * S + i];
                sb += acc[(size_t)k * 2 * S + S + i];
            }
            dw[i] = sw;
            db[i] = sb;
        }
    }
    free(acc);
    return failed;
}
