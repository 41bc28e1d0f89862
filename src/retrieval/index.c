/* radraft — the in-memory archive index: exact cosine top-k with filters (one query: a
 * fused scan over the rows, scan.c; a batch: OpenBLAS sgemm), optional reduced-precision
 * copies of the rows with exact re-ranking, persistence through the store's archive table,
 * votes for the generator, seed files. */
#include "radraft/index.h"

#include <cblas.h>
#include <cjson/cJSON.h>
#include <ctype.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "radraft/config.h"
#include "radraft/log.h"
#include "radraft/nn.h"
#include "base/util.h"
#include "retrieval/index_int.h"

/* Entries scored per BLAS call of a batch search: bounds the score buffer whatever the
 * archive size. */
#define SCORE_BUDGET (1u << 20) /* floats of one score block (4 MiB) */
#define MIN_BLOCK_ROWS 256
/* Rows a single-query scan scores per kernel call: their similarities (256 bytes) stay in
 * L1 until the top-k looks at them, so the rows are read once and nothing else is. */
#define SCAN_ROWS 64
/* Sequential streams a scan reads side by side (a multiple of 4, the kernels' group): 4,
 * 8 and 16 measured the same within noise, 1 about 1.2x slower. */
#define SCAN_STREAMS 8
/* A thread of a single-query search gets at least this many floats of rows (8 MiB, about
 * half a millisecond of memory traffic): starting a thread costs tens of microseconds. */
#define THREAD_MIN_FLOATS ((size_t)1 << 21)
#define MAX_SEARCH_THREADS 64
#define NO_DAY INT_MIN

static const char SEED_MAGIC[8] = {'R', 'D', 'S', 'E', 'E', 'D', '0', '1'};

/* What the index keeps of an entry besides its embedding. Immutable once added, so that a
 * search holding the read lock may copy from it. */
typedef struct ix_meta {
    int64_t id;
    char *key;
    char *findings_text;
    char *impression_text;
    char study_uid[RD_UID_SIZE];
    char patient_hash[RD_SHA256_HEX_SIZE];
    int study_date;
    int day; /* days since 1970-01-01, NO_DAY when undated */
    unsigned char view, source;
    unsigned char state[RD_FINDING_COUNT];
} ix_meta;

struct rd_index {
    char version[RD_INDEX_VERSION_MAX];
    int dim;
    pthread_rwlock_t lock;
    rd__index_isa isa; /* the kernels of every scan (the CPU's best unless a test chose) */
    const rd__scan_ops *ops;
    size_t n, cap;
    float *emb; /* cap x dim, row i = entry i, unit norm */
    /* With reduced-precision storage, a second copy of the rows that single-query scans
     * read instead of `emb` (which re-ranking still reads): cap x dim halfs (f16) or int8
     * with a scale per row (x[d] ~ low[d] * low_scale). NULL with f32 storage. */
    rd_index_storage storage;
    void *low;
    float *low_scale;
    ix_meta *meta;
    int64_t next_id; /* ids of memory-only entries */
    /* Open-addressing set of entry positions + 1 keyed by key (0 = empty slot), so that a
     * key is added once without scanning the archive. */
    size_t *slots;
    size_t n_slots; /* a power of two, kept at least twice n */
    /* The store's archive marks as of the last load or sync (rd_index_sync); guarded by
     * sync_mu, which one syncing thread holds at a time. */
    pthread_mutex_t sync_mu;
    int64_t synced_max_id, synced_deletions;
};

/* ---- small helpers ---- */

const char *rd_view_family_name(rd_view_family v)
{
    switch (v) {
    case RD_VIEW_FRONTAL:
        return "frontal";
    case RD_VIEW_LATERAL:
        return "lateral";
    case RD_VIEW_UNKNOWN:
        break;
    }
    return "unknown";
}

rd_status rd_view_family_parse(const char *name, rd_view_family *out, rd_error *err)
{
    for (int v = RD_VIEW_UNKNOWN; v <= RD_VIEW_LATERAL; v++)
        if (name && strcmp(name, rd_view_family_name((rd_view_family)v)) == 0) {
            *out = (rd_view_family)v;
            return RD_OK;
        }
    return rd_error_set(err, RD_E_INVALID, "view family '%s' is not frontal, lateral or unknown",
                        name ? name : "(null)");
}

rd_view_family rd_view_family_from_position(const char *pos)
{
    char t[16];
    size_t n = 0;
    if (!pos)
        return RD_VIEW_UNKNOWN;
    for (const char *p = pos; *p; p++) {
        if (isspace((unsigned char)*p))
            continue;
        if (n + 1 >= sizeof t)
            return RD_VIEW_UNKNOWN;
        t[n++] = (char)toupper((unsigned char)*p);
    }
    t[n] = '\0';
    if (strcmp(t, "PA") == 0 || strcmp(t, "AP") == 0 || strcmp(t, "FRONTAL") == 0)
        return RD_VIEW_FRONTAL;
    if (strcmp(t, "LL") == 0 || strcmp(t, "RL") == 0 || strcmp(t, "LAT") == 0 ||
        strcmp(t, "LATERAL") == 0)
        return RD_VIEW_LATERAL;
    return RD_VIEW_UNKNOWN;
}

const char *rd_archive_source_name(rd_archive_source s)
{
    switch (s) {
    case RD_ARCHIVE_SEED:
        return "seed";
    case RD_ARCHIVE_IMPORT:
        return "import";
    case RD_ARCHIVE_SIGNED:
        return "signed";
    }
    return "?";
}

rd_status rd_archive_source_parse(const char *name, rd_archive_source *out, rd_error *err)
{
    for (int v = 0; v < RD_ARCHIVE_SOURCE_COUNT; v++)
        if (name && strcmp(name, rd_archive_source_name((rd_archive_source)v)) == 0) {
            *out = (rd_archive_source)v;
            return RD_OK;
        }
    return rd_error_set(err, RD_E_INVALID, "archive source '%s' is not seed, import or signed",
                        name ? name : "(null)");
}

void rd_index_patient_hash(const char *salt, const char *patient_id, char out[RD_SHA256_HEX_SIZE])
{
    size_t ls = salt ? strlen(salt) : 0, lp = patient_id ? strlen(patient_id) : 0;
    char stackbuf[512];
    char *buf = stackbuf;
    if (lp == 0) {
        out[0] = '\0';
        return;
    }
    if (ls + lp + 1 > sizeof stackbuf && !(buf = malloc(ls + lp + 1))) {
        /* Without memory the hash cannot be computed; an empty hash means "unknown
         * patient", which only weakens the filter for this one entry. */
        out[0] = '\0';
        return;
    }
    if (ls)
        memcpy(buf, salt, ls);
    buf[ls] = '\0';
    if (lp)
        memcpy(buf + ls + 1, patient_id, lp);
    rd_sha256_hex(buf, ls + 1 + lp, out);
    if (buf != stackbuf)
        free(buf);
}

static int days_in_month(int y, int m)
{
    static const int d[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (m == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return 29;
    return d[m - 1];
}

static int date_valid(int date)
{
    int y = date / 10000, m = date / 100 % 100, d = date % 100;
    return y >= 1800 && y <= 9999 && m >= 1 && m <= 12 && d >= 1 && d <= days_in_month(y, m);
}

int rd_index_parse_date(const char *text)
{
    int v = 0;
    if (!text)
        return 0;
    for (int i = 0; i < 8; i++) {
        if (!isdigit((unsigned char)text[i]))
            return 0;
        v = v * 10 + (text[i] - '0');
    }
    if (text[8] != '\0' && !isspace((unsigned char)text[8]))
        return 0;
    return date_valid(v) ? v : 0;
}

/* Days since 1970-01-01 of a valid YYYYMMDD (H. Hinnant's days_from_civil). */
static int date_to_day(int date)
{
    if (!date_valid(date))
        return NO_DAY;
    int y = date / 10000, m = date / 100 % 100, d = date % 100;
    y -= m <= 2;
    int era = (y >= 0 ? y : y - 399) / 400;
    int yoe = y - era * 400;
    int doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static int hex64_valid(const char *h)
{
    size_t n = 0;
    for (; h[n]; n++)
        if (n >= 64 || !((h[n] >= '0' && h[n] <= '9') || (h[n] >= 'a' && h[n] <= 'f')))
            return 0;
    return n == 64;
}

static uint64_t str_hash(const char *s)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static char *dup_text(const char *s)
{
    size_t n;
    char *d;
    if (!s)
        return NULL;
    n = strlen(s);
    if (!(d = malloc(n + 1)))
        return NULL;
    memcpy(d, s, n + 1);
    return d;
}

/* Normalizes `n` floats into `dst`; 0 when they are not finite or all zero. */
static int normalize(const float *src, float *dst, int n)
{
    double ss = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(src[i]))
            return 0;
        ss += (double)src[i] * src[i];
    }
    if (!(ss > 0) || !isfinite(ss))
        return 0;
    double inv = 1.0 / sqrt(ss);
    for (int i = 0; i < n; i++)
        dst[i] = (float)(src[i] * inv);
    return 1;
}

/* ---- creation, lookup, growth ---- */

rd_status rd_index_create(rd_index **out, const char *model_version, int dim, rd_error *err)
{
    rd_index *ix;
    size_t vl = model_version ? strlen(model_version) : 0;
    if (vl == 0 || vl >= RD_INDEX_VERSION_MAX)
        return rd_error_set(err, RD_E_INVALID, "index: model version must be 1..%d bytes",
                            RD_INDEX_VERSION_MAX - 1);
    if (dim < 1 || dim > RD_INDEX_MAX_DIM)
        return rd_error_set(err, RD_E_INVALID, "index: dimension %d outside 1..%d", dim,
                            RD_INDEX_MAX_DIM);
    if (!(ix = calloc(1, sizeof *ix)))
        return rd_error_set(err, RD_E_NOMEM, "out of memory creating an index");
    memcpy(ix->version, model_version, vl + 1);
    ix->dim = dim;
    ix->next_id = 1;
    ix->isa = rd__index_isa_best();
    ix->ops = rd__scan_ops_of(ix->isa);
    ix->storage = RD_INDEX_STORAGE_F32;
    {
        pthread_rwlockattr_t attr;
        int rc;
        pthread_rwlockattr_init(&attr);
#ifdef __GLIBC__
        /* glibc prefers readers by default: searches that keep overlapping would then hold
         * an addition back indefinitely. A waiting writer goes first instead (no search
         * ever takes the lock twice, so this cannot deadlock). */
        pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
#endif
        rc = pthread_rwlock_init(&ix->lock, &attr);
        pthread_rwlockattr_destroy(&attr);
        if (rc != 0) {
            free(ix);
            return rd_error_set(err, RD_E_INTERNAL, "index: cannot create its lock");
        }
        if (pthread_mutex_init(&ix->sync_mu, NULL) != 0) {
            pthread_rwlock_destroy(&ix->lock);
            free(ix);
            return rd_error_set(err, RD_E_INTERNAL, "index: cannot create its lock");
        }
    }
    *out = ix;
    return RD_OK;
}

void rd_index_free(rd_index *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->n; i++) {
        free(ix->meta[i].key);
        free(ix->meta[i].findings_text);
        free(ix->meta[i].impression_text);
    }
    free(ix->meta);
    free(ix->emb);
    free(ix->low);
    free(ix->low_scale);
    free(ix->slots);
    pthread_rwlock_destroy(&ix->lock);
    pthread_mutex_destroy(&ix->sync_mu);
    free(ix);
}

