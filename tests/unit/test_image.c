#include "radraft/image.h"
#include "rdtest.h"

static rd_image *ramp(int w, int h)
{
    rd_image *img = NULL;
    if (rd_image_create(&img, w, h, NULL) != RD_OK)
        return NULL;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            img->data[(size_t)y * w + x] = (float)(x + y) / (float)(w + h - 2);
    return img;
}

RD_TEST(create_limits)
{
    rd_image *img = NULL;
    rd_error err;
    CHECK_EQ_INT(rd_image_create(&img, 0, 10, &err), RD_E_TOO_LARGE);
    CHECK_EQ_INT(rd_image_create(&img, 10, -1, &err), RD_E_TOO_LARGE);
    CHECK_EQ_INT(rd_image_create(&img, RD_IMAGE_MAX_DIM + 1, 1, &err), RD_E_TOO_LARGE);
    CHECK(img == NULL);
    rd_image_free(NULL);
}

RD_TEST(resize_down_is_area_average)
{
    rd_image *src = NULL, *dst = NULL;
    rd_error err;
    REQUIRE_OK(rd_image_create(&src, 4, 4, &err), &err);
    for (int i = 0; i < 16; i++)
        src->data[i] = (float)i;
    REQUIRE_OK(rd_image_resize(src, 2, 2, &dst, &err), &err);
    /* Each output pixel is the mean of a 2x2 block. */
    CHECK_NEAR(dst->data[0], (0 + 1 + 4 + 5) / 4.0, 1e-5);
    CHECK_NEAR(dst->data[1], (2 + 3 + 6 + 7) / 4.0, 1e-5);
    CHECK_NEAR(dst->data[3], (10 + 11 + 14 + 15) / 4.0, 1e-5);
    rd_image_free(dst);
    /* A non-integer factor keeps the mean of the whole image. */
    REQUIRE_OK(rd_image_resize(src, 3, 3, &dst, &err), &err);
    double sum = 0;
    for (int i = 0; i < 9; i++)
        sum += dst->data[i];
    CHECK_NEAR(sum / 9.0, 7.5, 1e-4);
    rd_image_free(dst);
    rd_image_free(src);
}

RD_TEST(resize_up_is_bilinear)
{
    rd_image *src = ramp(8, 8), *dst = NULL;
    rd_error err;
    REQUIRE(src);
    REQUIRE_OK(rd_image_resize(src, 32, 20, &dst, &err), &err);
    CHECK_EQ_INT(dst->width, 32);
    CHECK_EQ_INT(dst->height, 20);
    /* Bilinear interpolation between pixel centres reproduces a linear ramp exactly: output
     * pixel (x, y) samples the source at ((x + 0.5) * 8/32 - 0.5, (y + 0.5) * 8/20 - 0.5),
     * clamped to the first and last centre, where the ramp (u + v) / 14 is known. Nearest
     * neighbour would be off by up to half a source step (1/28). */
    for (int y = 0; y < 20; y++)
        for (int x = 0; x < 32; x++) {
            double u = (x + 0.5) * 8.0 / 32 - 0.5, v = (y + 0.5) * 8.0 / 20 - 0.5;
            u = u < 0 ? 0 : u > 7 ? 7 : u;
            v = v < 0 ? 0 : v > 7 ? 7 : v;
            CHECK_NEAR(dst->data[y * 32 + x], (u + v) / 14.0, 1e-5);
        }
    rd_image_free(dst);
    /* Between two different pixels the value is the distance-weighted mix: a 2 x 1 image
     * (0, 1) grown to 8 x 1 samples at -0.375, -0.125, 0.125, ..., 1.375. */
    rd_image *two = NULL;
    REQUIRE_OK(rd_image_create(&two, 2, 1, &err), &err);
    two->data[0] = 0.0f;
    two->data[1] = 1.0f;
    REQUIRE_OK(rd_image_resize(two, 8, 1, &dst, &err), &err);
    const double want[8] = {0, 0, 0.125, 0.375, 0.625, 0.875, 1, 1};
    for (int x = 0; x < 8; x++)
        CHECK_NEAR(dst->data[x], want[x], 1e-6);
    rd_image_free(dst);
    rd_image_free(two);
    rd_image_free(src);
}

RD_TEST(png_round_trip_8_and_16)
{
    const char *dir = rd_test_tmpdir("png_round_trip");
    char path[1200];
    rd_image *src = ramp(37, 23), *back = NULL;
    rd_png_info info;
    rd_error err;
    REQUIRE(src);
    for (int bits = 8; bits <= 16; bits += 8) {
        snprintf(path, sizeof path, "%s/r%d.png", dir, bits);
        REQUIRE_OK(rd_png_write(src, path, bits, &err), &err);
        REQUIRE_OK(rd_png_read(path, &back, &info, &err), &err);
        CHECK_EQ_INT(info.width, 37);
        CHECK_EQ_INT(info.height, 23);
        CHECK_EQ_INT(info.bit_depth, bits);
        double tol = bits == 8 ? 0.5 / 255 + 1e-6 : 0.5 / 65535 + 1e-7;
        for (int i = 0; i < 37 * 23; i++)
            CHECK_NEAR(back->data[i], src->data[i], tol);
        rd_image_free(back);
        back = NULL;
        CHECK_OK(rd_png_read_info(path, &info, &err), &err);
        CHECK_EQ_INT(info.bit_depth, bits);
    }
    CHECK_EQ_INT(rd_png_write(src, path, 12, &err), RD_E_INVALID);
    rd_image_free(src);
}

RD_TEST(png_bad_files)
{
    const char *dir = rd_test_tmpdir("png_bad");
    char path[1200], cut[1200];
    rd_image *img = ramp(64, 64), *back = NULL;
    rd_error err;
    REQUIRE(img);
    snprintf(path, sizeof path, "%s/ok.png", dir);
    REQUIRE_OK(rd_png_write(img, path, 8, &err), &err);
    rd_image_free(img);

    CHECK_EQ_INT(rd_png_read("/nonexistent/x.png", &back, NULL, &err), RD_E_NOT_FOUND);
    CHECK(rd_png_probe(path));
    CHECK(!rd_png_probe("/nonexistent/x.png"));
    /* Every truncation of a valid file is an error, never a crash. */
    FILE *fp = fopen(path, "rb");
    REQUIRE(fp);
    unsigned char buf[65536];
    size_t n = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    snprintf(cut, sizeof cut, "%s/cut.png", dir);
    for (size_t len = 0; len < n; len += (len < 64 ? 1 : 97)) {
        fp = fopen(cut, "wb");
        REQUIRE(fp);
        fwrite(buf, 1, len, fp);
        fclose(fp);
        rd_status st = rd_png_read(cut, &back, NULL, &err);
        CHECK(rd_png_probe(cut) == (len >= 8)); /* the signature is the first 8 bytes */
        CHECK_MSG(st != RD_OK, "truncated PNG of %zu bytes accepted", len);
        if (st == RD_OK)
            rd_image_free(back);
    }
}

RD_TEST_MAIN()
