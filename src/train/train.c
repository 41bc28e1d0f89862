/* radraft — the trainer: data (NIH CSV, patient split, streaming loader with augmentation),
 * the training loop (loss, AdamW, schedule, validation AUROC, early stopping), checkpoints
 * and the model files it writes. The network itself is src/train/nn_train.c, on the nn
 * engine's shared forward kernels and worker pool. */
#include "radraft/nn.h"
#include "radraft/train.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "train/nn_train_int.h"
#include "radraft/dicom.h"
#include "radraft/findings.h"
#include "radraft/image.h"
#include "radraft/log.h"
#include "base/util.h"

#define NF RD_FINDING_N_ABNORMAL
#define MAX_CSV_BYTES ((size_t)512 << 20)
#define MAX_ROWS 10000000
#define PATH_MAX_LEN 4096

void rd_train_options_default(rd_train_options *o)
{
    memset(o, 0, sizeof *o);
    o->arch = "resnet-small";
    o->epochs = 30;
    o->batch = 32;
    o->patience = 8;
    o->augment = 1;
    o->lr = 1e-3;
    o->weight_decay = 1e-4;
    o->warmup_epochs = 1.0;
    o->min_lr_ratio = 0.01;
    o->label_smoothing = 0.05;
    o->pos_weight_cap = 10.0;
    o->val_fraction = 0.15;
    o->holdout_fraction = 0.15;
    o->min_positives = 5;
    o->seed = 1;
}

/* Random numbers ----------------------------------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    /* splitmix64's finalizer: every random choice of the trainer is a pure function of
     * (seed, purpose, epoch, index), so a run does not depend on thread timing and a resumed
     * run continues exactly where the interrupted one was. */
    z += 0x9e3779b97f4a7c15ull;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

typedef struct rng_t {
    uint64_t s;
} rng_t;

static uint64_t rng_next(rng_t *r)
{
    r->s += 0x9e3779b97f4a7c15ull;
    return mix64(r->s);
}

static double rng_unit(rng_t *r)
{
    return (double)(rng_next(r) >> 11) / 9007199254740992.0;
}

static double rng_range(rng_t *r, double lo, double hi)
{
    return lo + (hi - lo) * rng_unit(r);
}

/* A draw from Beta(a, a) for 0 < a <= 1 (Johnk's method: two powered uniforms, accepted
 * when their sum is at most one). */
static double rng_beta_sym(rng_t *r, double a)
{
    for (int tries = 0; tries < 1000; tries++) {
        double x = pow(rng_unit(r), 1 / a), y = pow(rng_unit(r), 1 / a);
        if (x + y <= 1 && x + y > 0)
            return x / (x + y);
    }
    return 0.5;
}

/* Mixup (Zhang et al., 2018) over one batch: image i is blended with image n-1-i of the
 * shuffled batch, weight lambda ~ Beta(a, a) per pair, and so are their label vectors. A
 * pure function of (seed, epoch, batch), like every other random choice of the trainer. */
static void mixup_batch(float *x, float *t, int n, size_t elems, double a, uint64_t seed, int epoch,
                        long b)
{
    rng_t r = {mix64(seed ^ mix64(0x313bull + (uint64_t)epoch * 1000003u + (uint64_t)b))};
    for (int i = 0; i < n / 2; i++) {
        int j = n - 1 - i;
        float l = (float)rng_beta_sym(&r, a), m = 1 - l;
        float *xi = x + (size_t)i * elems, *xj = x + (size_t)j * elems;
        for (size_t e = 0; e < elems; e++) {
            float u = xi[e], v = xj[e];
            xi[e] = l * u + m * v;
            xj[e] = m * u + l * v;
        }
        for (int f = 0; f < NF; f++) {
            float u = t[i * NF + f], v = t[j * NF + f];
            t[i * NF + f] = l * u + m * v;
            t[j * NF + f] = m * u + l * v;
        }
    }
}

/* AUROC ---------------------------------------------------------------------------------------- */

typedef struct scored {
    float s;
    unsigned char y;
} scored;

static int cmp_scored(const void *a, const void *b)
{
    float x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return x < y ? -1 : x > y;
}

double rd_auroc(const float *scores, const unsigned char *labels, int n)
{
    scored *v;
    double pos = 0, rank_sum = 0;
    if (n < 2 || !(v = malloc((size_t)n * sizeof *v)))
        return NAN;
    for (int i = 0; i < n; i++) {
        v[i].s = scores[i];
        v[i].y = labels[i] ? 1 : 0;
        pos += v[i].y;
    }
    if (pos == 0 || pos == n) {
        free(v);
        return NAN;
    }
    qsort(v, (size_t)n, sizeof *v, cmp_scored);
    /* Mann-Whitney: the sum of the positives' ranks, tied scores sharing their mean rank. */
    for (int i = 0; i < n;) {
        int j = i;
        while (j < n && v[j].s == v[i].s)
            j++;
        double mean_rank = (i + 1 + j) / 2.0;
        for (int k = i; k < j; k++)
            if (v[k].y)
                rank_sum += mean_rank;
        i = j;
    }
    free(v);
    double neg = n - pos;
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg);
}

/* Data ------------------------------------------------------------------------------------------
 */

typedef struct sample {
    char *path;      /* full path of the image */
    char *patient;   /* patient id as in the CSV */
    uint16_t labels; /* bit f set when finding f is present */
    int extra;       /* from the extra set: training only */
} sample;

typedef struct dataset {
    sample *s;
    int n;
} dataset;

static void dataset_clear(dataset *d)
{
    for (int i = 0; i < d->n; i++) {
        free(d->s[i].path);
        free(d->s[i].patient);
    }
    free(d->s);
    memset(d, 0, sizeof *d);
}

/* Splits a CSV line (no quoting in the NIH format) into at most `max` fields in place. */
static int split_fields(char *line, char **f, int max)
{
    int n = 0;
    f[n++] = line;
    for (char *p = line; *p; p++)
        if (*p == ',') {
            *p = '\0';
            if (n == max)
                return -1;
            f[n++] = p + 1;
        }
    return n;
}

/* 1 when an image of that file name is among the first n samples. */
static int has_image_named(const dataset *d, int n, const char *name)
{
    for (int i = 0; i < n; i++) {
        const char *b = strrchr(d->s[i].path, '/');
        if (strcmp(b ? b + 1 : d->s[i].path, name) == 0)
            return 1;
    }
    return 0;
}

/* Appends the rows of a labels CSV to `d`. The extra set's rows are marked training-only,
 * and a row naming an image the main set already has is left out (the same radiograph at
 * another resolution). */