const char *rd_index_model_version(const rd_index *ix)
{
    return ix->version;
}

int rd_index_dim(const rd_index *ix)
{
    return ix->dim;
}

long rd_index_count(rd_index *ix)
{
    long n;
    pthread_rwlock_rdlock(&ix->lock);
    n = (long)ix->n;
    pthread_rwlock_unlock(&ix->lock);
    return n;
}

/* Position of `key` in the index, or -1. Called with the lock held. */
static long find_key(const rd_index *ix, const char *key)
{
    if (!ix->n_slots)
        return -1;
    size_t mask = ix->n_slots - 1;
    for (size_t i = (size_t)str_hash(key) & mask;; i = (i + 1) & mask) {
        size_t v = ix->slots[i];
        if (v == 0)
            return -1;
        if (strcmp(ix->meta[v - 1].key, key) == 0)
            return (long)(v - 1);
    }
}

static void slot_insert(size_t *slots, size_t n_slots, const char *key, size_t pos)
{
    size_t mask = n_slots - 1;
    size_t i = (size_t)str_hash(key) & mask;
    while (slots[i] != 0)
        i = (i + 1) & mask;
    slots[i] = pos + 1;
}

/* Makes room for `extra` more entries. Called with the write lock held. Growth doubles,
 * every size checked for overflow before allocating. */
static rd_status reserve(rd_index *ix, size_t extra, rd_error *err)
{
    size_t need = ix->n + extra, bytes;
    if (need < ix->n || need > (size_t)RD_INDEX_MAX_ENTRIES)
        return rd_error_set(err, RD_E_TOO_LARGE, "index: more than %ld entries",
                            RD_INDEX_MAX_ENTRIES);
    if (need > ix->cap) {
        size_t cap = ix->cap ? ix->cap : 64;
        while (cap < need)
            cap = cap > SIZE_MAX / 2 ? need : cap * 2;
        if (!rd_mul_size(cap, (size_t)ix->dim, &bytes) ||
            !rd_mul_size(bytes, sizeof(float), &bytes))
            return rd_error_set(err, RD_E_TOO_LARGE, "index: %zu entries overflow", cap);
        float *e = realloc(ix->emb, bytes);
        if (!e)
            return rd_error_set(err, RD_E_NOMEM, "out of memory growing the index to %zu", cap);
        ix->emb = e;
        if (!rd_mul_size(cap, sizeof(ix_meta), &bytes))
            return rd_error_set(err, RD_E_TOO_LARGE, "index: %zu entries overflow", cap);
        ix_meta *m = realloc(ix->meta, bytes);
        if (!m)
            return rd_error_set(err, RD_E_NOMEM, "out of memory growing the index to %zu", cap);
        ix->meta = m;
        if (ix->storage != RD_INDEX_STORAGE_F32) {
            /* cap x dim elements fit: cap x dim floats did. */
            size_t el = ix->storage == RD_INDEX_STORAGE_F16 ? sizeof(uint16_t) : sizeof(int8_t);
            void *lo = realloc(ix->low, cap * (size_t)ix->dim * el);
            if (!lo)
                return rd_error_set(err, RD_E_NOMEM, "out of memory growing the index to %zu", cap);
            ix->low = lo;
            if (ix->storage == RD_INDEX_STORAGE_INT8) {
                float *sc = realloc(ix->low_scale, cap * sizeof(float));
                if (!sc)
                    return rd_error_set(err, RD_E_NOMEM, "out of memory growing the index to %zu",
                                        cap);
                ix->low_scale = sc;
            }
        }
        ix->cap = cap;
    }
    if (need * 2 > ix->n_slots) {
        size_t ns = ix->n_slots ? ix->n_slots : 128;
        while (ns < need * 2)
            ns *= 2;
        size_t *sl = calloc(ns, sizeof *sl);
        if (!sl)
            return rd_error_set(err, RD_E_NOMEM, "out of memory growing the index's key table");
        for (size_t i = 0; i < ix->n; i++)
            slot_insert(sl, ns, ix->meta[i].key, i);
        free(ix->slots);
        ix->slots = sl;
        ix->n_slots = ns;
    }
    return RD_OK;
}

/* Writes the reduced-precision copy of row `i` from its f32 row (nothing with f32
 * storage). int8: a symmetric scale per row, max |x| / 127, and the rounded quotients. */
static void low_row(rd_index *ix, size_t i)
{
    size_t dim = (size_t)ix->dim;
    const float *x = ix->emb + i * dim;
    if (ix->storage == RD_INDEX_STORAGE_F16) {
        uint16_t *h = (uint16_t *)ix->low + i * dim;
        for (size_t d = 0; d < dim; d++)
            h[d] = rd__f32_to_f16(x[d]);
    } else if (ix->storage == RD_INDEX_STORAGE_INT8) {
        int8_t *b = (int8_t *)ix->low + i * dim;
        float mx = 0;
        for (size_t d = 0; d < dim; d++)
            mx = fabsf(x[d]) > mx ? fabsf(x[d]) : mx;
        /* A unit row has mx in [1/sqrt(dim), 1]: never zero. */
        float scale = mx / 127.0f, inv = 127.0f / mx;
        for (size_t d = 0; d < dim; d++) {
            long v = lrintf(x[d] * inv);
            b[d] = (int8_t)(v > 127 ? 127 : v < -127 ? -127 : v);
        }
        ix->low_scale[i] = scale;
    }
}

const char *rd_index_storage_name(rd_index_storage s)
{
    switch (s) {
    case RD_INDEX_STORAGE_F32:
        return "f32";
    case RD_INDEX_STORAGE_F16:
        return "f16";
    case RD_INDEX_STORAGE_INT8:
        return "int8";
    }
    return "?";
}

rd_status rd_index_storage_parse(const char *name, rd_index_storage *out, rd_error *err)
{
    for (int v = RD_INDEX_STORAGE_F32; v <= RD_INDEX_STORAGE_INT8; v++)
        if (name && strcmp(name, rd_index_storage_name((rd_index_storage)v)) == 0) {
            *out = (rd_index_storage)v;
            return RD_OK;
        }
    return rd_error_set(err, RD_E_INVALID, "index storage '%s' is not f32, f16 or int8",
                        name ? name : "(null)");
}

rd_status rd_index_set_storage(rd_index *ix, rd_index_storage storage, rd_error *err)
{
    void *low = NULL;
    float *scale = NULL;
    rd_status st = RD_OK;
    if ((int)storage < RD_INDEX_STORAGE_F32 || (int)storage > RD_INDEX_STORAGE_INT8)
        return rd_error_set(err, RD_E_INVALID, "index: bad storage %d", (int)storage);
    pthread_rwlock_wrlock(&ix->lock);
    if (storage == ix->storage)
        goto out;
    if (storage != RD_INDEX_STORAGE_F32 && ix->cap > 0) {
        size_t el = storage == RD_INDEX_STORAGE_F16 ? sizeof(uint16_t) : sizeof(int8_t);
        /* cap x dim floats were allocated, so cap x dim elements cannot overflow. */
        low = malloc(ix->cap * (size_t)ix->dim * el);
        if (storage == RD_INDEX_STORAGE_INT8)
            scale = malloc(ix->cap * sizeof(float));
        if (!low || (storage == RD_INDEX_STORAGE_INT8 && !scale)) {
            free(low);
            free(scale);
            st = rd_error_set(err, RD_E_NOMEM, "out of memory for the %s copy of the index",
                              rd_index_storage_name(storage));
            goto out;
        }
    }
    free(ix->low);
    free(ix->low_scale);
    ix->low = low;
    ix->low_scale = scale;
    ix->storage = storage;
    for (size_t i = 0; i < ix->n; i++)
        low_row(ix, i);
out:
    pthread_rwlock_unlock(&ix->lock);
    return st;
}

