/* Tests of the synthetic radiograph renderer, the sample UIDs and the X-ray DICOM writer
 * (include/radraft/samples.h, include/radraft/dicom_write.h): determinism, parameter
 * checks, the findings showing where they should, a write/read round trip in every
 * transfer syntax through rd_dicom_read_image, and PNGs wrapped as sample instances
 * (rd_samples_write_png) keeping every pixel. */
#include <stdint.h>
#include <sys/stat.h>

#include "radraft/dicom.h"
#include "radraft/dicom_write.h"
#include "radraft/samples.h"
#include "rdtest.h"
#include "base/util.h"

static rd_image *render(const rd_sample_params *p)
{
    rd_image *img = NULL;
    rd_error err;
    rd_status st = rd_sample_render(p, &img, &err);
    if (st != RD_OK) {
        fprintf(stderr, "render: %s\n", rd_error_message(&err));
        return NULL;
    }
    return img;
}

static double mean_rect(const rd_image *img, double x0, double y0, double x1, double y1)
{
    int ax = (int)(x0 * img->width), bx = (int)(x1 * img->width);
    int ay = (int)(y0 * img->height), by = (int)(y1 * img->height);
    double s = 0.0;
    long n = 0;
    for (int y = ay; y < by; y++)
        for (int x = ax; x < bx; x++, n++)
            s += img->data[(size_t)y * (size_t)img->width + (size_t)x];
    return n ? s / (double)n : 0.0;
}

RD_TEST(render_is_deterministic_and_in_range)
{
    rd_sample_params p;
    rd_image *a, *b;
    rd_sample_params_default(&p);
    p.rows = 256;
    p.seed = 42;
    a = render(&p);
    b = render(&p);
    REQUIRE(a && b);
    CHECK_EQ_INT(a->height, 256);
    CHECK_EQ_INT(a->width, rd_sample_columns(256));
    CHECK(memcmp(a->data, b->data, sizeof(float) * (size_t)a->width * (size_t)a->height) == 0);
    for (size_t i = 0; i < (size_t)a->width * (size_t)a->height; i++)
        if (!(a->data[i] >= 0.0f && a->data[i] <= 1.0f)) {
            CHECK_MSG(0, "pixel %zu = %g outside [0, 1]", i, a->data[i]);
            break;
        }
    /* Another seed is another patient. */
    p.seed = 43;
    rd_image_free(b);
    b = render(&p);
    REQUIRE(b);
    CHECK(memcmp(a->data, b->data, sizeof(float) * (size_t)a->width * (size_t)a->height) != 0);
    rd_image_free(a);
    rd_image_free(b);
}

RD_TEST(render_looks_like_a_chest)
{
    /* Dark air outside the body, darker lungs than mediastinum and abdomen. */
    rd_sample_params p;
    rd_image *img;
    rd_sample_params_default(&p);
    p.rows = 384;
    img = render(&p);
    REQUIRE(img);
    double corner = mean_rect(img, 0.0, 0.0, 0.05, 0.05);
    double right_lung = mean_rect(img, 0.20, 0.35, 0.32, 0.50);
    double left_lung = mean_rect(img, 0.68, 0.35, 0.80, 0.50);
    double mediastinum = mean_rect(img, 0.46, 0.30, 0.54, 0.45);
    double abdomen = mean_rect(img, 0.30, 0.85, 0.70, 0.95);
    CHECK_MSG(corner < 0.05, "corner %g", corner);
    CHECK_MSG(right_lung < mediastinum - 0.25, "right lung %g vs mediastinum %g", right_lung,
              mediastinum);
    CHECK_MSG(left_lung < mediastinum - 0.25, "left lung %g vs mediastinum %g", left_lung,
              mediastinum);
    CHECK_MSG(right_lung < abdomen - 0.25, "right lung %g vs abdomen %g", right_lung, abdomen);
    rd_image_free(img);
}

