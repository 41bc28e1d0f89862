/* radraft — the archive of past studies and similar-case retrieval.
 *
 * An rd_index holds, in memory, the archive entries of ONE model version: per entry its id,
 * study UID, a hash of the patient id, view family, study date, source, the finding states
 * of its report, optionally the report text, and the L2-normalized embedding the encoder of
 * that model version computed. Embeddings of different model versions live in different
 * spaces and are never mixed: an index refuses entries of another dimension, and loads from
 * the store only the rows of its own model version.
 *
 * Search is exact: the cosine similarity of the query with every entry, then the k best
 * that pass the filters: never the same patient (hash) or the same study, the same view
 * family, an optional date window and a minimum similarity. Hits are ordered by
 * similarity, larger first; equal similarities by id, smaller first. One query is one pass
 * over the rows that scores them and keeps the k best as it goes (AVX2 / AVX-512 kernels
 * chosen at run time, portable C elsewhere), so that it runs at about the speed memory
 * delivers the rows, on one thread or split across several (rd_index_params.threads); the
 * filters are looked at only for an entry that would enter the top k. A batch of queries
 * is scored with cblas_sgemm (one read of the rows for all of them).
 *
 * Storage (rd_index_set_storage, configuration key retrieval.storage): f32 keeps the rows
 * only as floats. f16 and int8 keep a second, smaller copy (half or a quarter of the
 * floats' bytes, plus 4 bytes a row for int8) that a single query scans instead; the best
 * 4k + 32 candidates are then re-ranked with the f32 rows, so every similarity returned is
 * the exact f32 one and the top k is the f32 top k unless an entry of it fell outside the
 * candidates (recall@10 is measured by tests/bench/bench_index.sh). The f32 rows stay in
 * memory for the re-ranking, for batches and for seed files: f16 costs 1.5x the memory of
 * f32, int8 about 1.25x.
 *
 * Persistence: the store's `archive` table (include/radraft/store.h) holds every entry with
 * its embedding and model version. rd_index_load() reads the rows of one model version at
 * start; rd_index_add() with a store writes the row first and then adds the entry to memory,
 * so that a new entry is searchable at once, without a restart.
 *
 * Threads: searches may run in any number of threads at once, concurrently with additions
 * (a read-write lock; a search sees the entries added before it took the lock). The store
 * handle passed to rd_index_add is the calling thread's own (rd_store is one connection).
 *
 * Seed archive: a file shipped beside a model (models/<model>/seed-archive.bin) holding
 * entries' states, view, patient hash, date and embedding, never images or report text.
 * Layout: 8 bytes "RDSEED01", 8-byte little-endian length N of a JSON header, the N-byte
 * JSON header {"format": "radraft-seed-archive", "version": 1, "model_version": ...,
 * "dim": D, "count": C, "entries": [{"key": <64 hex>, "study": <64 hex>, "patient": <64 hex
 * or "">, "view": "frontal", "date": YYYYMMDD, "states": "<15 digits 0-3, rd_finding
 * order>"}, ...]}, then C x D little-endian float32. "key" and "study" are SHA-256 hex of
 * the original key and study UID, so that a shipped seed names no study. Reading is bounded
 * and validated: a truncated or hostile file is RD_E_CORRUPT / RD_E_TOO_LARGE, never a
 * crash.
 */
#ifndef RADRAFT_INDEX_H
#define RADRAFT_INDEX_H

#include <stddef.h>
#include <stdint.h>

#include "radraft/dicom.h"
#include "radraft/error.h"
#include "radraft/findings.h"
#include "radraft/generator.h"
#include "radraft/limits.h"
#include "radraft/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Caps on what an index accepts (from callers, the store and seed files). */
#define RD_INDEX_MAX_DIM 4096
#define RD_INDEX_MAX_K 1024
#define RD_INDEX_MAX_ENTRIES 50000000L  /* 50 M entries */
#define RD_INDEX_MAX_TEXT (64u * 1024u) /* findings or impression text, bytes */
#define RD_INDEX_MAX_BATCH 4096         /* queries of one batch search */
#define RD_INDEX_KEY_MAX 128            /* entry key (an instance UID, an image name) */
#define RD_INDEX_VERSION_MAX 128        /* model version string */
#define RD_INDEX_SEED_MAX_HEADER (256u << 20)
#define RD_INDEX_SEED_FILE "seed-archive.bin"