rd_index_storage rd_index_get_storage(rd_index *ix)
{
    rd_index_storage s;
    pthread_rwlock_rdlock(&ix->lock);
    s = ix->storage;
    pthread_rwlock_unlock(&ix->lock);
    return s;
}

rd_status rd__index_set_isa(rd_index *ix, rd__index_isa isa, rd_error *err)
{
    if ((int)isa < 0 || (int)isa >= RD__ISA_COUNT || !rd__index_isa_supported(isa))
        return rd_error_set(err, RD_E_INVALID, "index: this CPU does not run the %s kernels",
                            rd__index_isa_name(isa));
    pthread_rwlock_wrlock(&ix->lock);
    ix->isa = isa;
    ix->ops = rd__scan_ops_of(isa);
    pthread_rwlock_unlock(&ix->lock);
    return RD_OK;
}

rd__index_isa rd__index_get_isa(rd_index *ix)
{
    rd__index_isa isa;
    pthread_rwlock_rdlock(&ix->lock);
    isa = ix->isa;
    pthread_rwlock_unlock(&ix->lock);
    return isa;
}

static rd_status check_entry(const rd_index *ix, const rd_index_entry *e, rd_error *err)
{
    size_t l;
    if (!e->key || !(l = strlen(e->key)) || l > RD_INDEX_KEY_MAX)
        return rd_error_set(err, RD_E_INVALID, "index entry: key must be 1..%d bytes",
                            RD_INDEX_KEY_MAX);
    if (!e->study_uid || !(l = strlen(e->study_uid)) || l > 64)
        return rd_error_set(err, RD_E_INVALID, "index entry %s: study UID must be 1..64 bytes",
                            e->key);
    if (e->patient_hash && e->patient_hash[0] && !hex64_valid(e->patient_hash))
        return rd_error_set(err, RD_E_INVALID,
                            "index entry %s: patient hash is not 64 lowercase hex digits", e->key);
    if ((int)e->view < RD_VIEW_UNKNOWN || (int)e->view > RD_VIEW_LATERAL)
        return rd_error_set(err, RD_E_INVALID, "index entry %s: bad view family", e->key);
    if ((int)e->source < 0 || (int)e->source >= RD_ARCHIVE_SOURCE_COUNT)
        return rd_error_set(err, RD_E_INVALID, "index entry %s: bad source", e->key);
    if (e->study_date != 0 && !date_valid(e->study_date))
        return rd_error_set(err, RD_E_INVALID, "index entry %s: study date %d is not YYYYMMDD",
                            e->key, e->study_date);
    for (int f = 0; f < RD_FINDING_COUNT; f++)
        if ((int)e->state[f] < RD_STATE_NOT_MENTIONED || (int)e->state[f] > RD_STATE_PRESENT)
            return rd_error_set(err, RD_E_INVALID, "index entry %s: bad finding state", e->key);
    if ((e->findings_text && strlen(e->findings_text) > RD_INDEX_MAX_TEXT) ||
        (e->impression_text && strlen(e->impression_text) > RD_INDEX_MAX_TEXT))
        return rd_error_set(err, RD_E_TOO_LARGE, "index entry %s: report text over %u bytes",
                            e->key, RD_INDEX_MAX_TEXT);
    (void)ix;
    return RD_OK;
}

/* Appends one checked entry with its unit embedding. Called with the write lock held and
 * room reserved; the entry's strings are copied. */
static rd_status append(rd_index *ix, const rd_index_entry *e, const float *unit, int64_t id,
                        rd_error *err)
{
    ix_meta *m = &ix->meta[ix->n];
    memset(m, 0, sizeof *m);
    m->key = dup_text(e->key);
    m->findings_text = dup_text(e->findings_text);
    m->impression_text = dup_text(e->impression_text);
    if (!m->key || (e->findings_text && !m->findings_text) ||
        (e->impression_text && !m->impression_text)) {
        free(m->key);
        free(m->findings_text);
        free(m->impression_text);
        return rd_error_set(err, RD_E_NOMEM, "out of memory adding to the index");
    }
    m->id = id;
    rd_strlcpy(m->study_uid, e->study_uid, sizeof m->study_uid);
    rd_strlcpy(m->patient_hash, e->patient_hash ? e->patient_hash : "", sizeof m->patient_hash);
    m->study_date = e->study_date;
    m->day = date_to_day(e->study_date);
    m->view = (unsigned char)e->view;
    m->source = (unsigned char)e->source;
    for (int f = 0; f < RD_FINDING_COUNT; f++)
        m->state[f] = (unsigned char)e->state[f];
    memcpy(ix->emb + ix->n * (size_t)ix->dim, unit, (size_t)ix->dim * sizeof(float));
    low_row(ix, ix->n);
    slot_insert(ix->slots, ix->n_slots, m->key, ix->n);
    ix->n++;
    if (id >= ix->next_id)
        ix->next_id = id + 1;
    return RD_OK;
}

static void states_text(const rd_finding_state *st, char out[RD_FINDING_COUNT + 1])
{
    for (int f = 0; f < RD_FINDING_COUNT; f++)
        out[f] = (char)('0' + (int)st[f]);
    out[RD_FINDING_COUNT] = '\0';
}

rd_status rd_index_add_batch(rd_index *ix, rd_store *store, const rd_index_entry *entries, size_t n,
                             const float *embeddings, int64_t *ids, int *added, rd_error *err)
{
    rd_status st = RD_OK;
    float *unit = NULL;
    int64_t *rid = NULL;
    int *radd = NULL;
    rd_store_archive_row *rows = NULL;
    char(*stx)[RD_FINDING_COUNT + 1] = NULL;
    size_t bytes;

    if (n == 0)
        return RD_OK;
    if (!rd_mul_size(n, (size_t)ix->dim, &bytes) || !rd_mul_size(bytes, sizeof(float), &bytes) ||
        n > (size_t)RD_INDEX_MAX_ENTRIES)
        return rd_error_set(err, RD_E_TOO_LARGE, "index: batch of %zu entries is too large", n);
    unit = malloc(bytes);
    rid = calloc(n, sizeof *rid);
    radd = calloc(n, sizeof *radd);
    if (!unit || !rid || !radd) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory adding %zu entries", n);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if ((st = check_entry(ix, &entries[i], err)) != RD_OK)
            goto out;
        if (!normalize(embeddings + i * (size_t)ix->dim, unit + i * (size_t)ix->dim, ix->dim)) {
            st = rd_error_set(err, RD_E_INVALID,
                              "index entry %s: embedding is not finite or is all zero",
                              entries[i].key);
            goto out;
        }
    }
    if (store) {
        rows = calloc(n, sizeof *rows);
        stx = calloc(n, sizeof *stx);
        if (!rows || !stx) {
            st = rd_error_set(err, RD_E_NOMEM, "out of memory adding %zu entries", n);
            goto out;
        }
        for (size_t i = 0; i < n; i++) {
            const rd_index_entry *e = &entries[i];
            states_text(e->state, stx[i]);
            rows[i].model_version = ix->version;
            rows[i].key = e->key;
            rows[i].study_uid = e->study_uid;
            rows[i].patient_hash = e->patient_hash ? e->patient_hash : "";
            rows[i].view = (int)e->view;
            rows[i].study_date = e->study_date;
            rows[i].source = (int)e->source;
            rows[i].states = stx[i];
            rows[i].findings_text = e->findings_text;
            rows[i].impression_text = e->impression_text;
            rows[i].dim = ix->dim;
            rows[i].embedding = unit + i * (size_t)ix->dim;
        }
        /* The rows are durable before any entry becomes searchable: a crash between the two
         * loses nothing (the next load reads the rows). */
        if ((st = rd_store_archive_add_many(store, rows, n, rid, radd, err)) != RD_OK)
            goto out;
    }
    pthread_rwlock_wrlock(&ix->lock);
    if ((st = reserve(ix, n, err)) == RD_OK) {
        for (size_t i = 0; i < n && st == RD_OK; i++) {
            long pos = find_key(ix, entries[i].key);
            if (pos >= 0) {
                /* Already in memory (added by this process, or loaded). */
                if (!store)
                    rid[i] = ix->meta[pos].id;
                radd[i] = 0;
                continue;
            }
            if (!store) {
                rid[i] = ix->next_id;
                radd[i] = 1;
            }
            st = append(ix, &entries[i], unit + i * (size_t)ix->dim, rid[i], err);
        }
    }
    pthread_rwlock_unlock(&ix->lock);
    if (st != RD_OK)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (ids)
            ids[i] = rid[i];
        if (added)
            added[i] = radd[i];
    }
out:
    free(unit);
    free(rid);
    free(radd);
    free(rows);
    free(stx);
    return st;
}

rd_status rd_index_add(rd_index *ix, rd_store *store, const rd_index_entry *e,
                       const float *embedding, int64_t *id, int *added, rd_error *err)
{
    return rd_index_add_batch(ix, store, e, 1, embedding, id, added, err);
}

/* ---- loading from the store ---- */

typedef struct load_ctx {
    rd_index *ix;
} load_ctx;

