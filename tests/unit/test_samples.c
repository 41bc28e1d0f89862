/* Tests of the synthetic radiograph renderer, the sample UIDs and the X-ray DICOM writer
 * (include/radraft/samples.h, include/radraft/dicom_write.h): determinism, parameter
 * checks, the findings showing where they should, and a write/read round trip in every
 * transfer syntax through rd_dicom_read_image. */
#include <stdint.h>
#include <sys/stat.h>

#include "radraft/dicom.h"
#include "radraft/dicom_write.h"
#include "radraft/samples.h"
#include "rdtest.h"

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

RD_TEST_MAIN()
