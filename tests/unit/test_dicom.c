/* Tests of reading DICOM files (include/radraft/dicom.h) against the shared data set: every
 * file decodes or is refused as expected, lossless codecs agree bit for bit, the display
 * pipeline orients MONOCHROME1 images correctly, and corrupted files never crash. */
#include <dirent.h>
#include <pthread.h>
#include <stdint.h>
#include <time.h>
#include <zlib.h>

#include "dicom/dicom_int.h"
#include "dicom/dicom_pixels.h"
#include "radraft/dicom.h"
#include "radraft/dicom_write.h"
#include "radraft/log.h"
#include "radraft/samples.h"
#include "rdtest.h"
#include "base/util.h"

/* ---- the per-file outcome table ----------------------------------------------------- */

typedef struct outcome {
    const char *file; /* relative to dicom/ */
    rd_status status; /* of rd_dicom_read_image */
    int rows, cols;   /* for decoded images */
    const char *photometric;
    int flat; /* 1: every stored pixel is 0 (so the image is legitimately uniform) */
} outcome;

static const outcome outcomes[] = {
    {"chest/CR-MONO1-10-chest.dcm", RD_OK, 440, 440, "MONOCHROME1", 0},
    {"chest/RG1_J2KI.dcm", RD_OK, 1955, 1841, "MONOCHROME1", 0},
    {"chest/siim-CR-jpeg-baseline-fake-MONOCHROME1.dcm", RD_OK, 1024, 1024, "MONOCHROME1", 0},
    {"chest/siim-CR-jpeg-baseline.dcm", RD_OK, 1024, 1024, "MONOCHROME2", 0},
    {"codecs/CR-ModalitySequenceLUT-jpeg-lossless.dcm", RD_OK, 1576, 1976, "MONOCHROME1", 0},
    {"codecs/CT-MONO2-16-ankle-implicit.dcm", RD_OK, 512, 512, "MONOCHROME2", 0},
    /* Smallest = Largest Image Pixel Value = 0: a blank frame, and a window of width 0. */
    {"codecs/GH1261-jpeg-lossless.dcm", RD_OK, 162, 162, "MONOCHROME2", 1},
    {"codecs/GH195-jpeg-extended-rgb.dcm", RD_OK, 445, 795, "RGB", 0},
    {"codecs/GH227-deflate.dcm", RD_OK, 512, 512, "MONOCHROME2", 0},
    {"codecs/JPEG-LL.dcm", RD_OK, 1024, 256, "MONOCHROME2", 0},
    {"codecs/RG3_J2KI.dcm", RD_OK, 1760, 1760, "MONOCHROME1", 0},
    {"codecs/RG3_J2KR.dcm", RD_OK, 1760, 1760, "MONOCHROME1", 0},
    {"codecs/emri_small_RLE.dcm", RD_OK, 64, 64, "MONOCHROME2", 0},
    {"codecs/emri_small_big_endian.dcm", RD_OK, 64, 64, "MONOCHROME2", 0},
    {"codecs/emri_small_jpeg_2k_lossless.dcm", RD_OK, 64, 64, "MONOCHROME2", 0},
    {"codecs/emri_small_jpeg_ls_lossless.dcm", RD_OK, 64, 64, "MONOCHROME2", 0},
    {"edge/SC-rgb-big-endian.dcm", RD_OK, 100, 100, "RGB", 0},
    /* The character-set samples carry image attributes but no Pixel Data element. */
    {"edge/chrJapMulti-CR-chest.dcm", RD_E_NOT_IMAGE, 0, 0, NULL, 0},
    {"edge/chrKoreanMulti-CR-chest.dcm", RD_E_NOT_IMAGE, 0, 0, NULL, 0},
    {"edge/multiframe-ybr.dcm", RD_OK, 240, 240, "YBR_FULL_422", 0},
    {"sr/reportsi-basic-text.dcm", RD_E_NOT_IMAGE, 0, 0, NULL, 0},
    {"sr/test_SR-comprehensive.dcm", RD_E_NOT_IMAGE, 0, 0, NULL, 0},
};
#define N_OUTCOMES (sizeof outcomes / sizeof outcomes[0])

static const char *const folders[] = {"chest", "codecs", "edge", "sr"};

static const char *data_path(const char *rel)
{
    static char path[4][1024];
    static int slot;
    slot = (slot + 1) % 4;
    snprintf(path[slot], sizeof path[slot], "%s/dicom/%s", rd_test_shared_data(), rel);
    return path[slot];
}

static double image_range_ok(const rd_image *img)
{
    size_t n = (size_t)img->width * (size_t)img->height;
    double sum = 0;
    for (size_t i = 0; i < n; i++) {
        if (!(img->data[i] >= 0.0f && img->data[i] <= 1.0f))
            return -1;
        sum += img->data[i];
    }
    return sum / (double)n;
}

