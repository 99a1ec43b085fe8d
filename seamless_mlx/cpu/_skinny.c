/* Few-row float32 products for MLX's CPU backend, behind its cblas_sgemm.
 *
 * A decoder step over a batch or beams multiplies a few rows (2..32) by every weight matrix.  A
 * BLAS GEMM packs the weight into its own panel layout on every call, which reads and writes the
 * whole weight once more than the product itself needs; with a few rows that copy is most of the
 * time (benchmarks/README.md).  Here each weight row is read once, in its own layout, and dotted
 * with every row of the other operand, which is copied once into a small buffer whose stride
 * keeps its rows from sharing cache sets.
 *
 * seamless_sgemm has cblas_sgemm's signature; seamless_mlx/cpu/blas.py points MLX's calls at it.
 * It takes a row-major C = alpha * A @ B^T + beta * C in which A or B has 2..max_rows rows, and
 * hands every other call to the BLAS it was given (seamless_set_next).  Large products are cut
 * into column chunks shared by the calling thread and a small pool of worker threads.
 *
 * The kernel is compiled once per instruction set (AVX-512, AVX2 + FMA, the compiler's baseline)
 * from _skinny_kernel.h, and picked at run time.  Standard C11 and POSIX threads; no Python API
 * (the library is opened with ctypes).
 */

#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SK_MAX_ROWS 32 /* the most rows a call may have (the accumulators are sized for it) */
#define SK_NB 4        /* weight rows (output columns) dotted together */
#define SK_KC 256      /* inner-dimension block: the few rows' block stays in L1 */
#define SK_CHUNK 64    /* output columns per task of a parallel product */
#define SK_PAD 16      /* floats added to the rows' buffer stride (not a multiple of 4 KB) */

enum { CBLAS_ROW_MAJOR = 101, CBLAS_NO_TRANS = 111, CBLAS_TRANS = 112 };

struct sk_problem {
    int M, N, K; /* rows, output columns, inner size */
    long ldx, ldw, csm, csn;
    const float *X, *W;
    float *C;
    float alpha, beta;
};

typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int,
                         float, float *, int);
typedef void (*kernel_fn)(const struct sk_problem *, int, int);

/* SK_KEEP(v): hold v in a register.  Without it the compiler folds each weight load into both
 * rows' multiply-adds, loading every weight vector twice: the loads, not the arithmetic, then
 * bound the kernel. */
#if defined(__GNUC__) && defined(__x86_64__)
#define SK_KEEP_IN_REGISTER(v) __asm__("" : "+x"(v))
#elif defined(__GNUC__) && defined(__aarch64__)
#define SK_KEEP_IN_REGISTER(v) __asm__("" : "+w"(v))
#else
#define SK_KEEP_IN_REGISTER(v) (void)0
#endif
#define SK_KEEP SK_KEEP_IN_REGISTER

/* --- the kernel, once per instruction set --------------------------------------------------- */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
/* 64-byte vectors in static functions built for AVX2: no ABI is exposed, the note is moot */
#pragma GCC diagnostic ignored "-Wpsabi"
#pragma GCC push_options
#pragma GCC target("avx512f")
#define SK_VW 16
#define SK_NAME sk_avx512
#include "_skinny_kernel.h"
#undef SK_NAME
#undef SK_VW
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define SK_VW 8
#define SK_NAME sk_avx2
#include "_skinny_kernel.h"
#undef SK_NAME
#undef SK_VW
/* the AVX-512 kernel's 16-lane logic, built for AVX2: lets tests check that logic anywhere (its
 * vectors span two registers, so they cannot be held in one) */
#undef SK_KEEP
#define SK_KEEP(v) (void)0
#define SK_VW 16
#define SK_NAME sk_wide_avx2
#include "_skinny_kernel.h"
#undef SK_NAME
#undef SK_VW
#undef SK_KEEP
#define SK_KEEP SK_KEEP_IN_REGISTER
#pragma GCC pop_options
#define SK_HAVE_X86 1
#endif

#define SK_VW 4
#define SK_NAME sk_baseline
#include "_skinny_kernel.h"
#undef SK_NAME
#undef SK_VW

#define SK_MAX_VW 16