static rd_status load_csv_file(const rd_train_options *o, const char *csv, const char *images_dir,
                               int extra, dataset *d, rd_error *err)
{
    char *text = NULL, *line, *next;
    size_t len = 0;
    rd_status st;
    int col_image = -1, col_patient = -1, col_labels = -1, ncols = 0, cap = d->n, lineno = 0;
    int missing = 0, n_main = d->n, duplicates = 0;

    if ((st = rd_read_file(csv, MAX_CSV_BYTES, &text, &len, err)) != RD_OK)
        return st;
    for (line = text; line && *line; line = next) {
        char *f[64];
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        size_t ll = strlen(line);
        if (ll && line[ll - 1] == '\r')
            line[--ll] = '\0';
        if (ll == 0)
            continue;
        int nf = split_fields(line, f, 64);
        if (col_image < 0) {
            if (nf < 0) {
                st = rd_error_set(err, RD_E_INVALID, "%s: header has too many columns", csv);
                goto out;
            }
            for (int i = 0; i < nf; i++) {
                if (strcmp(f[i], "image") == 0)
                    col_image = i;
                else if (strcmp(f[i], "patient_id") == 0)
                    col_patient = i;
                else if (strcmp(f[i], "labels") == 0)
                    col_labels = i;
            }
            if (col_image < 0 || col_patient < 0 || col_labels < 0) {
                st = rd_error_set(err, RD_E_INVALID,
                                  "%s: the header must name the columns image, patient_id and "
                                  "labels",
                                  csv);
                goto out;
            }
            ncols = nf;
            continue;
        }
        if (nf != ncols) {
            st = rd_error_set(err, RD_E_INVALID, "%s:%d: %d fields, the header has %d", csv, lineno,
                              nf, ncols);
            goto out;
        }
        if (!extra && o->max_images > 0 && d->n >= o->max_images)
            break;
        const char *img = f[col_image], *pat = f[col_patient];
        /* The image name comes from outside: a plain relative name under images_dir. */
        if (!img[0] || img[0] == '/' || strstr(img, "..") || !pat[0] || strlen(pat) > 128) {
            st =
                rd_error_set(err, RD_E_INVALID, "%s:%d: bad image name or patient id", csv, lineno);
            goto out;
        }
        uint16_t bits = 0;
        for (char *lab = f[col_labels], *bar; lab && *lab; lab = bar) {
            rd_finding fi;
            bar = strchr(lab, '|');
            if (bar)
                *bar++ = '\0';
            if (strcmp(lab, "No Finding") == 0 || !lab[0])
                continue;
            if (rd_finding_from_name(lab, &fi, NULL) != RD_OK || (int)fi >= NF) {
                st = rd_error_set(err, RD_E_INVALID, "%s:%d: unknown finding '%s'", csv, lineno,
                                  lab);
                goto out;
            }
            bits |= (uint16_t)(1u << fi);
        }
        if (extra && has_image_named(d, n_main, img)) {
            duplicates++;
            continue;
        }
        char path[PATH_MAX_LEN];
        if (snprintf(path, sizeof path, "%s/%s", images_dir, img) >= (int)sizeof path) {
            st = rd_error_set(err, RD_E_INVALID, "%s:%d: path too long", csv, lineno);
            goto out;
        }
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            if (missing++ < 5)
                rd_log_warn("train: %s is missing; left out", path);
            continue;
        }
        if (d->n == cap) {
            int nc = cap ? 2 * cap : 1024;
            sample *ns;
            if (nc > MAX_ROWS || !(ns = realloc(d->s, (size_t)nc * sizeof *ns))) {
                st = rd_error_set(err, RD_E_NOMEM, "%s: too many rows", csv);
                goto out;
            }
            d->s = ns;
            cap = nc;
        }
        sample *s = &d->s[d->n];
        s->path = strdup(path);
        s->patient = strdup(pat);
        s->labels = bits;
        s->extra = extra;
        if (!s->path || !s->patient) {
            free(s->path);
            free(s->patient);
            st = rd_error_set(err, RD_E_NOMEM, "out of memory");
            goto out;
        }
        d->n++;
    }
    if (col_image < 0) {
        st = rd_error_set(err, RD_E_INVALID, "%s: empty", csv);
        goto out;
    }
    if (missing)
        rd_log_warn("train: %d images named in %s are missing", missing, csv);
    if (duplicates)
        rd_log_info("train: %d images of %s are in the main set too; left out", duplicates, csv);
    st = RD_OK;
out:
    free(text);
    return st;
}