RD_TEST(every_shared_file_has_its_expected_outcome)
{
    for (size_t i = 0; i < N_OUTCOMES; i++) {
        const outcome *o = &outcomes[i];
        rd_image *img = NULL;
        rd_dicom_meta meta;
        rd_error err;
        rd_error_clear(&err);
        rd_status st = rd_dicom_read_image(data_path(o->file), NULL, &img, &meta, &err);
        CHECK_MSG(st == o->status, "%s: got %s (%s), expected %s", o->file, rd_status_name(st),
                  rd_error_message(&err), rd_status_name(o->status));
        if (st != RD_OK) {
            CHECK(img == NULL);
            CHECK_MSG(strstr(err.msg, o->file) != NULL, "%s: message '%s' lacks the file", o->file,
                      err.msg);
            continue;
        }
        REQUIRE(img);
        CHECK_MSG(meta.rows == o->rows && meta.columns == o->cols && img->height == o->rows &&
                      img->width == o->cols,
                  "%s: %dx%d (image %dx%d), expected %dx%d", o->file, meta.columns, meta.rows,
                  img->width, img->height, o->cols, o->rows);
        CHECK_STR(meta.photometric, o->photometric);
        double mean = image_range_ok(img);
        /* A real image is neither outside [0, 1] nor a flat field (unless it is stored so). */
        if (o->flat)
            CHECK_MSG(mean == 0.0, "%s: mean %g of a blank frame", o->file, mean);
        else
            CHECK_MSG(mean > 0.02 && mean < 0.98, "%s: mean %g", o->file, mean);
        rd_image_free(img);
    }
}

static int listed(const char *rel)
{
    for (size_t i = 0; i < N_OUTCOMES; i++)
        if (strcmp(outcomes[i].file, rel) == 0)
            return 1;
    return 0;
}

RD_TEST(table_lists_every_shared_file)
{
    size_t seen = 0;
    for (size_t f = 0; f < sizeof folders / sizeof folders[0]; f++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/dicom/%s", rd_test_shared_data(), folders[f]);
        DIR *d = opendir(dir);
        REQUIRE(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            char rel[512];
            if (e->d_name[0] == '.')
                continue;
            snprintf(rel, sizeof rel, "%s/%s", folders[f], e->d_name);
            CHECK_MSG(listed(rel), "%s is not in the outcome table of test_dicom.c", rel);
            seen++;
        }
        closedir(d);
    }
    CHECK_EQ_INT(seen, N_OUTCOMES);
}

/* ---- metadata ----------------------------------------------------------------------- */

RD_TEST(names_decoded_to_utf8)
{
    rd_dicom_meta m;
    rd_error err;
    REQUIRE_OK(rd_dicom_read_meta(data_path("edge/chrJapMulti-CR-chest.dcm"), &m, &err), &err);
    CHECK_STR(m.patient_name, "\xe3\x82\x84\xe3\x81\xbe\xe3\x81\xa0^\xe3\x81\x9f\xe3\x82\x8d"
                              "\xe3\x81\x86"); /* やまだ^たろう */
    CHECK_STR(m.specific_charset, "\\ISO 2022 IR 87");
    REQUIRE_OK(rd_dicom_read_meta(data_path("edge/chrKoreanMulti-CR-chest.dcm"), &m, &err), &err);
    CHECK_STR(m.patient_name, "\xea\xb9\x80\xed\x9d\xac\xec\xa4\x91"); /* 김희중 */
    REQUIRE_OK(rd_dicom_read_meta(data_path("edge/SC-rgb-big-endian.dcm"), &m, &err), &err);
    CHECK_STR(m.patient_name, "Lestrade^G");
}

RD_TEST(metadata_fields)
{
    rd_dicom_meta m;
    rd_error err;
    /* A raw dataset without a file meta header: the transfer syntax is what DCMTK found. */
    REQUIRE_OK(rd_dicom_read_meta(data_path("chest/CR-MONO1-10-chest.dcm"), &m, &err), &err);
    CHECK_STR(m.modality, "CR");
    CHECK_STR(m.sop_class_uid, "1.2.840.10008.5.1.4.1.1.1");
    CHECK_STR(m.sop_class_name, "ComputedRadiographyImageStorage");
    CHECK_STR(m.transfer_syntax_uid, "1.2.840.10008.1.2");
    CHECK_EQ_INT(m.bits_stored, 10);
    CHECK_EQ_INT(m.number_of_frames, 1);
    CHECK_EQ_INT(m.has_pixel_data, 1);
    REQUIRE_OK(rd_dicom_read_meta(data_path("edge/multiframe-ybr.dcm"), &m, &err), &err);
    CHECK_EQ_INT(m.number_of_frames, 140);
    CHECK_EQ_INT(m.samples_per_pixel, 3);
    CHECK_STR(m.transfer_syntax_uid, "1.2.840.10008.1.2.4.50");
    REQUIRE_OK(rd_dicom_read_meta(data_path("chest/siim-CR-jpeg-baseline.dcm"), &m, &err), &err);
    CHECK_NEAR(m.pixel_spacing[0], 0.168, 1e-9);
    CHECK_NEAR(m.pixel_spacing[1], 0.168, 1e-9);
    REQUIRE_OK(rd_dicom_read_meta(data_path("sr/test_SR-comprehensive.dcm"), &m, &err), &err);
    CHECK_EQ_INT(m.has_pixel_data, 0);
    CHECK_STR(m.sop_class_name, "ComprehensiveSRStorage");
    CHECK_STR(m.modality, "SR");
    CHECK(rd_dicom_probe(data_path("chest/CR-MONO1-10-chest.dcm")) == 1);
    CHECK(rd_dicom_probe(data_path("sr/test_SR-comprehensive.dcm")) == 1);
}