static kernel_fn pick_kernel(const char *name) {
#ifdef SK_HAVE_X86
    __builtin_cpu_init();
    int avx512 = __builtin_cpu_supports("avx512f");
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (!strcmp(name, "avx512")) return avx512 ? sk_avx512 : NULL;
    if (!strcmp(name, "avx2")) return avx2 ? sk_avx2 : NULL;
    if (!strcmp(name, "wide-avx2")) return avx2 ? sk_wide_avx2 : NULL;
    if (!strcmp(name, "auto")) return avx512 ? sk_avx512 : avx2 ? sk_avx2 : sk_baseline;
#else
    if (!strcmp(name, "auto")) return sk_baseline;
#endif
    if (!strcmp(name, "baseline")) return sk_baseline;
    return NULL;
}

static _Atomic(kernel_fn) kernel;
static _Atomic(sgemm_fn) next_sgemm;
static atomic_int max_rows = 16;
static atomic_int min_inner = 256; /* shorter dot products: the BLAS does better (one sum per output) */
static atomic_long parallel_min_work = 1L << 20; /* multiply-adds: smaller products stay on one thread */
static atomic_long taken; /* calls this library computed (tests read it) */

/* --- a pool of worker threads ----------------------------------------------------------------- */

static struct {
    pthread_mutex_t owner;       /* held by the call that uses the pool; others run alone */
    pthread_mutex_t lock;        /* guards the fields below */
    pthread_cond_t wake, done;
    int wanted, started;         /* worker threads asked for, and running */
    unsigned long generation;    /* bumped for each job */
    int working;                 /* workers still on the current job */
    const struct sk_problem *job;
    kernel_fn fn;
    int chunks;
    atomic_int next_chunk;
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
          PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, NULL, NULL, 0, 0};

static void run_chunks(const struct sk_problem *p, kernel_fn fn, int chunks) {
    for (;;) {
        int c = atomic_fetch_add(&pool.next_chunk, 1);
        if (c >= chunks) return;
        int n1 = (c + 1) * SK_CHUNK;
        fn(p, c * SK_CHUNK, n1 < p->N ? n1 : p->N);
    }
}

static void *worker(void *arg) {
    unsigned long seen = (unsigned long)(uintptr_t)arg; /* the generation when it was started */
    pthread_mutex_lock(&pool.lock);
    for (;;) {
        while (pool.generation == seen) pthread_cond_wait(&pool.wake, &pool.lock);
        seen = pool.generation;
        const struct sk_problem *p = pool.job;
        kernel_fn fn = pool.fn;
        int chunks = pool.chunks;
        pthread_mutex_unlock(&pool.lock);
        run_chunks(p, fn, chunks);
        pthread_mutex_lock(&pool.lock);
        if (--pool.working == 0) pthread_cond_signal(&pool.done);
    }
    return NULL;
}

/* Called with pool.lock held: start workers up to the number wanted. */
static void grow_pool(void) {
    while (pool.started < pool.wanted) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        int failed = pthread_create(&t, &attr, worker, (void *)(uintptr_t)pool.generation);
        pthread_attr_destroy(&attr);
        if (failed) break;
        pool.started++;
    }
}

static void after_fork_in_child(void) {
    /* the workers did not come along: start afresh */
    pthread_mutex_init(&pool.owner, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.wake, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.started = 0;
    pool.working = 0;
}

static pthread_once_t fork_handler_once = PTHREAD_ONCE_INIT;
static void install_fork_handler(void) { pthread_atfork(NULL, NULL, after_fork_in_child); }

static void run(const struct sk_problem *p, kernel_fn fn) {
    long work = (long)p->M * p->N * p->K;
    int chunks = (p->N + SK_CHUNK - 1) / SK_CHUNK;
    if (work < atomic_load(&parallel_min_work) || chunks < 2 || pool.wanted == 0 ||
        pthread_mutex_trylock(&pool.owner) != 0) {
        fn(p, 0, p->N);
        return;
    }
    pthread_mutex_lock(&pool.lock);
    grow_pool();
    if (pool.started == 0) { /* no worker could be started */
        pthread_mutex_unlock(&pool.lock);
        pthread_mutex_unlock(&pool.owner);
        fn(p, 0, p->N);
        return;
    }
    pool.job = p;
    pool.fn = fn;
    pool.chunks = chunks;
    atomic_store(&pool.next_chunk, 0);
    pool.working = pool.started;
    pool.generation++;
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    run_chunks(p, fn, chunks);
    pthread_mutex_lock(&pool.lock);
    while (pool.working > 0) pthread_cond_wait(&pool.done, &pool.lock);
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.owner);
}

