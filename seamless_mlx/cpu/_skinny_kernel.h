/* One instance of the few-row product kernel (included by _skinny.c once per instruction set).
 *
 * Before including, define SK_VW (floats per vector) and SK_NAME (the function's name).
 *
 * SK_NAME(cols, n0, n1): out[m, n] = alpha * sum_k X[m, k] W[n, k] (+ beta * out[m, n]) for the
 * output columns n0 <= n < n1 of the problem in `cols`.  Each weight row is read from memory once
 * and used against every row of X: a dot-product kernel over the weight in its own layout, with
 * nothing packed but the few rows of X (see _skinny.c).
 */

#define SK_CAT2(a, b) a##b
#define SK_CAT(a, b) SK_CAT2(a, b)
#define SK_VEC SK_CAT(SK_NAME, _vec)
#define SK_LOAD SK_CAT(SK_NAME, _load)
#define SK_SUM SK_CAT(SK_NAME, _sum)

typedef float SK_VEC __attribute__((vector_size(SK_VW * 4)));

static inline SK_VEC SK_LOAD(const float *p) {
    SK_VEC v;
    memcpy(&v, p, sizeof v); /* an unaligned vector load */
    return v;
}

static inline float SK_SUM(SK_VEC v) {
    float s = 0.0f;
    for (int i = 0; i < SK_VW; i++) s += v[i];
    return s;
}

static void SK_NAME(const struct sk_problem *p, int n0, int n1) {
    const int M = p->M, K = p->K, kv = K - K % SK_VW; /* the inner size in whole vectors */
    const long ldx = p->ldx, ldw = p->ldw;
    SK_VEC acc[SK_MAX_ROWS][SK_NB];
    for (int n = n0; n < n1; n += SK_NB) {
        const int nb = n1 - n < SK_NB ? n1 - n : SK_NB;
        const float *w[SK_NB];
        for (int j = 0; j < SK_NB; j++) /* past the last column: re-read a real row, result unused */
            w[j] = p->W + (size_t)(n + (j < nb ? j : 0)) * ldw;
        for (int m = 0; m < M; m++)
            for (int j = 0; j < SK_NB; j++) acc[m][j] = (SK_VEC){0};
        for (int k0 = 0; k0 < kv; k0 += SK_KC) {
            const int k1 = k0 + SK_KC < kv ? k0 + SK_KC : kv;
            int m = 0;
            for (; m + 2 <= M; m += 2) {
                const float *x0 = p->X + (size_t)m * ldx, *x1 = x0 + ldx;
                SK_VEC a00 = acc[m][0], a01 = acc[m][1], a02 = acc[m][2], a03 = acc[m][3];
                SK_VEC a10 = acc[m + 1][0], a11 = acc[m + 1][1], a12 = acc[m + 1][2], a13 = acc[m + 1][3];
                for (int k = k0; k < k1; k += SK_VW) {
                    SK_VEC b0 = SK_LOAD(w[0] + k), b1 = SK_LOAD(w[1] + k);
                    SK_VEC b2 = SK_LOAD(w[2] + k), b3 = SK_LOAD(w[3] + k);
                    SK_KEEP(b0); SK_KEEP(b1); SK_KEEP(b2); SK_KEEP(b3);
                    SK_VEC x = *(const SK_VEC *)(x0 + k);
                    a00 += x * b0; a01 += x * b1; a02 += x * b2; a03 += x * b3;
                    x = *(const SK_VEC *)(x1 + k);
                    a10 += x * b0; a11 += x * b1; a12 += x * b2; a13 += x * b3;
                }
                acc[m][0] = a00; acc[m][1] = a01; acc[m][2] = a02; acc[m][3] = a03;
                acc[m + 1][0] = a10; acc[m + 1][1] = a11; acc[m + 1][2] = a12; acc[m + 1][3] = a13;
            }
            if (m < M) { /* an odd row */
                const float *x0 = p->X + (size_t)m * ldx;
                SK_VEC a00 = acc[m][0], a01 = acc[m][1], a02 = acc[m][2], a03 = acc[m][3];
                for (int k = k0; k < k1; k += SK_VW) {
                    const SK_VEC x = *(const SK_VEC *)(x0 + k);
                    a00 += x * SK_LOAD(w[0] + k); a01 += x * SK_LOAD(w[1] + k);
                    a02 += x * SK_LOAD(w[2] + k); a03 += x * SK_LOAD(w[3] + k);
                }
                acc[m][0] = a00; acc[m][1] = a01; acc[m][2] = a02; acc[m][3] = a03;
            }
        }
        for (int m = 0; m < M; m++) {
            const float *x = p->X + (size_t)m * ldx;
            for (int j = 0; j < nb; j++) {
                float s = SK_SUM(acc[m][j]);
                for (int k = kv; k < K; k++) s += x[k] * w[j][k]; /* the last K % SK_VW terms */
                float *o = p->C + m * p->csm + (long)(n + j) * p->csn;
                *o = p->beta == 0.0f ? p->alpha * s : p->alpha * s + p->beta * *o;
            }
        }
    }
}

#undef SK_VEC
#undef SK_LOAD
#undef SK_SUM