/* ---- codecs ------------------------------------------------------------------------- */

static int load_frame(const char *rel, rd_dicom_frame *f)
{
    rd_dicom_options opts;
    rd_dicom_meta meta;
    rd_error err;
    rd_dicom_options_default(&opts);
    rd_status st = rd__dicom_load(data_path(rel), &opts, &meta, f, &err);
    if (st != RD_OK)
        fprintf(stderr, "%s: %s\n", rel, rd_error_message(&err));
    return st == RD_OK;
}

RD_TEST(lossless_codecs_are_pixel_identical)
{
    static const char *const others[] = {"codecs/emri_small_RLE.dcm",
                                         "codecs/emri_small_jpeg_ls_lossless.dcm",
                                         "codecs/emri_small_jpeg_2k_lossless.dcm"};
    rd_dicom_frame ref;
    rd_image *ref_img = NULL;
    rd_error err;
    REQUIRE(load_frame("codecs/emri_small_big_endian.dcm", &ref));
    REQUIRE_OK(rd_dicom_read_image(data_path("codecs/emri_small_big_endian.dcm"), NULL, &ref_img,
                                   NULL, &err),
               &err);
    REQUIRE(ref.size >= 64 * 64 * 2);
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        rd_dicom_frame f;
        rd_image *img = NULL;
        REQUIRE(load_frame(others[i], &f));
        /* The decoded stored samples, byte for byte (big endian swapped to host order). */
        CHECK_MSG(f.size >= 64 * 64 * 2 && memcmp(f.data, ref.data, 64 * 64 * 2) == 0,
                  "%s: samples differ from the big-endian reference", others[i]);
        REQUIRE_OK(rd_dicom_read_image(data_path(others[i]), NULL, &img, NULL, &err), &err);
        CHECK(memcmp(img->data, ref_img->data, 64 * 64 * sizeof(float)) == 0);
        rd_image_free(img);
        rd_dicom_frame_release(&f);
    }
    /* Not a constant frame: the comparison above would be meaningless. */
    const uint16_t *s = ref.data;
    int distinct = 0;
    for (int i = 1; i < 64 * 64; i++)
        distinct += s[i] != s[0];
    CHECK(distinct > 1000);
    rd_image_free(ref_img);
    rd_dicom_frame_release(&ref);

    /* Multi-frame: the first frame only, and the log says so. */
    char *logged = NULL;
    size_t logged_len = 0;
    FILE *fp = open_memstream(&logged, &logged_len);
    REQUIRE(fp);
    rd_log_set_stream(fp);
    rd_status st =
        rd_dicom_read_image(data_path("codecs/emri_small_RLE.dcm"), NULL, &ref_img, NULL, &err);
    rd_log_set_stream(NULL);
    fclose(fp);
    CHECK_EQ_INT(st, RD_OK);
    CHECK(logged && strstr(logged, "10 frames") && strstr(logged, "only the first"));
    free(logged);
    rd_image_free(ref_img);
}

static double mean_abs_diff(const rd_image *a, const rd_image *b)
{
    size_t n = (size_t)a->width * (size_t)a->height;
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += fabs((double)a->data[i] - (double)b->data[i]);
    return sum / (double)n;
}

RD_TEST(lossy_jpeg2000_close_to_lossless)
{
    rd_image *a = NULL, *b = NULL;
    rd_error err;
    REQUIRE_OK(rd_dicom_read_image(data_path("codecs/RG3_J2KR.dcm"), NULL, &a, NULL, &err), &err);
    REQUIRE_OK(rd_dicom_read_image(data_path("codecs/RG3_J2KI.dcm"), NULL, &b, NULL, &err), &err);
    REQUIRE(a->width == b->width && a->height == b->height);
    double d = mean_abs_diff(a, b);
    fprintf(stderr, "RG3 J2KI vs J2KR: mean abs diff %.5f\n", d);
    /* Same window (550/1024) on both: lossy compression moves values by a little. */
    CHECK(d < 0.01);
    CHECK(d > 0.0); /* it is lossy: identical would mean the same file was read twice */
    rd_image_free(a);
    rd_image_free(b);
}

/* ---- display orientation ------------------------------------------------------------ */

static double region_mean(const rd_image *img, int x0, int y0, int x1, int y1)
{
    double sum = 0;
    int n = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++, n++)
            sum += img->data[(size_t)y * (size_t)img->width + (size_t)x];
    return sum / n;
}

