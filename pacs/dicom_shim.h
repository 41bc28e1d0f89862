/* radraft — private: the interface between the C library's dicom module (src/dicom/) and the
 * DCMTK shim that reads instances (pacs/dicom.cc, also used by pacs/sr.cc).
 *
 * pacs/ owns this header and src/dicom includes it, so that the dependency goes one way:
 * src -> pacs. pacs/ itself includes nothing of src/, only the public headers in
 * include/radraft/ (radraft_pacs links radraft_base for the status codes and the log).
 *
 * The shim fills an rd_dicom_frame with the first frame's samples, already decompressed, and
 * the attributes that say how to show them; src/dicom/dicom_pixels.c turns that into an
 * rd_image (see dicom_pixels.h).
 */
#ifndef RADRAFT_PACS_DICOM_SHIM_H
#define RADRAFT_PACS_DICOM_SHIM_H

#include <stddef.h>
#include <stdint.h>

#include "radraft/dicom.h"
#include "radraft/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Hard caps on outside input, whatever the configuration says. */
#define RD_DICOM_MAX_FILE_BYTES ((long long)2 << 30) /* larger files are RD_E_TOO_LARGE */

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

/* Frees the buffers of `f` (not `f` itself) and zeroes it. Accepts NULL. */
void rd_dicom_frame_release(rd_dicom_frame *f);

/* Bytes one frame of `f` needs in `data` (0 when the fields are invalid or overflow). */
size_t rd_dicom_frame_bytes(const rd_dicom_frame *f);

/* Reads `path`: the metadata into *meta (always, when the file parses) and, when `frame`
 * is not NULL, the first frame's samples and display attributes into *frame (owned by the
 * caller on success; release with rd_dicom_frame_release). `opts` must not be NULL. The
 * error messages do not name the file; the caller prefixes them. */
rd_status rd__dicom_load(const char *path, const rd_dicom_options *opts, rd_dicom_meta *meta,
                         rd_dicom_frame *frame, rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