RD_TEST(render_nodule_is_a_round_opacity_in_the_right_upper_lung)
{
    /* The nodule draws no random numbers, so with and without it the noise is the same and
     * the difference is the nodule alone. */
    rd_sample_params p;
    rd_image *with, *without;
    double sx = 0, sy = 0, sw = 0;
    long count = 0;
    rd_sample_params_default(&p);
    p.rows = 512;
    without = render(&p);
    p.nodule = RD_SAMPLE_SIDE_RIGHT;
    p.nodule_mm = 12.0;
    with = render(&p);
    REQUIRE(with && without);
    for (int y = 0; y < with->height; y++)
        for (int x = 0; x < with->width; x++) {
            size_t i = (size_t)y * (size_t)with->width + (size_t)x;
            double d = with->data[i] - without->data[i];
            if (d > 0.02) {
                sx += d * x, sy += d * y, sw += d;
                count++;
            }
        }
    REQUIRE(sw > 0.0);
    sx /= sw, sy /= sw;
    /* The patient's right upper zone is the image's upper left quarter. */
    CHECK_MSG(sx < 0.45 * with->width && sy < 0.45 * with->height, "centroid %g,%g", sx, sy);
    /* About a 12 mm disc (the edge enhancement spreads it a little). */
    {
        double mm2 = count * rd_sample_pixel_spacing(512) * rd_sample_pixel_spacing(512);
        double disc = 3.14159 * 6.0 * 6.0;
        CHECK_MSG(mm2 > 0.4 * disc && mm2 < 3.0 * disc, "opacity area %g mm2", mm2);
    }
    rd_image_free(with);
    rd_image_free(without);
}

RD_TEST(render_effusion_blunts_the_left_costophrenic_angle)
{
    rd_sample_params p;
    rd_image *normal, *eff;
    rd_sample_params_default(&p);
    p.rows = 384;
    normal = render(&p);
    p.effusion = RD_SAMPLE_SIDE_LEFT;
    p.effusion_mm = 55.0;
    eff = render(&p);
    REQUIRE(normal && eff);
    /* The patient's left base is on the image's lower right. */
    double n_left = mean_rect(normal, 0.75, 0.62, 0.88, 0.72);
    double e_left = mean_rect(eff, 0.75, 0.62, 0.88, 0.72);
    double e_right = mean_rect(eff, 0.12, 0.62, 0.25, 0.72);
    CHECK_MSG(e_left > n_left + 0.1, "left base %g with effusion, %g without", e_left, n_left);
    CHECK_MSG(e_left > e_right + 0.1, "left base %g, right base %g", e_left, e_right);
    rd_image_free(normal);
    rd_image_free(eff);
}

/* Width of the bright band (mediastinum and heart) through the middle, widest over the
 * rows of the lower chest, as a fraction of the image width. */
static double heart_band(const rd_image *img)
{
    int best = 0;
    for (int y = (int)(0.50 * img->height); y < (int)(0.64 * img->height); y++) {
        const float *row = img->data + (size_t)y * (size_t)img->width;
        int l = img->width / 2, r = img->width / 2;
        while (l > 0 && row[l - 1] > 0.45f)
            l--;
        while (r < img->width - 1 && row[r + 1] > 0.45f)
            r++;
        if (r - l > best)
            best = r - l;
    }
    return (double)best / img->width;
}

RD_TEST(render_heart_follows_the_ratio_and_the_view)
{
    rd_sample_params p;
    rd_image *normal, *big, *ap;
    rd_sample_params_default(&p);
    p.rows = 384;
    normal = render(&p);
    p.ctr = 0.62;
    big = render(&p);
    p.ctr = 0.45;
    p.view = RD_SAMPLE_VIEW_AP; /* the heart is magnified in an AP film */
    ap = render(&p);
    REQUIRE(normal && big && ap);
    double wn = heart_band(normal), wb = heart_band(big), wa = heart_band(ap);
    /* The thorax is about 0.78 of the image width, so a ratio of 0.45 is a band of about
     * 0.35 of the width. */
    CHECK_MSG(wn > 0.28 && wn < 0.42, "normal band %g", wn);
    CHECK_MSG(wb > 1.25 * wn, "cardiomegaly band %g vs normal %g", wb, wn);
    CHECK_MSG(wa > wn, "AP band %g vs PA %g", wa, wn);
    rd_image_free(normal);
    rd_image_free(big);
    rd_image_free(ap);
}

