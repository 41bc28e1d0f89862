/* Unit tests of the DICOM pixel pipeline (src/dicom/dicom_pixels.c) on synthetic buffers. */
#include <stdint.h>

#include "dicom/dicom_pixels.h"
#include "radraft/dicom.h"
#include "rdtest.h"

/* A monochrome frame of w*h 16-bit samples copied from `vals` (the frame owns a copy). */
static void mono16(rd_dicom_frame *f, int w, int h, int bits_stored, int is_signed, const char *pm,
                   const uint16_t *vals)
{
    memset(f, 0, sizeof *f);
    f->rows = h;
    f->cols = w;
    f->samples_per_pixel = 1;
    f->bits_allocated = 16;
    f->bits_stored = bits_stored;
    f->high_bit = bits_stored - 1;
    f->pixel_representation = is_signed;
    snprintf(f->photometric, sizeof f->photometric, "%s", pm);
    f->size = (size_t)w * (size_t)h * 2;
    f->data = malloc(f->size);
    memcpy(f->data, vals, f->size);
}

static rd_image *run(const rd_dicom_frame *f, const rd_dicom_options *opts)
{
    rd_image *img = NULL;
    rd_error err;
    rd_status st = rd_dicom_pixels_to_image(f, opts, &img, &err);
    if (st != RD_OK) {
        fprintf(stderr, "pipeline failed: %s\n", rd_error_message(&err));
        return NULL;
    }
    return img;
}

RD_TEST(window_linear_matches_ps33_formula)
{
    /* Window centre 100, width 101: PS3.3 C.11.2.1.2.1 maps x <= 49.5 to 0, x > 150.5 to
     * 1, and linearly in between ((x - 99.5) / 100 + 0.5). */
    uint16_t v[4] = {0, 50, 100, 200};
    rd_dicom_frame f;
    mono16(&f, 4, 1, 12, 0, "MONOCHROME2", v);
    f.has_window = 1;
    f.window_center = 100;
    f.window_width = 101;
    rd_image *img = run(&f, NULL);
    REQUIRE(img);
    CHECK_NEAR(img->data[0], 0.0, 1e-6);
    CHECK_NEAR(img->data[1], (50 - 99.5) / 100 + 0.5, 1e-6);
    CHECK_NEAR(img->data[2], (100 - 99.5) / 100 + 0.5, 1e-6);
    CHECK_NEAR(img->data[3], 1.0, 1e-6);
    rd_image_free(img);
    rd_dicom_frame_release(&f);
}

RD_TEST(rescale_applies_before_window)
{
    /* CT-like: slope 2, intercept -1000; stored 500 -> 0 HU, 600 -> 200 HU. A window
     * centred on 100 HU, width 200 (LINEAR_EXACT: (x - c) / w + 0.5) puts 0 HU at 0 and
     * 200 HU at 1; without the rescale both would saturate. */
    uint16_t v[3] = {500, 550, 600};
    rd_dicom_frame f;
    mono16(&f, 3, 1, 16, 0, "MONOCHROME2", v);
    f.has_rescale = 1;
    f.rescale_slope = 2;
    f.rescale_intercept = -1000;
    f.has_window = 1;
    f.window_center = 100;
    f.window_width = 200;
    snprintf(f.voi_function, sizeof f.voi_function, "LINEAR_EXACT");
    rd_image *img = run(&f, NULL);
    REQUIRE(img);
    CHECK_NEAR(img->data[0], 0.0, 1e-6);
    CHECK_NEAR(img->data[1], 0.5, 1e-6);
    CHECK_NEAR(img->data[2], 1.0, 1e-6);
    rd_image_free(img);
    rd_dicom_frame_release(&f);
}

RD_TEST(modality_lut_takes_precedence)
{
    /* LUT: stored 10..13 -> 0, 1000, 2000, 3000; the rescale (x100) must be ignored. */
    uint16_t v[4] = {10, 11, 12, 13};
    rd_dicom_frame f;
    mono16(&f, 4, 1, 10, 0, "MONOCHROME2", v);
    f.has_rescale = 1;
    f.rescale_slope = 100;
    f.modality_lut.present = 1;
    f.modality_lut.n = 4;
    f.modality_lut.first = 10;
    f.modality_lut.bits = 16;
    f.modality_lut.data = malloc(4 * sizeof(uint16_t));
    for (int i = 0; i < 4; i++)
        f.modality_lut.data[i] = (uint16_t)(1000 * i);
    f.has_window = 1;
    f.window_center = 1500;
    f.window_width = 3000;
    snprintf(f.voi_function, sizeof f.voi_function, "LINEAR_EXACT");
    rd_image *img = run(&f, NULL);
    REQUIRE(img);
    for (int i = 0; i < 4; i++)
        CHECK_NEAR(img->data[i], 1000.0 * i / 3000.0, 1e-6);
    rd_image_free(img);
    rd_dicom_frame_release(&f);
}

