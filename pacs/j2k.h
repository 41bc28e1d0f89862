/* radraft — private to pacs/: JPEG 2000 decoding with OpenJPEG (DCMTK's free edition has no
 * JPEG 2000 codec). */
#ifndef RADRAFT_PACS_J2K_H
#define RADRAFT_PACS_J2K_H

#include <stddef.h>

#include "radraft/error.h"

/* What the dataset says the frame is; the codestream must agree. */
struct rd_j2k_expect {
    int rows;
    int cols;
    int samples_per_pixel;
    int bits_allocated; /* 8 or 16: width of one output sample */
};

/* Decodes one JPEG 2000 codestream (raw J2K or a JP2 file) of `len` bytes into a new
 * malloc'ed buffer (*out, owned by the caller on success) of rows*cols*spp samples of
 * bits_allocated bits, colour by pixel, host byte order. *is_signed reports the sample
 * signedness, *is_rgb whether the decoder already undid a multi-component transform.
 * Dimensions are checked against `expect` before anything is decoded. Never throws.
 * Errors: RD_E_CORRUPT (bad or truncated codestream, a mismatch with the dataset),
 * RD_E_UNSUPPORTED (precision over 16 bits, subsampled components), RD_E_NOMEM. */
rd_status rd__j2k_decode(const unsigned char *data, size_t len, const rd_j2k_expect &expect,
                         void **out, size_t *out_size, int *is_signed, int *is_rgb, rd_error *err);

#endif