static rd_status load_csv(const rd_train_options *o, dataset *d, rd_error *err)
{
    rd_status st;
    memset(d, 0, sizeof *d);
    st = load_csv_file(o, o->labels_csv, o->images_dir, 0, d, err);
    if (st == RD_OK && o->extra_labels_csv)
        st = load_csv_file(o, o->extra_labels_csv,
                           o->extra_images_dir ? o->extra_images_dir : o->images_dir, 1, d, err);
    if (st != RD_OK)
        dataset_clear(d);
    return st;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorts the patient ids of the samples `idx` into `ids` (n entries) and returns the number
 * of distinct ones, which are moved to the front. */
static int distinct_patients(const dataset *d, const int *idx, int n, const char **ids)
{
    int u = 0;
    for (int i = 0; i < n; i++)
        ids[i] = d->s[idx[i]].patient;
    qsort(ids, (size_t)n, sizeof *ids, cmp_str);
    for (int i = 0; i < n; i++)
        if (u == 0 || strcmp(ids[u - 1], ids[i]) != 0)
            ids[u++] = ids[i];
    return u;
}

/* The patient's place in [0, 1): a pure function of the id and the seed, so that every
 * image of a patient lands on the same side of every split. */
static double patient_unit(const char *patient, uint64_t seed)
{
    uint64_t h = mix64(fnv1a(patient) ^ mix64(seed ^ 0x5a17ull));
    return (double)(h >> 11) / 9007199254740992.0;
}

enum { GROUP_TRAIN = 0, GROUP_VAL = 1, GROUP_HOLDOUT = 2 };

/* Which side of the split the patient is on. Without folds, validation below val_fraction.
 * With k folds, the holdout below holdout_fraction, and the rest of [0, 1) cut into k equal
 * folds: the patient's fold is validation when it is the chosen one. Holdout patients are
 * never trained on by any fold, so thresholds and calibration fitted on them are honest for
 * every model of the cross-validation and for the final one. */
static int patient_group(const rd_train_options *o, const char *patient)
{
    double u = patient_unit(patient, o->seed);
    if (o->folds < 2)
        return u < o->val_fraction ? GROUP_VAL : GROUP_TRAIN;
    if (u < o->holdout_fraction)
        return GROUP_HOLDOUT;
    int k = (int)((u - o->holdout_fraction) / (1 - o->holdout_fraction) * o->folds);
    if (k >= o->folds)
        k = o->folds - 1;
    return k == o->fold ? GROUP_VAL : GROUP_TRAIN;
}

/* Image loading and augmentation ------------------------------------------------------------ */

static rd_status read_gray(const char *path, rd_image **out, rd_error *err)
{
    rd_status st = rd_png_probe(path) ? rd_png_read(path, out, NULL, err)
                                      : rd_dicom_read_image(path, NULL, out, NULL, err);
    return st == RD_OK ? RD_OK : rd_error_prefix(err, st, "%s", path);
}

/* Bilinear sample with the border replicated. */
static float sample_bilinear(const rd_image *im, double x, double y)
{
    int w = im->width, h = im->height;
    if (x < 0)
        x = 0;
    if (y < 0)
        y = 0;
    if (x > w - 1)
        x = w - 1;
    if (y > h - 1)
        y = h - 1;
    int x0 = (int)x, y0 = (int)y, x1 = x0 + 1 < w ? x0 + 1 : x0, y1 = y0 + 1 < h ? y0 + 1 : y0;
    double fx = x - x0, fy = y - y0;
    const float *d = im->data;
    double top = d[(size_t)y0 * w + x0] * (1 - fx) + d[(size_t)y0 * w + x1] * fx;
    double bot = d[(size_t)y1 * w + x0] * (1 - fx) + d[(size_t)y1 * w + x1] * fx;
    return (float)(top * (1 - fy) + bot * fy);
}

typedef struct prep {
    int size, channels;
    float mean[RD_NN_MAX_IN_CHANNELS], inv_std[RD_NN_MAX_IN_CHANNELS];
} prep;

/* Writes the network input of one image: resized to size x size (as the encoder does), then,
 * when `r` is given, a random affine warp (rotation +-7 degrees, scale 0.9-1.1, translation
 * +-6%: together a random crop) and intensity jitter (gamma 0.78-1.28, contrast 0.85-1.15,
 * brightness +-0.08); no flip. */
static rd_status prepare_image(const char *path, const prep *p, rng_t *r, float *dst, rd_error *err)
{
    rd_image *img = NULL, *rs = NULL;
    const rd_image *src;
    rd_status st;
    size_t plane = (size_t)p->size * p->size;

    if ((st = read_gray(path, &img, err)) != RD_OK)
        return st;
    src = img;
    if (img->width != p->size || img->height != p->size) {
        if ((st = rd_image_resize(img, p->size, p->size, &rs, err)) != RD_OK)
            goto out;
        src = rs;
    }
    if (!r) {
        for (size_t i = 0; i < plane; i++)
            dst[i] = src->data[i];
    } else {
        double ang = rng_range(r, -7, 7) * 3.14159265358979 / 180, sc = rng_range(r, 0.9, 1.1);
        double tx = rng_range(r, -0.06, 0.06) * p->size, ty = rng_range(r, -0.06, 0.06) * p->size;
        double gamma = exp(rng_range(r, -0.25, 0.25)), con = rng_range(r, 0.85, 1.15);
        double bri = rng_range(r, -0.08, 0.08);
        double ca = cos(ang) / sc, sa = sin(ang) / sc, c = (p->size - 1) / 2.0;
        for (int v = 0; v < p->size; v++)
            for (int u = 0; u < p->size; u++) {
                /* Inverse map: output pixel -> source position. */
                double dx = u - c - tx, dy = v - c - ty;
                double sx = ca * dx + sa * dy + c, sy = -sa * dx + ca * dy + c;
                double val = sample_bilinear(src, sx, sy);
                val = val < 0 ? 0 : val > 1 ? 1 : val;
                val = pow(val, gamma);
                dst[(size_t)v * p->size + u] = (float)((val - 0.5) * con + 0.5 + bri);
            }
    }
    for (int ch = p->channels - 1; ch >= 0; ch--)
        for (size_t i = 0; i < plane; i++)
            dst[(size_t)ch * plane + i] = (dst[i] - p->mean[ch]) * p->inv_std[ch];
out:
    rd_image_free(rs);
    rd_image_free(img);
    return st;
}

/* One batch being prepared, possibly on the loader thread. */
typedef struct batch_job {
    const dataset *d;
    const prep *p;
    const int *idx; /* sample indices */
    int n;
    int augment;
    uint64_t seed;
    int epoch;
    float *x, *t; /* n x input elems, n x NF */
    rd_status st;
    rd_error err;
} batch_job;

static void *batch_run(void *arg)
{
    batch_job *j = arg;
    size_t elems = (size_t)j->p->channels * j->p->size * j->p->size;
    j->st = RD_OK;
    for (int i = 0; i < j->n && j->st == RD_OK; i++) {
        const sample *s = &j->d->s[j->idx[i]];
        rng_t r = {mix64(j->seed ^ mix64(0xa11ull + (uint64_t)j->epoch) ^
                         mix64((uint64_t)j->idx[i] * 0x1234567ull))};
        j->st =
            prepare_image(s->path, j->p, j->augment ? &r : NULL, j->x + (size_t)i * elems, &j->err);
        for (int f = 0; f < NF; f++)
            j->t[(size_t)i * NF + f] = (s->labels >> f) & 1 ? 1.0f : 0.0f;
    }
    return NULL;
}

/* Model files -------------------------------------------------------------------------------- */

typedef struct trainer {
    const rd_train_options *o;
    cJSON *base; /* the model description the weights belong to */
    rd_nn_model *m;
    rd_tnet *net;
    prep p;
    int logits, scores;
    int bs; /* the batch actually used (the option, or fewer when there are fewer images) */
    dataset d;
    int *train_idx, n_train, *val_idx, n_val, *holdout_idx, n_holdout;
    int n_train_pat, n_val_pat, n_holdout_pat;
    int n_extra; /* training images from the extra set */
    float pos_weight[NF];
    int val_pos[NF];
    char version[RD_NN_NAME_MAX];
    /* progress */
    int epoch_next;
    long step;
    double best;
    int best_epoch, bad_epochs;
} trainer;

static rd_status write_tensors(rd_tnet *net, int optimizer, const char *path, rd_error *err)
{
    int np = rd_tnet_n_params(net), n = 0;
    rd_nn_tensor_desc *t = calloc(2 * (size_t)np + 1, sizeof *t);
    char(*names)[RD_NN_NAME_MAX + 32] = calloc(2 * (size_t)np + 1, sizeof *names);
    void *bytes = NULL;
    size_t len = 0;
    rd_status st;
    if (!t || !names) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < np; i++) {
        rd_tnet_param *p = rd_tnet_param_at(net, i);
        for (int k = 0; k < (optimizer ? 2 : 1); k++) {
            if (optimizer && !p->g)
                break;
            snprintf(names[n], sizeof names[n], "%s%s", p->name,
                     optimizer ? (k ? ".adam_v" : ".adam_m") : "");
            t[n].name = names[n];
            t[n].ndim = p->ndim;
            memcpy(t[n].shape, p->shape, sizeof t[n].shape);
            t[n].data = optimizer ? (k ? p->v : p->m) : p->w;
            n++;
        }
    }
    if ((st = rd_nn_safetensors_encode(t, n, &bytes, &len, err)) == RD_OK)
        st = rd_write_file_atomic(path, bytes, len, err);
out:
    free(bytes);
    free(t);
    free(names);
    return st;
}

/* Reads back the optimizer state written by write_tensors (our own file, still checked:
 * every length and offset against the bytes present). */
