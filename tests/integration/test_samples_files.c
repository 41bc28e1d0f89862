/* The committed sample studies (samples/) against the `radraft samples` command and real
 * DICOM tools: the command regenerates them byte for byte, dciodvfy (dicom3tools) finds
 * no error in any of them, dcmdump shows the transfer syntax each should have, the
 * compressed ones hold exactly the pixels of the same image written uncompressed (checked
 * both through DCMTK's own decompressors and through rd_dicom_read_image), and the
 * findings are where a reader would look for them. The demo's real studies (NIH images
 * with made-up patients, samples/nih-samples.tsv) are checked the same way: dciodvfy,
 * regeneration from the PNGs by scripts/nih-samples.sh, the PNG's pixels unchanged, and
 * the claim of samples/README.md that the shipped model was trained on them. */
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>

#include "radraft/image.h"

#include "radraft/dicom.h"
#include "radraft/samples.h"
#include "rdtest.h"
#include "base/util.h"

/* The exact command that wrote samples/ (also quoted in samples/README.md). */
#define SAMPLES_ROWS 768
#define SAMPLES_ARGS "--size 768"

static const char *committed(size_t i)
{
    static char path[4][1200];
    static int slot;
    char rel[256];
    slot = (slot + 1) % 4;
    if (rd_samples_case_path(i, rel, sizeof rel, NULL) != RD_OK)
        return "";
    snprintf(path[slot], sizeof path[slot], "%s/samples/%s", RD_TEST_SOURCE_DIR, rel);
    return path[slot];
}

/* Runs a shell command; returns its exit status and its output (stdout and stderr) in a
 * malloc'd string the caller frees. */
static int run(const char *cmd, char **out)
{
    char buf[4096];
    size_t len = 0, cap = 1;
    char *text = malloc(cap);
    FILE *fp;
    int status;
    char full[4200];
    if (!text)
        return -1;
    text[0] = '\0';
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    fp = popen(full, "r");
    if (!fp) {
        free(text);
        return -1;
    }
    while (fgets(buf, sizeof buf, fp)) {
        size_t n = strlen(buf);
        char *grown = realloc(text, cap + n);
        if (!grown)
            break;
        text = grown;
        cap += n;
        memcpy(text + len, buf, n + 1);
        len += n;
    }
    status = pclose(fp);
    *out = text;
    return status;
}

static int same_file(const char *a, const char *b)
{
    char *da = NULL, *db = NULL;
    size_t la = 0, lb = 0;
    int same = 0;
    if (rd_read_file(a, 64u << 20, &da, &la, NULL) == RD_OK &&
        rd_read_file(b, 64u << 20, &db, &lb, NULL) == RD_OK)
        same = la == lb && memcmp(da, db, la) == 0;
    free(da);
    free(db);
    return same;
}

RD_TEST(command_regenerates_the_committed_files)
{
    const char *dir = rd_test_tmpdir("samples_regen");
    char cmd[2048], *out = NULL;
    int lines = 0;
    snprintf(cmd, sizeof cmd, "'%s' samples --out '%s' " SAMPLES_ARGS, RD_TEST_RADRAFT, dir);
    CHECK_EQ_INT(run(cmd, &out), 0);
    REQUIRE(out);
    for (const char *p = out; *p; p++)
        lines += *p == '\n';
    CHECK_MSG(lines == (int)rd_samples_count(), "%d lines for %zu files:\n%s", lines,
              rd_samples_count(), out);
    free(out);
    for (size_t i = 0; i < rd_samples_count(); i++) {
        char rel[256], fresh[1400];
        REQUIRE_OK(rd_samples_case_path(i, rel, sizeof rel, NULL), NULL);
        snprintf(fresh, sizeof fresh, "%s/%s", dir, rel);
        CHECK_MSG(same_file(fresh, committed(i)),
                  "%s differs from %s: run 'radraft samples --out samples " SAMPLES_ARGS
                  "' in the source tree if the generator changed on purpose",
                  fresh, committed(i));
    }
    /* The README quotes the command that made the files. */
    {
        char readme[1200], *text = NULL;
        size_t len;
        snprintf(readme, sizeof readme, "%s/samples/README.md", RD_TEST_SOURCE_DIR);
        REQUIRE_OK(rd_read_file(readme, 1 << 20, &text, &len, NULL), NULL);
        CHECK(strstr(text, "radraft samples --out samples " SAMPLES_ARGS) != NULL);
        free(text);
    }
}