static rd_status load_row(void *vctx, const rd_store_archive_row *row, rd_error *err)
{
    load_ctx *ctx = vctx;
    rd_index *ix = ctx->ix;
    rd_index_entry e;
    float *unit = NULL;
    rd_status st;

    memset(&e, 0, sizeof e);
    if (row->dim != ix->dim)
        return rd_error_set(err, RD_E_CORRUPT,
                            "archive row %lld of model %s has %d dimensions, the model %d",
                            (long long)row->id, ix->version, row->dim, ix->dim);
    if (strlen(row->states) != RD_FINDING_COUNT)
        return rd_error_set(err, RD_E_CORRUPT, "archive row %lld: bad finding states",
                            (long long)row->id);
    for (int f = 0; f < RD_FINDING_COUNT; f++) {
        if (row->states[f] < '0' || row->states[f] > '3')
            return rd_error_set(err, RD_E_CORRUPT, "archive row %lld: bad finding states",
                                (long long)row->id);
        e.state[f] = (rd_finding_state)(row->states[f] - '0');
    }
    e.key = row->key;
    e.study_uid = row->study_uid;
    e.patient_hash = row->patient_hash;
    e.view = (rd_view_family)row->view;
    e.study_date = row->study_date;
    e.source = (rd_archive_source)row->source;
    e.findings_text = row->findings_text;
    e.impression_text = row->impression_text;
    if ((st = check_entry(ix, &e, err)) != RD_OK)
        return rd_error_prefix(err, RD_E_CORRUPT, "archive row %lld", (long long)row->id);
    if (!(unit = malloc((size_t)ix->dim * sizeof(float))))
        return rd_error_set(err, RD_E_NOMEM, "out of memory loading the archive");
    if (!normalize(row->embedding, unit, ix->dim)) {
        free(unit);
        return rd_error_set(err, RD_E_CORRUPT, "archive row %lld: embedding not finite or zero",
                            (long long)row->id);
    }
    pthread_rwlock_wrlock(&ix->lock);
    st = reserve(ix, 1, err);
    if (st == RD_OK && find_key(ix, e.key) < 0)
        st = append(ix, &e, unit, row->id, err);
    pthread_rwlock_unlock(&ix->lock);
    free(unit);
    return st;
}

rd_status rd_index_load(rd_index **out, rd_store *store, const char *model_version, int dim,
                        const char *seed_path, long *n_seeded, rd_error *err)
{
    rd_index *ix = NULL;
    load_ctx ctx;
    rd_status st;
    long seeded = 0;

    if ((st = rd_index_create(&ix, model_version, dim, err)) != RD_OK)
        return st;
    ctx.ix = ix;
    /* The marks before the rows: a row added during the scan is then also seen by the next
     * sync, which skips it as a key already in memory. */
    if ((st = rd_store_archive_marks(store, &ix->synced_max_id, &ix->synced_deletions, err)) !=
            RD_OK ||
        (st = rd_store_archive_scan(store, model_version, 1, load_row, &ctx, err)) != RD_OK)
        goto out;
    if (ix->n == 0 && seed_path && seed_path[0]) {
        struct stat sb;
        if (stat(seed_path, &sb) != 0) {
            rd_log_info("archive: no entries for model %s and no seed archive at %s", model_version,
                        seed_path);
        } else if ((st = rd_index_seed_read(ix, store, seed_path, 0, &seeded, err)) != RD_OK) {
            goto out;
        } else {
            rd_log_info("archive: loaded %ld seed entries for model %s from %s", seeded,
                        model_version, seed_path);
        }
    }
    rd_log_info("archive: %zu entries of model %s in memory", ix->n, model_version);
out:
    if (st != RD_OK) {
        rd_index_free(ix);
        return st;
    }
    if (n_seeded)
        *n_seeded = seeded;
    *out = ix;
    return RD_OK;
}

/* Exchanges the entries of two indexes of the same model and dimension (under `ix`'s write
 * lock, so that searches see either the old entries or the new). */
static void swap_entries(rd_index *ix, rd_index *fresh)
{
    pthread_rwlock_wrlock(&ix->lock);
#define SWAP(field)                                                                                \
    do {                                                                                           \
        __typeof__(ix->field) tmp = ix->field;                                                     \
        ix->field = fresh->field;                                                                  \
        fresh->field = tmp;                                                                        \
    } while (0)
    SWAP(n);
    SWAP(cap);
    SWAP(emb);
    SWAP(storage);
    SWAP(low);
    SWAP(low_scale);
    SWAP(meta);
    SWAP(next_id);
    SWAP(slots);
    SWAP(n_slots);
#undef SWAP
    pthread_rwlock_unlock(&ix->lock);
}

rd_status rd_index_sync(rd_index *ix, rd_store *store, long *added, rd_error *err)
{
    int64_t max_id = 0, deletions = 0;
    long before = rd_index_count(ix);
    load_ctx ctx = {ix};
    rd_status st;
    if (added)
        *added = 0;
    pthread_mutex_lock(&ix->sync_mu);
    if ((st = rd_store_archive_marks(store, &max_id, &deletions, err)) != RD_OK)
        goto out;
    if (deletions != ix->synced_deletions) {
        rd_index *fresh = NULL;
        if ((st = rd_index_load(&fresh, store, ix->version, ix->dim, NULL, NULL, err)) != RD_OK)
            goto out;
        /* The same storage as the entries it replaces (set_storage is not called while a
         * sync runs: both belong to the index's owner). */
        if ((st = rd_index_set_storage(fresh, rd_index_get_storage(ix), err)) != RD_OK) {
            rd_index_free(fresh);
            goto out;
        }
        swap_entries(ix, fresh);
        ix->synced_max_id = fresh->synced_max_id;
        ix->synced_deletions = fresh->synced_deletions;
        rd_index_free(fresh); /* the old entries */
    } else if (max_id > ix->synced_max_id) {
        if ((st = rd_store_archive_scan_after(store, ix->version, ix->synced_max_id, 1, load_row,
                                              &ctx, err)) != RD_OK)
            goto out;
        ix->synced_max_id = max_id;
    }
    if (added)
        *added = rd_index_count(ix) - before;
out:
    pthread_mutex_unlock(&ix->sync_mu);
    return st;
}

/* ---- search ---- */

void rd_index_params_default(rd_index_params *p)
{
    p->k = 10;
    p->min_similarity = -1;
    p->date_window_days = 0;
    p->with_text = 0;
    p->threads = 1;
}

typedef struct cand {
    float sim;
    size_t pos;
    int64_t id;
} cand;

/* 1 if a ranks strictly below b (smaller similarity, or equal and larger id). */
static int worse(const cand *a, const cand *b)
{
    return a->sim < b->sim || (a->sim == b->sim && a->id > b->id);
}

/* The k best so far as a min-heap on `worse` (heap[0] is the worst kept). */
typedef struct topk {
    cand *heap;
    int n, k;
} topk;

static void heap_down(topk *t, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < t->n && worse(&t->heap[l], &t->heap[m]))
            m = l;
        if (r < t->n && worse(&t->heap[r], &t->heap[m]))
            m = r;
        if (m == i)
            return;
        cand tmp = t->heap[i];
        t->heap[i] = t->heap[m];
        t->heap[m] = tmp;
        i = m;
    }
}

static void heap_push(topk *t, const cand *c)
{
    if (t->n < t->k) {
        int i = t->n++;
        t->heap[i] = *c;
        while (i > 0) {
            int p = (i - 1) / 2;
            if (!worse(&t->heap[i], &t->heap[p]))
                break;
            cand tmp = t->heap[i];
            t->heap[i] = t->heap[p];
            t->heap[p] = tmp;
            i = p;
        }
    } else {
        t->heap[0] = *c;
        heap_down(t, 0);
    }
}

static int cmp_best_first(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (worse(x, y))
        return 1;
    if (worse(y, x))
        return -1;
    return 0;
}

/* Pushes `c` when it ranks among the k best so far. */
static void heap_offer(topk *t, const cand *c)
{
    if (t->n < t->k || worse(&t->heap[0], c))
        heap_push(t, c);
}

/* A query prepared for the scan: normalized, its filters resolved. */
typedef struct prepared {
    const char *study;   /* NULL: no study filter */
    const char *patient; /* NULL: no patient filter */
    int view;            /* RD_VIEW_UNKNOWN: any */
    int day;             /* NO_DAY: no date filter */
    int window;
    float min_sim;
    topk top;
} prepared;

/* Called for an entry whose similarity may rank among the best: the exact comparison with
 * the k-th best kept, then the filters, cheapest first. */
static void consider(const rd_index *ix, prepared *q, size_t pos, float sim)
{
    const ix_meta *m = &ix->meta[pos];
    cand c;
    if (!(sim >= q->min_sim))
        return;
    c.sim = sim;
    c.pos = pos;
    c.id = m->id;
    /* Most entries lose to the current k-th best: test that before the filters. */
    if (q->top.n == q->top.k && !worse(&q->top.heap[0], &c))
        return;
    if (q->view != RD_VIEW_UNKNOWN && m->view != q->view)
        return;
    if (q->day != NO_DAY) {
        if (m->day == NO_DAY)
            return;
        long d = (long)m->day - q->day;
        if (d < -(long)q->window || d > (long)q->window)
            return;
    }
    if (q->study && strcmp(m->study_uid, q->study) == 0)
        return;
    if (q->patient && m->patient_hash[0] && strcmp(m->patient_hash, q->patient) == 0)
        return;
    heap_push(&q->top, &c);
}

/* The smallest similarity that can still enter the top k: the minimum, or the k-th best
 * once there are k (an entry equal to it may still win on its id). */
static float admit_threshold(const prepared *q)
{
    float t = q->min_sim;
    if (q->top.n == q->top.k && q->top.heap[0].sim > t)
        t = q->top.heap[0].sim;
    return t;
}

