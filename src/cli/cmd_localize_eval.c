/* radraft localize-eval: how well the encoder's class activation maps say where a finding
 * is, measured on expert bounding boxes (NIH's BBox_List, as ../shared/data/nih/bbox.csv
 * holds it), against maps that know nothing. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "radraft/encoder.h"
#include "radraft/findings.h"
#include "radraft/generator.h"
#include "radraft/image.h"
#include "radraft/localize.h"
#include "radraft/nn.h"
#include "radraft/pipeline.h"
#include "base/util.h"

static const char help[] =
    "usage: radraft localize-eval --bbox FILE.csv [--images DIR] [--model MODEL]\n"
    "                             [--split-from MODEL | --patients FILE] [--json]\n"
    "Measures the class activation maps of the encoder's scores on expert bounding boxes.\n"
    "The CSV has a header and rows image,finding,x,y,w,h (x, y the box's top left corner, in\n"
    "pixels of the image; a finding 'A|B' counts the box for each); the images (PNG or\n"
    "DICOM) are in DIR (default: the CSV's folder/images). For each box, and the map of its\n"
    "finding on its image:\n"
    "  pointing   the map's maximum, upsampled bilinearly to the image (the centre of its\n"
    "             peak cell), lies inside the box; baselines: a uniform map (its maximum\n"
    "             anywhere: the expected score is the box's share of the image area) and a\n"
    "             random map (i.i.d. cells: the share of cell centres inside the box);\n"
    "  side       of a finding whose text names sides (the finding's located templates\n"
    "             and include/radraft/localize.h's rules): how often the text would name one\n"
    "             side, and of those how often it is the side of the box's centre (side\n"
    "             agreement), and how often it would name both sides; baselines: random maps\n"
    "             through the same rules (agreement when they name one side), and always\n"
    "             naming the finding's more frequent side among the boxes (a constant that\n"
    "             knows the answers' balance).\n"
    "A PNG is read as a standard frontal display (the patient's right at column 0); a DICOM\n"
    "file by its Patient Orientation. Prints a Markdown table per finding, or JSON.\n\n"
    "  --bbox FILE         the boxes (required)\n"
    "  --images DIR        the images' folder (default: FILE's folder/images)\n"
    "  --model MODEL       encoder model folder or model.json (config encoder.model)\n"
    "  --split-from MODEL  only the images of MODEL's validation patients (training.split\n"
    "                      .val_patient_ids; the patient id is the NIH file name's number\n"
    "                      before '_', leading zeros dropped)\n"
    "  --patients FILE     only the images of these patients (one id per line)\n"
    "  --random-runs N     random maps per box for the side baseline (default 200)\n"
    "  --boxes FILE        also write one CSV row per box: its pointing hit, the peak, the\n"
    "                      map's side and right share, the box's and the text's side, and the\n"
    "                      map's cells (row-major, space-separated)\n"
    "  --threads N         encoder threads (config encoder.threads)\n"
    "  --json              one JSON object instead of the table\n" RD_CLI_COMMON_HELP;

#define LE_MAX_CSV_BYTES ((size_t)64 << 20)
#define LE_MAX_ROWS 1000000
#define LE_MAX_NAME 255
#define LE_MAX_FINDINGS 4 /* findings of one row ("A|B") */
#define LE_BATCH 8

typedef struct box_row {
    char image[LE_MAX_NAME + 1];
    int findings[LE_MAX_FINDINGS];
    int n_findings;
    double x, y, w, h;
} box_row;

typedef struct stats {
    int boxes;
    int hits;            /* pointing: the map's maximum in the box */
    double area_share;   /* sum of box area / image area (the uniform map's expectation) */
    double cell_share;   /* sum of the share of cell centres in the box (a random map's) */
    int side_boxes;      /* boxes whose centre is off the midline, of a finding whose text
                          * names a side */
    int side_agree;      /* the text's side is the box's */
    int side_bilateral;  /* the text names both sides */
    int side_none;       /* the text names no side (a flat map) */
    double random_named; /* sums over boxes of the random maps' share naming one side */
    double random_agree; /* and naming the box's side */
    int box_right, box_left;
} stats;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static int finding_of(const char *name, size_t len)
{
    char buf[64];
    rd_finding f;
    if (len == 0 || len >= sizeof buf)
        return -1;
    memcpy(buf, name, len);
    buf[len] = '\0';
    /* NIH's box list says "Infiltrate" where its labels say "Infiltration". */
    if (strcmp(buf, "Infiltrate") == 0)
        return RD_FINDING_INFILTRATION;
    if (rd_finding_from_name(buf, &f, NULL) != RD_OK || f == RD_FINDING_NO_FINDING)
        return -1;
    return (int)f;
}

