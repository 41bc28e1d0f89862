/* radraft — image: the float gray image every stage passes on (resize, crop, normalize)
 * and PNG reading and writing (libpng), with every size checked before allocation. It owns
 * the images it creates until the caller takes them. */
#include "radraft/image.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

rd_status rd_image_create(rd_image **out, int width, int height, rd_error *err)
{
    size_t n, bytes;
    rd_image *img;

    if (width <= 0 || height <= 0 || width > RD_IMAGE_MAX_DIM || height > RD_IMAGE_MAX_DIM)
        return rd_error_set(err, RD_E_TOO_LARGE, "image size %dx%d outside 1..%d", width, height,
                            RD_IMAGE_MAX_DIM);
    if (!rd_mul_size((size_t)width, (size_t)height, &n) || !rd_mul_size(n, sizeof(float), &bytes))
        return rd_error_set(err, RD_E_TOO_LARGE, "image size %dx%d overflows", width, height);
    img = malloc(sizeof *img);
    if (!img)
        return rd_error_set(err, RD_E_NOMEM, "out of memory for a %dx%d image", width, height);
    img->data = calloc(n, sizeof(float));
    if (!img->data) {
        free(img);
        return rd_error_set(err, RD_E_NOMEM, "out of memory for a %dx%d image", width, height);
    }
    img->width = width;
    img->height = height;
    *out = img;
    return RD_OK;
}

void rd_image_free(rd_image *img)
{
    if (!img)
        return;
    free(img->data);
    free(img);
}

void rd_image_clamp(rd_image *img)
{
    size_t n = (size_t)img->width * (size_t)img->height;
    for (size_t i = 0; i < n; i++) {
        float v = img->data[i];
        img->data[i] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : (v == v ? v : 0.0f));
    }
}

/* One resampling pass along a line: `n_in` samples spaced `in_stride` apart become `n_out`
 * samples spaced `out_stride` apart. Shrinking averages the covered area exactly (each input
 * sample weighted by its overlap with the output cell); growing interpolates linearly
 * between pixel centres. */
static void resample_line(const float *in, size_t in_stride, int n_in, float *out,
                          size_t out_stride, int n_out)
{
    if (n_out == n_in) {
        for (int i = 0; i < n_out; i++)
            out[(size_t)i * out_stride] = in[(size_t)i * in_stride];
    } else if (n_out < n_in) {
        double scale = (double)n_in / n_out;
        for (int o = 0; o < n_out; o++) {
            double x0 = o * scale, x1 = (o + 1) * scale, acc = 0.0;
            int i0 = (int)floor(x0), i1 = (int)ceil(x1);
            if (i1 > n_in)
                i1 = n_in;
            for (int i = i0; i < i1; i++) {
                double lo = i > x0 ? i : x0, hi = i + 1 < x1 ? i + 1 : x1;
                acc += (hi - lo) * in[(size_t)i * in_stride];
            }
            out[(size_t)o * out_stride] = (float)(acc / scale);
        }
    } else {
        double scale = (double)n_in / n_out;
        for (int o = 0; o < n_out; o++) {
            double x = (o + 0.5) * scale - 0.5;
            if (x < 0)
                x = 0;
            int i0 = (int)x;
            if (i0 > n_in - 1)
                i0 = n_in - 1;
            int i1 = i0 + 1 < n_in ? i0 + 1 : i0;
            double t = x - i0;
            out[(size_t)o * out_stride] =
                (float)((1.0 - t) * in[(size_t)i0 * in_stride] + t * in[(size_t)i1 * in_stride]);
        }
    }
}

rd_status rd_image_resize(const rd_image *src, int width, int height, rd_image **out, rd_error *err)
{
    rd_image *tmp = NULL, *dst = NULL;
    rd_status st;

    if (!src || !src->data)
        return rd_error_set(err, RD_E_INVALID, "resize: no source image");
    /* Horizontal pass into a width x src->height image, then vertical. */
    st = rd_image_create(&tmp, width, src->height, err);
    if (st != RD_OK)
        return st;
    st = rd_image_create(&dst, width, height, err);
    if (st != RD_OK) {
        rd_image_free(tmp);
        return st;
    }
    for (int y = 0; y < src->height; y++)
        resample_line(src->data + (size_t)y * src->width, 1, src->width,
                      tmp->data + (size_t)y * width, 1, width);
    for (int x = 0; x < width; x++)
        resample_line(tmp->data + x, (size_t)width, src->height, dst->data + x, (size_t)width,
                      height);
    rd_image_free(tmp);
    *out = dst;
    return RD_OK;
}