static rd_status read_optimizer(rd_tnet *net, const char *path, rd_error *err)
{
    char *buf = NULL;
    size_t len = 0;
    cJSON *hdr = NULL;
    rd_status st;
    uint64_t hlen = 0;
    if ((st = rd_read_file(path, (size_t)4 << 30, &buf, &len, err)) != RD_OK)
        return st;
    for (int i = 7; len >= 8 && i >= 0; i--)
        hlen = (hlen << 8) | (unsigned char)buf[i];
    if (len < 8 || hlen > len - 8 || !(hdr = cJSON_ParseWithLength(buf + 8, (size_t)hlen))) {
        st = rd_error_set(err, RD_E_MODEL, "%s: not a safetensors file", path);
        goto out;
    }
    size_t data_len = len - 8 - (size_t)hlen;
    const unsigned char *data = (const unsigned char *)buf + 8 + hlen;
    for (int i = 0; i < rd_tnet_n_params(net); i++) {
        rd_tnet_param *p = rd_tnet_param_at(net, i);
        if (!p->g)
            continue;
        for (int k = 0; k < 2; k++) {
            char name[RD_NN_NAME_MAX + 32];
            snprintf(name, sizeof name, "%s%s", p->name, k ? ".adam_v" : ".adam_m");
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(hdr, name);
            const cJSON *offs = e ? cJSON_GetObjectItemCaseSensitive(e, "data_offsets") : NULL;
            const cJSON *dt = e ? cJSON_GetObjectItemCaseSensitive(e, "dtype") : NULL;
            double b = -1, en = -1;
            if (cJSON_IsArray(offs) && cJSON_GetArraySize(offs) == 2) {
                b = cJSON_GetArrayItem(offs, 0)->valuedouble;
                en = cJSON_GetArrayItem(offs, 1)->valuedouble;
            }
            if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "F32") != 0 || b < 0 ||
                en > (double)data_len || en - b != (double)p->n * 4) {
                st = rd_error_set(err, RD_E_MODEL, "%s: tensor '%s' is missing or bad", path, name);
                goto out;
            }
            float *dst = k ? p->v : p->m;
            const unsigned char *q = data + (size_t)b;
            for (size_t j = 0; j < p->n; j++, q += 4) {
                uint32_t u = (uint32_t)q[0] | (uint32_t)q[1] << 8 | (uint32_t)q[2] << 16 |
                             (uint32_t)q[3] << 24;
                memcpy(&dst[j], &u, 4);
            }
        }
    }
out:
    cJSON_Delete(hdr);
    free(buf);
    return st;
}

static cJSON *findings_numbers(const double *v, const int *valid)
{
    cJSON *o = cJSON_CreateObject();
    for (int f = 0; o && f < NF; f++) {
        if (valid && !valid[f])
            cJSON_AddNullToObject(o, rd_finding_name((rd_finding)f));
        else
            cJSON_AddNumberToObject(o, rd_finding_name((rd_finding)f), v[f]);
    }
    return o;
}

/* Writes DIR/model.json and DIR/model.safetensors for the current weights, with the recipe
 * and `metrics` (taken over) in the description. */
/* Appends the distinct patient ids of the samples `idx` to the JSON array `ids`. */
static void add_patient_ids(const trainer *tr, const int *idx, int n, cJSON *ids)
{
    const char **pids = malloc(((size_t)n + 1) * sizeof *pids);
    int u = pids && ids ? distinct_patients(&tr->d, idx, n, pids) : 0;
    for (int i = 0; i < u; i++)
        cJSON_AddItemToArray(ids, cJSON_CreateString(pids[i]));
    free(pids);
}

static rd_status write_model(trainer *tr, const char *dir, cJSON *metrics, int epochs_done,
                             rd_error *err)
{
    const rd_train_options *o = tr->o;
    cJSON *root = cJSON_Duplicate(tr->base, 1), *tj, *rec, *sp, *ids;
    char path[PATH_MAX_LEN], *text = NULL;
    rd_status st;
    if (!root) {
        cJSON_Delete(metrics);
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    }
    cJSON_ReplaceItemInObjectCaseSensitive(root, "version", cJSON_CreateString(tr->version));
    cJSON_ReplaceItemInObjectCaseSensitive(root, "weights",
                                           cJSON_CreateString("model.safetensors"));
    /* Every node's output shape, as the loader checks it (the input size may differ from the
     * architecture's own). */
    {
        cJSON *g = cJSON_GetObjectItemCaseSensitive(root, "graph"), *nd;
        int i = 1;
        cJSON_ArrayForEach(nd, g)
        {
            if (i < tr->m->n_nodes) {
                int sh[3] = {tr->m->nodes[i].c, tr->m->nodes[i].h, tr->m->nodes[i].w};
                cJSON_DeleteItemFromObjectCaseSensitive(nd, "shape");
                cJSON_AddItemToObject(nd, "shape", cJSON_CreateIntArray(sh, 3));
            }
            i++;
        }
    }
    tj = cJSON_CreateObject();
    rec = cJSON_AddObjectToObject(tj, "recipe");
    cJSON_AddStringToObject(tj, "trainer", "radraft train");
    cJSON_AddStringToObject(rec, "arch", tr->m->name);
    cJSON_AddNumberToObject(rec, "input_size", tr->p.size);
    cJSON_AddNumberToObject(rec, "epochs", o->epochs);
    cJSON_AddNumberToObject(rec, "batch", o->batch);
    cJSON_AddNumberToObject(rec, "lr", o->lr);
    cJSON_AddStringToObject(rec, "optimizer", "AdamW (beta1 0.9, beta2 0.999, eps 1e-8)");
    cJSON_AddNumberToObject(rec, "weight_decay", o->weight_decay);
    cJSON_AddStringToObject(rec, "schedule", "linear warmup, then cosine to lr * min_lr_ratio");
    cJSON_AddNumberToObject(rec, "warmup_epochs", o->warmup_epochs);
    cJSON_AddNumberToObject(rec, "min_lr_ratio", o->min_lr_ratio);
    cJSON_AddStringToObject(rec, "loss", "binary cross-entropy per finding, positive weights");
    cJSON_AddNumberToObject(rec, "label_smoothing", o->label_smoothing);
    cJSON_AddNumberToObject(rec, "pos_weight_cap", o->pos_weight_cap);
    {
        double pw[NF];
        for (int f = 0; f < NF; f++)
            pw[f] = tr->pos_weight[f];
        cJSON_AddItemToObject(rec, "pos_weight", findings_numbers(pw, NULL));
    }
    cJSON_AddStringToObject(rec, "augmentation",
                            o->augment ? "rotation +-7 deg, scale 0.9-1.1, translation +-6%, "
                                         "gamma 0.78-1.28, contrast 0.85-1.15, brightness "
                                         "+-0.08; no flip"
                                       : "none");
    cJSON_AddNumberToObject(rec, "mixup_alpha", o->mixup);
    cJSON_AddNumberToObject(rec, "patience", o->patience);
    cJSON_AddNumberToObject(rec, "seed", (double)o->seed);
    cJSON_AddNumberToObject(rec, "threads", rd_tnet_threads(tr->net));
    if (o->init_model)
        cJSON_AddStringToObject(rec, "init_model", o->init_model);
    cJSON_AddStringToObject(tj, "labels_csv", o->labels_csv);
    if (o->extra_labels_csv) {
        cJSON_AddStringToObject(tj, "extra_labels_csv", o->extra_labels_csv);
        cJSON_AddNumberToObject(tj, "extra_training_images", tr->n_extra);
    }
    cJSON_AddNumberToObject(tj, "images", tr->d.n);
    cJSON_AddNumberToObject(tj, "epochs_done", epochs_done);
    cJSON_AddNumberToObject(tj, "steps", (double)tr->step);
    sp = cJSON_AddObjectToObject(tj, "split");
    if (o->folds >= 2) {
        cJSON_AddStringToObject(sp, "rule",
                                "by patient, u = splitmix64(fnv1a64(patient_id) ^ "
                                "splitmix64(seed ^ 0x5a17)) / 2^64: holdout when u < "
                                "holdout_fraction, else fold floor((u - holdout_fraction) / "
                                "(1 - holdout_fraction) * folds); validation is fold `fold` "
                                "(none when fold is -1)");
        cJSON_AddNumberToObject(sp, "folds", o->folds);
        cJSON_AddNumberToObject(sp, "fold", o->fold);
        cJSON_AddNumberToObject(sp, "holdout_fraction", o->holdout_fraction);
    } else {
        cJSON_AddStringToObject(sp, "rule",
                                "by patient: validation when splitmix64(fnv1a64(patient_id) ^ "
                                "splitmix64(seed ^ 0x5a17)) / 2^64 < val_fraction");
        cJSON_AddNumberToObject(sp, "val_fraction", o->val_fraction);
    }
    cJSON_AddNumberToObject(sp, "seed", (double)o->seed);
    cJSON_AddNumberToObject(sp, "train_images", tr->n_train);
    cJSON_AddNumberToObject(sp, "val_images", tr->n_val);
    cJSON_AddNumberToObject(sp, "train_patients", tr->n_train_pat);
    cJSON_AddNumberToObject(sp, "val_patients", tr->n_val_pat);
    ids = cJSON_AddArrayToObject(sp, "val_patient_ids");
    add_patient_ids(tr, tr->val_idx, tr->n_val, ids);
    if (o->folds >= 2) {
        cJSON_AddNumberToObject(sp, "holdout_images", tr->n_holdout);
        cJSON_AddNumberToObject(sp, "holdout_patients", tr->n_holdout_pat);
        add_patient_ids(tr, tr->holdout_idx, tr->n_holdout,
                        cJSON_AddArrayToObject(sp, "holdout_patient_ids"));
    }
    cJSON_ReplaceItemInObjectCaseSensitive(root, "training", tj);
    cJSON_ReplaceItemInObjectCaseSensitive(root, "metrics",
                                           metrics ? metrics : cJSON_CreateObject());
    if (!(text = cJSON_Print(root))) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto out;
    }
    if ((st = rd_mkdirs(dir, err)) != RD_OK)
        goto out;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if ((st = write_tensors(tr->net, 0, path, err)) != RD_OK)
        goto out;
    snprintf(path, sizeof path, "%s/model.json", dir);
    st = rd_write_file_atomic(path, text, strlen(text), err);