static int parse_number(const char *s, size_t len, double *out)
{
    char buf[64], *end;
    if (len == 0 || len >= sizeof buf)
        return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    errno = 0;
    *out = strtod(buf, &end);
    return errno == 0 && *end == '\0' && isfinite(*out);
}

/* Parses the box CSV (`text` is modified: lines are cut). */
static rd_status parse_boxes(const char *path, char *text, box_row **out, int *n_out, rd_error *err)
{
    box_row *rows = NULL;
    int n = 0, cap = 0, line = 0;
    char *next;
    for (char *s = text; s && *s; s = next) {
        const char *field[6];
        size_t flen[6];
        int nf = 0;
        next = strchr(s, '\n');
        if (next)
            *next++ = '\0';
        line++;
        size_t len = strlen(s);
        if (len && s[len - 1] == '\r')
            s[--len] = '\0';
        if (len == 0)
            continue;
        if (line == 1) {
            if (strncmp(s, "image,finding,x,y,w,h", 21) != 0) {
                free(rows);
                return rd_error_set(err, RD_E_CORRUPT,
                                    "%s:1: the header must start image,finding,x,y,w,h", path);
            }
            continue;
        }
        for (const char *p = s; nf < 6;) {
            const char *c = strchr(p, ',');
            field[nf] = p;
            flen[nf] = c ? (size_t)(c - p) : strlen(p);
            nf++;
            if (!c)
                break;
            p = c + 1;
        }
        if (nf < 6) {
            free(rows);
            return rd_error_set(err, RD_E_CORRUPT, "%s:%d: 6 fields expected", path, line);
        }
        if (n == cap) {
            int nc = cap ? 2 * cap : 1024;
            box_row *nr;
            if (nc > LE_MAX_ROWS || !(nr = realloc(rows, (size_t)nc * sizeof *nr))) {
                free(rows);
                return rd_error_set(err, RD_E_TOO_LARGE, "%s: more than %d boxes", path,
                                    LE_MAX_ROWS);
            }
            rows = nr;
            cap = nc;
        }
        box_row *r = &rows[n];
        memset(r, 0, sizeof *r);
        if (flen[0] == 0 || flen[0] > LE_MAX_NAME || memchr(field[0], '/', flen[0]) ||
            !parse_number(field[2], flen[2], &r->x) || !parse_number(field[3], flen[3], &r->y) ||
            !parse_number(field[4], flen[4], &r->w) || !parse_number(field[5], flen[5], &r->h) ||
            r->w <= 0 || r->h <= 0) {
            free(rows);
            return rd_error_set(err, RD_E_CORRUPT,
                                "%s:%d: a plain image file name and numbers x, y, w > 0, h > 0 "
                                "expected",
                                path, line);
        }
        memcpy(r->image, field[0], flen[0]);
        r->image[flen[0]] = '\0';
        for (const char *p = field[1], *end = field[1] + flen[1]; p < end;) {
            const char *bar = memchr(p, '|', (size_t)(end - p));
            size_t l = bar ? (size_t)(bar - p) : (size_t)(end - p);
            int f = finding_of(p, l);
            if (f < 0 || r->n_findings == LE_MAX_FINDINGS) {
                free(rows);
                return rd_error_set(err, RD_E_CORRUPT, "%s:%d: unknown finding '%.*s'", path, line,
                                    (int)l, p);
            }
            r->findings[r->n_findings++] = f;
            p += l + (bar ? 1 : 0);
        }
        n++;
    }
    *out = rows;
    *n_out = n;
    return RD_OK;
}

static int cmp_rows(const void *a, const void *b)
{
    return strcmp(((const box_row *)a)->image, ((const box_row *)b)->image);
}