RD_TEST(monochrome1_lungs_darker_than_mediastinum)
{
    rd_image *img = NULL;
    rd_error err;
    REQUIRE_OK(
        rd_dicom_read_image(data_path("chest/CR-MONO1-10-chest.dcm"), NULL, &img, NULL, &err),
        &err);
    REQUIRE(img->width == 440 && img->height == 440);
    /* Regions chosen on the rendered image: the middle of each lung field, and the
     * mediastinum / spine between them. */
    double right_lung = region_mean(img, 80, 180, 120, 240);
    double left_lung = region_mean(img, 290, 180, 330, 240);
    double mediastinum = region_mean(img, 200, 230, 225, 290);
    fprintf(stderr, "lungs %.3f %.3f, mediastinum %.3f\n", right_lung, left_lung, mediastinum);
    CHECK(right_lung + 0.15 < mediastinum);
    CHECK(left_lung + 0.15 < mediastinum);
    rd_image_free(img);
}

RD_TEST(fake_monochrome1_is_the_inverse)
{
    rd_image *a = NULL, *b = NULL;
    rd_error err;
    REQUIRE_OK(
        rd_dicom_read_image(data_path("chest/siim-CR-jpeg-baseline.dcm"), NULL, &a, NULL, &err),
        &err);
    REQUIRE_OK(rd_dicom_read_image(data_path("chest/siim-CR-jpeg-baseline-fake-MONOCHROME1.dcm"),
                                   NULL, &b, NULL, &err),
               &err);
    REQUIRE(a->width == b->width && a->height == b->height);
    size_t n = (size_t)a->width * (size_t)a->height, bad = 0;
    for (size_t i = 0; i < n; i++)
        bad += fabs((double)a->data[i] + (double)b->data[i] - 1.0) > 1e-5;
    CHECK_EQ_INT(bad, 0);
    double d = mean_abs_diff(a, b);
    CHECK(d > 0.1); /* and they are not the same image */
    rd_image_free(a);
    rd_image_free(b);
}

/* ---- threads ------------------------------------------------------------------------ */

typedef struct job {
    const char *rel; /* absolute path */
    int rounds;
    int ok;
    double mean;
} job;

static void *reader_abs(void *arg)
{
    job *j = arg;
    j->ok = 1;
    for (int r = 0; r < j->rounds; r++) {
        rd_image *img = NULL;
        rd_error err;
        if (rd_dicom_read_image(j->rel, NULL, &img, NULL, &err) != RD_OK) {
            j->ok = 0;
            return NULL;
        }
        double m = image_range_ok(img);
        if (r == 0)
            j->mean = m;
        else if (m != j->mean)
            j->ok = 0;
        rd_image_free(img);
    }
    return NULL;
}

RD_TEST(concurrent_reads_agree)
{
    /* The first reads race to register the codecs; every thread must still decode, and
     * always to the same image. data_path() is not thread-safe, so resolve names first. */
    static const char *const rels[] = {
        "codecs/emri_small_RLE.dcm", "codecs/emri_small_jpeg_ls_lossless.dcm",
        "codecs/emri_small_jpeg_2k_lossless.dcm", "chest/CR-MONO1-10-chest.dcm"};
    static char paths[4][1024];
    pthread_t th[4];
    job jobs[4];
    for (int i = 0; i < 4; i++) {
        snprintf(paths[i], sizeof paths[i], "%s/dicom/%s", rd_test_shared_data(), rels[i]);
        jobs[i] = (job){paths[i], 5, 0, 0};
    }
    rd_log_set_level(RD_LOG_ERROR);
    for (int i = 0; i < 4; i++)
        REQUIRE(pthread_create(&th[i], NULL, reader_abs, &jobs[i]) == 0);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    rd_log_set_level(RD_LOG_INFO);
    for (int i = 0; i < 4; i++)
        CHECK_MSG(jobs[i].ok, "%s: thread read failed or differed", rels[i]);
    /* The three lossless encodings of one frame agree across threads too. */
    CHECK(jobs[0].mean == jobs[1].mean && jobs[1].mean == jobs[2].mean);
}

/* ---- refusals ----------------------------------------------------------------------- */

static unsigned char *slurp(const char *path, size_t *len)
{
    char *buf = NULL;
    rd_error err;
    if (rd_read_file(path, 8u << 20, &buf, len, &err) != RD_OK) {
        fprintf(stderr, "%s\n", rd_error_message(&err));
        return NULL;
    }
    return (unsigned char *)buf;
}

static int spit(const char *path, const void *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    if (!fp)
        return 0;
    size_t w = fwrite(data, 1, len, fp);
    return fclose(fp) == 0 && w == len;
}

/* Offset of the value of the first top-level element `group,elem` at or after `from`
 * (explicit or implicit VR little endian), or 0 when not found. */