RD_TEST(render_refuses_bad_parameters)
{
    rd_sample_params p;
    rd_image *img = NULL;
    rd_error err;
    rd_sample_params_default(&p);
    p.rows = 10;
    CHECK_EQ_INT(rd_sample_render(&p, &img, &err), RD_E_INVALID);
    CHECK(strstr(err.msg, "rows") != NULL);
    rd_sample_params_default(&p);
    p.ctr = 0.9;
    CHECK_EQ_INT(rd_sample_render(&p, &img, &err), RD_E_INVALID);
    rd_sample_params_default(&p);
    p.view = (rd_sample_view)7;
    CHECK_EQ_INT(rd_sample_render(&p, &img, &err), RD_E_INVALID);
    rd_sample_params_default(&p);
    p.nodule_mm = 0.0 / 0.0;
    CHECK_EQ_INT(rd_sample_render(&p, &img, &err), RD_E_INVALID);
    CHECK(img == NULL);
    CHECK_EQ_INT(rd_sample_render(NULL, &img, &err), RD_E_INVALID);
}

RD_TEST(uids_are_valid_and_stable)
{
    char a[65], b[65], c[65];
    rd_samples_uid("radraft/one", a);
    rd_samples_uid("radraft/one", b);
    rd_samples_uid("radraft/two", c);
    CHECK_STR(a, b);
    CHECK(strcmp(a, c) != 0);
    CHECK(strncmp(a, "2.25.", 5) == 0);
    CHECK(strlen(a) <= 64 && strlen(a) > 5);
    CHECK(a[5] != '0');
    for (const char *s = a + 5; *s; s++)
        CHECK(*s >= '0' && *s <= '9');
    /* The empty key still gives a valid UID. */
    rd_samples_uid("", c);
    CHECK(strncmp(c, "2.25.", 5) == 0 && strlen(c) > 5);
}

RD_TEST(syntax_names_round_trip)
{
    rd_error err;
    for (int s = 0; s < RD_DICOM_SYNTAX_COUNT; s++) {
        rd_dicom_syntax out;
        const char *name = rd_dicom_syntax_short_name((rd_dicom_syntax)s);
        CHECK(name[0] != '\0');
        CHECK(rd_dicom_syntax_uid((rd_dicom_syntax)s)[0] == '1');
        CHECK(rd_dicom_syntax_dcmtk_name((rd_dicom_syntax)s)[0] != '\0');
        CHECK_OK(rd_dicom_syntax_parse(name, &out, &err), &err);
        CHECK_EQ_INT(out, s);
    }
    {
        rd_dicom_syntax out;
        CHECK_EQ_INT(rd_dicom_syntax_parse("jpeg2000", &out, &err), RD_E_INVALID);
        CHECK(strstr(err.msg, "jpeg-ls") != NULL);
    }
    CHECK_STR(rd_dicom_syntax_uid(RD_DICOM_SYNTAX_COUNT), "");
    CHECK_STR(rd_dicom_syntax_uid(RD_DICOM_SYNTAX_RLE), "1.2.840.10008.1.2.5");
}

static void small_info(rd_dicom_xray_info *info)
{
    rd_dicom_xray_info_default(info);
    info->patient_name = "Test^Ünïcode";
    info->patient_id = "T1";
    info->study_uid = "2.25.1";
    info->series_uid = "2.25.2";
    info->sop_instance_uid = "2.25.3";
    info->study_date = "20240101";
    info->study_time = "120000";
    info->view_position = "PA";
    info->patient_orientation = "L\\F";
}

RD_TEST(write_refuses_bad_arguments)
{
    rd_image *img = NULL;
    rd_dicom_xray_info info;
    rd_error err;
    const char *dir = rd_test_tmpdir("samples_write_bad");
    char path[1100];
    REQUIRE_OK(rd_image_create(&img, 8, 8, &err), &err);
    snprintf(path, sizeof path, "%s/x.dcm", dir);

    small_info(&info);
    info.sop_instance_uid = "1.2.abc";
    CHECK_EQ_INT(rd_dicom_write_xray(path, img, &info, &err), RD_E_INVALID);
    small_info(&info);
    info.study_uid = NULL;
    CHECK_EQ_INT(rd_dicom_write_xray(path, img, &info, &err), RD_E_INVALID);
    small_info(&info);
    info.bits_stored = 20;
    CHECK_EQ_INT(rd_dicom_write_xray(path, img, &info, &err), RD_E_INVALID);
    small_info(&info);
    info.pixel_spacing = 0.0;
    CHECK_EQ_INT(rd_dicom_write_xray(path, img, &info, &err), RD_E_INVALID);
    small_info(&info);
    info.syntax = (rd_dicom_syntax)99;
    CHECK_EQ_INT(rd_dicom_write_xray(path, img, &info, &err), RD_E_INVALID);
    small_info(&info);
    {
        char bad[1200];
        snprintf(bad, sizeof bad, "%s/no/such/folder/x.dcm", dir);
        CHECK_EQ_INT(rd_dicom_write_xray(bad, img, &info, &err), RD_E_IO);
    }
    {
        struct stat sb;
        CHECK(stat(path, &sb) != 0); /* nothing was written by the refused calls */
    }
    rd_image_free(img);
}