out:
    free(text);
    cJSON_Delete(root);
    return st;
}

/* Reads DIR/model.json (+ weights) as the base description and the raw model. With
 * `input_size` > 0 the description is resized first: its stated shapes are dropped and the
 * loader computes them for the new size. */
static rd_status load_base(trainer *tr, const char *dir, int input_size, rd_error *err)
{
    char path[PATH_MAX_LEN], *json = NULL, *weights = NULL, *text = NULL;
    size_t jl = 0, wl = 0;
    rd_status st;
    snprintf(path, sizeof path, "%s/model.json", dir);
    if ((st = rd_nn_model_read_json(dir, &json, &jl, err)) != RD_OK)
        return st;
    tr->base = cJSON_ParseWithLength(json, jl);
    if (!tr->base) {
        st = rd_error_set(err, RD_E_MODEL, "%s: not valid JSON", path);
        goto out;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    const cJSON *wn = cJSON_GetObjectItemCaseSensitive(tr->base, "weights");
    if (cJSON_IsString(wn) && !strchr(wn->valuestring, '/'))
        snprintf(path, sizeof path, "%s/%s", dir, wn->valuestring);
    if ((st = rd_read_file(path, (size_t)2 << 30, &weights, &wl, err)) != RD_OK)
        goto out;
    cJSON *in = cJSON_GetObjectItemCaseSensitive(tr->base, "input");
    if (input_size > 0 && cJSON_IsObject(in)) {
        cJSON *nd, *g = cJSON_GetObjectItemCaseSensitive(tr->base, "graph");
        cJSON_ReplaceItemInObjectCaseSensitive(in, "height", cJSON_CreateNumber(input_size));
        cJSON_ReplaceItemInObjectCaseSensitive(in, "width", cJSON_CreateNumber(input_size));
        cJSON_ArrayForEach(nd, g) cJSON_DeleteItemFromObjectCaseSensitive(nd, "shape");
    }
    if (!(text = cJSON_PrintUnformatted(tr->base))) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto out;
    }
    st = rd_nn_model_parse_raw(&tr->m, text, strlen(text), weights, wl, dir, err);
out:
    free(text);
    free(json);
    free(weights);
    return st;
}

static double schedule_lr(const rd_train_options *o, long step, long steps_per_epoch)
{
    double warm = o->warmup_epochs * (double)steps_per_epoch;
    double total = (double)o->epochs * (double)steps_per_epoch;
    if (warm > 0 && (double)step < warm)
        return o->lr * ((double)step + 1) / warm;
    double t = total > warm ? ((double)step - warm) / (total - warm) : 1.0;
    if (t > 1)
        t = 1;
    double lo = o->lr * o->min_lr_ratio;
    return lo + (o->lr - lo) * 0.5 * (1 + cos(3.14159265358979 * t));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Validation: scores of every validation image in eval mode, loss and AUROC per finding. */
static rd_status validate(trainer *tr, float *x, float *t, double *loss, double auroc[NF],
                          int valid[NF], double *mean, rd_error *err)
{
    int bs = tr->bs, n = tr->n_val;
    float *scores = malloc(((size_t)n * NF + 1) * sizeof *scores);
    unsigned char *lab = malloc((size_t)n + 1);
    float *col = malloc(((size_t)n + 1) * sizeof *col);
    rd_status st = RD_OK;
    double lsum = 0;
    *mean = NAN;
    *loss = NAN;
    if (!scores || !lab || !col) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto out;
    }
    for (int s0 = 0; s0 < n; s0 += bs) {
        int b = n - s0 < bs ? n - s0 : bs;
        batch_job j = {&tr->d, &tr->p, tr->val_idx + s0, b, 0, tr->o->seed, 0, x, t, RD_OK, {0}};
        batch_run(&j);
        if (j.st != RD_OK) {
            *err = j.err;
            st = j.st;
            goto out;
        }
        if ((st = rd_tnet_forward(tr->net, x, b, 0, err)) != RD_OK)
            goto out;
        const float *z = rd_tnet_value(tr->net, tr->logits, NULL);
        lsum += rd_tnet_bce(z, t, NULL, b, NF, 0.0, NULL) * b;
        for (size_t q = 0; q < (size_t)b * NF; q++)
            scores[(size_t)s0 * NF + q] = 1.0f / (1.0f + expf(-z[q]));
    }
    if (n > 0)
        *loss = lsum / n;
    double sum = 0;
    int cnt = 0;
    for (int f = 0; f < NF; f++) {
        int pos = 0;
        for (int i = 0; i < n; i++) {
            col[i] = scores[(size_t)i * NF + f];
            lab[i] = (unsigned char)((tr->d.s[tr->val_idx[i]].labels >> f) & 1);
            pos += lab[i];
        }
        tr->val_pos[f] = pos;
        auroc[f] = rd_auroc(col, lab, n);
        valid[f] = pos >= tr->o->min_positives && !isnan(auroc[f]);
        if (valid[f]) {
            sum += auroc[f];
            cnt++;
        }
    }
    if (cnt > 0)
        *mean = sum / cnt;
out:
    free(scores);
    free(lab);
    free(col);
    return st;
}