typedef enum rd_view_family {
    RD_VIEW_UNKNOWN = 0,
    RD_VIEW_FRONTAL = 1, /* PA, AP */
    RD_VIEW_LATERAL = 2  /* LL, RL, LATERAL, LAT */
} rd_view_family;

typedef enum rd_archive_source {
    RD_ARCHIVE_SEED = 0,   /* from a seed archive file shipped with the model */
    RD_ARCHIVE_IMPORT = 1, /* radraft archive import */
    RD_ARCHIVE_SIGNED = 2  /* a report signed in review */
} rd_archive_source;
#define RD_ARCHIVE_SOURCE_COUNT 3

/* "unknown", "frontal", "lateral". */
const char *rd_view_family_name(rd_view_family v);
/* Parses the names above; RD_E_INVALID when unknown. */
rd_status rd_view_family_parse(const char *name, rd_view_family *out, rd_error *err);
/* The family of a DICOM View Position or an NIH view column ("PA", "AP", "LL", "RL",
 * "LATERAL", case-insensitive, spaces ignored); RD_VIEW_UNKNOWN for anything else. */
rd_view_family rd_view_family_from_position(const char *view_position);

/* "seed", "import", "signed". */
const char *rd_archive_source_name(rd_archive_source s);
rd_status rd_archive_source_parse(const char *name, rd_archive_source *out, rd_error *err);

/* The patient hash kept instead of a patient id: lowercase hex SHA-256 of the site salt, a
 * NUL byte and the patient id (so "ab"+"c" and "a"+"bc" differ). `salt` may be NULL or "".
 * A NULL or empty patient id gives "" (unknown patient: no same-patient filtering), so that
 * studies without an ID never exclude each other. */
void rd_index_patient_hash(const char *salt, const char *patient_id, char out[RD_SHA256_HEX_SIZE]);

/* A date YYYYMMDD (e.g. from DICOM StudyDate "20261122") as an int; 0 when `text` is NULL,
 * empty or not a valid date. */
int rd_index_parse_date(const char *text);

/* One archive entry as handed to rd_index_add. Strings are borrowed for the call. */
typedef struct rd_index_entry {
    const char *key;          /* unique within a model version (SOP Instance UID, image name);
                               * required, at most RD_INDEX_KEY_MAX bytes */
    const char *study_uid;    /* study identity for the same-study filter; required, <= 64 */
    const char *patient_hash; /* 64 hex digits (rd_index_patient_hash), or NULL/"" unknown */
    rd_view_family view;
    int study_date; /* YYYYMMDD, 0 unknown */
    rd_archive_source source;
    rd_finding_state state[RD_FINDING_COUNT];
    const char *findings_text;   /* NULL when none; at most RD_INDEX_MAX_TEXT bytes */
    const char *impression_text; /* NULL when none */
} rd_index_entry;

typedef struct rd_index rd_index;

/* Creates an empty in-memory index for embeddings of `dim` floats (1..RD_INDEX_MAX_DIM)
 * from model version `model_version` (1..RD_INDEX_VERSION_MAX-1 bytes). On success *out is
 * the caller's, to free with rd_index_free. */
rd_status rd_index_create(rd_index **out, const char *model_version, int dim, rd_error *err);

/* Creates an index and loads every archive row of `model_version` from the store. A row of
 * that version whose embedding is not `dim` floats is RD_E_CORRUPT (the index refuses to mix
 * spaces). When `seed_path` is not NULL and no row of that version exists yet, the seed
 * file is imported first (rows with source "seed", then memory); a missing seed file is
 * not an error (logged at info), a bad one is. *n_seeded (may be NULL) gets the number of
 * entries imported from the seed. */