RD_TEST(write_read_round_trip_every_syntax)
{
    /* A gradient with noise-like detail, written in every syntax as CR and DX, MONOCHROME1
     * and 2, must read back as the same image (to within the 12-bit quantisation). */
    rd_image *img = NULL;
    rd_error err;
    const char *dir = rd_test_tmpdir("samples_roundtrip");
    REQUIRE_OK(rd_image_create(&img, 37, 29, &err), &err);
    for (int y = 0; y < img->height; y++)
        for (int x = 0; x < img->width; x++)
            img->data[y * img->width + x] =
                (float)((x * 0.02 + y * 0.015) + 0.1 * ((x * 7 + y * 13) % 5) / 5.0);
    rd_image_clamp(img);
    for (int s = 0; s < RD_DICOM_SYNTAX_COUNT; s++)
        for (int variant = 0; variant < 2; variant++) {
            rd_dicom_xray_info info;
            rd_dicom_meta meta;
            rd_image *back = NULL;
            char path[1100];
            double maxdiff = 0.0;
            small_info(&info);
            info.syntax = (rd_dicom_syntax)s;
            info.sop_class = variant ? RD_DICOM_XRAY_CR : RD_DICOM_XRAY_DX;
            info.monochrome1 = variant;
            snprintf(path, sizeof path, "%s/%s-%d.dcm", dir,
                     rd_dicom_syntax_short_name((rd_dicom_syntax)s), variant);
            CHECK_OK(rd_dicom_write_xray(path, img, &info, &err), &err);
            CHECK_OK(rd_dicom_read_image(path, NULL, &back, &meta, &err), &err);
            if (!back)
                continue;
            CHECK_EQ_INT(back->width, 37);
            CHECK_EQ_INT(back->height, 29);
            CHECK_STR(meta.transfer_syntax_uid, rd_dicom_syntax_uid((rd_dicom_syntax)s));
            CHECK_STR(meta.photometric, variant ? "MONOCHROME1" : "MONOCHROME2");
            CHECK_STR(meta.modality, variant ? "CR" : "DX");
            CHECK_STR(meta.patient_name, "Test^Ünïcode");
            CHECK_EQ_INT(meta.bits_stored, 12);
            for (int i = 0; i < 37 * 29; i++) {
                double d = fabs(back->data[i] - img->data[i]);
                if (d > maxdiff)
                    maxdiff = d;
            }
            CHECK_MSG(maxdiff < 2.0 / 4095.0, "%s: max difference %g", path, maxdiff);
            rd_image_free(back);
        }
    rd_image_free(img);
}

RD_TEST(sample_cases_cover_the_plan)
{
    int syntax_count[RD_DICOM_SYNTAX_COUNT] = {0};
    int cr = 0, dx = 0, mono1 = 0, lateral = 0;
    REQUIRE(rd_samples_count() >= 8);
    CHECK(rd_samples_case(rd_samples_count()) == NULL);
    for (size_t i = 0; i < rd_samples_count(); i++) {
        const rd_sample_case *c = rd_samples_case(i);
        syntax_count[c->syntax]++;
        cr += c->sop_class == RD_DICOM_XRAY_CR;
        dx += c->sop_class == RD_DICOM_XRAY_DX;
        mono1 += c->monochrome1;
        lateral += c->params.view == RD_SAMPLE_VIEW_LATERAL;
    }
    for (int s = 0; s < RD_DICOM_SYNTAX_COUNT; s++)
        CHECK_MSG(syntax_count[s] > 0, "no sample in %s",
                  rd_dicom_syntax_short_name((rd_dicom_syntax)s));
    CHECK(cr > 0 && dx > 0 && mono1 > 0);
    CHECK_EQ_INT(lateral * 2, (int)rd_samples_count());
}

/* ---- PNGs as sample instances -------------------------------------------------------- */