static int cmp_cstr(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The patient of an NIH image name ("00014687_001.png" -> "14687"), "" when it has none. */
static void nih_patient(const char *image, char *out, size_t size)
{
    char *end;
    errno = 0;
    long v = strtol(image, &end, 10);
    if (errno || end == image || *end != '_' || v < 0)
        out[0] = '\0';
    else
        snprintf(out, size, "%ld", v);
}

/* The ids of a patient file (one per line), or of a model's validation split. The strings
 * point into *keep (free with free) or *doc (cJSON_Delete). */
static rd_status load_patients(const char *patients_path, const char *split_model,
                               const char ***ids, int *n_ids, char **keep, cJSON **doc,
                               rd_error *err)
{
    const char **v = NULL;
    int n = 0, cap = 0;
    rd_status st;
    *ids = NULL;
    *n_ids = 0;
    if (patients_path) {
        char *next;
        if ((st = rd_read_file(patients_path, LE_MAX_CSV_BYTES, keep, NULL, err)) != RD_OK)
            return st;
        for (char *s = *keep; s && *s; s = next) {
            next = strchr(s, '\n');
            if (next)
                *next++ = '\0';
            s += strspn(s, " \t");
            size_t len = strcspn(s, " \t\r#");
            s[len] = '\0';
            if (!len)
                continue;
            if (n == cap) {
                int nc = cap ? 2 * cap : 256;
                const char **nv;
                if (nc > LE_MAX_ROWS || !(nv = realloc(v, (size_t)nc * sizeof *nv))) {
                    free(v);
                    return rd_error_set(err, RD_E_TOO_LARGE, "%s: too many ids", patients_path);
                }
                v = nv;
                cap = nc;
            }
            v[n++] = s;
        }
    } else {
        char *text = NULL;
        size_t len = 0;
        const cJSON *arr, *e;
        if ((st = rd_nn_model_read_json(split_model, &text, &len, err)) != RD_OK)
            return st;
        *doc = cJSON_ParseWithLength(text, len);
        free(text);
        arr = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(*doc, "training"),
                                             "split"),
            "val_patient_ids");
        if (!cJSON_IsArray(arr) || !(v = calloc((size_t)cJSON_GetArraySize(arr) + 1, sizeof *v)))
            return rd_error_set(err, RD_E_INVALID, "%s: no training.split.val_patient_ids",
                                split_model);
        cJSON_ArrayForEach(e, arr) if (cJSON_IsString(e)) v[n++] = e->valuestring;
    }
    if (n == 0) {
        free(v);
        return rd_error_set(err, RD_E_INVALID, "no patient id given");
    }
    qsort(v, (size_t)n, sizeof *v, cmp_cstr);
    *ids = v;
    *n_ids = n;
    return RD_OK;
}

/* Share of the h x w cell centres of a map over a W x H image inside the box. */
static double cell_share(const box_row *r, int h, int w, int W, int H)
{
    int in = 0;
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++) {
            double cx = (j + 0.5) / w * W, cy = (i + 0.5) / h * H;
            in += cx >= r->x && cx <= r->x + r->w && cy >= r->y && cy <= r->y + r->h;
        }
    return (double)in / (h * w);
}