static cJSON *metrics_json(trainer *tr, int epoch, double train_loss, double val_loss,
                           const double *auroc, const int *valid, double mean)
{
    cJSON *m = cJSON_CreateObject(), *v;
    double pos[NF];
    int nvalid = 0;
    for (int f = 0; f < NF; f++) {
        pos[f] = tr->val_pos[f];
        nvalid += valid[f];
    }
    cJSON_AddNumberToObject(m, "epoch", epoch);
    cJSON_AddNumberToObject(m, "train_loss", train_loss);
    v = cJSON_AddObjectToObject(m, "validation");
    cJSON_AddNumberToObject(v, "images", tr->n_val);
    if (isnan(val_loss))
        cJSON_AddNullToObject(v, "loss");
    else
        cJSON_AddNumberToObject(v, "loss", val_loss);
    if (isnan(mean))
        cJSON_AddNullToObject(v, "mean_auroc");
    else
        cJSON_AddNumberToObject(v, "mean_auroc", mean);
    cJSON_AddNumberToObject(v, "findings_averaged", nvalid);
    cJSON_AddNumberToObject(v, "min_positives", tr->o->min_positives);
    int allv[NF];
    for (int f = 0; f < NF; f++)
        allv[f] = !isnan(auroc[f]);
    cJSON_AddItemToObject(v, "auroc", findings_numbers(auroc, allv));
    cJSON_AddItemToObject(v, "positives", findings_numbers(pos, NULL));
    return m;
}

static rd_status write_state(trainer *tr, const char *dir, rd_error *err)
{
    cJSON *s = cJSON_CreateObject();
    char path[PATH_MAX_LEN + 64], *text;
    rd_status st;
    cJSON_AddNumberToObject(s, "epoch_next", tr->epoch_next);
    cJSON_AddNumberToObject(s, "step", (double)tr->step);
    if (isnan(tr->best))
        cJSON_AddNullToObject(s, "best_val_auroc");
    else
        cJSON_AddNumberToObject(s, "best_val_auroc", tr->best);
    cJSON_AddNumberToObject(s, "best_epoch", tr->best_epoch);
    cJSON_AddNumberToObject(s, "bad_epochs", tr->bad_epochs);
    cJSON_AddNumberToObject(s, "seed", (double)tr->o->seed);
    cJSON_AddStringToObject(s, "rng",
                            "stateless: every draw is splitmix64 of (seed, epoch, image index)");
    text = cJSON_Print(s);
    cJSON_Delete(s);
    if (!text)
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    snprintf(path, sizeof path, "%s/state.json", dir);
    st = rd_write_file_atomic(path, text, strlen(text), err);
    free(text);
    return st;
}

static rd_status read_state(trainer *tr, const char *dir, rd_error *err)
{
    char path[PATH_MAX_LEN], *text = NULL;
    size_t len = 0;
    rd_status st;
    snprintf(path, sizeof path, "%s/state.json", dir);
    if ((st = rd_read_file(path, 1 << 20, &text, &len, err)) != RD_OK)
        return st;
    cJSON *s = cJSON_ParseWithLength(text, len);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(s, "epoch_next");
    const cJSON *stp = cJSON_GetObjectItemCaseSensitive(s, "step");
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(s, "best_val_auroc");
    const cJSON *be = cJSON_GetObjectItemCaseSensitive(s, "best_epoch");
    const cJSON *bad = cJSON_GetObjectItemCaseSensitive(s, "bad_epochs");
    if (!cJSON_IsNumber(e) || !cJSON_IsNumber(stp) || !cJSON_IsNumber(be) || !cJSON_IsNumber(bad) ||
        e->valuedouble < 0 || e->valuedouble > RD_TRAIN_MAX_EPOCHS || stp->valuedouble < 0) {
        st = rd_error_set(err, RD_E_INVALID, "%s: not a radraft training state", path);
    } else {
        tr->epoch_next = (int)e->valuedouble;
        tr->step = (long)stp->valuedouble;
        tr->best = cJSON_IsNumber(b) ? b->valuedouble : NAN;
        tr->best_epoch = (int)be->valuedouble;
        tr->bad_epochs = (int)bad->valuedouble;
    }
    cJSON_Delete(s);
    free(text);
    return st;
}

/* The run ------------------------------------------------------------------------------------ */

static rd_status check_options(const rd_train_options *o, rd_error *err)
{
    if (!o->images_dir || !o->labels_csv || !o->out_dir)
        return rd_error_set(err, RD_E_INVALID,
                            "images folder, labels CSV and output folder "
                            "are required");
    if (o->epochs < 1 || o->epochs > RD_TRAIN_MAX_EPOCHS)
        return rd_error_set(err, RD_E_INVALID, "epochs %d outside [1, %d]", o->epochs,
                            RD_TRAIN_MAX_EPOCHS);
    if (o->batch < 2 || o->batch > 1024)
        return rd_error_set(err, RD_E_INVALID,
                            "batch %d outside [2, 1024] (batch norm needs "
                            "two images)",
                            o->batch);
    if (!(o->lr > 0 && o->lr < 10) || !(o->weight_decay >= 0 && o->weight_decay < 1) ||
        !(o->label_smoothing >= 0 && o->label_smoothing < 1) || !(o->pos_weight_cap >= 1) ||
        !(o->val_fraction >= 0 && o->val_fraction < 1) || !(o->warmup_epochs >= 0) ||
        !(o->min_lr_ratio >= 0 && o->min_lr_ratio <= 1) || !(o->mixup >= 0 && o->mixup <= 1))
        return rd_error_set(err, RD_E_INVALID, "a training option is out of range");
    if (o->folds != 0 && (o->folds < 2 || o->folds > 100 || o->fold < -1 || o->fold >= o->folds ||
                          !(o->holdout_fraction >= 0 && o->holdout_fraction < 0.9)))
        return rd_error_set(err, RD_E_INVALID,
                            "folds %d / fold %d / holdout %g: folds must be in [2, 100], fold "
                            "in [-1, folds) and the holdout in [0, 0.9)",
                            o->folds, o->fold, o->holdout_fraction);
    if (o->input_size < 0 || o->input_size > 2048 || (o->input_size && o->input_size < 16))
        return rd_error_set(err, RD_E_INVALID, "input size %d outside [16, 2048]", o->input_size);
    return RD_OK;
}