/* Offers the similarities of entries start .. start + n - 1 to the query's top k. A block
 * of SCAN_ROWS is first compared with the threshold as a whole (a loop the compiler turns
 * into vector compares); only a block that holds a candidate is walked entry by entry. */
static void offer(const rd_index *ix, prepared *q, size_t start, const float *sims, size_t n)
{
    for (size_t c = 0; c < n; c += SCAN_ROWS) {
        size_t cn = n - c < SCAN_ROWS ? n - c : SCAN_ROWS;
        const float *s = sims + c;
        float thr = admit_threshold(q);
        int any = 0;
        for (size_t j = 0; j < cn; j++)
            any |= s[j] >= thr;
        if (!any)
            continue;
        for (size_t j = 0; j < cn; j++)
            if (s[j] >= thr) {
                consider(ix, q, start + c + j, s[j]);
                thr = admit_threshold(q);
            }
    }
}

static rd_status check_params(const rd_index_params *p, rd_error *err)
{
    if (p->k < 1 || p->k > RD_INDEX_MAX_K)
        return rd_error_set(err, RD_E_INVALID, "search: k %d outside 1..%d", p->k, RD_INDEX_MAX_K);
    if (!(p->min_similarity >= -1.0 && p->min_similarity <= 1.0))
        return rd_error_set(err, RD_E_INVALID, "search: minimum similarity outside [-1, 1]");
    if (p->date_window_days < 0)
        return rd_error_set(err, RD_E_INVALID, "search: negative date window");
    return RD_OK;
}

/* Prepares a query whose heap has room for `k` (p->k, or more candidates to re-rank). */
static rd_status prepare_query(const rd_index *ix, const rd_index_query *q,
                               const rd_index_params *p, int k, float *unit, cand *heap,
                               prepared *pq, rd_error *err)
{
    if (!q->embedding || !normalize(q->embedding, unit, ix->dim))
        return rd_error_set(err, RD_E_INVALID,
                            "search: query embedding missing, not finite or "
                            "all zero");
    if ((int)q->view < RD_VIEW_UNKNOWN || (int)q->view > RD_VIEW_LATERAL)
        return rd_error_set(err, RD_E_INVALID, "search: bad view family");
    pq->study = q->study_uid && q->study_uid[0] ? q->study_uid : NULL;
    pq->patient = q->patient_hash && q->patient_hash[0] ? q->patient_hash : NULL;
    pq->view = (int)q->view;
    pq->day = p->date_window_days > 0 ? date_to_day(q->study_date) : NO_DAY;
    pq->window = p->date_window_days;
    /* A float threshold just below the double one, so that an entry exactly at the minimum
     * passes whatever the rounding. */
    pq->min_sim =
        p->min_similarity <= -1.0 ? -INFINITY : nextafterf((float)p->min_similarity, -INFINITY);
    pq->top.heap = heap;
    pq->top.n = 0;
    pq->top.k = k;
    return RD_OK;
}

/* Turns a query's heap into hits, best first. Called with the read lock held (texts are
 * copied from the entries). */
static rd_status emit(const rd_index *ix, prepared *pq, const rd_index_params *p,
                      rd_index_hit *hits, int *n_hits, rd_error *err)
{
    qsort(pq->top.heap, (size_t)pq->top.n, sizeof(cand), cmp_best_first);
    for (int i = 0; i < pq->top.n; i++) {
        const ix_meta *m = &ix->meta[pq->top.heap[i].pos];
        rd_index_hit *h = &hits[i];
        memset(h, 0, sizeof *h);
        h->id = m->id;
        h->similarity = pq->top.heap[i].sim;
        memcpy(h->study_uid, m->study_uid, sizeof h->study_uid);
        memcpy(h->patient_hash, m->patient_hash, sizeof h->patient_hash);
        h->view = (rd_view_family)m->view;
        h->study_date = m->study_date;
        h->source = (rd_archive_source)m->source;
        for (int f = 0; f < RD_FINDING_COUNT; f++)
            h->state[f] = (rd_finding_state)m->state[f];
        if (p->with_text) {
            h->findings_text = dup_text(m->findings_text);
            h->impression_text = dup_text(m->impression_text);
            if ((m->findings_text && !h->findings_text) ||
                (m->impression_text && !h->impression_text)) {
                rd_index_hits_clear(hits, i + 1);
                return rd_error_set(err, RD_E_NOMEM, "out of memory copying report texts");
            }
        }
    }
    *n_hits = pq->top.n;
    return RD_OK;
}

void rd_index_hits_clear(rd_index_hit *hits, int n)
{
    if (!hits)
        return;
    for (int i = 0; i < n; i++) {
        free(hits[i].findings_text);
        free(hits[i].impression_text);
        hits[i].findings_text = NULL;
        hits[i].impression_text = NULL;
    }
}

/* ---- one query: a fused scan ---- */

/* One thread's share of a single-query scan: rows [lo, hi) into its own top k. */
typedef struct scan_part {
    const rd_index *ix;
    const float *q;     /* the unit query */
    const int16_t *q16; /* int8 storage: the query quantized, q[d] ~ q16[d] * q16_inv */
    float q16_inv;
    size_t lo, hi;
    prepared pq;
    pthread_t thread;
    int started;
} scan_part;

/* Scores `bn` rows of each of `ns` streams, stream s from row pos[s], into sims[s * bn
 * ...], from the storage the index scans. */
static void score_rows(const scan_part *sp, const size_t *pos, int ns, size_t bn, float *sims)
{
    const rd_index *ix = sp->ix;
    size_t dim = (size_t)ix->dim;
    switch (ix->storage) {
    case RD_INDEX_STORAGE_F32: {
        const float *rows[4];
        for (int s = 0; s < ns; s++)
            rows[s] = ix->emb + pos[s] * dim;
        ix->ops->dot_f32(rows, ns, bn, dim, sp->q, sims);
        break;
    }
    case RD_INDEX_STORAGE_F16: {
        const uint16_t *rows[4];
        for (int s = 0; s < ns; s++)
            rows[s] = (const uint16_t *)ix->low + pos[s] * dim;
        ix->ops->dot_f16(rows, ns, bn, dim, sp->q, sims);
        break;
    }
    case RD_INDEX_STORAGE_INT8: {
        const int8_t *rows[4];
        int32_t isums[SCAN_ROWS];
        for (int s = 0; s < ns; s++)
            rows[s] = (const int8_t *)ix->low + pos[s] * dim;
        ix->ops->dot_i8(rows, ns, bn, dim, sp->q16, isums);
        for (int s = 0; s < ns; s++)
            for (size_t j = 0; j < bn; j++)
                sims[(size_t)s * bn + j] =
                    (float)isums[(size_t)s * bn + j] * ix->low_scale[pos[s] + j] * sp->q16_inv;
        break;
    }
    }
}

/* Scans the part's rows as SCAN_STREAMS streams, its SCAN_STREAMS equal slices read side
 * by side (memory delivers more to several sequential streams than to one: see scan.c),
 * SCAN_ROWS / 4 rows of four streams per kernel call, then the rows left over as one
 * stream. Each block is offered to the part's top k while its similarities are still in
 * L1. */
static void scan_rows(scan_part *sp)
{
    enum { STREAM_ROWS = SCAN_ROWS / 4 };
    float sims[SCAN_ROWS];
    size_t ql = (sp->hi - sp->lo) / SCAN_STREAMS, pos[4];
    for (size_t j = 0; j < ql; j += STREAM_ROWS) {
        size_t bn = ql - j < STREAM_ROWS ? ql - j : STREAM_ROWS;
        for (int g = 0; g < SCAN_STREAMS; g += 4) {
            for (int s = 0; s < 4; s++)
                pos[s] = sp->lo + (size_t)(g + s) * ql + j;
            score_rows(sp, pos, 4, bn, sims);
            for (int s = 0; s < 4; s++)
                offer(sp->ix, &sp->pq, pos[s], sims + (size_t)s * bn, bn);
        }
    }
    for (size_t start = sp->lo + SCAN_STREAMS * ql; start < sp->hi; start += SCAN_ROWS) {
        size_t bn = sp->hi - start < SCAN_ROWS ? sp->hi - start : SCAN_ROWS;
        score_rows(sp, &start, 1, bn, sims);
        offer(sp->ix, &sp->pq, start, sims, bn);
    }
}

static void *scan_thread(void *arg)
{
    scan_rows(arg);
    return NULL;
}

/* How many candidates a reduced-precision scan keeps for the f32 re-ranking. */
static int rerank_count(int k)
{
    return 4 * k + 32;
}

/* How far a reduced-precision similarity can be from the f32 one, at most: f16 rounds each
 * element to 2^-11 relative, so the dot product of unit vectors moves by less than 2^-11
 * (sum |x_d q_d| <= 1) plus the float sums' rounding; int8 moves each element of a row by
 * at most half its scale (<= 1/254) and of the query by half its step. Used only to keep
 * an entry near the minimum similarity among the candidates: the re-ranking decides. */
static float low_error_bound(const rd_index *ix, const float *q, float q16_inv)
{
    double l1 = 0;
    size_t dim = (size_t)ix->dim;
    if (ix->storage == RD_INDEX_STORAGE_F16)
        return 1e-3f;
    for (size_t d = 0; d < dim; d++)
        l1 += fabs(q[d]);
    return (float)(l1 / 254.0 + sqrt((double)dim) * q16_inv / 2.0 + 1e-4);
}