static void png_sample(rd_sample_png *s)
{
    rd_sample_png_default(s);
    s->patient_id = "PNG01";
    s->patient_name = "Demo^Pñg";
    s->birth_date = "19700101";
    s->sex = "F";
    s->accession_number = "RDAPNG01";
}

/* A w x h gradient with detail, quantized to `bits` so that a PNG holds it exactly. */
static rd_image *gradient(int w, int h, int bits, int variant)
{
    rd_image *img = NULL;
    double maxval = bits == 16 ? 65535.0 : 255.0;
    if (rd_image_create(&img, w, h, NULL) != RD_OK)
        return NULL;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            double v = fmod(0.013 * x + 0.021 * y + 0.17 * ((x * 7 + y * 3 + variant) % 5), 1.0);
            img->data[y * w + x] = (float)(round(v * maxval) / maxval);
        }
    return img;
}

static int same_bytes(const char *a, const char *b)
{
    char *da = NULL, *db = NULL;
    size_t la = 0, lb = 0;
    int same = 0;
    if (rd_read_file(a, 16u << 20, &da, &la, NULL) == RD_OK &&
        rd_read_file(b, 16u << 20, &db, &lb, NULL) == RD_OK)
        same = la == lb && memcmp(da, db, la) == 0;
    free(da);
    free(db);
    return same;
}

RD_TEST(png_sample_keeps_every_pixel)
{
    /* 8- and 16-bit PNGs, in two syntaxes and both SOP classes, read back through the same
     * path the pipeline reads a study by (stored window, VOI) as the PNG's own values. */
    const char *dir = rd_test_tmpdir("samples_png_pixels");
    for (int bits = 8; bits <= 16; bits += 8)
        for (int variant = 0; variant < 2; variant++) {
            rd_image *img = gradient(41, 33, bits, variant), *png = NULL, *back = NULL;
            rd_sample_png s;
            rd_dicom_meta meta;
            rd_error err;
            char png_path[1100], dcm_path[1100];
            double maxdiff = 0.0;
            REQUIRE(img);
            snprintf(png_path, sizeof png_path, "%s/g%d-%d.png", dir, bits, variant);
            snprintf(dcm_path, sizeof dcm_path, "%s/g%d-%d.dcm", dir, bits, variant);
            REQUIRE_OK(rd_png_write(img, png_path, bits, &err), &err);
            png_sample(&s);
            /* Not JPEG-LS: DCMTK 3.6.7's JPEG-LS encoder pads its stream from uninitialized
             * memory (valgrind shows it), so its bytes are not a function of the input. */
            s.syntax = variant ? RD_DICOM_SYNTAX_JPEG_LOSSLESS : RD_DICOM_SYNTAX_RLE;
            s.sop_class = variant ? RD_DICOM_XRAY_CR : RD_DICOM_XRAY_DX;
            s.view = variant ? RD_SAMPLE_VIEW_AP : RD_SAMPLE_VIEW_PA;
            CHECK_OK(rd_samples_write_png(png_path, &s, dcm_path, &err), &err);
            CHECK_OK(rd_png_read(png_path, &png, NULL, &err), &err);
            CHECK_OK(rd_dicom_read_image(dcm_path, NULL, &back, &meta, &err), &err);
            if (png && back) {
                CHECK_EQ_INT(back->width, 41);
                CHECK_EQ_INT(back->height, 33);
                for (int i = 0; i < 41 * 33; i++)
                    maxdiff = fmax(maxdiff, fabs(back->data[i] - png->data[i]));
                CHECK_MSG(maxdiff < 1e-6, "%s: max difference %g from the PNG", dcm_path, maxdiff);
                CHECK_EQ_INT(meta.bits_stored, bits);
                CHECK_STR(meta.photometric, "MONOCHROME2");
                CHECK_STR(meta.modality, variant ? "CR" : "DX");
                CHECK_STR(meta.view_position, variant ? "AP" : "PA");
                CHECK_STR(meta.body_part, "CHEST");
                CHECK_STR(meta.image_type, "DERIVED\\PRIMARY");
                CHECK_STR(meta.patient_id, "PNG01");
                CHECK_STR(meta.patient_name, "Demo^Pñg");
                CHECK_STR(meta.transfer_syntax_uid, rd_dicom_syntax_uid(s.syntax));
                CHECK_NEAR(meta.pixel_spacing[0], 430.0 / 33, 1e-4);
            }
            rd_image_free(img);
            rd_image_free(png);
            rd_image_free(back);
        }
}