/* libpng reports errors by longjmp; the handler records the message in our rd_error. */
typedef struct png_ctx {
    jmp_buf jmp;
    char msg[256];
} png_ctx;

static void png_on_error(png_structp png, png_const_charp msg)
{
    png_ctx *ctx = png_get_error_ptr(png);
    rd_strlcpy(ctx->msg, msg, sizeof ctx->msg);
    longjmp(ctx->jmp, 1);
}

static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg;
}

static rd_status png_open(const char *path, FILE **fp_out, rd_error *err)
{
    unsigned char sig[8];
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return rd_error_set(err, errno == ENOENT ? RD_E_NOT_FOUND : RD_E_IO, "%s: %s", path,
                            strerror(errno));
    if (fread(sig, 1, 8, fp) != 8 || png_sig_cmp(sig, 0, 8) != 0) {
        fclose(fp);
        return rd_error_set(err, RD_E_IMAGE, "%s: not a PNG file", path);
    }
    *fp_out = fp;
    return RD_OK;
}

int rd_png_probe(const char *path)
{
    unsigned char sig[8];
    FILE *fp = fopen(path, "rb");
    int ok = fp && fread(sig, 1, sizeof sig, fp) == sizeof sig && png_sig_cmp(sig, 0, 8) == 0;
    if (fp)
        fclose(fp);
    return ok;
}

rd_status rd_png_read_info(const char *path, rd_png_info *info, rd_error *err)
{
    FILE *fp = NULL;
    png_structp png = NULL;
    png_infop pinfo = NULL;
    png_ctx ctx = {.msg = ""};
    rd_status st = png_open(path, &fp, err);
    if (st != RD_OK)
        return st;
    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
    pinfo = png ? png_create_info_struct(png) : NULL;
    if (!pinfo) {
        st = rd_error_set(err, RD_E_NOMEM, "%s: out of memory", path);
        goto out;
    }
    if (setjmp(ctx.jmp)) {
        st = rd_error_set(err, RD_E_IMAGE, "%s: %s", path, ctx.msg);
        goto out;
    }
    png_init_io(png, fp);
    png_set_sig_bytes(png, 8);
    png_read_info(png, pinfo);
    info->width = (int)png_get_image_width(png, pinfo);
    info->height = (int)png_get_image_height(png, pinfo);
    info->bit_depth = png_get_bit_depth(png, pinfo);
    info->color_type = png_get_color_type(png, pinfo);
    info->channels = png_get_channels(png, pinfo);
out:
    png_destroy_read_struct(png ? &png : NULL, pinfo ? &pinfo : NULL, NULL);
    fclose(fp);
    return st;
}