RD_TEST(dciodvfy_finds_no_errors)
{
    for (size_t i = 0; i < rd_samples_count(); i++) {
        char cmd[1400], *out = NULL;
        int errors = 0, warnings = 0;
        snprintf(cmd, sizeof cmd, "dciodvfy '%s'", committed(i));
        run(cmd, &out);
        REQUIRE(out);
        /* dciodvfy names the IOD it checked on its first line; an unknown file gets none. */
        CHECK_MSG(strstr(out, "CRImage") || strstr(out, "DXImageForPresentation"),
                  "%s: dciodvfy did not recognise the IOD:\n%s", committed(i), out);
        for (const char *line = out; *line;) {
            const char *end = strchr(line, '\n');
            errors += strncmp(line, "Error", 5) == 0;
            warnings += strncmp(line, "Warning", 7) == 0;
            line = end ? end + 1 : line + strlen(line);
        }
        CHECK_MSG(errors == 0, "%s: dciodvfy reports %d errors:\n%s", committed(i), errors, out);
        if (warnings)
            fprintf(stderr, "note: %s: %d dciodvfy warnings:\n%s", committed(i), warnings, out);
        free(out);
    }
}

RD_TEST(dcmdump_shows_each_transfer_syntax)
{
    for (size_t i = 0; i < rd_samples_count(); i++) {
        const rd_sample_case *c = rd_samples_case(i);
        char cmd[1400], expect[96], *out = NULL;
        snprintf(cmd, sizeof cmd, "dcmdump -Un +P 0002,0010 '%s'", committed(i));
        CHECK_EQ_INT(run(cmd, &out), 0);
        REQUIRE(out);
        snprintf(expect, sizeof expect, "[%s]", rd_dicom_syntax_uid(c->syntax));
        CHECK_MSG(strstr(out, expect) != NULL, "%s: expected %s, dcmdump says: %s", committed(i),
                  expect, out);
        free(out);
    }
}

/* Writes case i uncompressed into `dir` and returns its path. */
static const char *write_uncompressed(size_t i, const char *dir, char *buf, size_t size)
{
    rd_samples_options so;
    rd_error err;
    rd_samples_options_default(&so);
    so.rows = SAMPLES_ROWS;
    so.force_syntax = RD_DICOM_SYNTAX_EXPLICIT_LE;
    snprintf(buf, size, "%s/case%zu-explicit.dcm", dir, i);
    if (rd_samples_write_case(i, &so, buf, &err) != RD_OK) {
        fprintf(stderr, "%s\n", rd_error_message(&err));
        return NULL;
    }
    return buf;
}

RD_TEST(compressed_pixels_equal_uncompressed_by_dcmtk)
{
    const char *dir = rd_test_tmpdir("samples_dcmtk_pixels");
    int compared = 0;
    for (size_t i = 0; i < rd_samples_count(); i++) {
        const rd_sample_case *c = rd_samples_case(i);
        const char *tool = c->syntax == RD_DICOM_SYNTAX_JPEG_LOSSLESS ? "dcmdjpeg"
                           : c->syntax == RD_DICOM_SYNTAX_JPEG_LS     ? "dcmdjpls"
                           : c->syntax == RD_DICOM_SYNTAX_RLE         ? "dcmdrle"
                                                                      : NULL;
        char plain[1200], cmd[4000], a[1300], b[1300], *out = NULL;
        if (!tool)
            continue;
        REQUIRE(write_uncompressed(i, dir, plain, sizeof plain));
        /* Decompress with DCMTK's tool, then let dcmdump write both pixel data elements
         * as raw files (<name>.0.raw) and compare them. */
        snprintf(cmd, sizeof cmd,
                 "set -e; cd '%s'; %s '%s' case%zu-decoded.dcm; "
                 "dcmdump +W . case%zu-decoded.dcm >/dev/null; dcmdump +W . '%s' >/dev/null",
                 dir, tool, committed(i), i, i, plain);
        CHECK_MSG(run(cmd, &out) == 0, "%s", out ? out : "");
        free(out);
        snprintf(a, sizeof a, "%s/case%zu-decoded.dcm.0.raw", dir, i);
        snprintf(b, sizeof b, "%s/case%zu-explicit.dcm.0.raw", dir, i);
        CHECK_MSG(same_file(a, b), "%s: decoded pixels differ from the uncompressed image",
                  committed(i));
        compared++;
    }
    CHECK(compared >= 6);
}