/* Adds one box of finding f on an image (its map `map`, h x w, and orientation). */
static void score_box(stats *st, const box_row *r, int f, const float *map, int h, int w, int W,
                      int H, const rd_orientation *o, const rd_location_rule *rule, int runs,
                      uint64_t *seed, float *scratch, FILE *boxes)
{
    rd_location loc;
    int hit = 0;
    rd_side box_side = RD_SIDE_NONE, side = RD_SIDE_NONE;
    rd_zone zone = RD_ZONE_NONE;
    double bx0 = fmax(0, r->x), by0 = fmax(0, r->y);
    double bx1 = fmin(W, r->x + r->w), by1 = fmin(H, r->y + r->h);
    st->boxes++;
    st->area_share += bx1 > bx0 && by1 > by0 ? (bx1 - bx0) * (by1 - by0) / ((double)W * H) : 0;
    st->cell_share += cell_share(r, h, w, W, H);
    if (rd_localize_map(map, h, w, o, &loc, NULL) != RD_OK)
        return;
    double px = loc.peak_x * W, py = loc.peak_y * H, left = 0.5, feet = 0.5;
    hit = px >= r->x && px <= r->x + r->w && py >= r->y && py <= r->y + r->h;
    st->hits += hit;
    if (o->known)
        rd_orientation_to_patient(o, (r->x + r->w / 2) / W, (r->y + r->h / 2) / H, &left, &feet);
    if (boxes) {
        rd_location_name(&loc, rule, &side, &zone);
        fprintf(boxes, "%s,%s,%d,%.4f,%.4f,%.4f,%s,%s,%s,", r->image,
                rd_finding_name((rd_finding)f), hit, loc.peak_x, loc.peak_y, loc.right_share,
                rd_side_name(loc.side),
                !o->known || fabs(left - 0.5) < 1e-9 ? ""
                : left < 0.5                         ? "right"
                                                     : "left",
                rd_side_name(side));
        for (int p = 0; p < h * w; p++)
            fprintf(boxes, "%s%.5g", p ? " " : "", map[p]);
        fputc('\n', boxes);
    }
    if (!rule->sides || !o->known)
        return;
    if (fabs(left - 0.5) < 1e-9)
        return; /* on the midline: no side */
    box_side = left < 0.5 ? RD_SIDE_RIGHT : RD_SIDE_LEFT;
    st->side_boxes++;
    st->box_right += box_side == RD_SIDE_RIGHT;
    st->box_left += box_side == RD_SIDE_LEFT;
    rd_location_name(&loc, rule, &side, &zone);
    st->side_agree += side == box_side;
    st->side_bilateral += side == RD_SIDE_BILATERAL;
    st->side_none += side == RD_SIDE_NONE;
    int agree = 0, named = 0;
    for (int k = 0; k < runs; k++) {
        for (int p = 0; p < h * w; p++)
            scratch[p] = (float)((rng_next(seed) >> 11) * 0x1.0p-53);
        if (rd_localize_map(scratch, h, w, o, &loc, NULL) != RD_OK)
            continue;
        rd_location_name(&loc, rule, &side, &zone);
        agree += side == box_side;
        named += side == RD_SIDE_RIGHT || side == RD_SIDE_LEFT;
    }
    st->random_agree += runs > 0 ? (double)agree / runs : 0;
    st->random_named += runs > 0 ? (double)named / runs : 0;
}

static double ratio(double a, double b)
{
    return b > 0 ? a / b : NAN;
}

static void print_cell(double v)
{
    if (isfinite(v))
        printf(" %.2f |", v);
    else
        printf(" — |");
}

static void print_table(const stats *s, const char *const *names, int n_rows)
{
    printf("| finding | boxes | pointing: CAM | uniform map | random map | one side named | "
           "side agreement | both sides named | random maps: agreement | majority side |\n");
    printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (int i = 0; i < n_rows; i++) {
        const stats *x = &s[i];
        if (x->boxes == 0)
            continue;
        printf("| %s | %d |", names[i], x->boxes);
        print_cell(ratio(x->hits, x->boxes));
        print_cell(ratio(x->area_share, x->boxes));
        print_cell(ratio(x->cell_share, x->boxes));
        int one = x->side_boxes - x->side_bilateral - x->side_none;
        print_cell(ratio(one, x->side_boxes));
        print_cell(ratio(x->side_agree, one));
        print_cell(ratio(x->side_bilateral, x->side_boxes));
        print_cell(ratio(x->random_agree, x->random_named));
        print_cell(ratio(x->box_right > x->box_left ? x->box_right : x->box_left, x->side_boxes));
        printf("\n");
    }
}

static void json_num(cJSON *o, const char *k, double v)
{
    if (isfinite(v))
        cJSON_AddNumberToObject(o, k, v);
    else
        cJSON_AddNullToObject(o, k);
}

