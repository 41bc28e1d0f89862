/* radraft — JPEG 2000 decoding of one DICOM frame with OpenJPEG (see j2k.h).
 *
 * The codestream comes from memory (the concatenated fragments of the frame), so the
 * stream callbacks below read from a bounded buffer; OpenJPEG's messages go into a small
 * per-call buffer instead of stderr so that they can become the rd_error's text.
 */
#include "j2k.h"

#include "radraft/error.h"

#include <openjpeg.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace
{

struct mem_stream {
    const unsigned char *data;
    size_t len;
    size_t pos;
};

OPJ_SIZE_T mem_read(void *buf, OPJ_SIZE_T n, void *user)
{
    mem_stream *m = static_cast<mem_stream *>(user);
    if (m->pos >= m->len)
        return static_cast<OPJ_SIZE_T>(-1);
    size_t left = m->len - m->pos;
    if (n > left)
        n = left;
    memcpy(buf, m->data + m->pos, n);
    m->pos += n;
    return n;
}

OPJ_OFF_T mem_skip(OPJ_OFF_T n, void *user)
{
    mem_stream *m = static_cast<mem_stream *>(user);
    if (n < 0) {
        size_t back = static_cast<size_t>(-n);
        if (back > m->pos)
            back = m->pos;
        m->pos -= back;
        return -static_cast<OPJ_OFF_T>(back);
    }
    size_t fwd = static_cast<size_t>(n);
    if (fwd > m->len - m->pos)
        fwd = m->len - m->pos;
    m->pos += fwd;
    return fwd == 0 && n != 0 ? -1 : static_cast<OPJ_OFF_T>(fwd);
}

OPJ_BOOL mem_seek(OPJ_OFF_T n, void *user)
{
    mem_stream *m = static_cast<mem_stream *>(user);
    if (n < 0 || static_cast<size_t>(n) > m->len)
        return OPJ_FALSE;
    m->pos = static_cast<size_t>(n);
    return OPJ_TRUE;
}

struct messages {
    char text[256];
};

void on_error(const char *msg, void *user)
{
    messages *m = static_cast<messages *>(user);
    /* Keep the first error: later ones are usually consequences of it. */
    if (m->text[0] == '\0') {
        snprintf(m->text, sizeof m->text, "%s", msg);
        size_t n = strlen(m->text);
        while (n > 0 && (m->text[n - 1] == '\n' || m->text[n - 1] == '\r'))
            m->text[--n] = '\0';
    }
}

void on_quiet(const char *, void *) {}

} // namespace