RD_TEST(compressed_pixels_equal_uncompressed_by_radraft)
{
    const char *dir = rd_test_tmpdir("samples_rd_pixels");
    for (size_t i = 0; i < rd_samples_count(); i++) {
        const rd_sample_case *c = rd_samples_case(i);
        rd_image *x = NULL, *y = NULL;
        rd_dicom_meta mx, my;
        rd_error err;
        char plain[1200];
        if (c->syntax == RD_DICOM_SYNTAX_EXPLICIT_LE)
            continue;
        REQUIRE(write_uncompressed(i, dir, plain, sizeof plain));
        CHECK_OK(rd_dicom_read_image(committed(i), NULL, &x, &mx, &err), &err);
        CHECK_OK(rd_dicom_read_image(plain, NULL, &y, &my, &err), &err);
        if (x && y) {
            CHECK_EQ_INT(x->width, y->width);
            CHECK_EQ_INT(x->height, y->height);
            CHECK_MSG(x->width == y->width && x->height == y->height &&
                          memcmp(x->data, y->data,
                                 sizeof(float) * (size_t)x->width * (size_t)x->height) == 0,
                      "%s decodes differently from its uncompressed twin", committed(i));
            CHECK_STR(mx.transfer_syntax_uid, rd_dicom_syntax_uid(c->syntax));
            CHECK_STR(mx.photometric, c->monochrome1 ? "MONOCHROME1" : "MONOCHROME2");
            CHECK_STR(mx.patient_name, c->patient_name);
            CHECK_EQ_INT(mx.rows, SAMPLES_ROWS);
        }
        rd_image_free(x);
        rd_image_free(y);
    }
}

static rd_image *decode_case(const char *patient, const char *file)
{
    for (size_t i = 0; i < rd_samples_count(); i++) {
        const rd_sample_case *c = rd_samples_case(i);
        if (strcmp(c->patient_id, patient) == 0 && strcmp(c->file_name, file) == 0) {
            rd_image *img = NULL;
            rd_error err;
            if (rd_dicom_read_image(committed(i), NULL, &img, NULL, &err) != RD_OK) {
                fprintf(stderr, "%s: %s\n", committed(i), rd_error_message(&err));
                return NULL;
            }
            return img;
        }
    }
    return NULL;
}

/* The widest run of bright pixels (the mediastinum and heart) through the middle column,
 * over the rows of the lower chest where the heart is. */
static double heart_band_fraction(const rd_image *img)
{
    int best = 0;
    for (int y = (int)(0.50 * img->height); y < (int)(0.64 * img->height); y++) {
        const float *row = img->data + (size_t)y * (size_t)img->width;
        int mid = img->width / 2, l = mid, r = mid;
        while (l > 0 && row[l - 1] > 0.45f)
            l--;
        while (r < img->width - 1 && row[r + 1] > 0.45f)
            r++;
        if (r - l > best)
            best = r - l;
    }
    return (double)best / img->width;
}

static double mean_rect(const rd_image *img, double x0, double y0, double x1, double y1)
{
    double s = 0.0;
    long n = 0;
    for (int y = (int)(y0 * img->height); y < (int)(y1 * img->height); y++)
        for (int x = (int)(x0 * img->width); x < (int)(x1 * img->width); x++, n++)
            s += img->data[(size_t)y * (size_t)img->width + (size_t)x];
    return n ? s / (double)n : 0.0;
}

