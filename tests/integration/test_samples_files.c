/* The committed sample studies (samples/) against the `radraft samples` command and real
 * DICOM tools: the command regenerates them byte for byte, dciodvfy (dicom3tools) finds
 * no error in any of them, dcmdump shows the transfer syntax each should have, the
 * compressed ones hold exactly the pixels of the same image written uncompressed (checked
 * both through DCMTK's own decompressors and through rd_dicom_read_image), and the
 * findings are where a reader would look for them. */
#include <stdint.h>
#include <sys/stat.h>

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

RD_TEST_MAIN()
