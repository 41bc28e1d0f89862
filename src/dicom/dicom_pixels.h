/* radraft — private: the numeric pipeline from DICOM samples to a display image.
 *
 * The shim in pacs/ fills an rd_dicom_frame with the first frame's samples, already
 * decompressed, and the attributes that say how to show them; rd_dicom_pixels_to_image()
 * turns that into an rd_image in [0, 1], brighter = higher. Keeping this step in C, apart
 * from DCMTK, lets the unit tests drive it with synthetic buffers.
 */
#ifndef RADRAFT_DICOM_PIXELS_H
#define RADRAFT_DICOM_PIXELS_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

#include "radraft/dicom.h"
#include "radraft/error.h"
#include "radraft/image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A lookup table (Modality LUT Sequence or VOI LUT Sequence item). */
typedef struct rd_dicom_lut {
    int present;
    int n;          /* number of entries, 1..65536 */
    long first;     /* stored (or modality) value mapped to data[0] */
    int bits;       /* bits per entry, 8..16 */
    uint16_t *data; /* n entries, owned by the frame (malloc) */
} rd_dicom_lut;

/* One decoded frame plus the attributes the pipeline needs. Every pointer is owned by the
 * frame and released by rd_dicom_frame_release(). */
typedef struct rd_dicom_frame {
    int rows;
    int cols;
    int samples_per_pixel;    /* 1 or 3 */
    int bits_allocated;       /* 8, 16 or 32: width of one sample in `data` */
    int bits_stored;          /* 1..16 */
    int high_bit;             /* bits_stored - 1 unless the file says otherwise */
    int pixel_representation; /* 1: two's complement signed samples */
    int planar_configuration; /* 1: colour by plane (RRR..GGG..BBB..) */
    char photometric[32];     /* colour model of the samples in `data` (after decoding) */

    int has_rescale;
    double rescale_slope;
    double rescale_intercept;
    rd_dicom_lut modality_lut; /* takes precedence over rescale when present */

    int has_window;
    double window_center;
    double window_width;
    char voi_function[24]; /* "LINEAR" (default), "LINEAR_EXACT" or "SIGMOID" */
    rd_dicom_lut voi_lut;  /* used when no valid window is given */

    int has_padding;
    long padding_value; /* in stored-value units (sign-extended when signed) */
    int has_padding_range;
    long padding_range_limit;

    void *data;  /* samples in host byte order, bits_allocated wide; malloc'ed */
    size_t size; /* bytes in data */
} rd_dicom_frame;

/* Frees the buffers of `f` (not `f` itself) and zeroes it. Accepts NULL. Inline, like
 * rd_dicom_frame_bytes(), because the C++ shim uses both and must not depend on the C
 * library. */
static inline void rd_dicom_frame_release(rd_dicom_frame *f)
{
    if (!f)
        return;
    free(f->data);
    free(f->modality_lut.data);
    free(f->voi_lut.data);
    memset(f, 0, sizeof *f);
}

/* Converts the frame into a new image (*out, owned by the caller): stored values (masked
 * to bits_stored, sign-extended), modality LUT or rescale, then for monochrome images the
 * VOI window (or VOI LUT, or the opts' percentile window over the non-padding pixels when
 * neither is valid), MONOCHROME1 inverted and padding pixels black. Colour images (RGB,
 * YBR_FULL, YBR_FULL_422 / YBR_PARTIAL_422 as stored) become luminance scaled by the
 * largest stored value. Errors: RD_E_CORRUPT when `size` is shorter than the frame,
 * RD_E_UNSUPPORTED for a colour model it does not know, RD_E_INVALID for bad fields. */
rd_status rd_dicom_pixels_to_image(const rd_dicom_frame *f, const rd_dicom_options *opts,
                                   rd_image **out, rd_error *err);

/* Bytes one frame of `f` needs in `data` (0 when the fields are invalid or overflow). */
static inline size_t rd_dicom_frame_bytes(const rd_dicom_frame *f)
{
    size_t n, samples_per_px, bytes;
    if (f->rows <= 0 || f->cols <= 0 || (f->samples_per_pixel != 1 && f->samples_per_pixel != 3) ||
        (f->bits_allocated != 8 && f->bits_allocated != 16 && f->bits_allocated != 32))
        return 0;
    /* Native YBR_*_422 stores two luma samples and one pair of chroma per two pixels. */
    samples_per_px = (f->samples_per_pixel == 3 && (strcmp(f->photometric, "YBR_FULL_422") == 0 ||
                                                    strcmp(f->photometric, "YBR_PARTIAL_422") == 0))
                         ? 2
                         : (size_t)f->samples_per_pixel;
    if (!rd_mul_size((size_t)f->rows, (size_t)f->cols, &n) || !rd_mul_size(n, samples_per_px, &n) ||
        !rd_mul_size(n, (size_t)f->bits_allocated / 8, &bytes))
        return 0;
    return bytes;
}

#ifdef __cplusplus
}
#endif
#endif