RD_TEST(png_sample_is_deterministic)
{
    const char *dir = rd_test_tmpdir("samples_png_determinism");
    rd_image *a = gradient(24, 24, 8, 0), *b = gradient(24, 24, 8, 1);
    rd_sample_png s;
    rd_dicom_meta m1, m2, m3;
    rd_error err;
    char pa[1100], pb[1100], d1[1100], d2[1100], d3[1100];
    REQUIRE(a && b);
    snprintf(pa, sizeof pa, "%s/a.png", dir);
    snprintf(pb, sizeof pb, "%s/b.png", dir);
    snprintf(d1, sizeof d1, "%s/a1.dcm", dir);
    snprintf(d2, sizeof d2, "%s/a2.dcm", dir);
    snprintf(d3, sizeof d3, "%s/b.dcm", dir);
    REQUIRE_OK(rd_png_write(a, pa, 8, &err), &err);
    REQUIRE_OK(rd_png_write(b, pb, 8, &err), &err);
    png_sample(&s);
    s.syntax = RD_DICOM_SYNTAX_JPEG_LOSSLESS;
    REQUIRE_OK(rd_samples_write_png(pa, &s, d1, &err), &err);
    REQUIRE_OK(rd_samples_write_png(pa, &s, d2, &err), &err);
    REQUIRE_OK(rd_samples_write_png(pb, &s, d3, &err), &err);
    CHECK_MSG(same_bytes(d1, d2), "the same PNG and attributes wrote different files");
    REQUIRE_OK(rd_dicom_read_meta(d1, &m1, &err), &err);
    REQUIRE_OK(rd_dicom_read_meta(d2, &m2, &err), &err);
    REQUIRE_OK(rd_dicom_read_meta(d3, &m3, &err), &err);
    CHECK_STR(m1.sop_instance_uid, m2.sop_instance_uid);
    /* Other pixels: the same patient and study, but never the same instance. */
    CHECK_STR(m1.study_uid, m3.study_uid);
    CHECK(strcmp(m1.sop_instance_uid, m3.sop_instance_uid) != 0);
    CHECK(strncmp(m1.sop_instance_uid, "2.25.", 5) == 0);
    rd_image_free(a);
    rd_image_free(b);
}

/* Appends one PNG chunk (length, type, data, CRC-32) to buf at *pos. */
static void png_chunk(unsigned char *buf, size_t *pos, const char *type, const unsigned char *data,
                      size_t n)
{
    uint32_t crc = 0xffffffffu;
    unsigned char *start = buf + *pos + 4;
    buf[(*pos)++] = (unsigned char)(n >> 24);
    buf[(*pos)++] = (unsigned char)(n >> 16);
    buf[(*pos)++] = (unsigned char)(n >> 8);
    buf[(*pos)++] = (unsigned char)n;
    memcpy(buf + *pos, type, 4);
    *pos += 4;
    if (n) /* IEND has no data (and memcpy must not see NULL) */
        memcpy(buf + *pos, data, n);
    *pos += n;
    for (unsigned char *p = start; p < buf + *pos; p++) {
        crc ^= *p;
        for (int k = 0; k < 8; k++)
            crc = (crc >> 1) ^ (0xedb88320u & (0u - (crc & 1u)));
    }
    crc ^= 0xffffffffu;
    buf[(*pos)++] = (unsigned char)(crc >> 24);
    buf[(*pos)++] = (unsigned char)(crc >> 16);
    buf[(*pos)++] = (unsigned char)(crc >> 8);
    buf[(*pos)++] = (unsigned char)crc;
}

/* A valid 2x2 8-bit RGB PNG (rd_png_write only writes gray), its image data one stored
 * deflate block. */