RD_TEST(findings_are_visible)
{
    rd_image *normal = decode_case("RDS0001", "pa.dcm");
    rd_image *cardio = decode_case("RDS0002", "pa.dcm"); /* MONOCHROME1, JPEG lossless */
    rd_image *effusion = decode_case("RDS0003", "pa.dcm");
    REQUIRE(normal && cardio && effusion);
    {
        double wn = heart_band_fraction(normal), wc = heart_band_fraction(cardio);
        fprintf(stderr, "heart band: normal %.3f, cardiomegaly %.3f of the width\n", wn, wc);
        CHECK_MSG(wc > 1.2 * wn, "cardiomegaly band %.3f not wider than normal %.3f", wc, wn);
        CHECK(wn > 0.15);
    }
    {
        /* Costophrenic regions: the patient's right on the image's left. */
        double el = mean_rect(effusion, 0.76, 0.66, 0.88, 0.75);
        double er = mean_rect(effusion, 0.12, 0.66, 0.24, 0.75);
        double nl = mean_rect(normal, 0.76, 0.66, 0.88, 0.75);
        double nr = mean_rect(normal, 0.12, 0.66, 0.24, 0.75);
        fprintf(stderr, "costophrenic means: effusion L %.3f R %.3f, normal L %.3f R %.3f\n", el,
                er, nl, nr);
        CHECK_MSG(el > er + 0.1, "effusion side %.3f not brighter than %.3f", el, er);
        CHECK_MSG(fabs(nl - nr) < 0.06, "normal sides differ: %.3f vs %.3f", nl, nr);
    }
    rd_image_free(normal);
    rd_image_free(cardio);
    rd_image_free(effusion);
}

/* ---- the real studies: NIH images filed under made-up patients ----------------------- */

#define NIH_MAX 8

typedef struct nih_row {
    char id[32], name[96], modality[8], image[64], labels[256];
    char path[1200]; /* the committed file, samples/<id>/pa.dcm or ap.dcm */
    char file[8];    /* "pa.dcm" or "ap.dcm" */
} nih_row;

/* Copies field `k` (tab-separated) of `line` into dst; 0 if there is no such field or it
 * does not fit. */
static int tsv_field(const char *line, int k, char *dst, size_t size)
{
    size_t n;
    for (int i = 0; i < k; i++) {
        line = strchr(line, '\t');
        if (!line)
            return 0;
        line++;
    }
    n = strcspn(line, "\t\n");
    if (n == 0 || n >= size)
        return 0;
    memcpy(dst, line, n);
    dst[n] = '\0';
    return 1;
}

/* Reads samples/nih-samples.tsv and finds each row's committed file; returns the number of
 * rows, or -1 (with a message) when the list is malformed or a file is missing. */
static int nih_rows(nih_row *rows)
{
    char list[1200], *text = NULL;
    int n = 0;
    snprintf(list, sizeof list, "%s/samples/nih-samples.tsv", RD_TEST_SOURCE_DIR);
    if (rd_read_file(list, 1 << 20, &text, NULL, NULL) != RD_OK) {
        fprintf(stderr, "cannot read %s\n", list);
        return -1;
    }
    for (char *line = text; *line;) {
        char *end = strchr(line, '\n');
        if (end)
            *end = '\0';
        if (line[0] && line[0] != '#' && strncmp(line, "patient_id\t", 11) != 0) {
            nih_row *r = &rows[n];
            struct stat sb;
            if (n == NIH_MAX || !tsv_field(line, 0, r->id, sizeof r->id) ||
                !tsv_field(line, 1, r->name, sizeof r->name) ||
                !tsv_field(line, 6, r->modality, sizeof r->modality) ||
                !tsv_field(line, 7, r->image, sizeof r->image) ||
                !tsv_field(line, 8, r->labels, sizeof r->labels)) {
                fprintf(stderr, "%s: bad or extra row: %s\n", list, line);
                free(text);
                return -1;
            }
            snprintf(r->file, sizeof r->file, "pa.dcm");
            snprintf(r->path, sizeof r->path, "%s/samples/%s/pa.dcm", RD_TEST_SOURCE_DIR, r->id);
            if (stat(r->path, &sb) != 0) {
                snprintf(r->file, sizeof r->file, "ap.dcm");
                snprintf(r->path, sizeof r->path, "%s/samples/%s/ap.dcm", RD_TEST_SOURCE_DIR,
                         r->id);
                if (stat(r->path, &sb) != 0) {
                    fprintf(stderr, "samples/%s has neither pa.dcm nor ap.dcm\n", r->id);
                    free(text);
                    return -1;
                }
            }
            n++;
        }
        line = end ? end + 1 : line + strlen(line);
    }
    free(text);
    return n;
}