static cJSON *stats_json(const stats *x)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddNumberToObject(o, "boxes", x->boxes);
    json_num(o, "pointing", ratio(x->hits, x->boxes));
    json_num(o, "pointing_uniform", ratio(x->area_share, x->boxes));
    json_num(o, "pointing_random", ratio(x->cell_share, x->boxes));
    cJSON_AddNumberToObject(o, "side_boxes", x->side_boxes);
    int one = x->side_boxes - x->side_bilateral - x->side_none;
    json_num(o, "side_named", ratio(one, x->side_boxes));
    json_num(o, "side_agreement", ratio(x->side_agree, one));
    json_num(o, "side_agreement_all", ratio(x->side_agree, x->side_boxes));
    json_num(o, "side_bilateral", ratio(x->side_bilateral, x->side_boxes));
    json_num(o, "side_none", ratio(x->side_none, x->side_boxes));
    json_num(o, "side_random_named", ratio(x->random_named, x->side_boxes));
    json_num(o, "side_random_agreement", ratio(x->random_agree, x->random_named));
    json_num(o, "side_majority",
             ratio(x->box_right > x->box_left ? x->box_right : x->box_left, x->side_boxes));
    cJSON_AddNumberToObject(o, "boxes_right", x->box_right);
    cJSON_AddNumberToObject(o, "boxes_left", x->box_left);
    return o;
}

static void add_stats(stats *to, const stats *from)
{
    to->boxes += from->boxes;
    to->hits += from->hits;
    to->area_share += from->area_share;
    to->cell_share += from->cell_share;
    to->side_boxes += from->side_boxes;
    to->side_agree += from->side_agree;
    to->side_bilateral += from->side_bilateral;
    to->side_none += from->side_none;
    to->random_agree += from->random_agree;
    to->random_named += from->random_named;
    to->box_right += from->box_right;
    to->box_left += from->box_left;
}