static rd_status write_rgb_png(const char *path, rd_error *err)
{
    static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    const unsigned char ihdr[13] = {0, 0, 0, 2, 0, 0, 0, 2, 8, 2, 0, 0, 0};
    unsigned char raw[14] = {0, 255, 0, 0, 0, 255, 0, 0, 0, 0, 255, 9, 9, 9}, z[32], buf[128];
    uint32_t a = 1, b = 0;
    size_t pos = 0, zn = 0;
    z[zn++] = 0x78;
    z[zn++] = 0x01;
    z[zn++] = 0x01; /* final block, stored */
    z[zn++] = sizeof raw;
    z[zn++] = 0;
    z[zn++] = (unsigned char)~sizeof raw;
    z[zn++] = 0xff;
    memcpy(z + zn, raw, sizeof raw);
    zn += sizeof raw;
    for (size_t i = 0; i < sizeof raw; i++) {
        a = (a + raw[i]) % 65521u;
        b = (b + a) % 65521u;
    }
    z[zn++] = (unsigned char)(b >> 8);
    z[zn++] = (unsigned char)b;
    z[zn++] = (unsigned char)(a >> 8);
    z[zn++] = (unsigned char)a;
    memcpy(buf, sig, sizeof sig);
    pos = sizeof sig;
    png_chunk(buf, &pos, "IHDR", ihdr, sizeof ihdr);
    png_chunk(buf, &pos, "IDAT", z, zn);
    png_chunk(buf, &pos, "IEND", NULL, 0);
    return rd_write_file_atomic(path, buf, pos, err);
}

RD_TEST(png_sample_refuses_bad_input)
{
    const char *dir = rd_test_tmpdir("samples_png_bad");
    rd_image *img = gradient(16, 16, 8, 0), *rgb = NULL;
    rd_sample_png s;
    rd_error err;
    char png[1100], color[1100], out[1100], notpng[1100];
    struct stat sb;
    REQUIRE(img);
    snprintf(png, sizeof png, "%s/ok.png", dir);
    snprintf(color, sizeof color, "%s/rgb.png", dir);
    snprintf(notpng, sizeof notpng, "%s/not.png", dir);
    snprintf(out, sizeof out, "%s/out.dcm", dir);
    REQUIRE_OK(rd_png_write(img, png, 8, &err), &err);
    REQUIRE_OK(write_rgb_png(color, &err), &err);
    REQUIRE_OK(rd_write_file_atomic(notpng, "not a PNG", 9, &err), &err);
    /* The RGB file is a good PNG: the general reader takes it (as luminance). */
    CHECK_OK(rd_png_read(color, &rgb, NULL, &err), &err);

    png_sample(&s);
    s.patient_id = NULL;
    CHECK_EQ_INT(rd_samples_write_png(png, &s, out, &err), RD_E_INVALID);
    png_sample(&s);
    s.patient_id = "A\\B";
    CHECK_EQ_INT(rd_samples_write_png(png, &s, out, &err), RD_E_INVALID);
    png_sample(&s);
    s.view = RD_SAMPLE_VIEW_LATERAL;
    CHECK_EQ_INT(rd_samples_write_png(png, &s, out, &err), RD_E_INVALID);
    png_sample(&s);
    s.study_date = "2024-01-01";
    CHECK_EQ_INT(rd_samples_write_png(png, &s, out, &err), RD_E_INVALID);
    png_sample(&s);
    s.sex = "X";
    CHECK_EQ_INT(rd_samples_write_png(png, &s, out, &err), RD_E_INVALID);
    png_sample(&s);
    s.accession_number = "RDA-0123456789-LONG";
    CHECK_EQ_INT(rd_samples_write_png(png, &s, out, &err), RD_E_INVALID);
    png_sample(&s);
    s.syntax = (rd_dicom_syntax)99;
    CHECK_EQ_INT(rd_samples_write_png(png, &s, out, &err), RD_E_INVALID);
    png_sample(&s);
    CHECK_EQ_INT(rd_samples_write_png(color, &s, out, &err), RD_E_UNSUPPORTED);
    CHECK(strstr(rd_error_message(&err), "grayscale") != NULL);
    CHECK(rd_samples_write_png(notpng, &s, out, &err) != RD_OK);
    {
        char missing[1200];
        snprintf(missing, sizeof missing, "%s/missing.png", dir);
        CHECK(rd_samples_write_png(missing, &s, out, &err) != RD_OK);
    }
    CHECK(stat(out, &sb) != 0); /* nothing was written by the refused calls */
    /* And the same arguments, corrected, write the file. */
    CHECK_OK(rd_samples_write_png(png, &s, out, &err), &err);
    CHECK(stat(out, &sb) == 0);
    rd_image_free(img);
    rd_image_free(rgb);
}

RD_TEST_MAIN()
