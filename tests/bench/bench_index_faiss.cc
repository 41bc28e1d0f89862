// Benchmark (not a test): FAISS IndexFlatIP on the same random unit vectors as
// bench_index.c (same generator and seed), one query and a batch of 16. Compiled only by
// bench_index.sh, never part of the build.
//   usage: bench_index_faiss N DIM K REPS IDS_OUT
//   prints: N DIM single_ms batch16_ms_per_batch add_ms
#include <faiss/IndexFlat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static float frand()
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (float)((double)(rng_state >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

static void gen(float *v, size_t n, int dim)
{
    for (size_t i = 0; i < n; i++) {
        double ss = 0;
        for (int d = 0; d < dim; d++) {
            v[i * dim + d] = frand();
            ss += (double)v[i * dim + d] * v[i * dim + d];
        }
        float inv = (float)(1.0 / std::sqrt(ss));
        for (int d = 0; d < dim; d++)
            v[i * dim + d] *= inv;
    }
}

static double now_ms()
{
    return std::chrono::duration<double, std::milli>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

static double median(std::vector<double> v)
{
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

int main(int argc, char **argv)
{
    if (argc != 6) {
        std::fprintf(stderr, "usage: bench_index_faiss N DIM K REPS IDS_OUT\n");
        return 2;
    }
    const int NQ = 16;
    size_t n = std::strtoul(argv[1], nullptr, 10);
    int dim = std::atoi(argv[2]), k = std::atoi(argv[3]), reps = std::atoi(argv[4]);
    std::vector<float> db(n * dim), qs((size_t)NQ * dim), dist((size_t)NQ * k);
    std::vector<faiss::Index::idx_t> ids((size_t)NQ * k);
    gen(db.data(), n, dim);
    gen(qs.data(), NQ, dim);
    faiss::IndexFlatIP index(dim);
    double a0 = now_ms();
    index.add((faiss::Index::idx_t)n, db.data());
    double add_ms = now_ms() - a0;
    index.search(NQ, qs.data(), k, dist.data(), ids.data()); // warm-up
    std::vector<double> t1, tb;
    for (int r = 0; r < reps; r++) {
        for (int i = 0; i < NQ; i++) {
            double t0 = now_ms();
            index.search(1, qs.data() + (size_t)i * dim, k, dist.data() + (size_t)i * k,
                         ids.data() + (size_t)i * k);
            t1.push_back(now_ms() - t0);
        }
        double t0 = now_ms();
        index.search(NQ, qs.data(), k, dist.data(), ids.data());
        tb.push_back(now_ms() - t0);
    }
    for (int i = 0; i < NQ; i++)
        index.search(1, qs.data() + (size_t)i * dim, k, dist.data() + (size_t)i * k,
                     ids.data() + (size_t)i * k);
    if (FILE *fp = std::fopen(argv[5], "w")) {
        for (int i = 0; i < NQ; i++) {
            for (int j = 0; j < k; j++)
                std::fprintf(fp, "%s%lld", j ? " " : "", (long long)ids[(size_t)i * k + j]);
            std::fputc('\n', fp);
        }
        std::fclose(fp);
    }
    std::printf("%zu %d %.4f %.4f %.1f\n", n, dim, median(t1), median(tb), add_ms);
    return 0;
}
