/* radraft — private to pacs/: RLE Lossless decoding of one DICOM frame (PS3.5 Annex G).
 *
 * radraft decodes RLE itself rather than through DCMTK's RLE codec, whose decoder (DCMTK
 * 3.6.7, dcrleccd.cc) trusts the segment offsets of the RLE header: an offset past the end
 * of the fragment makes it read outside the fragment, and a segment that decodes to nothing
 * makes it read the byte before its buffer. Found by tests/fuzz/fuzz_dicom. */
#ifndef RADRAFT_PACS_RLE_H
#define RADRAFT_PACS_RLE_H

#include <stddef.h>

#include "radraft/error.h"

/* What the dataset says the frame is. */
struct rd_rle_expect {
    int rows;
    int cols;
    int samples_per_pixel; /* 1 or 3 */
    int bits_allocated;    /* 8, 16 or 32: width of one output sample */
};

/* Decodes the RLE fragment of one frame (`len` bytes: the 64-byte RLE header, then its
 * segments) into a new malloc'ed buffer (*out, owned by the caller on success, *out_size
 * bytes) of rows*cols*spp samples of bits_allocated bits, colour by pixel, host byte order.
 * The header must name one segment per byte of every sample (most significant byte first),
 * each inside the fragment and after the one before it. A segment that decodes to fewer
 * bytes than the frame has pixels is refused, except the last, whose missing pixels repeat
 * its last decoded byte (as DCMTK reads such files); bytes past the frame are ignored (the
 * pad byte of an odd-length segment). Never throws.
 * Errors: RD_E_CORRUPT (a bad header or segment), RD_E_TOO_LARGE, RD_E_NOMEM. */
rd_status rd__rle_decode(const unsigned char *data, size_t len, const rd_rle_expect &expect,
                         void **out, size_t *out_size, rd_error *err);

#endif
