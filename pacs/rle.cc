/* radraft — RLE Lossless decoding of one DICOM frame (see rle.h).
 *
 * Each segment holds one byte of one sample for every pixel, PackBits-coded: a control
 * byte n of 0..127 copies the next n + 1 bytes, 129..255 repeats the next byte 257 - n
 * times, 128 does nothing. Every read is bounded by the segment's end (the next segment's
 * offset, or the fragment's end for the last one) and every write by the frame's size. */
#include "rle.h"

#include "radraft/error.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>

namespace
{

uint32_t le32(const unsigned char *p)
{
    return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
           (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

/* Decodes data[begin, end) into plane[0, n); returns the bytes written. */
size_t unpack(const unsigned char *data, size_t begin, size_t end, unsigned char *plane, size_t n)
{
    size_t p = begin, o = 0;
    while (o < n && p < end) {
        unsigned c = data[p++];
        if (c < 128) {
            size_t run = c + 1;
            if (run > end - p)
                run = end - p;
            if (run > n - o)
                run = n - o;
            memcpy(plane + o, data + p, run);
            p += run;
            o += run;
        } else if (c > 128) {
            size_t run = 257 - c;
            if (p >= end)
                break;
            if (run > n - o)
                run = n - o;
            memset(plane + o, data[p++], run);
            o += run;
        }
    }
    return o;
}

} // namespace

rd_status rd__rle_decode(const unsigned char *data, size_t len, const rd_rle_expect &ex, void **out,
                         size_t *out_size, rd_error *err)
{
    const size_t header = 64;
    size_t pixels = 0, bytes = 0;
    int width = ex.bits_allocated / 8;
    int nseg = ex.samples_per_pixel * width;
    unsigned char *plane = nullptr, *dst = nullptr;
    rd_status st = RD_OK;

    *out = nullptr;
    *out_size = 0;
    if (ex.rows <= 0 || ex.cols <= 0 || (ex.samples_per_pixel != 1 && ex.samples_per_pixel != 3) ||
        (width != 1 && width != 2 && width != 4) || ex.bits_allocated != width * 8)
        return rd_error_set(err, RD_E_CORRUPT, "RLE frame of %dx%d, %d samples of %d bits", ex.cols,
                            ex.rows, ex.samples_per_pixel, ex.bits_allocated);
    if (__builtin_mul_overflow(static_cast<size_t>(ex.rows), static_cast<size_t>(ex.cols),
                               &pixels) ||
        __builtin_mul_overflow(pixels, static_cast<size_t>(nseg), &bytes))
        return rd_error_set(err, RD_E_TOO_LARGE, "RLE frame of %dx%d pixels", ex.cols, ex.rows);
    if (len < header)
        return rd_error_set(err, RD_E_CORRUPT, "RLE fragment of %zu bytes has no header", len);
    if (le32(data) != static_cast<uint32_t>(nseg))
        return rd_error_set(err, RD_E_CORRUPT, "RLE header names %lu segments, the image has %d",
                            static_cast<unsigned long>(le32(data)), nseg);
    for (int j = 0; j < nseg; j++) {
        size_t begin = le32(data + 4 + 4 * j);
        size_t end = j + 1 < nseg ? le32(data + 8 + 4 * j) : len;
        if (begin < header || begin > end || end > len)
            return rd_error_set(err, RD_E_CORRUPT,
                                "RLE segment %d at bytes %zu..%zu is outside the %zu-byte "
                                "fragment",
                                j + 1, begin, end, len);
    }
    plane = static_cast<unsigned char *>(malloc(pixels));
    dst = static_cast<unsigned char *>(calloc(1, bytes));
    if (!plane || !dst) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory for a %zu-byte RLE frame", bytes);
        goto out;
    }
    for (int j = 0; j < nseg; j++) {
        size_t begin = le32(data + 4 + 4 * j);
        size_t end = j + 1 < nseg ? le32(data + 8 + 4 * j) : len;
        size_t got = unpack(data, begin, end, plane, pixels);
        int sample = j / width, shift = 8 * (width - 1 - j % width);
        if (got == 0 || (got < pixels && j + 1 < nseg)) {
            st = rd_error_set(err, RD_E_CORRUPT, "RLE segment %d decodes to %zu of %zu bytes",
                              j + 1, got, pixels);
            goto out;
        }
        if (got < pixels)
            memset(plane + got, plane[got - 1], pixels - got);
        for (size_t i = 0; i < pixels; i++) {
            size_t k = i * static_cast<size_t>(ex.samples_per_pixel) + static_cast<size_t>(sample);
            if (width == 1) {
                dst[k] = plane[i];
            } else if (width == 2) {
                uint16_t *d = reinterpret_cast<uint16_t *>(dst) + k;
                *d = static_cast<uint16_t>(*d | (plane[i] << shift));
            } else {
                uint32_t *d = reinterpret_cast<uint32_t *>(dst) + k;
                *d |= static_cast<uint32_t>(plane[i]) << shift;
            }
        }
    }
    *out = dst;
    *out_size = bytes;
    dst = nullptr;
out:
    free(plane);
    free(dst);
    return st;
}