static rd_status search_one(rd_index *ix, const rd_index_query *q, const rd_index_params *p,
                            rd_index_hit *hits, int *n_hits, rd_error *err)
{
    rd_status st;
    size_t dim = (size_t)ix->dim, n;
    float *unit = NULL, exact, q16_inv = 0, bound = 0;
    int16_t *q16 = NULL;
    cand *heaps = NULL, *final_heap = NULL, *cands = NULL;
    scan_part *parts = NULL;
    prepared result;
    topk merged;
    int nth = 0, kc, low;

    *n_hits = 0;
    if ((st = check_params(p, err)) != RD_OK)
        return st;
    unit = malloc(dim * sizeof *unit);
    q16 = malloc(dim * sizeof *q16);
    final_heap = malloc((size_t)p->k * sizeof *final_heap);
    if (!unit || !q16 || !final_heap) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory searching the index");
        goto out_free;
    }
    if ((st = prepare_query(ix, q, p, p->k, unit, final_heap, &result, err)) != RD_OK)
        goto out_free;
    pthread_rwlock_rdlock(&ix->lock);
    n = ix->n;
    low = ix->storage != RD_INDEX_STORAGE_F32;
    kc = low ? rerank_count(p->k) : p->k;
    {
        size_t by_size = n * dim / THREAD_MIN_FLOATS;
        nth = p->threads > 1 ? p->threads : 1;
        if (nth > MAX_SEARCH_THREADS)
            nth = MAX_SEARCH_THREADS;
        if ((size_t)nth > by_size)
            nth = by_size > 1 ? (int)by_size : 1;
    }
    parts = calloc((size_t)nth, sizeof *parts);
    heaps = malloc((size_t)nth * (size_t)kc * sizeof *heaps);
    cands = malloc((size_t)kc * sizeof *cands);
    if (!parts || !heaps || !cands) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory searching the index");
        goto out;
    }
    if (ix->storage == RD_INDEX_STORAGE_INT8) {
        float mx = 0;
        for (size_t d = 0; d < dim; d++)
            mx = fabsf(unit[d]) > mx ? fabsf(unit[d]) : mx;
        float s = (float)rd__query_i16_max(dim) / mx;
        for (size_t d = 0; d < dim; d++)
            q16[d] = (int16_t)lrintf(unit[d] * s);
        q16_inv = 1.0f / s;
    }
    if (low)
        bound = low_error_bound(ix, unit, q16_inv);
    for (int t = 0; t < nth; t++) {
        scan_part *sp = &parts[t];
        sp->ix = ix;
        sp->q = unit;
        sp->q16 = q16;
        sp->q16_inv = q16_inv;
        /* Contiguous shares in SCAN_ROWS blocks: the split does not change the result (the
         * order of hits is total), only who finds them. */
        size_t blocks = (n + SCAN_ROWS - 1) / SCAN_ROWS;
        sp->lo = blocks * (size_t)t / (size_t)nth * SCAN_ROWS;
        sp->hi = blocks * (size_t)(t + 1) / (size_t)nth * SCAN_ROWS;
        if (sp->hi > n)
            sp->hi = n;
        sp->pq = result;
        sp->pq.top.heap = heaps + (size_t)t * (size_t)kc;
        sp->pq.top.k = kc;
        if (low && sp->pq.min_sim > -INFINITY)
            sp->pq.min_sim -= bound;
    }
    /* The calling thread scans the first share; a thread that cannot be started leaves its
     * share to the caller too. */
    for (int t = 1; t < nth; t++)
        parts[t].started = pthread_create(&parts[t].thread, NULL, scan_thread, &parts[t]) == 0;
    scan_rows(&parts[0]);
    for (int t = 1; t < nth; t++) {
        if (parts[t].started)
            pthread_join(parts[t].thread, NULL);
        else
            scan_rows(&parts[t]);
    }
    /* The parts' best into the best kc of all (the order is total, so these are the ones
     * one thread would have kept), every one past the filters already. With f32 storage
     * they are the result; otherwise each is scored again from its f32 row (by the kernel
     * of an f32 scan, so with the f32 search's similarity), checked against the minimum
     * again, and the best k of them are the result. */
    merged.heap = cands;
    merged.n = 0;
    merged.k = kc;
    for (int t = 0; t < nth; t++)
        for (int i = 0; i < parts[t].pq.top.n; i++)
            heap_offer(&merged, &parts[t].pq.top.heap[i]);
    for (int i = 0; i < merged.n; i++) {
        cand c = merged.heap[i];
        if (low) {
            const float *row = ix->emb + c.pos * dim;
            ix->ops->dot_f32(&row, 1, 1, dim, unit, &exact);
            if (!(exact >= result.min_sim))
                continue;
            c.sim = exact;
        }
        heap_offer(&result.top, &c);
    }
    st = emit(ix, &result, p, hits, n_hits, err);
out:
    pthread_rwlock_unlock(&ix->lock);
out_free:
    free(unit);
    free(q16);
    free(final_heap);
    free(heaps);
    free(cands);
    free(parts);
    return st;
}

rd_status rd_index_search(rd_index *ix, const rd_index_query *q, const rd_index_params *p,
                          rd_index_hit *hits, int *n_hits, rd_error *err)
{
    return search_one(ix, q, p, hits, n_hits, err);
}

/* ---- a batch: sgemm ---- */

rd_status rd_index_search_batch(rd_index *ix, const rd_index_query *qs, int nq,
                                const rd_index_params *p, rd_index_hit *hits, int *n_hits,
                                rd_error *err)
{
    rd_status st;
    float *qm = NULL, *scores = NULL;
    cand *heaps = NULL;
    prepared *pq = NULL;
    size_t dim = (size_t)ix->dim, block, qbytes;
    int locked = 0, emitted = 0;

    if (nq == 1)
        return search_one(ix, qs, p, hits, n_hits, err);
    if ((st = check_params(p, err)) != RD_OK)
        return st;
    if (nq < 1 || nq > RD_INDEX_MAX_BATCH)
        return rd_error_set(err, RD_E_INVALID, "search: %d queries outside 1..%d", nq,
                            RD_INDEX_MAX_BATCH);
    for (int i = 0; i < nq; i++)
        n_hits[i] = 0;
    /* nq <= 4096, dim <= 4096, k <= 1024: these products cannot overflow size_t. */
    qbytes = (size_t)nq * dim * sizeof(float);
    block = SCORE_BUDGET / (size_t)nq;
    if (block < MIN_BLOCK_ROWS)
        block = MIN_BLOCK_ROWS;
    qm = malloc(qbytes);
    heaps = malloc((size_t)nq * (size_t)p->k * sizeof *heaps);
    pq = calloc((size_t)nq, sizeof *pq);
    scores = malloc(block * (size_t)nq * sizeof(float));
    if (!qm || !heaps || !pq || !scores) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory searching the index");
        goto out;
    }
    for (int i = 0; i < nq; i++)
        if ((st = prepare_query(ix, &qs[i], p, p->k, qm + (size_t)i * dim, heaps + (size_t)i * p->k,
                                &pq[i], err)) != RD_OK)
            goto out;
    pthread_rwlock_rdlock(&ix->lock);
    locked = 1;
    for (size_t start = 0; start < ix->n; start += block) {
        size_t bn = ix->n - start < block ? ix->n - start : block;
        const float *eb = ix->emb + start * dim;
        /* scores (nq x bn) = Q (nq x dim) * E_block^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nq, (int)bn, (int)dim, 1.0f, qm,
                    (int)dim, eb, (int)dim, 0.0f, scores, (int)bn);
        for (int i = 0; i < nq; i++)
            offer(ix, &pq[i], start, scores + (size_t)i * bn, bn);
    }
    for (int i = 0; i < nq; i++) {
        if ((st = emit(ix, &pq[i], p, hits + (size_t)i * p->k, &n_hits[i], err)) != RD_OK)
            goto out;
        emitted = i + 1;
    }
out:
    if (locked)
        pthread_rwlock_unlock(&ix->lock);
    if (st != RD_OK) {
        for (int i = 0; i < emitted; i++) {
            rd_index_hits_clear(hits + (size_t)i * p->k, n_hits[i]);
            n_hits[i] = 0;
        }
    }
    free(qm);
    free(heaps);
    free(pq);
    free(scores);
    return st;
}

/* ---- votes ---- */

void rd_vote_params_default(rd_vote_params *p)
{
    p->uncertain_value = 0.5;
    p->temperature = 0;
    p->encoder_weight = 0.5;
}

double rd_index_votes(const rd_index_hit *hits, int n_hits, const rd_vote_params *p,
                      double votes[RD_FINDING_COUNT])
{
    double total = 0, best = -INFINITY;
    for (int f = 0; f < RD_FINDING_COUNT; f++)
        votes[f] = 0;
    for (int i = 0; i < n_hits; i++)
        if (hits[i].similarity > best)
            best = hits[i].similarity;
    for (int i = 0; i < n_hits; i++) {
        double s = hits[i].similarity, w;
        /* The exponent is taken relative to the best neighbour so that a small temperature
         * cannot overflow. */
        if (p->temperature > 0)
            w = exp((s - best) / p->temperature);
        else
            w = s > 0 ? s : 0;
        if (!(w > 0))
            continue;
        total += w;
        for (int f = 0; f < RD_FINDING_COUNT; f++) {
            if (hits[i].state[f] == RD_STATE_PRESENT)
                votes[f] += w;
            else if (hits[i].state[f] == RD_STATE_UNCERTAIN)
                votes[f] += w * p->uncertain_value;
        }
    }
    if (total > 0)
        for (int f = 0; f < RD_FINDING_COUNT; f++)
            votes[f] /= total;
    return total;
}

void rd_index_combine(const double *encoder, const double votes[RD_FINDING_COUNT],
                      double total_weight, const rd_vote_params *p,
                      double combined[RD_FINDING_N_ABNORMAL])
{
    double w = p->encoder_weight;
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        if (!(total_weight > 0))
            combined[f] = encoder ? encoder[f] : 0;
        else if (!encoder)
            combined[f] = votes[f];
        else
            combined[f] = w * encoder[f] + (1 - w) * votes[f];
    }
}