rd_status rd__j2k_decode(const unsigned char *data, size_t len, const rd_j2k_expect &expect,
                         void **out, size_t *out_size, int *is_signed, int *is_rgb, rd_error *err)
{
    static const unsigned char jp2_sig[12] = {0, 0, 0, 12, 'j', 'P', ' ', ' ', 13, 10, 0x87, 10};
    mem_stream ms = {data, len, 0};
    messages msgs;
    opj_codec_t *codec = nullptr;
    opj_stream_t *stream = nullptr;
    opj_image_t *image = nullptr;
    opj_dparameters_t params;
    void *buf = nullptr;
    rd_status st = RD_OK;
    size_t nsamples = 0, bytes = 0;
    int spp = expect.samples_per_pixel;
    memset(&msgs, 0, sizeof msgs);

    if (len < 2)
        return rd_error_set(err, RD_E_CORRUPT, "JPEG 2000 frame of %zu bytes", len);
    if (len >= 12 && memcmp(data, jp2_sig, 12) == 0)
        codec = opj_create_decompress(OPJ_CODEC_JP2);
    else if (data[0] == 0xff && data[1] == 0x4f)
        codec = opj_create_decompress(OPJ_CODEC_J2K);
    else
        return rd_error_set(err, RD_E_CORRUPT,
                            "JPEG 2000 frame does not start with a codestream marker");
    if (!codec)
        return rd_error_set(err, RD_E_NOMEM, "cannot create the JPEG 2000 decoder");
    opj_set_error_handler(codec, on_error, &msgs);
    opj_set_warning_handler(codec, on_quiet, nullptr);
    opj_set_info_handler(codec, on_quiet, nullptr);
    opj_set_default_decoder_parameters(&params);
    if (!opj_setup_decoder(codec, &params)) {
        st = rd_error_set(err, RD_E_INTERNAL, "cannot set up the JPEG 2000 decoder");
        goto out;
    }
    stream = opj_stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_TRUE);
    if (!stream) {
        st = rd_error_set(err, RD_E_NOMEM, "cannot create the JPEG 2000 stream");
        goto out;
    }
    opj_stream_set_user_data(stream, &ms, nullptr);
    opj_stream_set_user_data_length(stream, len);
    opj_stream_set_read_function(stream, mem_read);
    opj_stream_set_skip_function(stream, mem_skip);
    opj_stream_set_seek_function(stream, mem_seek);

    if (!opj_read_header(stream, codec, &image) || !image) {
        st = rd_error_set(err, RD_E_CORRUPT, "JPEG 2000 header: %s",
                          msgs.text[0] ? msgs.text : "unreadable");
        goto out;
    }
    /* Check what the header promises against the dataset before decoding anything, so a
     * hostile codestream cannot make the decoder allocate more than the frame. */
    if (image->x1 <= image->x0 || image->y1 <= image->y0 ||
        image->x1 - image->x0 != static_cast<OPJ_UINT32>(expect.cols) ||
        image->y1 - image->y0 != static_cast<OPJ_UINT32>(expect.rows)) {
        st = rd_error_set(err, RD_E_CORRUPT, "JPEG 2000 image is %ux%u but the dataset says %dx%d",
                          image->x1 - image->x0, image->y1 - image->y0, expect.cols, expect.rows);
        goto out;
    }
    if (image->numcomps < static_cast<OPJ_UINT32>(spp)) {
        st = rd_error_set(err, RD_E_CORRUPT,
                          "JPEG 2000 image has %u components, the dataset says %d", image->numcomps,
                          spp);
        goto out;
    }
    for (int c = 0; c < spp; c++) {
        const opj_image_comp_t &comp = image->comps[c];
        if (comp.dx != 1 || comp.dy != 1) {
            st = rd_error_set(err, RD_E_UNSUPPORTED, "subsampled JPEG 2000 component");
            goto out;
        }
        if (comp.prec < 1 || comp.prec > 16 ||
            comp.prec > static_cast<OPJ_UINT32>(expect.bits_allocated)) {
            st = rd_error_set(err, RD_E_UNSUPPORTED,
                              "JPEG 2000 component precision %u (bits allocated %d)", comp.prec,
                              expect.bits_allocated);
            goto out;
        }
    }
    if (!opj_decode(codec, stream, image) || !opj_end_decompress(codec, stream)) {
        st = rd_error_set(err, RD_E_CORRUPT, "JPEG 2000 decoding failed: %s",
                          msgs.text[0] ? msgs.text : "truncated or corrupt codestream");
        goto out;
    }
    for (int c = 0; c < spp; c++) {
        const opj_image_comp_t &comp = image->comps[c];
        if (!comp.data || comp.w != static_cast<OPJ_UINT32>(expect.cols) ||
            comp.h != static_cast<OPJ_UINT32>(expect.rows)) {
            st = rd_error_set(err, RD_E_CORRUPT, "JPEG 2000 component %d has no full data", c);
            goto out;
        }
    }
    nsamples = static_cast<size_t>(expect.rows) * static_cast<size_t>(expect.cols);
    bytes = nsamples * static_cast<size_t>(spp) * static_cast<size_t>(expect.bits_allocated / 8);
    buf = malloc(bytes);
    if (!buf) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory for a %zu-byte frame", bytes);
        goto out;
    }
    for (int c = 0; c < spp; c++) {
        const opj_image_comp_t &comp = image->comps[c];
        const long lo = comp.sgnd ? -(1L << (comp.prec - 1)) : 0;
        const long hi = comp.sgnd ? (1L << (comp.prec - 1)) - 1 : (1L << comp.prec) - 1;
        for (size_t i = 0; i < nsamples; i++) {
            long v = comp.data[i];
            v = v < lo ? lo : v > hi ? hi : v;
            size_t k = i * static_cast<size_t>(spp) + static_cast<size_t>(c);
            /* Two's complement truncation keeps the sign bit where bits_stored puts it. */
            if (expect.bits_allocated == 8)
                static_cast<uint8_t *>(buf)[k] = static_cast<uint8_t>(v & 0xff);
            else
                static_cast<uint16_t *>(buf)[k] = static_cast<uint16_t>(v & 0xffff);
        }
    }
    *out = buf;
    *out_size = bytes;
    *is_signed = image->comps[0].sgnd ? 1 : 0;
    *is_rgb = spp == 3 && image->color_space != OPJ_CLRSPC_SYCC;
    buf = nullptr;
out:
    free(buf);
    if (image)
        opj_image_destroy(image);
    if (stream)
        opj_stream_destroy(stream);
    if (codec)
        opj_destroy_codec(codec);
    return st;
}