rd_status rd_train_run(const rd_train_options *o, rd_train_result *res, rd_error *err)
{
    trainer tr;
    rd_status st;
    char path[PATH_MAX_LEN + 64], ckpt[PATH_MAX_LEN];
    float *xb[2] = {NULL, NULL}, *tb[2] = {NULL, NULL}, *xv = NULL, *tv = NULL, *dz = NULL;
    int *order = NULL;
    size_t elems;
    double t_start = now_s();
    long imgs_seen = 0, steps_run = 0;

    memset(&tr, 0, sizeof tr);
    tr.o = o;
    tr.best = NAN;
    tr.best_epoch = -1;
    if (res) {
        memset(res, 0, sizeof *res);
        res->last_epoch = res->best_epoch = -1;
        res->best_val_auroc = NAN;
        for (int e = 0; e < RD_TRAIN_MAX_EPOCHS; e++)
            res->train_loss[e] = res->val_loss[e] = res->val_auroc[e] = NAN;
    }
    if ((st = check_options(o, err)) != RD_OK)
        return st;
    if ((st = rd_mkdirs(o->out_dir, err)) != RD_OK)
        return st;
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint", o->out_dir);

    /* The starting model: a checkpoint, a given model, or a fresh random one written into
     * the output folder (replaced by the trained model after the first epoch). */
    if (o->resume) {
        st = load_base(&tr, o->resume, 0, err);
    } else if (o->init_model) {
        st = load_base(&tr, o->init_model, o->input_size, err);
    } else {
        snprintf(path, sizeof path, "%s/init", o->out_dir);
        if ((st = rd_nn_model_init(o->arch, o->seed, path, err)) == RD_OK)
            st = load_base(&tr, path, o->input_size, err);
        /* The random start lives on in memory (and in every checkpoint); its files go. */
        char f[PATH_MAX_LEN + 96];
        snprintf(f, sizeof f, "%s/model.json", path);
        remove(f);
        snprintf(f, sizeof f, "%s/model.safetensors", path);
        remove(f);
        remove(path);
    }
    if (st != RD_OK)
        goto out;
    tr.scores = -1;
    for (int k = 0; k < tr.m->n_outputs; k++)
        if (strcmp(tr.m->outputs[k].key, "scores") == 0)
            tr.scores = tr.m->outputs[k].node;
    if (tr.scores < 0 || tr.m->nodes[tr.scores].op != RD_NN_OP_SIGMOID ||
        tr.m->info.n_labels != NF) {
        st = rd_error_set(err, RD_E_MODEL,
                          "the model needs a 'scores' output that is a sigmoid over the %d "
                          "findings",
                          NF);
        goto out;
    }
    for (int f = 0; f < NF; f++)
        if (strcmp(tr.m->info.labels[f], rd_finding_name((rd_finding)f)) != 0) {
            st = rd_error_set(err, RD_E_MODEL,
                              "the model's labels are not the findings in "
                              "vocabulary order");
            goto out;
        }
    tr.logits = tr.m->nodes[tr.scores].in[0];
    if (tr.m->info.in_height != tr.m->info.in_width) {
        st = rd_error_set(err, RD_E_MODEL, "the trainer needs a square input");
        goto out;
    }
    tr.p.size = tr.m->info.in_height;
    tr.p.channels = tr.m->info.in_channels;
    for (int c = 0; c < tr.p.channels; c++) {
        tr.p.mean[c] = tr.m->info.mean[c];
        tr.p.inv_std[c] = 1.0f / tr.m->info.std[c];
    }
    if (o->version)
        rd_strlcpy(tr.version, o->version, sizeof tr.version);
    else
        snprintf(tr.version, sizeof tr.version, "%.64s-%dpx-trained-seed%llu", tr.m->name,
                 tr.p.size, (unsigned long long)o->seed);

    /* Data and split. */
    if ((st = load_csv(o, &tr.d, err)) != RD_OK)
        goto out;
    tr.train_idx = malloc(((size_t)tr.d.n + 1) * sizeof *tr.train_idx);
    tr.val_idx = malloc(((size_t)tr.d.n + 1) * sizeof *tr.val_idx);
    tr.holdout_idx = malloc(((size_t)tr.d.n + 1) * sizeof *tr.holdout_idx);
    order = malloc(((size_t)tr.d.n + 1) * sizeof *order);
    if (!tr.train_idx || !tr.val_idx || !tr.holdout_idx || !order) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory");
        goto out;
    }
    {
        int pos[NF] = {0}, n_extra = 0, n_extra_out = 0;
        const char **pids = malloc(((size_t)tr.d.n + 1) * sizeof *pids);
        if (!pids) {
            st = rd_error_set(err, RD_E_NOMEM, "out of memory");
            goto out;
        }
        for (int i = 0; i < tr.d.n; i++) {
            int g = patient_group(o, tr.d.s[i].patient);
            if (tr.d.s[i].extra && g != GROUP_TRAIN) {
                n_extra_out++; /* the extra set never validates nor reaches the holdout */
                continue;
            }
            n_extra += tr.d.s[i].extra;
            if (g == GROUP_HOLDOUT) {
                tr.holdout_idx[tr.n_holdout++] = i;
            } else if (g == GROUP_VAL) {
                tr.val_idx[tr.n_val++] = i;
            } else {
                tr.train_idx[tr.n_train++] = i;
                for (int f = 0; f < NF; f++)
                    pos[f] += (tr.d.s[i].labels >> f) & 1;
            }
        }
        tr.n_val_pat = distinct_patients(&tr.d, tr.val_idx, tr.n_val, pids);
        tr.n_train_pat = distinct_patients(&tr.d, tr.train_idx, tr.n_train, pids);
        tr.n_holdout_pat = distinct_patients(&tr.d, tr.holdout_idx, tr.n_holdout, pids);
        free(pids);
        if (o->extra_labels_csv)
            rd_log_info("train: extra set: %d images train, %d left out (their patients "
                        "validate or are held out)",
                        n_extra, n_extra_out);
        tr.n_extra = n_extra;
        for (int f = 0; f < NF; f++) {
            double w = pos[f] ? (double)(tr.n_train - pos[f]) / pos[f] : 1.0;
            tr.pos_weight[f] = (float)(w < 1 ? 1 : w > o->pos_weight_cap ? o->pos_weight_cap : w);
        }
    }
    if (tr.n_train < 2) {
        st = rd_error_set(err, RD_E_INVALID, "%d training images; at least 2 are needed",
                          tr.n_train);
        goto out;
    }
    rd_log_info("train: %d images: %d training (%d patients), %d validation (%d patients), %d "
                "holdout (%d patients)",
                tr.d.n, tr.n_train, tr.n_train_pat, tr.n_val, tr.n_val_pat, tr.n_holdout,
                tr.n_holdout_pat);

    int bs = o->batch < tr.n_train ? o->batch : tr.n_train;
    tr.bs = bs;
    if ((st = rd_tnet_create(&tr.net, tr.m, bs, o->threads, err)) != RD_OK)
        goto out;
    if (o->resume) {
        snprintf(path, sizeof path, "%s/optimizer.safetensors", o->resume);
        if ((st = read_optimizer(tr.net, path, err)) != RD_OK ||
            (st = read_state(&tr, o->resume, err)) != RD_OK)
            goto out;
        rd_log_info("train: resuming at epoch %d, step %ld", tr.epoch_next + 1, tr.step);
    }
    elems = (size_t)tr.p.channels * tr.p.size * tr.p.size;
    for (int k = 0; k < 2; k++) {
        xb[k] = malloc((size_t)bs * elems * sizeof(float));
        tb[k] = malloc((size_t)bs * NF * sizeof(float));
    }
    dz = malloc((size_t)bs * NF * sizeof(float));
    if (!xb[0] || !xb[1] || !tb[0] || !tb[1] || !dz) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory for the batches");
        goto out;
    }
    xv = xb[0], tv = tb[0];

    long spe = tr.n_train / bs; /* the last incomplete batch of an epoch is dropped */
    for (int epoch = tr.epoch_next; epoch < o->epochs; epoch++) {
        double loss_sum = 0, t0 = now_s();
        int nb = 0;
        /* Shuffle (Fisher-Yates) from the epoch's own seed. */
        rng_t r = {mix64(o->seed ^ mix64(0x5eedull + (uint64_t)epoch))};
        memcpy(order, tr.train_idx, (size_t)tr.n_train * sizeof *order);
        for (int i = tr.n_train - 1; i > 0; i--) {
            int j = (int)(rng_next(&r) % (uint64_t)(i + 1)), tmp = order[i];
            order[i] = order[j];
            order[j] = tmp;
        }
        /* The loader thread prepares batch k + 1 while batch k trains. */
        batch_job jobs[2];
        pthread_t loader;
        int loading = 0;
        for (long b = 0; b < spe; b++) {
            int cur = (int)(b & 1);
            if (b == 0) {
                jobs[0] = (batch_job){&tr.d, &tr.p, order, bs,    o->augment, o->seed,
                                      epoch, xb[0], tb[0], RD_OK, {0}};
                batch_run(&jobs[0]);
            } else if (loading) {
                pthread_join(loader, NULL);
                loading = 0;
            }
            if (jobs[cur].st != RD_OK) {
                *err = jobs[cur].err;
                st = jobs[cur].st;
                goto out;
            }
            if (b + 1 < spe) {
                int nx = 1 - cur;
                jobs[nx] = (batch_job){&tr.d, &tr.p,      order + (b + 1) * bs,
                                       bs,    o->augment, o->seed,
                                       epoch, xb[nx],     tb[nx],
                                       RD_OK, {0}};
                if (pthread_create(&loader, NULL, batch_run, &jobs[nx]) != 0)
                    batch_run(&jobs[nx]);
                else
                    loading = 1;
            }
            if (o->mixup > 0)
                mixup_batch(xb[cur], tb[cur], bs, elems, o->mixup, o->seed, epoch, b);
            double lr = schedule_lr(o, tr.step, spe);
            if ((st = rd_tnet_forward(tr.net, xb[cur], bs, 1, err)) != RD_OK)
                goto join_out;
            const float *z = rd_tnet_value(tr.net, tr.logits, NULL);
            double loss = rd_tnet_bce(z, tb[cur], tr.pos_weight, bs, NF, o->label_smoothing, dz);
            if (!isfinite(loss)) {
                st = rd_error_set(err, RD_E_INTERNAL, "the loss diverged at step %ld (lr %g)",
                                  tr.step, lr);
                goto join_out;
            }
            rd_tnet_zero_grad(tr.net);
            if ((st = rd_tnet_backward(tr.net, tr.logits, dz, err)) != RD_OK)
                goto join_out;
            tr.step++;
            steps_run++;
            rd_tnet_adamw(tr.net, lr, o->weight_decay, 0.9, 0.999, 1e-8, tr.step);
            loss_sum += loss;
            nb++;
            imgs_seen += bs;
            if (b % 10 == 0)
                rd_log_debug("train: epoch %d step %ld/%ld loss %.4f lr %.2e %.1f img/s", epoch + 1,
                             b + 1, spe, loss, lr, (double)nb * bs / (now_s() - t0));
            if (o->max_steps > 0 && steps_run >= o->max_steps)
                break;
            continue;
        join_out:
            if (loading)
                pthread_join(loader, NULL);
            goto out;
        }
        if (loading)
            pthread_join(loader, NULL);
        double train_loss = nb ? loss_sum / nb : NAN, ips = nb * bs / (now_s() - t0);
        double auroc[NF], val_loss = NAN, mean = NAN;
        int valid[NF] = {0};
        for (int f = 0; f < NF; f++)
            auroc[f] = NAN;
        if (tr.n_val > 0 && (st = validate(&tr, xv, tv, &val_loss, auroc, valid, &mean, err)))
            goto out;
        int improved = isnan(tr.best) ? 1 : (!isnan(mean) && mean > tr.best);
        if (isnan(mean) && isnan(tr.best))
            improved = 1; /* without a validation metric the latest epoch is kept */
        int nvalid = 0;
        for (int f = 0; f < NF; f++)
            nvalid += valid[f];
        if (tr.n_val > 0)
            rd_log_info("train: epoch %d/%d: train loss %.4f, val loss %.4f, val mean AUROC "
                        "%.4f (%d findings), %.1f img/s%s",
                        epoch + 1, o->epochs, train_loss, val_loss, mean, nvalid, ips,
                        improved ? " (best)" : "");
        else
            rd_log_info("train: epoch %d/%d: train loss %.4f (no validation set), %.1f img/s",
                        epoch + 1, o->epochs, train_loss, ips);
        tr.epoch_next = epoch + 1;
        if (improved) {
            tr.best = mean;
            tr.best_epoch = epoch;
            tr.bad_epochs = 0;
            cJSON *mj = metrics_json(&tr, epoch + 1, train_loss, val_loss, auroc, valid, mean);
            if ((st = write_model(&tr, o->out_dir, mj, epoch + 1, err)) != RD_OK)
                goto out;
        } else {
            tr.bad_epochs++;
        }
        cJSON *mj = metrics_json(&tr, epoch + 1, train_loss, val_loss, auroc, valid, mean);
        snprintf(path, sizeof path, "%s/optimizer.safetensors", ckpt);
        if ((st = write_model(&tr, ckpt, mj, epoch + 1, err)) != RD_OK ||
            (st = write_tensors(tr.net, 1, path, err)) != RD_OK ||
            (st = write_state(&tr, ckpt, err)) != RD_OK)
            goto out;
        if (res) {
            res->epochs_run++;
            res->last_epoch = epoch;
            res->train_loss[epoch] = train_loss;
            res->val_loss[epoch] = val_loss;
            res->val_auroc[epoch] = mean;
        }
        if (o->max_steps > 0 && steps_run >= o->max_steps)
            break;
        if (o->patience > 0 && tr.bad_epochs >= o->patience) {
            rd_log_info("train: no better validation AUROC for %d epochs; stopping", tr.bad_epochs);
            break;
        }
    }
    if (res) {
        res->best_epoch = tr.best_epoch;
        res->best_val_auroc = tr.best;
    }
    st = RD_OK;
out:
    if (res) {
        res->steps = tr.step;
        res->n_train = tr.n_train;
        res->n_val = tr.n_val;
        res->n_train_patients = tr.n_train_pat;
        res->n_val_patients = tr.n_val_pat;
        res->n_holdout = tr.n_holdout;
        res->n_holdout_patients = tr.n_holdout_pat;
        double el = now_s() - t_start;
        res->images_per_s = el > 0 ? imgs_seen / el : 0;
    }
    (void)xv;
    (void)tv;
    for (int k = 0; k < 2; k++) {
        free(xb[k]);
        free(tb[k]);
    }
    free(dz);
    free(order);
    free(tr.train_idx);
    free(tr.val_idx);
    free(tr.holdout_idx);
    dataset_clear(&tr.d);
    rd_tnet_free(tr.net);
    rd_nn_model_free(tr.m);
    cJSON_Delete(tr.base);
    return st;
}