/* --- the cblas_sgemm entry point ------------------------------------------------------------ */

/* The product ``C = alpha * X @ W^T + beta * C`` with X [rows, K] and W [cols, K], each row
 * contiguous; out[m, n] at C + m * csm + n * csn.  Returns 0 when it could not run (no memory). */
static int skinny(int rows, int cols, int K, float alpha, const float *X, long ldx, const float *W,
                  long ldw, float beta, float *C, long csm, long csn, kernel_fn fn) {
    long stride = ((long)K + SK_MAX_VW - 1) / SK_MAX_VW * SK_MAX_VW + SK_PAD;
    float *rows_copy = aligned_alloc(64, (size_t)rows * stride * sizeof(float));
    if (rows_copy == NULL) return 0;
    for (int m = 0; m < rows; m++) memcpy(rows_copy + m * stride, X + m * ldx, (size_t)K * sizeof(float));
    struct sk_problem p = {rows, cols, K, stride, ldw, csm, csn, rows_copy, W, C, alpha, beta};
    run(&p, fn);
    free(rows_copy);
    return 1;
}

void seamless_sgemm(int order, int trans_a, int trans_b, int M, int N, int K, float alpha, const float *A,
                    int lda, const float *B, int ldb, float beta, float *C, int ldc) {
    kernel_fn fn = atomic_load(&kernel);
    int limit = atomic_load(&max_rows);
    if (fn != NULL && order == CBLAS_ROW_MAJOR && trans_a == CBLAS_NO_TRANS && trans_b == CBLAS_TRANS &&
        K > 0 && K >= atomic_load(&min_inner) && alpha != 0.0f) {
        /* C [M, N] = A [M, K] @ B [N, K]^T: the few rows are A's (C row by row) or B's (C column by column) */
        if ((M >= 2 && M <= limit && M <= N && skinny(M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, 1, fn)) ||
            (N >= 2 && N <= limit && N < M && skinny(N, M, K, alpha, B, ldb, A, lda, beta, C, 1, ldc, fn))) {
            atomic_fetch_add(&taken, 1);
            return;
        }
    }
    sgemm_fn next = atomic_load(&next_sgemm);
    if (next != NULL) next(order, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

/* --- settings (from Python through ctypes) -------------------------------------------------- */

/* The cblas_sgemm every call this library does not take goes to. */
void seamless_set_next(sgemm_fn fn) { atomic_store(&next_sgemm, fn); }

sgemm_fn seamless_get_next(void) { return atomic_load(&next_sgemm); }

/* Which kernel runs: "auto", "avx512", "avx2", "wide-avx2", "baseline", or "off" (every call
 * goes to the next BLAS).  Returns 0 when this CPU or build has no such kernel (nothing changes). */
int seamless_set_kernel(const char *name) {
    if (!strcmp(name, "off")) {
        atomic_store(&kernel, (kernel_fn)NULL);
        return 1;
    }
    kernel_fn fn = pick_kernel(name);
    if (fn == NULL) return 0;
    atomic_store(&kernel, fn);
    return 1;
}

/* Calls with 2..rows rows and an inner size of at least inner are taken (rows at most
 * SK_MAX_ROWS); products of at least work multiply-adds are shared with threads - 1 workers. */
int seamless_configure(int rows, int inner, long work, int threads) {
    if (rows < 0 || rows > SK_MAX_ROWS || inner < 1 || work < 0 || threads < 1) return 0;
    pthread_once(&fork_handler_once, install_fork_handler);
    atomic_store(&max_rows, rows);
    atomic_store(&min_inner, inner);
    atomic_store(&parallel_min_work, work);
    pthread_mutex_lock(&pool.owner);
    pthread_mutex_lock(&pool.lock);
    pool.wanted = threads - 1; /* workers already started stay; they are only asked for more */
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.owner);
    return 1;
}

long seamless_taken(void) { return atomic_load(&taken); }
