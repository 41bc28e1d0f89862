/* Fuzz target: the seed archive reader (rd_index_seed_read, include/radraft/index.h).
 *
 * The input is a seed archive file as `radraft serve` imports the one beside its model on
 * first start (rd_index_load) and `radraft archive import --seed` reads any: it is written to
 * a file in the scratch folder and read into a fresh in-memory index of the shipped model's
 * version and embedding size (those of models/cxr-resnet-small, read once at start, so that
 * the corpus made from that model reaches past the version check). An archive that is read
 * is then searched and written back out, which reads every entry it added. */
#include <stdlib.h>

#include "fuzz.h"
#include "radraft/index.h"
#include "radraft/nn.h"

static char g_version[RD_INDEX_VERSION_MAX];
static int g_dim;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    rd_nn_model *m = NULL;
    rd_error err;
    (void)argc;
    (void)argv;
    rd_fuzz_init();
    if (rd_nn_model_load(&m, RD_FUZZ_MODELS_DIR "/cxr-resnet-small", &err) != RD_OK) {
        fprintf(stderr, "fuzz_seed: the shipped model: %s\n", rd_error_message(&err));
        abort();
    }
    snprintf(g_version, sizeof g_version, "%s", rd_nn_model_info(m)->version);
    g_dim = rd_nn_model_info(m)->embedding_dim;
    rd_nn_model_free(m);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = rd_fuzz_write_file("seed-archive.bin", data, size);
    rd_index *ix = NULL;
    rd_error err;
    long added = 0;
    char out[700];

    if (rd_index_create(&ix, g_version, g_dim, &err) != RD_OK)
        abort();
    if (rd_index_seed_read(ix, NULL, path, 0, &added, &err) == RD_OK && added > 0) {
        float *q = calloc((size_t)g_dim, sizeof *q);
        rd_index_hit hits[4];
        rd_index_query query = {0};
        rd_index_params params;
        int n_hits = 0;
        if (!q)
            abort();
        q[0] = 1;
        query.embedding = q;
        rd_index_params_default(&params);
        params.k = 4;
        if (rd_index_search(ix, &query, &params, hits, &n_hits, &err) == RD_OK)
            rd_index_hits_clear(hits, n_hits);
        free(q);
        snprintf(out, sizeof out, "%s/out.bin", rd_fuzz_dir());
        (void)rd_index_seed_write(ix, out, 1, NULL, &err);
    }
    rd_index_free(ix);
    return 0;
}