RD_TEST(nih_samples_are_listed_and_readable)
{
    nih_row rows[NIH_MAX];
    int n = nih_rows(rows), normal = 0, cardio = 0, effusion = 0, ptx = 0, lump = 0;
    char readme[1200], *text = NULL, dirpath[1200];
    DIR *dir;
    struct dirent *de;
    REQUIRE(n >= 5);
    snprintf(readme, sizeof readme, "%s/samples/README.md", RD_TEST_SOURCE_DIR);
    REQUIRE_OK(rd_read_file(readme, 1 << 20, &text, NULL, NULL), NULL);
    for (int i = 0; i < n; i++) {
        const nih_row *r = &rows[i];
        rd_image *img = NULL;
        rd_dicom_meta m;
        rd_error err;
        char other[1300];
        struct stat sb;
        CHECK_OK(rd_dicom_read_image(r->path, NULL, &img, &m, &err), &err);
        if (img) {
            CHECK_EQ_INT(img->width, 256);
            CHECK_EQ_INT(img->height, 256);
            CHECK_STR(m.patient_id, r->id);
            CHECK_STR(m.patient_name, r->name);
            CHECK_STR(m.modality, r->modality);
            CHECK_STR(m.view_position, r->file[0] == 'a' ? "AP" : "PA");
            CHECK_STR(m.body_part, "CHEST");
            CHECK_STR(m.image_type, "DERIVED\\PRIMARY");
            CHECK_EQ_INT(m.bits_stored, 8);
        }
        rd_image_free(img);
        /* One image per study, and the README's table names it. */
        snprintf(other, sizeof other, "%s/samples/%s/%s", RD_TEST_SOURCE_DIR, r->id,
                 r->file[0] == 'a' ? "pa.dcm" : "ap.dcm");
        CHECK_MSG(stat(other, &sb) != 0, "samples/%s holds both views", r->id);
        CHECK_MSG(strstr(text, r->image) != NULL, "samples/README.md does not name %s", r->image);
        normal += strcmp(r->labels, "No Finding") == 0;
        cardio += strstr(r->labels, "Cardiomegaly") != NULL;
        effusion += strstr(r->labels, "Effusion") != NULL;
        ptx += strstr(r->labels, "Pneumothorax") != NULL;
        lump += strstr(r->labels, "Nodule") != NULL || strstr(r->labels, "Mass") != NULL;
    }
    CHECK(normal && cardio && effusion && ptx && lump);
    CHECK(strstr(text, "https://nihcc.app.box.com/v/ChestXray-NIHCC") != NULL);
    CHECK(strstr(text, "NIH Clinical Center") != NULL);
    CHECK(strstr(text, "ChestX-ray8") != NULL);
    CHECK(strstr(text, "bash scripts/nih-samples.sh") != NULL);
    free(text);
    /* Every samples/NIH* folder is one of the list's. */
    snprintf(dirpath, sizeof dirpath, "%s/samples", RD_TEST_SOURCE_DIR);
    dir = opendir(dirpath);
    REQUIRE(dir);
    while ((de = readdir(dir)) != NULL) {
        int listed = 0;
        if (strncmp(de->d_name, "NIH", 3) != 0)
            continue;
        for (int i = 0; i < n; i++)
            listed |= strcmp(rows[i].id, de->d_name) == 0;
        CHECK_MSG(listed, "samples/%s is not in samples/nih-samples.tsv", de->d_name);
    }
    closedir(dir);
}

RD_TEST(nih_samples_dciodvfy_finds_no_errors)
{
    nih_row rows[NIH_MAX];
    int n = nih_rows(rows);
    REQUIRE(n >= 5);
    for (int i = 0; i < n; i++) {
        char cmd[1400], *out = NULL;
        int errors = 0, warnings = 0;
        snprintf(cmd, sizeof cmd, "dciodvfy '%s'", rows[i].path);
        run(cmd, &out);
        REQUIRE(out);
        CHECK_MSG(
            strstr(out, strcmp(rows[i].modality, "CR") == 0 ? "CRImage" : "DXImageForPresentation"),
            "%s: dciodvfy did not recognise the IOD:\n%s", rows[i].path, out);
        for (const char *line = out; *line;) {
            const char *end = strchr(line, '\n');
            errors += strncmp(line, "Error", 5) == 0;
            warnings += strncmp(line, "Warning", 7) == 0;
            line = end ? end + 1 : line + strlen(line);
        }
        CHECK_MSG(errors == 0, "%s: dciodvfy reports %d errors:\n%s", rows[i].path, errors, out);
        if (warnings)
            fprintf(stderr, "note: %s: %d dciodvfy warnings:\n%s", rows[i].path, warnings, out);
        free(out);
    }
}