rd_status rd_png_read(const char *path, rd_image **out, rd_png_info *info_out, rd_error *err)
{
    FILE *fp = NULL;
    png_structp png = NULL;
    png_infop pinfo = NULL;
    png_ctx ctx = {.msg = ""};
    rd_image *volatile img = NULL;
    png_bytep volatile row = NULL;
    rd_status st = png_open(path, &fp, err);
    if (st != RD_OK)
        return st;

    png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
    pinfo = png ? png_create_info_struct(png) : NULL;
    if (!pinfo) {
        st = rd_error_set(err, RD_E_NOMEM, "%s: out of memory", path);
        goto out;
    }
    if (setjmp(ctx.jmp)) {
        st = rd_error_set(err, RD_E_IMAGE, "%s: %s", path, ctx.msg);
        goto out;
    }
    png_init_io(png, fp);
    png_set_sig_bytes(png, 8);
    png_set_user_limits(png, RD_IMAGE_MAX_DIM, RD_IMAGE_MAX_DIM);
    png_read_info(png, pinfo);

    rd_png_info info;
    info.width = (int)png_get_image_width(png, pinfo);
    info.height = (int)png_get_image_height(png, pinfo);
    info.bit_depth = png_get_bit_depth(png, pinfo);
    info.color_type = png_get_color_type(png, pinfo);
    info.channels = png_get_channels(png, pinfo);

    /* Normalise every layout to 16-bit gray, alpha dropped, so one loop reads them all. */
    if (info.color_type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (info.color_type == PNG_COLOR_TYPE_GRAY && info.bit_depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (png_get_valid(png, pinfo, PNG_INFO_tRNS))
        png_set_tRNS_to_alpha(png);
    if (info.color_type & PNG_COLOR_MASK_ALPHA || png_get_valid(png, pinfo, PNG_INFO_tRNS))
        png_set_strip_alpha(png);
    if (info.color_type & PNG_COLOR_MASK_COLOR || info.color_type == PNG_COLOR_TYPE_PALETTE)
        png_set_rgb_to_gray_fixed(png, 1, -1, -1); /* Rec. 709 weights */
    if (info.bit_depth < 16)
        png_set_expand_16(png);
    png_set_swap(png); /* host order (little-endian) 16-bit samples */
    png_read_update_info(png, pinfo);
    if (png_get_channels(png, pinfo) != 1 || png_get_bit_depth(png, pinfo) != 16) {
        st = rd_error_set(err, RD_E_UNSUPPORTED, "%s: unsupported PNG layout", path);
        goto out;
    }
    rd_image *tmp = NULL;
    st = rd_image_create(&tmp, info.width, info.height, err);
    if (st != RD_OK)
        goto out;
    img = tmp;
    row = malloc(png_get_rowbytes(png, pinfo));
    if (!row) {
        st = rd_error_set(err, RD_E_NOMEM, "%s: out of memory", path);
        goto out;
    }
    /* Interlaced files need every pass; png_read_row handles that when called enough. */
    int passes = png_set_interlace_handling(png);
    for (int pass = 0; pass < passes; pass++) {
        for (int y = 0; y < info.height; y++) {
            png_read_row(png, row, NULL);
            if (pass == passes - 1) {
                const uint16_t *s = (const uint16_t *)row;
                float *d = img->data + (size_t)y * info.width;
                for (int x = 0; x < info.width; x++)
                    d[x] = s[x] / 65535.0f;
            }
        }
    }
    if (info_out)
        *info_out = info;
out:
    free(row);
    png_destroy_read_struct(png ? &png : NULL, pinfo ? &pinfo : NULL, NULL);
    fclose(fp);
    if (st != RD_OK) {
        rd_image_free(img);
        return st;
    }
    *out = img;
    return RD_OK;
}

rd_status rd_png_write(const rd_image *img, const char *path, int bit_depth, rd_error *err)
{
    FILE *fp;
    png_structp png = NULL;
    png_infop pinfo = NULL;
    png_ctx ctx = {.msg = ""};
    unsigned char *volatile row = NULL;
    volatile rd_status st = RD_OK;
    size_t row_bytes;

    if (bit_depth != 8 && bit_depth != 16)
        return rd_error_set(err, RD_E_INVALID, "%s: PNG bit depth must be 8 or 16, not %d", path,
                            bit_depth);
    if (!img || !img->data)
        return rd_error_set(err, RD_E_INVALID, "%s: no image to write", path);
    if (!rd_mul_size((size_t)img->width, (size_t)bit_depth / 8, &row_bytes))
        return rd_error_set(err, RD_E_TOO_LARGE, "%s: image too wide", path);
    fp = fopen(path, "wb");
    if (!fp)
        return rd_error_set(err, RD_E_IO, "%s: %s", path, strerror(errno));
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
    pinfo = png ? png_create_info_struct(png) : NULL;
    row = malloc(row_bytes);
    if (!pinfo || !row) {
        st = rd_error_set(err, RD_E_NOMEM, "%s: out of memory", path);
        goto out;
    }
    if (setjmp(ctx.jmp)) {
        st = rd_error_set(err, RD_E_IO, "%s: %s", path, ctx.msg);
        goto out;
    }
    png_init_io(png, fp);
    png_set_IHDR(png, pinfo, (png_uint_32)img->width, (png_uint_32)img->height, bit_depth,
                 PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
                 PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, pinfo);
    for (int y = 0; y < img->height; y++) {
        const float *s = img->data + (size_t)y * img->width;
        for (int x = 0; x < img->width; x++) {
            float v = s[x];
            v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : (v == v ? v : 0.0f));
            if (bit_depth == 8) {
                row[x] = (unsigned char)lrintf(v * 255.0f);
            } else {
                unsigned q = (unsigned)lrintf(v * 65535.0f);
                row[2 * x] = (unsigned char)(q >> 8); /* PNG is big-endian */
                row[2 * x + 1] = (unsigned char)(q & 0xff);
            }
        }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
out:
    free(row);
    png_destroy_write_struct(png ? &png : NULL, pinfo ? &pinfo : NULL);
    if (fclose(fp) != 0 && st == RD_OK)
        st = rd_error_set(err, RD_E_IO, "%s: %s", path, strerror(errno));
    if (st != RD_OK)
        remove(path);
    return st;
}

/* The growing buffer rd_png_encode writes into. libpng calls png_buf_write from inside its
 * own setjmp context, so a failure to grow is reported with png_error, which longjmps back
 * to rd_png_encode. */
typedef struct png_buf {
    unsigned char *data;
    size_t len, cap;
    int nomem; /* growing failed: the error is RD_E_NOMEM */
} png_buf;

static void png_buf_write(png_structp png, png_bytep data, png_size_t n)
{
    png_buf *b = png_get_io_ptr(png);
    if (n > SIZE_MAX / 2 - b->len)
        png_error(png, "encoded PNG too large");
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + n)
            cap *= 2;
        unsigned char *grown = realloc(b->data, cap);
        if (!grown) {
            b->nomem = 1;
            png_error(png, "out of memory");
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
}

static void png_buf_flush(png_structp png)
{
    (void)png;
}

/* Encodes `img` as 8-bit gray, or (overlay) as RGBA heat colours: value v becomes red
 * turning yellow as v grows (R 255, G 255 * v, B 0) with opacity OVERLAY_ALPHA * v, so that
 * 0 is transparent. */
#define OVERLAY_ALPHA 0.6f
static rd_status png_encode(const rd_image *img, int overlay, void **out, size_t *len,
                            rd_error *err)
{
    png_structp png = NULL;
    png_infop pinfo = NULL;
    png_ctx ctx = {.msg = ""};
    unsigned char *volatile row = NULL;
    png_buf buf = {NULL, 0, 0, 0};
    volatile rd_status st = RD_OK;

    *out = NULL;
    *len = 0;
    if (!img || !img->data || img->width <= 0 || img->height <= 0)
        return rd_error_set(err, RD_E_INVALID, "no image to encode as PNG");
    png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, png_on_error, png_on_warning);
    pinfo = png ? png_create_info_struct(png) : NULL;
    row = malloc((size_t)img->width * (overlay ? 4 : 1));
    if (!pinfo || !row) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory encoding a PNG");
        goto out;
    }
    if (setjmp(ctx.jmp)) {
        st = rd_error_set(err, buf.nomem ? RD_E_NOMEM : RD_E_IMAGE, "encoding a PNG: %s", ctx.msg);
        goto out;
    }
    png_set_write_fn(png, &buf, png_buf_write, png_buf_flush);
    png_set_IHDR(png, pinfo, (png_uint_32)img->width, (png_uint_32)img->height, 8,
                 overlay ? PNG_COLOR_TYPE_RGBA : PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    /* A middling zlib level: the page asks for a new image at every window change, so
     * encoding time matters more than the last few percent of size. */
    png_set_compression_level(png, 3);
    png_write_info(png, pinfo);
    for (int y = 0; y < img->height; y++) {
        const float *s = img->data + (size_t)y * img->width;
        for (int x = 0; x < img->width; x++) {
            float v = s[x];
            v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : (v == v ? v : 0.0f));
            if (!overlay) {
                row[x] = (unsigned char)lrintf(v * 255.0f);
                continue;
            }
            row[4 * x] = 255;
            row[4 * x + 1] = (unsigned char)lrintf(v * 255.0f);
            row[4 * x + 2] = 0;
            row[4 * x + 3] = (unsigned char)lrintf(v * OVERLAY_ALPHA * 255.0f);
        }
        png_write_row(png, row);
    }
    png_write_end(png, NULL);
out:
    free(row);
    png_destroy_write_struct(png ? &png : NULL, pinfo ? &pinfo : NULL);
    if (st != RD_OK) {
        free(buf.data);
        return st;
    }
    *out = buf.data;
    *len = buf.len;
    return RD_OK;
}

rd_status rd_png_encode(const rd_image *img, void **out, size_t *len, rd_error *err)
{
    return png_encode(img, 0, out, len, err);
}

rd_status rd_png_encode_overlay(const rd_image *img, void **out, size_t *len, rd_error *err)
{
    return png_encode(img, 1, out, len, err);
}