static size_t find_value(const unsigned char *b, size_t len, size_t from, unsigned group,
                         unsigned elem, size_t *len_off, int *len_bytes)
{
    for (size_t i = from; i + 12 <= len; i++) {
        if (b[i] != (group & 0xff) || b[i + 1] != (group >> 8) || b[i + 2] != (elem & 0xff) ||
            b[i + 3] != (elem >> 8))
            continue;
        int vr = b[i + 4] >= 'A' && b[i + 4] <= 'Z' && b[i + 5] >= 'A' && b[i + 5] <= 'Z';
        if (vr && (memcmp(b + i + 4, "OB", 2) == 0 || memcmp(b + i + 4, "OW", 2) == 0 ||
                   memcmp(b + i + 4, "SQ", 2) == 0 || memcmp(b + i + 4, "UN", 2) == 0)) {
            *len_off = i + 8;
            *len_bytes = 4;
            return i + 12;
        }
        if (vr) {
            *len_off = i + 6;
            *len_bytes = 2;
            return i + 8;
        }
        *len_off = i + 4;
        *len_bytes = 4;
        return i + 8;
    }
    return 0;
}

static rd_status read_variant(const char *path, const unsigned char *b, size_t len,
                              const rd_dicom_options *opts, rd_error *err)
{
    rd_image *img = NULL;
    if (!spit(path, b, len))
        return RD_E_IO;
    rd_status st = rd_dicom_read_image(path, opts, &img, NULL, err);
    rd_image_free(img);
    return st;
}

RD_TEST(refusals_have_specific_status)
{
    const char *dir = rd_test_tmpdir("dicom_refusals");
    char path[1200];
    rd_dicom_options opts;
    rd_dicom_meta meta;
    rd_image *img = NULL;
    rd_error err;
    size_t len, lo;
    int lb;

    snprintf(path, sizeof path, "%s/missing.dcm", dir);
    CHECK_EQ_INT(rd_dicom_read_image(path, NULL, &img, NULL, &err), RD_E_NOT_FOUND);
    snprintf(path, sizeof path, "%s/text.dcm", dir);
    REQUIRE(spit(path, "hello, this is not DICOM at all\n", 32));
    CHECK_EQ_INT(rd_dicom_read_meta(path, &meta, &err), RD_E_DICOM);
    CHECK(strstr(err.msg, "not a DICOM file") != NULL);
    CHECK_EQ_INT(rd_dicom_probe(path), 0);
    snprintf(path, sizeof path, "%s/empty.dcm", dir);
    REQUIRE(spit(path, "", 0));
    CHECK_EQ_INT(rd_dicom_read_image(path, NULL, &img, NULL, &err), RD_E_DICOM);

    /* Dimensions over the configured cap: refused before decoding. */
    rd_dicom_options_default(&opts);
    opts.max_dimension = 1000;
    CHECK_EQ_INT(
        rd_dicom_read_image(data_path("chest/siim-CR-jpeg-baseline.dcm"), &opts, &img, NULL, &err),
        RD_E_TOO_LARGE);
    CHECK(img == NULL);

    unsigned char *b = slurp(data_path("chest/CR-MONO1-10-chest.dcm"), &len);
    REQUIRE(b);
    snprintf(path, sizeof path, "%s/variant.dcm", dir);
    /* Bits Stored 24 (with 16 allocated): unsupported, not corrupt. */
    size_t v = find_value(b, len, 0, 0x0028, 0x0101, &lo, &lb);
    REQUIRE(v > 0);
    b[v] = 24;
    CHECK_EQ_INT(read_variant(path, b, len, NULL, &err), RD_E_UNSUPPORTED);
    CHECK(strstr(err.msg, "bits stored 24") != NULL);
    b[v] = 10;
    /* Rows 60000: over the default cap. */
    v = find_value(b, len, 0, 0x0028, 0x0010, &lo, &lb);
    REQUIRE(v > 0);
    b[v] = 60000 & 0xff;
    b[v + 1] = 60000 >> 8;
    CHECK_EQ_INT(read_variant(path, b, len, NULL, &err), RD_E_TOO_LARGE);
    /* Rows 441: the pixel data is one row short. */
    b[v] = 441 & 0xff;
    b[v + 1] = 441 >> 8;
    CHECK_EQ_INT(read_variant(path, b, len, NULL, &err), RD_E_CORRUPT);
    b[v] = 440 & 0xff;
    b[v + 1] = 440 >> 8;
    /* Pixel data cut short: the file ends 1000 bytes early. */
    CHECK_EQ_INT(read_variant(path, b, len - 1000, NULL, &err), RD_E_CORRUPT);
    CHECK_EQ_INT(read_variant(path, b, len, NULL, &err), RD_OK);
    free(b);

    /* A transfer syntax DCMTK knows but radraft has no decoder for (JPEG process 16 & 18,
     * retired), and one nobody knows: both unsupported. */
    b = slurp(data_path("codecs/emri_small_jpeg_ls_lossless.dcm"), &len);
    REQUIRE(b);
    v = find_value(b, len, 132, 0x0002, 0x0010, &lo, &lb);
    REQUIRE(v > 0 && memcmp(b + v, "1.2.840.10008.1.2.4.80", 22) == 0);
    memcpy(b + v, "1.2.840.10008.1.2.4.60", 22);
    CHECK_EQ_INT(read_variant(path, b, len, NULL, &err), RD_E_UNSUPPORTED);
    memcpy(b + v, "1.2.840.10008.1.2.4.99", 22);
    CHECK_EQ_INT(read_variant(path, b, len, NULL, &err), RD_E_UNSUPPORTED);
    CHECK(strstr(err.msg, "1.2.840.10008.1.2.4.99") != NULL);
    free(b);
}