RD_TEST(monochrome1_inverts)
{
    uint16_t v[3] = {0, 512, 1023};
    rd_dicom_frame a, b;
    mono16(&a, 3, 1, 10, 0, "MONOCHROME2", v);
    mono16(&b, 3, 1, 10, 0, "MONOCHROME1", v);
    rd_image *ia = run(&a, NULL), *ib = run(&b, NULL);
    REQUIRE(ia && ib);
    CHECK(ia->data[0] < ia->data[2]);
    CHECK(ib->data[0] > ib->data[2]);
    for (int i = 0; i < 3; i++)
        CHECK_NEAR(ia->data[i] + ib->data[i], 1.0, 1e-6);
    rd_image_free(ia);
    rd_image_free(ib);
    rd_dicom_frame_release(&a);
    rd_dicom_frame_release(&b);
}

RD_TEST(padding_ignored_and_black)
{
    /* 100 pixels ramp 1000..1099 plus 100 padding pixels at 0 (and a MONOCHROME1 image,
     * where padding must still be black, not inverted to white). Without the padding the
     * percentile window is the ramp's range; with padding counted, the low end would be 0. */
    uint16_t v[200];
    for (int i = 0; i < 100; i++) {
        v[i] = (uint16_t)(1000 + i);
        v[100 + i] = 0;
    }
    rd_dicom_options opts;
    rd_dicom_options_default(&opts);
    opts.voi_percentile_low = 0;
    opts.voi_percentile_high = 100;
    rd_dicom_frame f;
    mono16(&f, 20, 10, 12, 0, "MONOCHROME1", v);
    f.has_padding = 1;
    f.padding_value = 0;
    rd_image *img = run(&f, &opts);
    REQUIRE(img);
    CHECK_NEAR(img->data[0], 1.0, 1e-6);  /* lowest ramp value, inverted */
    CHECK_NEAR(img->data[99], 0.0, 1e-6); /* highest ramp value, inverted */
    CHECK_NEAR(img->data[49], 1.0 - 49.0 / 99.0, 1e-6);
    for (int i = 100; i < 200; i++)
        CHECK_NEAR(img->data[i], 0.0, 0);
    rd_image_free(img);

    /* A padding range covers [0, 1009]: the ramp's first ten values become black too. */
    f.has_padding_range = 1;
    f.padding_range_limit = 1009;
    img = run(&f, &opts);
    REQUIRE(img);
    CHECK_NEAR(img->data[5], 0.0, 0);
    CHECK_NEAR(img->data[10], 1.0, 1e-6); /* now the lowest non-padding value */
    rd_image_free(img);
    rd_dicom_frame_release(&f);
}

RD_TEST(signed_and_masked_samples)
{
    /* 12 bits stored in 16, signed: 0x0800 is -2048, 0x0FFF is -1, 0x07FF is 2047. The high
     * nibble carries garbage (an overlay) that must be masked away. */
    uint16_t v[4] = {0xF800, 0x0FFF, 0x07FF, 0xA000};
    rd_dicom_frame f;
    mono16(&f, 4, 1, 12, 1, "MONOCHROME2", v);
    f.has_window = 1;
    f.window_center = 0;
    f.window_width = 4096;
    snprintf(f.voi_function, sizeof f.voi_function, "LINEAR_EXACT");
    rd_image *img = run(&f, NULL);
    REQUIRE(img);
    CHECK_NEAR(img->data[0], (-2048.0) / 4096 + 0.5, 1e-6);
    CHECK_NEAR(img->data[1], (-1.0) / 4096 + 0.5, 1e-6);
    CHECK_NEAR(img->data[2], 2047.0 / 4096 + 0.5, 1e-6);
    CHECK_NEAR(img->data[3], 0.5, 1e-6); /* 0xA000 masked to 12 bits is 0 */
    rd_image_free(img);
    rd_dicom_frame_release(&f);
}

RD_TEST(percentile_fallback_ignores_outliers)
{
    /* 1000 pixels: 998 spread over 100..1097, one at 0 and one at 4095. The 0.5/99.5
     * percentile window excludes both outliers, so they saturate and the bulk spans (0,1). */
    uint16_t v[1000];
    for (int i = 0; i < 1000; i++)
        v[i] = (uint16_t)(100 + i);
    v[0] = 0;
    v[999] = 4095;
    rd_dicom_frame f;
    mono16(&f, 100, 10, 12, 0, "MONOCHROME2", v);
    /* An invalid stored window (width 0) must fall back to the percentiles too. */
    f.has_window = 1;
    f.window_center = 1;
    f.window_width = 0;
    rd_image *img = run(&f, NULL);
    REQUIRE(img);
    CHECK_NEAR(img->data[0], 0.0, 0);
    CHECK_NEAR(img->data[999], 1.0, 0);
    CHECK(img->data[500] > 0.4 && img->data[500] < 0.6);
    CHECK(img->data[10] < 0.02);
    CHECK(img->data[990] > 0.98);
    rd_image_free(img);
    rd_dicom_frame_release(&f);
}

