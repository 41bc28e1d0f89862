/* radraft — grayscale float images, resizing and PNG files.
 *
 * An rd_image holds width*height floats, row-major, normally in [0, 1] where higher is
 * brighter as a radiologist sees the image. Sizes are checked for overflow before anything
 * is allocated, and bounded by RD_IMAGE_MAX_DIM.
 */
#ifndef RADRAFT_IMAGE_H
#define RADRAFT_IMAGE_H

#include <stddef.h>

#include "radraft/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_IMAGE_MAX_DIM 65535

typedef struct rd_image {
    int width;
    int height;
    float *data; /* width * height values, owned by the image */
} rd_image;

/* Allocates a zero-filled image. On success *out is the caller's (free with rd_image_free). */
rd_status rd_image_create(rd_image **out, int width, int height, rd_error *err);
/* Frees an image; accepts NULL. */
void rd_image_free(rd_image *img);

/* Resamples `src` to width x height: area averaging along an axis that shrinks, bilinear
 * interpolation (pixel centres aligned) along one that grows. `src` is unchanged; on
 * success *out is a new image owned by the caller. */
rd_status rd_image_resize(const rd_image *src, int width, int height, rd_image **out,
                          rd_error *err);

/* Clamps every value to [0, 1]. */
void rd_image_clamp(rd_image *img);

typedef struct rd_png_info {
    int width;
    int height;
    int bit_depth;  /* 1..16 as stored in the file */
    int color_type; /* libpng's PNG_COLOR_TYPE_* */
    int channels;
} rd_png_info;

/* 1 if the file starts with the PNG signature (a cheap test before choosing a reader). */
int rd_png_probe(const char *path);

/* Reads only the header of a PNG file. */
rd_status rd_png_read_info(const char *path, rd_png_info *info, rd_error *err);

/* Reads a PNG file (gray, gray+alpha, RGB or palette; 1-16 bit) as a luminance image in
 * [0, 1] (alpha ignored). `info` may be NULL. On success *out is the caller's. */
rd_status rd_png_read(const char *path, rd_image **out, rd_png_info *info, rd_error *err);

/* Writes `img` (values clamped to [0, 1]) as an 8- or 16-bit grayscale PNG. */
rd_status rd_png_write(const rd_image *img, const char *path, int bit_depth, rd_error *err);

/* Encodes `img` (values clamped to [0, 1]) as an 8-bit grayscale PNG in memory. On success
 * *out (malloc'ed, free with free()) holds the *len bytes of the file and is the caller's;
 * on failure *out is NULL. Errors: RD_E_INVALID (no image), RD_E_NOMEM, RD_E_IMAGE. */
rd_status rd_png_encode(const rd_image *img, void **out, size_t *len, rd_error *err);

/* Encodes `img` (values clamped to [0, 1], a heat map) as an 8-bit RGBA PNG to lay over an
 * image: 0 transparent, growing values red turning yellow and more opaque (at most 60 %).
 * As rd_png_encode otherwise. */
rd_status rd_png_encode_overlay(const rd_image *img, void **out, size_t *len, rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