double rd_index_scores(const rd_index_hit *hits, int n_hits, const double *encoder,
                       const rd_vote_params *p, double votes[RD_FINDING_COUNT],
                       double combined[RD_FINDING_N_ABNORMAL])
{
    double total = rd_index_votes(hits, n_hits, p, votes);
    rd_index_combine(encoder, votes, total, p, combined);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        combined[f] = !(combined[f] >= 0) ? 0 : combined[f] > 1 ? 1 : combined[f];
    return total;
}

void rd_index_query_from_meta(rd_index_query *q, const rd_dicom_meta *m, const char *salt,
                              char patient_hash[RD_SHA256_HEX_SIZE])
{
    patient_hash[0] = '\0';
    if (m->patient_id[0])
        rd_index_patient_hash(salt, m->patient_id, patient_hash);
    q->study_uid = m->study_uid;
    q->patient_hash = patient_hash;
    q->view = rd_view_family_from_position(m->view_position);
    q->study_date = rd_index_parse_date(m->study_date);
}

void rd_index_evidence(const rd_index_hit *hits, int n_hits, rd_evidence_case *out)
{
    for (int i = 0; i < n_hits; i++) {
        out[i].similarity = hits[i].similarity;
        for (int f = 0; f < RD_FINDING_COUNT; f++)
            out[i].state[f] = hits[i].state[f];
        out[i].findings_text = hits[i].findings_text;
        out[i].impression_text = hits[i].impression_text;
    }
}

/* ---- settings ---- */

static rd_status model_number(const cJSON *obj, const char *name, double lo, double hi, int integer,
                              double *out, const char *origin, rd_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, name);
    if (!v)
        return RD_OK;
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi) ||
        (integer && v->valuedouble != floor(v->valuedouble)))
        return rd_error_set(err, RD_E_CONFIG, "%s: retrieval.%s must be a number in [%g, %g]%s",
                            origin, name, lo, hi, integer ? " (integer)" : "");
    *out = v->valuedouble;
    return RD_OK;
}

rd_status rd_retrieval_settings_resolve(rd_retrieval_settings *out, const struct rd_config *cfg,
                                        const char *model_json, rd_error *err)
{
    static const char *const known[] = {
        "k", "encoder_weight", "min_similarity", "uncertain_value", "temperature", "chosen_by"};
    rd_retrieval_settings s;
    double k = 10;
    rd_status st = RD_OK;
    cJSON *doc = NULL;

    rd_index_params_default(&s.search);
    rd_vote_params_default(&s.votes);
    s.search.with_text = 1;
    s.storage = RD_INDEX_STORAGE_F32;
    if (model_json) {
        const cJSON *r;
        if (!(doc = cJSON_Parse(model_json)))
            return rd_error_set(err, RD_E_CONFIG, "model description: not valid JSON");
        r = cJSON_GetObjectItemCaseSensitive(doc, "retrieval");
        if (r) {
            const cJSON *m;
            if (!cJSON_IsObject(r)) {
                st = rd_error_set(err, RD_E_CONFIG,
                                  "model description: retrieval is not an "
                                  "object");
                goto out;
            }
            cJSON_ArrayForEach(m, r)
            {
                int ok = 0;
                for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
                    ok |= m->string && strcmp(m->string, known[i]) == 0;
                if (!ok) {
                    st = rd_error_set(err, RD_E_CONFIG,
                                      "model description: unknown key retrieval.%s",
                                      m->string ? m->string : "?");
                    goto out;
                }
            }
            const cJSON *by = cJSON_GetObjectItemCaseSensitive(r, "chosen_by");
            if (by && !cJSON_IsString(by)) {
                st = rd_error_set(err, RD_E_CONFIG,
                                  "model description: retrieval.chosen_by is not a string");
                goto out;
            }
            const char *o = "model description";
            if ((st = model_number(r, "k", 1, RD_INDEX_MAX_K, 1, &k, o, err)) != RD_OK ||
                (st = model_number(r, "encoder_weight", 0, 1, 0, &s.votes.encoder_weight, o,
                                   err)) != RD_OK ||
                (st = model_number(r, "min_similarity", -1, 1, 0, &s.search.min_similarity, o,
                                   err)) != RD_OK ||
                (st = model_number(r, "uncertain_value", 0, 1, 0, &s.votes.uncertain_value, o,
                                   err)) != RD_OK ||
                (st = model_number(r, "temperature", 0, 10, 0, &s.votes.temperature, o, err)) !=
                    RD_OK)
                goto out;
        }
    }
    s.search.k = (int)k;
    if (cfg) {
        /* A key at its "from the model" default leaves the model's (or built-in) value. */
        if (cfg->retrieval_k > 0)
            s.search.k = cfg->retrieval_k;
        if (cfg->retrieval_encoder_weight >= 0)
            s.votes.encoder_weight = cfg->retrieval_encoder_weight;
        if (cfg->retrieval_min_similarity > -1)
            s.search.min_similarity = cfg->retrieval_min_similarity;
        if (cfg->retrieval_uncertain_value >= 0)
            s.votes.uncertain_value = cfg->retrieval_uncertain_value;
        if (cfg->retrieval_temperature >= 0)
            s.votes.temperature = cfg->retrieval_temperature;
        s.search.date_window_days = cfg->retrieval_date_window_days;
        /* Empty (a configuration not from rd_config_default) is f32. */
        if (cfg->retrieval_storage[0] &&
            rd_index_storage_parse(cfg->retrieval_storage, &s.storage, err) != RD_OK) {
            st = rd_error_prefix(err, RD_E_CONFIG, "retrieval.storage");
            goto out;
        }
    }
    *out = s;
out:
    cJSON_Delete(doc);
    return st;
}

/* ---- seed files ---- */

static void put_le64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put_lef32(unsigned char *p, float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(u >> (8 * i));
}

static float get_lef32(const unsigned char *p)
{
    uint32_t u = 0;
    float f;
    for (int i = 0; i < 4; i++)
        u |= (uint32_t)p[i] << (8 * i);
    memcpy(&f, &u, 4);
    return f;
}

rd_status rd_index_seed_write(rd_index *ix, const char *path, int include_signed, long *n_written,
                              rd_error *err)
{
    cJSON *doc = NULL, *arr;
    char *header = NULL;
    unsigned char *buf = NULL;
    size_t *sel = NULL, n_sel = 0, hlen, data_bytes, total;
    rd_status st = RD_OK;
    int locked = 0;

    pthread_rwlock_rdlock(&ix->lock);
    locked = 1;
    if (ix->n && !(sel = malloc(ix->n * sizeof *sel))) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory writing %s", path);
        goto out;
    }
    for (size_t i = 0; i < ix->n; i++)
        if (include_signed || ix->meta[i].source != RD_ARCHIVE_SIGNED)
            sel[n_sel++] = i;
    if (!(doc = cJSON_CreateObject()) || !(arr = cJSON_CreateArray())) {
        cJSON_Delete(doc);
        doc = NULL;
        st = rd_error_set(err, RD_E_NOMEM, "out of memory writing %s", path);
        goto out;
    }
    cJSON_AddItemToObject(doc, "entries", arr);
    cJSON_AddStringToObject(doc, "format", "radraft-seed-archive");
    cJSON_AddNumberToObject(doc, "version", 1);
    cJSON_AddStringToObject(doc, "model_version", ix->version);
    cJSON_AddNumberToObject(doc, "dim", ix->dim);
    cJSON_AddNumberToObject(doc, "count", (double)n_sel);
    for (size_t j = 0; j < n_sel; j++) {
        const ix_meta *m = &ix->meta[sel[j]];
        char key_hash[RD_SHA256_HEX_SIZE], study_hash[RD_SHA256_HEX_SIZE],
            stx[RD_FINDING_COUNT + 1];
        cJSON *o = cJSON_CreateObject();
        if (!o) {
            st = rd_error_set(err, RD_E_NOMEM, "out of memory writing %s", path);
            goto out;
        }
        cJSON_AddItemToArray(arr, o);
        /* A seed entry that was itself read from a seed already carries hashes: keep them,
         * so that writing a seed again is stable. */
        if (hex64_valid(m->key))
            rd_strlcpy(key_hash, m->key, sizeof key_hash);
        else
            rd_sha256_hex(m->key, strlen(m->key), key_hash);
        if (hex64_valid(m->study_uid))
            rd_strlcpy(study_hash, m->study_uid, sizeof study_hash);
        else
            rd_sha256_hex(m->study_uid, strlen(m->study_uid), study_hash);
        for (int f = 0; f < RD_FINDING_COUNT; f++)
            stx[f] = (char)('0' + m->state[f]);
        stx[RD_FINDING_COUNT] = '\0';
        cJSON_AddStringToObject(o, "key", key_hash);
        cJSON_AddStringToObject(o, "study", study_hash);
        cJSON_AddStringToObject(o, "patient", m->patient_hash);
        cJSON_AddStringToObject(o, "view", rd_view_family_name((rd_view_family)m->view));
        cJSON_AddNumberToObject(o, "date", m->study_date);
        cJSON_AddStringToObject(o, "states", stx);
    }
    if (!(header = cJSON_PrintUnformatted(doc))) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory writing %s", path);
        goto out;
    }
    hlen = strlen(header);
    if (!rd_mul_size(n_sel, (size_t)ix->dim * 4, &data_bytes) ||
        (total = 16 + hlen + data_bytes) < data_bytes) {
        st = rd_error_set(err, RD_E_TOO_LARGE, "%s: seed archive too large", path);
        goto out;
    }
    if (!(buf = malloc(total))) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory writing %s", path);
        goto out;
    }
    memcpy(buf, SEED_MAGIC, 8);
    put_le64(buf + 8, hlen);
    memcpy(buf + 16, header, hlen);
    for (size_t j = 0; j < n_sel; j++) {
        const float *e = ix->emb + sel[j] * (size_t)ix->dim;
        unsigned char *p = buf + 16 + hlen + j * (size_t)ix->dim * 4;
        for (int d = 0; d < ix->dim; d++)
            put_lef32(p + (size_t)d * 4, e[d]);
    }
    pthread_rwlock_unlock(&ix->lock);
    locked = 0;
    if ((st = rd_write_file_atomic(path, buf, total, err)) != RD_OK)
        goto out;
    if (n_written)
        *n_written = (long)n_sel;