/* The RLE header's segment offsets are checked against the fragment (DCMTK's RLE decoder,
 * which radraft no longer uses, read past the fragment and before its own buffer; found by
 * tests/fuzz/fuzz_dicom, whose corpus keeps the input as regress-rle-segment-offset.dcm). */
RD_TEST(rle_segments_are_bounded_by_the_fragment)
{
    const char *dir = rd_test_tmpdir("dicom_rle");
    char path[1200], variant[1200];
    rd_samples_options so;
    rd_image *img = NULL;
    rd_error err;
    size_t len, lo;
    int lb;

    rd_samples_options_default(&so);
    so.rows = 64;
    so.force_syntax = RD_DICOM_SYNTAX_RLE;
    snprintf(path, sizeof path, "%s/rle.dcm", dir);
    snprintf(variant, sizeof variant, "%s/variant.dcm", dir);
    REQUIRE_OK(rd_samples_write_case(0, &so, path, &err), &err);
    REQUIRE_OK(rd_dicom_read_image(path, NULL, &img, NULL, &err), &err);
    CHECK_EQ_INT(img->height, 64);
    rd_image_free(img);
    unsigned char *b = slurp(path, &len);
    REQUIRE(b);
    /* Pixel Data: the offset table item, then the frame's fragment and its header: 2
     * segments (16-bit samples), the first at 64. */
    size_t v = find_value(b, len, 132, 0x7fe0, 0x0010, &lo, &lb);
    REQUIRE(v > 0 && v + 8 <= len);
    size_t item = v + 8 + ((size_t)b[v + 4] | ((size_t)b[v + 5] << 8));
    REQUIRE(item + 8 + 64 <= len);
    unsigned char *frag = b + item + 8;
    size_t frag_len =
        (size_t)b[item + 4] | ((size_t)b[item + 5] << 8) | ((size_t)b[item + 6] << 16);
    REQUIRE(frag[0] == 2 && frag[4] == 64 && frag_len > 64 && item + 8 + frag_len <= len);
    unsigned char saved[12];
    memcpy(saved, frag, sizeof saved);
    /* The second segment starts past the fragment's end. */
    frag[8] = 0xee;
    frag[9] = 0x06;
    frag[10] = 0x10;
    CHECK_EQ_INT(read_variant(variant, b, len, NULL, &err), RD_E_CORRUPT);
    CHECK_MSG(strstr(err.msg, "outside") != NULL, "%s", err.msg);
    /* ... or before the first one. */
    memcpy(frag, saved, sizeof saved);
    frag[8] = 32;
    frag[9] = frag[10] = 0;
    CHECK_EQ_INT(read_variant(variant, b, len, NULL, &err), RD_E_CORRUPT);
    /* The last segment is empty: it decodes to nothing. */
    memcpy(frag, saved, sizeof saved);
    frag[8] = (unsigned char)(frag_len & 0xff);
    frag[9] = (unsigned char)((frag_len >> 8) & 0xff);
    frag[10] = (unsigned char)(frag_len >> 16);
    CHECK_EQ_INT(read_variant(variant, b, len, NULL, &err), RD_E_CORRUPT);
    /* A header naming the wrong number of segments. */
    memcpy(frag, saved, sizeof saved);
    frag[0] = 15;
    CHECK_EQ_INT(read_variant(variant, b, len, NULL, &err), RD_E_CORRUPT);
    memcpy(frag, saved, sizeof saved);
    CHECK_EQ_INT(read_variant(variant, b, len, NULL, &err), RD_OK);
    free(b);
}

/* A Part 10 file of the Deflated Explicit VR Little Endian transfer syntax whose dataset,
 * deflated, holds a few attributes and an OB element that claims `claimed` bytes and has
 * `present` zero bytes. 0 when it cannot be written. */