RD_TEST(nih_samples_regenerate_from_the_pngs)
{
    /* The documented command, run into a scratch folder, writes the committed files again:
     * the same bytes, and the same pixels, which are the PNG's. */
    const char *shared = rd_test_shared_data();
    const char *dir = rd_test_tmpdir("nih_samples_regen");
    nih_row rows[NIH_MAX];
    int n = nih_rows(rows);
    char cmd[4096], *out = NULL;
    REQUIRE(n >= 5);
    snprintf(cmd, sizeof cmd, "RADRAFT_SHARED_DATA='%s' bash '%s/scripts/nih-samples.sh' '%s' '%s'",
             shared, RD_TEST_SOURCE_DIR, dir, RD_TEST_RADRAFT);
    CHECK_MSG(run(cmd, &out) == 0, "%s", out ? out : "");
    free(out);
    for (int i = 0; i < n; i++) {
        const nih_row *r = &rows[i];
        rd_image *a = NULL, *b = NULL, *png = NULL;
        rd_error err;
        char fresh[1400], png_path[1400];
        double maxdiff = 0.0;
        snprintf(fresh, sizeof fresh, "%s/%.31s/%.7s", dir, r->id, r->file);
        snprintf(png_path, sizeof png_path, "%s/nih/images/%s", shared, r->image);
        CHECK_OK(rd_dicom_read_image(r->path, NULL, &a, NULL, &err), &err);
        CHECK_OK(rd_dicom_read_image(fresh, NULL, &b, NULL, &err), &err);
        CHECK_OK(rd_png_read(png_path, &png, NULL, &err), &err);
        if (a && b && png) {
            size_t np = (size_t)a->width * (size_t)a->height;
            CHECK_MSG(a->width == b->width && a->height == b->height &&
                          memcmp(a->data, b->data, sizeof(float) * np) == 0,
                      "%s: the pixels regenerated from %s differ from the committed file", r->path,
                      r->image);
            CHECK_MSG(a->width == png->width && a->height == png->height, "%s: size", r->path);
            if (a->width == png->width && a->height == png->height)
                for (size_t k = 0; k < np; k++)
                    maxdiff = fmax(maxdiff, fabs(a->data[k] - png->data[k]));
            CHECK_MSG(maxdiff < 1e-6, "%s: max difference %g from %s", r->path, maxdiff, png_path);
        }
        CHECK_MSG(same_file(fresh, r->path),
                  "%s differs from %s: run 'bash scripts/nih-samples.sh' if that was meant", fresh,
                  r->path);
        rd_image_free(a);
        rd_image_free(b);
        rd_image_free(png);
    }
}

RD_TEST(nih_samples_were_in_the_training_set)
{
    /* samples/README.md says the shipped model was trained on these images. Its seed
     * archive holds exactly its training images, keyed by sha256("nih:<file name>"): if a
     * retrained model left one out, the README (or the choice of images) must change. */
    const char *dir = rd_test_tmpdir("nih_samples_training");
    nih_row rows[NIH_MAX];
    int n = nih_rows(rows);
    char cmd[4096], *out = NULL;
    REQUIRE(n >= 5);
    snprintf(cmd, sizeof cmd,
             "set -e; '%s' archive import --seed '%s/models/cxr-resnet-small/seed-archive.bin' "
             "--data-dir '%s/dd' >/dev/null; '%s' archive list --data-dir '%s/dd' --limit 1000000 "
             "| grep -o '\"key\": \"[0-9a-f]*\"'",
             RD_TEST_RADRAFT, RD_TEST_SOURCE_DIR, dir, RD_TEST_RADRAFT, dir);
    CHECK_EQ_INT(run(cmd, &out), 0);
    REQUIRE(out);
    for (int i = 0; i < n; i++) {
        char key[96], hex[RD_SHA256_HEX_SIZE];
        snprintf(key, sizeof key, "nih:%s", rows[i].image);
        rd_sha256_hex(key, strlen(key), hex);
        CHECK_MSG(strstr(out, hex) != NULL,
                  "%s (%s) is not among the shipped model's training images", rows[i].image,
                  rows[i].id);
    }
    free(out);
}

RD_TEST_MAIN()