out:
    if (locked)
        pthread_rwlock_unlock(&ix->lock);
    cJSON_Delete(doc);
    free(header);
    free(buf);
    free(sel);
    return st;
}

static const char *json_str(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

rd_status rd_index_seed_read(rd_index *ix, rd_store *store, const char *path, size_t max_bytes,
                             long *n_added, rd_error *err)
{
    char *data = NULL;
    size_t len = 0, hlen, count, need, bytes;
    cJSON *doc = NULL;
    const cJSON *arr, *v;
    rd_index_entry *entries = NULL;
    float *emb = NULL;
    int *added = NULL;
    rd_status st;
    const char *s;
    long n_new = 0;

    if (max_bytes == 0)
        max_bytes = (size_t)4 << 30;
    if ((st = rd_read_file(path, max_bytes, &data, &len, err)) != RD_OK)
        return st;
    if (len < 16 || memcmp(data, SEED_MAGIC, 8) != 0) {
        st = rd_error_set(err, RD_E_CORRUPT, "%s: not a radraft seed archive", path);
        goto out;
    }
    {
        uint64_t h = get_le64((const unsigned char *)data + 8);
        if (h > RD_INDEX_SEED_MAX_HEADER || h > len - 16) {
            st = rd_error_set(err, RD_E_CORRUPT, "%s: header length %llu exceeds the file", path,
                              (unsigned long long)h);
            goto out;
        }
        hlen = (size_t)h;
    }
    if (!(doc = cJSON_ParseWithLength(data + 16, hlen)) || !cJSON_IsObject(doc)) {
        st = rd_error_set(err, RD_E_CORRUPT, "%s: header is not a JSON object", path);
        goto out;
    }
    if (!(s = json_str(doc, "format")) || strcmp(s, "radraft-seed-archive") != 0 ||
        !cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(doc, "version")) ||
        v->valuedouble != 1) {
        st = rd_error_set(err, RD_E_CORRUPT, "%s: not a version 1 radraft seed archive", path);
        goto out;
    }
    if (!(s = json_str(doc, "model_version")) || strcmp(s, ix->version) != 0) {
        st = rd_error_set(err, RD_E_MODEL, "%s: seed of model %s, the index is of model %s", path,
                          s ? s : "(none)", ix->version);
        goto out;
    }
    if (!cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(doc, "dim")) ||
        v->valuedouble != ix->dim) {
        st = rd_error_set(err, RD_E_MODEL, "%s: seed dimension differs from the index's %d", path,
                          ix->dim);
        goto out;
    }
    if (!cJSON_IsNumber(v = cJSON_GetObjectItemCaseSensitive(doc, "count")) ||
        !(v->valuedouble >= 0 && v->valuedouble <= (double)RD_INDEX_MAX_ENTRIES) ||
        v->valuedouble != floor(v->valuedouble)) {
        st = rd_error_set(err, RD_E_CORRUPT, "%s: bad entry count", path);
        goto out;
    }
    count = (size_t)v->valuedouble;
    arr = cJSON_GetObjectItemCaseSensitive(doc, "entries");
    if (!cJSON_IsArray(arr) || (size_t)cJSON_GetArraySize(arr) != count) {
        st = rd_error_set(err, RD_E_CORRUPT, "%s: entries do not match the count %zu", path, count);
        goto out;
    }
    /* The embeddings must fill the rest of the file exactly: a truncated or padded file is
     * refused before anything is allocated for them. */
    if (!rd_mul_size(count, (size_t)ix->dim * 4, &need) || need != len - 16 - hlen) {
        st =
            rd_error_set(err, RD_E_CORRUPT, "%s: %zu bytes of embeddings, expected %zu x %d floats",
                         path, len - 16 - hlen, count, ix->dim);
        goto out;
    }
    if (count == 0)
        goto out;
    if (!rd_mul_size(count, (size_t)ix->dim * sizeof(float), &bytes) || !(emb = malloc(bytes)) ||
        !(entries = calloc(count, sizeof *entries)) || !(added = calloc(count, sizeof *added))) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory reading %s", path);
        goto out;
    }
    {
        const unsigned char *p = (const unsigned char *)data + 16 + hlen;
        for (size_t i = 0; i < count * (size_t)ix->dim; i++)
            emb[i] = get_lef32(p + i * 4);
    }
    {
        size_t i = 0;
        const cJSON *o;
        cJSON_ArrayForEach(o, arr)
        {
            rd_index_entry *e = &entries[i];
            const char *key = json_str(o, "key"), *study = json_str(o, "study");
            const char *patient = json_str(o, "patient"), *view = json_str(o, "view");
            const char *stx = json_str(o, "states");
            const cJSON *date = cJSON_GetObjectItemCaseSensitive(o, "date");
            if (!cJSON_IsObject(o) || !key || !study || !patient || !view || !stx ||
                !cJSON_IsNumber(date) || strlen(stx) != RD_FINDING_COUNT ||
                rd_view_family_parse(view, &e->view, NULL) != RD_OK ||
                !(date->valuedouble >= 0 && date->valuedouble <= 99991231) ||
                date->valuedouble != floor(date->valuedouble)) {
                st = rd_error_set(err, RD_E_CORRUPT, "%s: entry %zu is malformed", path, i);
                goto out;
            }
            for (int f = 0; f < RD_FINDING_COUNT; f++) {
                if (stx[f] < '0' || stx[f] > '3') {
                    st = rd_error_set(err, RD_E_CORRUPT, "%s: entry %zu: bad states", path, i);
                    goto out;
                }
                e->state[f] = (rd_finding_state)(stx[f] - '0');
            }
            e->key = key;
            e->study_uid = study;
            e->patient_hash = patient;
            e->study_date = (int)date->valuedouble;
            e->source = RD_ARCHIVE_SEED;
            /* Validate everything (lengths, hash, date, embedding) before adding anything. */
            if ((st = check_entry(ix, e, err)) != RD_OK) {
                st = rd_error_prefix(err, RD_E_CORRUPT, "%s: entry %zu", path, i);
                goto out;
            }
            {
                const float *x = emb + i * (size_t)ix->dim;
                double ss = 0;
                for (int d = 0; d < ix->dim; d++) {
                    if (!isfinite(x[d])) {
                        ss = NAN;
                        break;
                    }
                    ss += (double)x[d] * x[d];
                }
                if (!(ss > 0) || !isfinite(ss)) {
                    st = rd_error_set(err, RD_E_CORRUPT,
                                      "%s: entry %zu: embedding not finite or zero", path, i);
                    goto out;
                }
            }
            i++;
        }
    }
    if ((st = rd_index_add_batch(ix, store, entries, count, emb, NULL, added, err)) != RD_OK)
        goto out;
    for (size_t i = 0; i < count; i++)
        n_new += added[i];
out:
    if (st == RD_OK && n_added)
        *n_added = n_new;
    cJSON_Delete(doc);
    free(data);
    free(entries);
    free(emb);
    free(added);
    return st;
}

/* ---- model paths ---- */

static int is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

rd_status rd_index_seed_default_path(const char *model_path, char *out, size_t size, rd_error *err)
{
    int n;
    if (!model_path || !model_path[0])
        return rd_error_set(err, RD_E_INVALID, "no model path");
    if (is_dir(model_path)) {
        n = snprintf(out, size, "%s/%s", model_path, RD_INDEX_SEED_FILE);
    } else {
        const char *slash = strrchr(model_path, '/');
        if (slash)
            n = snprintf(out, size, "%.*s/%s", (int)(slash - model_path), model_path,
                         RD_INDEX_SEED_FILE);
        else
            n = snprintf(out, size, "%s", RD_INDEX_SEED_FILE);
    }
    if (n < 0 || (size_t)n >= size)
        return rd_error_set(err, RD_E_TOO_LARGE, "%s: path too long", model_path);
    return RD_OK;
}

rd_status rd_retrieval_settings_load(rd_retrieval_settings *out, const struct rd_config *cfg,
                                     const char *model_path, rd_error *err)
{
    char *json = NULL;
    rd_status st;
    if (!model_path || !model_path[0])
        return rd_retrieval_settings_resolve(out, cfg, NULL, err);
    if ((st = rd_nn_model_read_json(model_path, &json, NULL, err)) != RD_OK)
        return st;
    st = rd_retrieval_settings_resolve(out, cfg, json, err);
    if (st != RD_OK)
        rd_error_prefix(err, st, "%s", model_path);
    free(json);
    return st;
}