static int write_deflated(const char *path, uint32_t claimed, size_t present)
{
    static const char ts[] = "1.2.840.10008.1.2.1.99";
    static const char sop_class[] = "1.2.840.10008.5.1.4.1.1.7";
    unsigned char meta[256], head[128], zero[1 << 16], out[1 << 16];
    size_t m = 12, h = 0;
    z_stream zs;
    int ok = 1;
    FILE *fp;
    memset(zero, 0, sizeof zero);
    /* Explicit VR little endian element with a 2-byte length (even values only here). */
#define PUT_SHORT(buf, n, g, e, vr, val, len)                                                      \
    do {                                                                                           \
        unsigned char t[8] = {(g)&0xff, (g) >> 8, (e)&0xff,   (e) >> 8,                            \
                              (vr)[0],  (vr)[1],  (len)&0xff, (len) >> 8};                         \
        memcpy(buf + n, t, 8);                                                                     \
        memcpy(buf + n + 8, val, len);                                                             \
        n += 8 + (len);                                                                            \
    } while (0)
    PUT_SHORT(meta, m, 0x0002, 0x0002, "UI", sop_class, 26);
    PUT_SHORT(meta, m, 0x0002, 0x0003, "UI", "1.2.3.4\0", 8);
    PUT_SHORT(meta, m, 0x0002, 0x0010, "UI", ts, 22);
    uint32_t glen = (uint32_t)(m - 12);
    unsigned char gl[12] = {0x02, 0, 0, 0, 'U', 'L', 4, 0, glen & 0xff, glen >> 8, 0, 0};
    memcpy(meta, gl, 12);
    PUT_SHORT(head, h, 0x0008, 0x0016, "UI", sop_class, 26);
    PUT_SHORT(head, h, 0x0008, 0x0018, "UI", "1.2.3.4\0", 8);
    PUT_SHORT(head, h, 0x0008, 0x0060, "CS", "OT", 2);
#undef PUT_SHORT
    unsigned char ob[12] = {0x09,
                            0x00,
                            0x10,
                            0x10,
                            'O',
                            'B',
                            0,
                            0,
                            claimed & 0xff,
                            (claimed >> 8) & 0xff,
                            (claimed >> 16) & 0xff,
                            claimed >> 24};
    memcpy(head + h, ob, 12);
    h += 12;
    if (!(fp = fopen(path, "wb")))
        return 0;
    memset(out, 0, 128);
    ok = fwrite(out, 1, 128, fp) == 128 && fwrite("DICM", 1, 4, fp) == 4 &&
         fwrite(meta, 1, m, fp) == m;
    memset(&zs, 0, sizeof zs);
    ok = ok && deflateInit2(&zs, 9, Z_DEFLATED, -MAX_WBITS, 9, Z_DEFAULT_STRATEGY) == Z_OK;
    for (size_t sent = 0, step = 0; ok; step++) {
        int flush = Z_NO_FLUSH;
        if (step == 0) {
            zs.next_in = head;
            zs.avail_in = (uInt)h;
        } else if (sent < present) {
            size_t n = present - sent < sizeof zero ? present - sent : sizeof zero;
            zs.next_in = zero;
            zs.avail_in = (uInt)n;
            sent += n;
        } else {
            zs.avail_in = 0;
            flush = Z_FINISH;
        }
        int z;
        do {
            zs.next_out = out;
            zs.avail_out = sizeof out;
            z = deflate(&zs, flush);
            size_t got = sizeof out - zs.avail_out;
            ok = ok && z != Z_STREAM_ERROR && fwrite(out, 1, got, fp) == got;
        } while (ok && zs.avail_out == 0);
        if (flush == Z_FINISH)
            break;
    }
    deflateEnd(&zs);
    return fclose(fp) == 0 && ok;
}

/* A deflated dataset is inflated by radraft within RD_DICOM_MAX_INFLATED_BYTES (256 MiB),
 * and its lengths are checked against what it inflates to: DCMTK, left to inflate it, loaded
 * every value at its claimed length (a 4 KB file made it allocate 2 GiB: found by
 * tests/fuzz/fuzz_dicom, whose corpus keeps the input as regress-deflated-length.dcm). */
RD_TEST(deflated_datasets_are_bounded)
{
    const char *dir = rd_test_tmpdir("dicom_deflated");
    char path[1200];
    rd_dicom_meta meta;
    rd_error err;
    snprintf(path, sizeof path, "%s/small.dcm", dir);
    REQUIRE(write_deflated(path, 1024, 1024));
    REQUIRE_OK(rd_dicom_read_meta(path, &meta, &err), &err);
    CHECK_STR(meta.transfer_syntax_uid, "1.2.840.10008.1.2.1.99");
    CHECK_STR(meta.sop_instance_uid, "1.2.3.4");
    /* An element that claims 2 GiB of the few bytes there are. */
    snprintf(path, sizeof path, "%s/claims.dcm", dir);
    REQUIRE(write_deflated(path, 0x80000000u, 16));
    CHECK_EQ_INT(rd_dicom_read_meta(path, &meta, &err), RD_E_CORRUPT);
    /* 300 MiB of zeros, deflated to a few hundred kilobytes: refused while inflating. */
    snprintf(path, sizeof path, "%s/bomb.dcm", dir);
    REQUIRE(write_deflated(path, 300u << 20, (size_t)300 << 20));
    CHECK_EQ_INT(rd_dicom_read_meta(path, &meta, &err), RD_E_TOO_LARGE);
    CHECK_MSG(strstr(err.msg, "inflates to more than") != NULL, "%s", err.msg);
}

/* ---- corrupted variants never crash --------------------------------------------------- */

static uint32_t rng_state = 0x12345678u;
static uint32_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 17;
    rng_state ^= rng_state << 5;
    return rng_state;
}

static int variants, decoded, refused;

/* Reads a variant both ways; either fails with a status and message, or succeeds with a
 * well-formed image. */