int rd_cmd_localize_eval(int argc, char **argv)
{
    enum {
        OPT_BBOX = RD_OPT_FIRST_PRIVATE,
        OPT_IMAGES,
        OPT_MODEL,
        OPT_SPLIT,
        OPT_PATIENTS,
        OPT_RUNS,
        OPT_THREADS,
        OPT_JSON,
        OPT_BOXES
    };
    static const struct option opts[] = {{"bbox", required_argument, NULL, OPT_BBOX},
                                         {"images", required_argument, NULL, OPT_IMAGES},
                                         {"model", required_argument, NULL, OPT_MODEL},
                                         {"split-from", required_argument, NULL, OPT_SPLIT},
                                         {"patients", required_argument, NULL, OPT_PATIENTS},
                                         {"random-runs", required_argument, NULL, OPT_RUNS},
                                         {"threads", required_argument, NULL, OPT_THREADS},
                                         {"json", no_argument, NULL, OPT_JSON},
                                         {"boxes", required_argument, NULL, OPT_BOXES},
                                         RD_CLI_COMMON_LONGOPTS,
                                         {NULL, 0, NULL, 0}};
    rd_cli cli;
    rd_error err;
    const char *bbox = NULL, *images_arg = NULL, *model_arg = NULL, *split = NULL;
    const char *patients = NULL, *threads_arg = NULL, *boxes_path = NULL;
    FILE *boxes_fp = NULL;
    long runs = 200, threads = -1;
    int json = 0, opt, rc = RD_EXIT_FAIL, n_rows = 0, n_ids = 0;
    char *csv = NULL, *keep = NULL, images_dir[4096], model[4096], path[8192];
    cJSON *doc = NULL;
    const char **ids = NULL;
    box_row *rows = NULL;
    rd_encoder *enc = NULL;
    rd_generator *gen = NULL;
    float *cams = NULL, *scratch = NULL;
    rd_image *imgs[LE_BATCH] = {NULL};
    rd_orientation orient[LE_BATCH];
    int first_row[LE_BATCH + 1];
    stats st[RD_FINDING_N_ABNORMAL];
    int n_images = 0, n_boxes = 0, left_out = 0;
    uint64_t seed = 0x10ca11;

    memset(st, 0, sizeof st);
    rd_cli_init(&cli, "radraft localize-eval");
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, help, &rc)) > 0) {
        switch (opt) {
        case OPT_BBOX:
            bbox = optarg;
            break;
        case OPT_IMAGES:
            images_arg = optarg;
            break;
        case OPT_MODEL:
            model_arg = optarg;
            break;
        case OPT_SPLIT:
            split = optarg;
            break;
        case OPT_PATIENTS:
            patients = optarg;
            break;
        case OPT_RUNS:
            if (rd_cli_parse_int(&cli, "--random-runs", optarg, 0, 100000, &runs) != 0)
                return RD_EXIT_USAGE;
            break;
        case OPT_THREADS:
            threads_arg = optarg;
            if (rd_cli_parse_int(&cli, "--threads", optarg, 0, 256, &threads) != 0)
                return RD_EXIT_USAGE;
            break;
        case OPT_JSON:
            json = 1;
            break;
        case OPT_BOXES:
            boxes_path = optarg;
            break;
        }
    }
    if (opt < 0 || (rc = rd_cli_finish(&cli, argc, argv, RD_CLI_NO_OPERANDS)) != RD_EXIT_OK)
        return rc;
    (void)threads_arg;
    rc = RD_EXIT_FAIL;
    if (!bbox)
        return rd_cli_usage_error(&cli, help, "--bbox FILE is required");
    if (split && patients)
        return rd_cli_usage_error(&cli, help, "--split-from and --patients exclude each other");
    const rd_cli_setting settings[] = {{"encoder.model", model_arg}};
    if (rd_cli_set_options(&cli, settings, RD_CLI_COUNT(settings)) != RD_EXIT_OK)
        return RD_EXIT_USAGE;
    if (images_arg) {
        rd_strlcpy(images_dir, images_arg, sizeof images_dir);
    } else {
        const char *slash = strrchr(bbox, '/');
        if (slash)
            snprintf(images_dir, sizeof images_dir, "%.*s/images", (int)(slash - bbox), bbox);
        else
            rd_strlcpy(images_dir, "images", sizeof images_dir);
    }
    if (rd_read_file(bbox, LE_MAX_CSV_BYTES, &csv, NULL, &err) != RD_OK ||
        parse_boxes(bbox, csv, &rows, &n_rows, &err) != RD_OK ||
        ((split || patients) &&
         load_patients(patients, split, &ids, &n_ids, &keep, &doc, &err) != RD_OK) ||
        rd_pipeline_model_path(&cli.cfg, model, sizeof model, &err) != RD_OK ||
        rd_encoder_create(&enc, model, threads >= 0 ? (int)threads : cli.cfg.encoder_threads,
                          LE_BATCH, &err) != RD_OK ||
        rd_generator_create(&gen, cli.cfg.generator_templates, &err) != RD_OK) {
        rd_cli_error(&cli, "%s", rd_error_message(&err));
        goto out;
    }
    int ch, cw;
    const rd_nn_info *info = rd_encoder_info(enc);
    if (!rd_encoder_cam_size(enc, &ch, &cw)) {
        rd_cli_error(&cli, "%s: the model's scores have no class activation maps", model);
        goto out;
    }
    if (boxes_path) {
        if (!(boxes_fp = fopen(boxes_path, "w"))) {
            rd_cli_error(&cli, "%s: %s", boxes_path, strerror(errno));
            goto out;
        }
        fputs("image,finding,pointing_hit,peak_x,peak_y,right_share,map_side,box_side,text_side,"
              "map\n",
              boxes_fp);
    }
    size_t per_image = (size_t)info->n_labels * ch * cw;
    if (!(cams = malloc(LE_BATCH * per_image * sizeof *cams)) ||
        !(scratch = malloc((size_t)ch * cw * sizeof *scratch))) {
        rd_cli_error(&cli, "out of memory");
        goto out;
    }
    qsort(rows, (size_t)n_rows, sizeof *rows, cmp_rows);
    for (int r = 0; r < n_rows;) {
        int nb = 0;
        /* A batch of images, each with its run of rows. */
        while (r < n_rows && nb < LE_BATCH) {
            int end = r;
            while (end < n_rows && strcmp(rows[end].image, rows[r].image) == 0)
                end++;
            if (ids) {
                char pid[32];
                nih_patient(rows[r].image, pid, sizeof pid);
                const char *key = pid;
                if (!pid[0] || !bsearch(&key, ids, (size_t)n_ids, sizeof *ids, cmp_cstr)) {
                    left_out += end - r;
                    r = end;
                    continue;
                }
            }
            rd_dicom_meta meta;
            rd_dicom_options dopts;
            rd_dicom_options_from_config(&dopts, &cli.cfg);
            if (snprintf(path, sizeof path, "%s/%s", images_dir, rows[r].image) >=
                    (int)sizeof path ||
                rd_cli_read_image(path, &dopts, &imgs[nb], &meta, &err) != RD_OK) {
                rd_cli_error(&cli, "%s", rd_error_message(&err));
                goto out;
            }
            rd_orientation_from_dicom(meta.patient_orientation, meta.view_position, &orient[nb]);
            first_row[nb] = r;
            nb++;
            r = end;
        }
        if (nb == 0)
            break;
        first_row[nb] = r;
        if (rd_encoder_embed_batch_cam(enc, (const rd_image *const *)imgs, nb, NULL, NULL, cams,
                                       &err) != RD_OK) {
            rd_cli_error(&cli, "%s", rd_error_message(&err));
            goto out;
        }
        for (int b = 0; b < nb; b++) {
            /* Rows of this image: from first_row[b] to the next image's first row (rows of
             * left-out images in between never belong to a batch entry). */
            int end = first_row[b];
            while (end < n_rows && strcmp(rows[end].image, rows[first_row[b]].image) == 0)
                end++;
            for (int k = first_row[b]; k < end; k++)
                for (int j = 0; j < rows[k].n_findings; j++) {
                    int f = rows[k].findings[j];
                    rd_location_rule rule;
                    rd_generator_location_rule(gen, (rd_finding)f, &rule);
                    score_box(&st[f], &rows[k], f, cams + b * per_image + (size_t)f * ch * cw, ch,
                              cw, imgs[b]->width, imgs[b]->height, &orient[b], &rule, (int)runs,
                              &seed, scratch, boxes_fp);
                    n_boxes++;
                }
            rd_image_free(imgs[b]);
            imgs[b] = NULL;
            n_images++;
        }
    }
    {
        stats all;
        const char *names[RD_FINDING_N_ABNORMAL + 1];
        stats rowst[RD_FINDING_N_ABNORMAL + 1];
        int n = 0;
        memset(&all, 0, sizeof all);
        for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
            if (!st[f].boxes)
                continue;
            names[n] = rd_finding_name((rd_finding)f);
            rowst[n++] = st[f];
            add_stats(&all, &st[f]);
        }
        names[n] = "all boxes";
        rowst[n++] = all;
        if (json) {
            cJSON *o = cJSON_CreateObject(), *fo = cJSON_AddObjectToObject(o, "findings");
            cJSON_AddStringToObject(o, "model", info->version);
            cJSON_AddStringToObject(o, "bbox", bbox);
            cJSON_AddNumberToObject(o, "images", n_images);
            cJSON_AddNumberToObject(o, "boxes", n_boxes);
            cJSON_AddNumberToObject(o, "left_out", left_out);
            for (int i = 0; i < n - 1; i++)
                cJSON_AddItemToObject(fo, names[i], stats_json(&rowst[i]));
            cJSON_AddItemToObject(o, "all", stats_json(&all));
            char *text = cJSON_PrintUnformatted(o);
            cJSON_Delete(o);
            if (!text) {
                rd_cli_error(&cli, "out of memory");
                goto out;
            }
            puts(text);
            cJSON_free(text);
        } else {
            printf("model %s, %s: %d boxes on %d images", info->version, bbox, n_boxes, n_images);
            if (ids)
                printf(" (of the %d patients of %s; %d boxes of other patients left out)", n_ids,
                       split ? split : patients, left_out);
            printf(", %dx%d maps\n\n", ch, cw);
            print_table(rowst, names, n);
        }
    }
    rc = RD_EXIT_OK;
out:
    if (boxes_fp && fclose(boxes_fp) != 0 && rc == RD_EXIT_OK) {
        rd_cli_error(&cli, "%s: %s", boxes_path, strerror(errno));
        rc = RD_EXIT_FAIL;
    }
    for (int b = 0; b < LE_BATCH; b++)
        rd_image_free(imgs[b]);
    free(cams);
    free(scratch);
    free(rows);
    free(csv);
    free(keep);
    free(ids);
    cJSON_Delete(doc);
    rd_generator_free(gen);
    rd_encoder_free(enc);
    return rc;
}