RD_TEST(voi_lut_sigmoid)
{
    uint16_t v[3] = {0, 100, 200};
    rd_dicom_frame f;
    mono16(&f, 3, 1, 8, 0, "MONOCHROME2", v);
    f.has_window = 1;
    f.window_center = 100;
    f.window_width = 50;
    snprintf(f.voi_function, sizeof f.voi_function, "SIGMOID");
    rd_image *img = run(&f, NULL);
    REQUIRE(img);
    CHECK_NEAR(img->data[1], 0.5, 1e-6);
    CHECK_NEAR(img->data[0], 1.0 / (1.0 + exp(8.0)), 1e-6);
    rd_image_free(img);
    /* No window: a VOI LUT of 256 entries (8-bit output) mapping x -> 255 - x. */
    f.has_window = 0;
    f.voi_lut.present = 1;
    f.voi_lut.n = 256;
    f.voi_lut.first = 0;
    f.voi_lut.bits = 8;
    f.voi_lut.data = malloc(256 * sizeof(uint16_t));
    for (int i = 0; i < 256; i++)
        f.voi_lut.data[i] = (uint16_t)(255 - i);
    img = run(&f, NULL);
    REQUIRE(img);
    CHECK_NEAR(img->data[0], 1.0, 1e-6);
    CHECK_NEAR(img->data[2], 55.0 / 255.0, 1e-6);
    rd_image_free(img);
    rd_dicom_frame_release(&f);
}

RD_TEST(rgb_to_luma_both_planar_configurations)
{
    /* Pixels: red, green, blue, white. Luma = 0.299 R + 0.587 G + 0.114 B. */
    static const uint8_t by_pixel[12] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255};
    static const uint8_t by_plane[12] = {255, 0, 0, 255, 0, 255, 0, 255, 0, 0, 255, 255};
    const double want[4] = {0.299, 0.587, 0.114, 1.0};
    for (int planar = 0; planar < 2; planar++) {
        rd_dicom_frame f;
        memset(&f, 0, sizeof f);
        f.rows = 2;
        f.cols = 2;
        f.samples_per_pixel = 3;
        f.bits_allocated = 8;
        f.bits_stored = 8;
        f.high_bit = 7;
        f.planar_configuration = planar;
        snprintf(f.photometric, sizeof f.photometric, "RGB");
        f.size = 12;
        f.data = malloc(12);
        memcpy(f.data, planar ? by_plane : by_pixel, 12);
        rd_image *img = run(&f, NULL);
        REQUIRE(img);
        for (int i = 0; i < 4; i++)
            CHECK_NEAR(img->data[i], want[i], 1e-5);
        rd_image_free(img);
        rd_dicom_frame_release(&f);
    }
    /* Native YBR_FULL_422: Y0 Y1 Cb Cr per pixel pair; luma is Y. */
    static const uint8_t ybr[8] = {0, 255, 128, 128, 51, 102, 10, 20};
    rd_dicom_frame f;
    memset(&f, 0, sizeof f);
    f.rows = 2;
    f.cols = 2;
    f.samples_per_pixel = 3;
    f.bits_allocated = 8;
    f.bits_stored = 8;
    f.high_bit = 7;
    snprintf(f.photometric, sizeof f.photometric, "YBR_FULL_422");
    f.size = 8;
    f.data = malloc(8);
    memcpy(f.data, ybr, 8);
    CHECK_EQ_INT(rd_dicom_frame_bytes(&f), 8);
    rd_image *img = run(&f, NULL);
    REQUIRE(img);
    CHECK_NEAR(img->data[0], 0.0, 1e-6);
    CHECK_NEAR(img->data[1], 1.0, 1e-6);
    CHECK_NEAR(img->data[2], 0.2, 1e-6);
    CHECK_NEAR(img->data[3], 0.4, 1e-6);
    rd_image_free(img);
    rd_dicom_frame_release(&f);
}

RD_TEST(short_or_inconsistent_buffers_refused)
{
    uint16_t v[4] = {1, 2, 3, 4};
    rd_dicom_frame f;
    rd_image *img = NULL;
    rd_error err;
    mono16(&f, 2, 2, 12, 0, "MONOCHROME2", v);
    f.size = 7; /* one byte short */
    CHECK_EQ_INT(rd_dicom_pixels_to_image(&f, NULL, &img, &err), RD_E_CORRUPT);
    CHECK(img == NULL);
    f.size = 8;
    f.bits_stored = 17;
    CHECK_EQ_INT(rd_dicom_pixels_to_image(&f, NULL, &img, &err), RD_E_UNSUPPORTED);
    f.bits_stored = 12;
    f.high_bit = 20;
    CHECK_EQ_INT(rd_dicom_pixels_to_image(&f, NULL, &img, &err), RD_E_CORRUPT);
    f.high_bit = 11;
    snprintf(f.photometric, sizeof f.photometric, "PALETTE COLOR");
    CHECK_EQ_INT(rd_dicom_pixels_to_image(&f, NULL, &img, &err), RD_E_UNSUPPORTED);
    CHECK(img == NULL);
    rd_dicom_frame_release(&f);
    rd_dicom_frame_release(NULL);
}

RD_TEST_MAIN()