rd_status rd_index_load(rd_index **out, rd_store *store, const char *model_version, int dim,
                        const char *seed_path, long *n_seeded, rd_error *err);

/* Accepts NULL. */
void rd_index_free(rd_index *ix);

/* What a single-query search scans (see the top of this file). */
typedef enum rd_index_storage {
    RD_INDEX_STORAGE_F32 = 0,
    RD_INDEX_STORAGE_F16 = 1, /* IEEE half precision, then f32 re-ranking */
    RD_INDEX_STORAGE_INT8 = 2 /* int8 with a scale per row, then f32 re-ranking */
} rd_index_storage;

/* "f32", "f16", "int8". */
const char *rd_index_storage_name(rd_index_storage s);
/* Parses the names above; RD_E_INVALID when unknown. */
rd_status rd_index_storage_parse(const char *name, rd_index_storage *out, rd_error *err);

/* Makes the index keep (and scan) its rows in `storage` from now on: the reduced copy of
 * every entry is built at once (memory for all of them, under the write lock) and kept up
 * to date by additions and rd_index_sync. f32 frees the copy. Errors: RD_E_INVALID,
 * RD_E_NOMEM (the index is unchanged then). */
rd_status rd_index_set_storage(rd_index *ix, rd_index_storage storage, rd_error *err);
rd_index_storage rd_index_get_storage(rd_index *ix);

const char *rd_index_model_version(const rd_index *ix);
int rd_index_dim(const rd_index *ix);
/* Number of entries now (it may grow while other threads add). */
long rd_index_count(rd_index *ix);

/* Brings an index loaded from `store` (rd_index_load) up to date with rows that other
 * connections added or replaced since it was loaded or last synced: new rows are added
 * (keys already in memory are skipped), and after a deletion (a signed entry replaced by an
 * amendment) the index is rebuilt from the store and swapped in whole, so that a search
 * never sees it half loaded. Cheap when nothing changed (two single-row queries). Safe
 * with concurrent searches; *added (may be NULL) gets the change in the number of entries.
 * Errors: those of the store. */
rd_status rd_index_sync(rd_index *ix, rd_store *store, long *added, rd_error *err);

/* Adds one entry: the embedding (`dim` finite floats, not all zero) is L2-normalized on a
 * copy. With `store` (the calling thread's handle) the row is written first (model version
 * and embedding included); when a row with the same key and model version already exists
 * nothing is added and *added is 0. Without a store the entry lives in memory only (a key
 * already in memory is also not added again). *id (may be NULL) gets the entry's id (the
 * row id, or a sequential number in memory), *added (may be NULL) 1 when it was new.
 * Errors: RD_E_INVALID (bad entry or embedding), RD_E_TOO_LARGE, RD_E_NOMEM, RD_E_DB. */
rd_status rd_index_add(rd_index *ix, rd_store *store, const rd_index_entry *e,
                       const float *embedding, int64_t *id, int *added, rd_error *err);

/* Adds `n` entries at once (row i's embedding at embeddings + i * dim), in one store
 * transaction when `store` is not NULL: all rows are written or none. ids[i] and added[i]
 * (either array may be NULL) as for rd_index_add. Much faster than n rd_index_add calls
 * with a store (one durable commit instead of n). */
rd_status rd_index_add_batch(rd_index *ix, rd_store *store, const rd_index_entry *entries, size_t n,
                             const float *embeddings, int64_t *ids, int *added, rd_error *err);

/* What a search looks for and what it must not return. Strings borrowed for the call. */
typedef struct rd_index_query {
    const float *embedding;   /* dim floats; normalized by the search (need not be unit) */
    const char *study_uid;    /* entries of this study are excluded; NULL/"": none */
    const char *patient_hash; /* entries of this patient are excluded; NULL/"": none */
    rd_view_family view;      /* only entries of this family; RD_VIEW_UNKNOWN: any view */
    int study_date;           /* YYYYMMDD; used with date_window_days */
} rd_index_query;