static void try_variant(const char *path, const unsigned char *b, size_t len, const char *what)
{
    rd_image *img = NULL;
    rd_dicom_meta meta;
    rd_error err;
    if (!spit(path, b, len)) {
        RD_FAIL_AT("cannot write %s", path);
        return;
    }
    variants++;
    rd_error_clear(&err);
    rd_status st = rd_dicom_read_meta(path, &meta, &err);
    CHECK_MSG(st == RD_OK || (err.status == st && err.msg[0]), "%s: meta %s without message", what,
              rd_status_name(st));
    rd_error_clear(&err);
    st = rd_dicom_read_image(path, NULL, &img, &meta, &err);
    if (st == RD_OK) {
        decoded++;
        CHECK_MSG(img && img->width > 0 && img->height > 0 && image_range_ok(img) >= 0,
                  "%s: bad image", what);
    } else {
        refused++;
        CHECK_MSG(img == NULL && err.status == st && err.msg[0] && st > RD_OK &&
                      st < RD_STATUS_COUNT,
                  "%s: %s without a proper error", what, rd_status_name(st));
    }
    rd_image_free(img);
}

RD_TEST(corrupted_variants_never_crash)
{
    const char *dir = rd_test_tmpdir("dicom_fuzz");
    char path[1200], what[600];
    clock_t t0 = clock();
    int rows_patched = 0;
    rd_log_level level = rd_log_get_level();
    rd_log_set_level(RD_LOG_ERROR); /* the multi-frame warnings would flood the output */
    snprintf(path, sizeof path, "%s/v.dcm", dir);
    for (size_t k = 0; k < N_OUTCOMES; k++) {
        size_t len, lo;
        int lb;
        unsigned char *orig = slurp(data_path(outcomes[k].file), &len);
        REQUIRE(orig);
        unsigned char *b = malloc(len);
        REQUIRE(b);
        /* Large files cost more per variant (under ASan too), so they get fewer. */
        int cuts = len > 300000 ? 10 : 40, flips = len > 300000 ? 8 : 32;

        for (int i = 0; i <= cuts + 3; i++) {
            /* Evenly spread cuts, the end of the preamble, and the last few bytes. */
            size_t at = i == 0      ? 132
                        : i <= cuts ? (size_t)((double)len * i / (cuts + 1))
                                    : len - (size_t)(i - cuts) * 3;
            snprintf(what, sizeof what, "%s cut at %zu", outcomes[k].file, at);
            try_variant(path, orig, at < len ? at : len, what);
        }
        for (int i = 0; i < flips; i++) {
            /* Half the flips land in the first 2 KiB (the attributes), half anywhere. */
            memcpy(b, orig, len);
            size_t span = i % 2 == 0 && len > 2048 ? 2048 : len;
            for (int j = 0; j < 4; j++)
                b[rng() % span] ^= (unsigned char)(1u << (rng() % 8));
            snprintf(what, sizeof what, "%s flip #%d", outcomes[k].file, i);
            try_variant(path, b, len, what);
        }
        /* Oversized lengths: pixel data, patient name and the first element after the
         * preamble claim far more than the file holds. */
        static const unsigned tags[][2] = {
            {0x7fe0, 0x0010}, {0x0010, 0x0010}, {0x0008, 0x0016}, {0x0028, 0x3000}};
        for (size_t t = 0; t < sizeof tags / sizeof tags[0]; t++) {
            memcpy(b, orig, len);
            if (!find_value(b, len, 0, tags[t][0], tags[t][1], &lo, &lb))
                continue;
            memset(b + lo, 0xff, (size_t)lb);
            if (lb == 4)
                b[lo] = 0xf0; /* 0xfffffff0: huge but not "undefined length" */
            snprintf(what, sizeof what, "%s oversize (%04x,%04x)", outcomes[k].file, tags[t][0],
                     tags[t][1]);
            try_variant(path, b, len, what);
        }
        /* Rows 60000 is refused before any decoding. */
        memcpy(b, orig, len);
        size_t v = find_value(b, len, 0, 0x0028, 0x0010, &lo, &lb);
        if (v > 0 && outcomes[k].status == RD_OK) {
            rd_error err;
            rd_dicom_meta meta;
            b[v] = 60000 & 0xff;
            b[v + 1] = 60000 >> 8;
            snprintf(what, sizeof what, "%s rows 60000", outcomes[k].file);
            try_variant(path, b, len, what);
            /* In a big-endian file the byte pattern may have matched inside the pixels; the
             * refusal is only expected where Rows really became 60000. */
            rd_error_clear(&err);
            if (rd_dicom_read_meta(path, &meta, &err) == RD_OK && meta.rows == 60000) {
                rows_patched++;
                CHECK_MSG(read_variant(path, b, len, NULL, &err) == RD_E_TOO_LARGE, "%s: %s", what,
                          rd_error_message(&err));
            }
        }
        free(b);
        free(orig);
    }
    fprintf(stderr, "%d variants: %d decoded, %d refused, %.1f s CPU\n", variants, decoded, refused,
            (double)(clock() - t0) / CLOCKS_PER_SEC);
    rd_log_set_level(level);
    CHECK(refused > variants / 4); /* the corruptions did reach the checks */
    CHECK(rows_patched >= 15);     /* all little-endian images */
}

RD_TEST_MAIN()