/* The query of a study's image from its metadata: its own study and patient excluded (the
 * patient as the archive keeps it: rd_index_patient_hash with the site's `salt`, into
 * `patient_hash`), its view family and date. `embedding` is the caller's to set; `m` and
 * `patient_hash` must outlive the query. */
void rd_index_query_from_meta(rd_index_query *q, const rd_dicom_meta *m, const char *salt,
                              char patient_hash[RD_SHA256_HEX_SIZE]);

/* Search settings: from the configuration (retrieval.*) via rd_index_params_default and the
 * caller; see rd_retrieval_settings below. */
typedef struct rd_index_params {
    int k;                 /* 1..RD_INDEX_MAX_K hits at most */
    double min_similarity; /* hits below it are dropped; -1 keeps everything */
    int date_window_days;  /* > 0 and the query has a date: only entries dated within this
                            * many days of it (entries without a date excluded); 0: any */
    int with_text;         /* non-zero: hits carry copies of the report texts */
    int threads;           /* threads one single-query search may use: <= 1 the calling
                            * thread only; n > 1 up to n (at most 64), each with at least
                            * 2 Mi floats of rows, so a small archive stays on one. The
                            * result does not depend on it. A batch uses OpenBLAS's threads. */
} rd_index_params;

/* k 10, min_similarity -1, no date window, no text, 1 thread. */
void rd_index_params_default(rd_index_params *p);

/* One neighbour. With with_text the texts are owned by the hit (rd_index_hits_clear). */
typedef struct rd_index_hit {
    int64_t id;
    float similarity; /* cosine similarity in [-1, 1] */
    char study_uid[RD_UID_SIZE];
    char patient_hash[RD_SHA256_HEX_SIZE];
    rd_view_family view;
    int study_date;
    rd_archive_source source;
    rd_finding_state state[RD_FINDING_COUNT];
    char *findings_text;   /* NULL unless with_text and the entry has it */
    char *impression_text; /* NULL unless with_text and the entry has it */
} rd_index_hit;

/* Exact top-k of one query. `hits` has room for p->k hits; *n_hits gets how many were
 * found (0..k). On failure no hit holds anything to free. Errors: RD_E_INVALID (bad query
 * or params), RD_E_NOMEM. */
rd_status rd_index_search(rd_index *ix, const rd_index_query *q, const rd_index_params *p,
                          rd_index_hit *hits, int *n_hits, rd_error *err);

/* Exact top-k of `nq` queries (1..RD_INDEX_MAX_BATCH) at once (sgemm over the f32 rows,
 * whatever the storage; nq == 1 is rd_index_search): query i's hits are hits[i * p->k
 * ...], their number n_hits[i]. Same results as nq single searches (up to float rounding
 * between the scan kernels and sgemm when similarities tie within ~1e-6). */
rd_status rd_index_search_batch(rd_index *ix, const rd_index_query *qs, int nq,
                                const rd_index_params *p, rd_index_hit *hits, int *n_hits,
                                rd_error *err);

/* Frees the texts of `n` hits and sets them to NULL. Accepts NULL. */
void rd_index_hits_clear(rd_index_hit *hits, int n);

/* ---- votes for the generator ---- */

/* How neighbours vote and how votes combine with the encoder's own scores. */
typedef struct rd_vote_params {
    double uncertain_value; /* what an uncertain neighbour counts (present 1, absent and not
                             * mentioned 0) */
    double temperature;     /* > 0: weight exp((sim - max_sim) / temperature); 0: weight
                             * max(sim, 0) (similarity-weighted) */
    double encoder_weight;  /* w in combined = w * encoder + (1 - w) * votes, in [0, 1] */
} rd_vote_params;

/* uncertain 0.5, temperature 0 (similarity weights), encoder_weight 0.5. */
void rd_vote_params_default(rd_vote_params *p);

/* Similarity-weighted vote of `n_hits` neighbours for every finding (No Finding included):
 * votes[f] = sum_i w_i * value(state_i[f]) / sum_i w_i, in [0, 1]. Returns the total weight
 * (0 when there are no hits or every weight is 0: then votes are all 0 and carry no
 * information). */
double rd_index_votes(const rd_index_hit *hits, int n_hits, const rd_vote_params *p,
                      double votes[RD_FINDING_COUNT]);

/* combined[f] = w * encoder[f] + (1 - w) * votes[f] for the RD_FINDING_N_ABNORMAL abnormal
 * findings; when `total_weight` (rd_index_votes' result) is 0 the encoder's scores are
 * used unchanged. `encoder` may be NULL (no encoder scores): then combined = votes. */
void rd_index_combine(const double *encoder, const double votes[RD_FINDING_COUNT],
                      double total_weight, const rd_vote_params *p,
                      double combined[RD_FINDING_N_ABNORMAL]);

/* The scores a draft uses, in one call: the hits' votes (rd_index_votes) combined with the
 * encoder's scores (rd_index_combine; `encoder` may be NULL) and clamped to [0, 1] into
 * `combined`. Returns the votes' total weight. */
double rd_index_scores(const rd_index_hit *hits, int n_hits, const double *encoder,
                       const rd_vote_params *p, double votes[RD_FINDING_COUNT],
                       double combined[RD_FINDING_N_ABNORMAL]);

/* Fills `out[0..n_hits)` for rd_generator_draft_*: similarity, states and the hits' texts
 * (borrowed from the hits: keep them until the draft is written). */
void rd_index_evidence(const rd_index_hit *hits, int n_hits, rd_evidence_case *out);

/* ---- retrieval settings (configuration and model) ---- */

/* Everything retrieval needs, resolved: configuration keys retrieval.* first; a key left at
 * its "from the model" default (-1) takes the model's value from the "retrieval" member of
 * its model.json ({"k": 10, "encoder_weight": 0.6, "min_similarity": 0.1,
 * "uncertain_value": 0.5, "temperature": 0.05}), else the built-in default above. */
typedef struct rd_retrieval_settings {
    rd_index_params search;
    rd_vote_params votes;
    rd_index_storage storage; /* retrieval.storage (rd_index_set_storage); f32 without cfg */
} rd_retrieval_settings;

struct rd_config;
/* Resolves the settings from `cfg` (may be NULL: built-in defaults) and the model
 * description `model_json` (the model.json text, may be NULL). A malformed "retrieval"
 * member is RD_E_CONFIG naming the model. */
rd_status rd_retrieval_settings_resolve(rd_retrieval_settings *out, const struct rd_config *cfg,
                                        const char *model_json, rd_error *err);

/* As rd_retrieval_settings_resolve, reading the model description from `model_path` (a
 * folder holding model.json, or the JSON file itself; the encoder.model key). */
rd_status rd_retrieval_settings_load(rd_retrieval_settings *out, const struct rd_config *cfg,
                                     const char *model_path, rd_error *err);

/* ---- seed archive files ---- */

/* The default seed file of a model: RD_INDEX_SEED_FILE in the model's folder (`model_path`
 * is the folder, or its model.json). RD_E_TOO_LARGE when it does not fit `size`. */
rd_status rd_index_seed_default_path(const char *model_path, char *out, size_t size, rd_error *err);

/* Writes every entry of the index to a seed file (atomically: temporary file + rename),
 * without report texts. Entries of source "signed" are written only when `include_signed`
 * is non-zero (a site sharing its seed decides). *n_written (may be NULL) gets the count. */
rd_status rd_index_seed_write(rd_index *ix, const char *path, int include_signed, long *n_written,
                              rd_error *err);

/* Reads a seed file into the index (source "seed"), through the store when `store` is not
 * NULL (rows, then memory). The file's model version and dim must be the index's
 * (RD_E_MODEL otherwise). A file over `max_bytes` (0: 4 GiB) is RD_E_TOO_LARGE; anything
 * malformed is RD_E_CORRUPT naming the file; nothing is added then. *n_added (may be NULL)
 * gets the number of new entries. */
rd_status rd_index_seed_read(rd_index *ix, rd_store *store, const char *path, size_t max_bytes,
                             long *n_added, rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
