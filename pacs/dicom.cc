/* radraft — the DCMTK side of reading a DICOM instance (see dicom_shim.h).
 *
 * It loads the file with bounded element reads, copies the attributes into rd_dicom_meta
 * (text as UTF-8), and for images hands the first frame's decompressed samples and the
 * display attributes to the C pipeline in src/dicom/dicom_pixels.c. JPEG 2000 frames are decoded
 * by j2k.cc, RLE frames by rle.cc; every other compressed transfer syntax by DCMTK's
 * registered decoders. Nothing
 * here throws across the extern "C" boundary or aborts on a bad file.
 */
#include "dicom_shim.h"
#include "dcm_load.h"
#include "dcm_uid.h"
#include "j2k.h"
#include "rle.h"

#include "radraft/error.h"

#include <dcmtk/config/osconfig.h>

#include <dcmtk/dcmdata/dccodec.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcspchrs.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include <iconv.h>
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <string>
#include <vector>

namespace
{

/* Element values longer than this are not read while parsing but on first use, so a file
 * whose header claims a huge length costs nothing until (and unless) that value is needed,
 * and its length has been checked against the file size first. */
const Uint32 kMaxEagerRead = 64 * 1024;

std::once_flag g_once;

void init_once()
{
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
    /* Not DCMTK's RLE decoder: rle.cc decodes RLE (see rle.h for why). */
    /* DCMTK would print its own parse warnings on stderr; every failure that matters comes
     * back to the caller as an rd_status with DCMTK's message instead. */
    static const char *const loggers[] = {"dcmtk.dcmdata", "dcmtk.dcmjpeg", "dcmtk.dcmjpls"};
    for (const char *name : loggers)
        OFLog::getLogger(name).setLogLevel(OFLogger::FATAL_LOG_LEVEL);
}

/* ---- text ------------------------------------------------------------------------- */

/* Replaces every byte that is not part of a valid UTF-8 sequence (and control characters
 * other than tab/newline) by '?', so that whatever a file holds prints as valid JSON text. */
std::string sanitize_utf8(const std::string &in)
{
    std::string out;
    out.reserve(in.size());
    const unsigned char *s = reinterpret_cast<const unsigned char *>(in.data());
    size_t n = in.size(), i = 0;
    while (i < n) {
        unsigned char c = s[i];
        size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        bool ok = len > 0 && i + len <= n;
        for (size_t k = 1; ok && k < len; k++)
            ok = (s[i + k] & 0xc0) == 0x80;
        if (ok && len == 2 && c < 0xc2)
            ok = false; /* overlong */
        if (ok && len == 1 && c < 0x20 && c != '\t' && c != '\n' && c != '\r')
            ok = false;
        if (!ok) {
            out.push_back('?');
            i++;
            continue;
        }
        out.append(in, i, len);
        i += len;
    }
    return out;
}

/* Copies into a fixed field, cutting at a UTF-8 character boundary. */
void put(char *dst, size_t size, const std::string &value)
{
    std::string s = sanitize_utf8(value);
    size_t n = s.size() < size - 1 ? s.size() : size - 1;
    while (n > 0 && n < s.size() && (static_cast<unsigned char>(s[n]) & 0xc0) == 0x80)
        n--;
    memcpy(dst, s.data(), n);
    dst[n] = '\0';
}

bool is_plain_ascii(const std::string &s)
{
    for (unsigned char c : s)
        if (c >= 0x80 || c == 0x1b)
            return false;
    return true;
}

/* Text in the Japanese ISO 2022 code extensions (ISO 2022 IR 13 / 87 / 159) rewritten as
 * EUC-JP, which glibc's iconv converts; glibc has no "ISO-IR-87" converter, which is what
 * DCMTK asks iconv for, so DCMTK alone cannot decode these names. DICOM resets to the
 * default repertoire at each delimiter (PS3.5 6.1.2.5.3). */
bool iso2022jp_to_utf8(const std::string &in, std::string &out)
{
    enum { ASCII, JIS0208, JIS0212 } g0 = ASCII;
    std::string euc;
    const unsigned char *s = reinterpret_cast<const unsigned char *>(in.data());
    size_t n = in.size();
    for (size_t i = 0; i < n;) {
        unsigned char c = s[i];
        if (c == 0x1b) {
            if (i + 2 < n && s[i + 1] == '$' && (s[i + 2] == 'B' || s[i + 2] == '@')) {
                g0 = JIS0208;
                i += 3;
            } else if (i + 3 < n && s[i + 1] == '$' && s[i + 2] == '(' && s[i + 3] == 'D') {
                g0 = JIS0212;
                i += 4;
            } else if (i + 2 < n && s[i + 1] == '(' && (s[i + 2] == 'B' || s[i + 2] == 'J')) {
                g0 = ASCII;
                i += 3;
            } else if (i + 2 < n && s[i + 1] == ')' && s[i + 2] == 'I') {
                i += 3; /* JIS X 0201 katakana in G1: its bytes come as 0xA1..0xDF */
            } else {
                return false;
            }
            continue;
        }
        if (c == '^' || c == '=' || c == '\\' || c == '\r' || c == '\n') {
            g0 = ASCII;
            euc.push_back(static_cast<char>(c));
            i++;
            continue;
        }
        if (c >= 0xa1 && c <= 0xdf) {
            euc.push_back(static_cast<char>(0x8e));
            euc.push_back(static_cast<char>(c));
            i++;
            continue;
        }
        if (g0 == ASCII) {
            if (c >= 0x80)
                return false;
            euc.push_back(static_cast<char>(c));
            i++;
            continue;
        }
        if (i + 1 >= n)
            return false;
        if (g0 == JIS0212)
            euc.push_back(static_cast<char>(0x8f));
        euc.push_back(static_cast<char>(c | 0x80));
        euc.push_back(static_cast<char>(s[i + 1] | 0x80));
        i += 2;
    }
    iconv_t cd = iconv_open("UTF-8", "EUC-JP");
    if (cd == reinterpret_cast<iconv_t>(-1))
        return false;
    std::vector<char> buf(euc.size() * 4 + 16);
    char *inp = &euc[0], *outp = buf.data();
    size_t inleft = euc.size(), outleft = buf.size();
    size_t r = iconv(cd, &inp, &inleft, &outp, &outleft);
    iconv_close(cd);
    if (r == static_cast<size_t>(-1))
        return false;
    out.assign(buf.data(), buf.size() - outleft);
    return true;
}

struct text_decoder {
    std::string charset;
    DcmSpecificCharacterSet cs;
    bool selected = false;
    bool failed = false;
    bool warned = false;

    std::string decode(const std::string &raw, const char *delimiters)
    {
        if (is_plain_ascii(raw) || charset == "ISO_IR 192")
            return raw;
        if (charset.empty()) {
            /* No Specific Character Set means ASCII, but senders put Latin-1 there often
             * enough that reading it as such beats printing question marks. Text that is
             * already valid UTF-8 is left alone. */
            if (sanitize_utf8(raw) == raw)
                return raw;
            std::string out;
            for (unsigned char c : raw) {
                if (c < 0x80) {
                    out.push_back(static_cast<char>(c));
                } else {
                    out.push_back(static_cast<char>(0xc0 | (c >> 6)));
                    out.push_back(static_cast<char>(0x80 | (c & 0x3f)));
                }
            }
            return out;
        }
        if (!selected && !failed) {
            failed = cs.selectCharacterSet(charset.c_str()).bad();
            selected = !failed;
        }
        if (selected) {
            OFString out;
            if (cs.convertString(raw.c_str(), raw.size(), out, delimiters).good())
                return std::string(out.c_str(), out.length());
        }
        std::string out;
        if (charset.find("2022 IR 87") != std::string::npos ||
            charset.find("2022 IR 159") != std::string::npos ||
            charset.find("2022 IR 13") != std::string::npos) {
            if (iso2022jp_to_utf8(raw, out))
                return out;
        }
        return raw; /* sanitized by put(): unknown bytes become '?' */
    }
};

/* ---- attributes ------------------------------------------------------------------- */

std::string get_str(DcmItem *ds, const DcmTagKey &tag)
{
    OFString v;
    if (ds->findAndGetOFStringArray(tag, v).bad())
        return std::string();
    return std::string(v.c_str(), v.length());
}

long get_int(DcmItem *ds, const DcmTagKey &tag, long dflt, unsigned long pos = 0)
{
    long int v = 0;
    if (ds->findAndGetLongInt(tag, v, pos).good())
        return v;
    return dflt;
}

bool get_double(DcmItem *ds, const DcmTagKey &tag, double &out, unsigned long pos = 0)
{
    Float64 v = 0;
    if (ds->findAndGetFloat64(tag, v, pos).good() && std::isfinite(v)) {
        out = v;
        return true;
    }
    return false;
}

int clamp_int(long v)
{
    return v < -2147483647L ? -2147483647 : v > 2147483647L ? 2147483647 : static_cast<int>(v);
}

void fill_meta(DcmDataset *ds, E_TransferSyntax xfer, rd_dicom_meta *m)
{
    text_decoder td;
    memset(m, 0, sizeof *m);
    td.charset = get_str(ds, DCM_SpecificCharacterSet);
    put(m->specific_charset, sizeof m->specific_charset, td.charset);
    put(m->patient_id, sizeof m->patient_id, td.decode(get_str(ds, DCM_PatientID), "\\"));
    put(m->patient_name, sizeof m->patient_name, td.decode(get_str(ds, DCM_PatientName), "\\^="));
    put(m->patient_birth_date, sizeof m->patient_birth_date, get_str(ds, DCM_PatientBirthDate));
    put(m->patient_sex, sizeof m->patient_sex, get_str(ds, DCM_PatientSex));
    put(m->study_uid, sizeof m->study_uid, raw_uid(ds, DCM_StudyInstanceUID));
    put(m->series_uid, sizeof m->series_uid, raw_uid(ds, DCM_SeriesInstanceUID));
    put(m->sop_instance_uid, sizeof m->sop_instance_uid, raw_uid(ds, DCM_SOPInstanceUID));
    std::string sop_class = raw_uid(ds, DCM_SOPClassUID);
    put(m->sop_class_uid, sizeof m->sop_class_uid, sop_class);
    if (!sop_class.empty())
        put(m->sop_class_name, sizeof m->sop_class_name, dcmFindNameOfUID(sop_class.c_str(), ""));
    put(m->accession_number, sizeof m->accession_number,
        td.decode(get_str(ds, DCM_AccessionNumber), "\\"));
    put(m->study_date, sizeof m->study_date, get_str(ds, DCM_StudyDate));
    put(m->study_time, sizeof m->study_time, get_str(ds, DCM_StudyTime));
    put(m->study_description, sizeof m->study_description,
        td.decode(get_str(ds, DCM_StudyDescription), "\\"));
    put(m->series_description, sizeof m->series_description,
        td.decode(get_str(ds, DCM_SeriesDescription), "\\"));
    put(m->modality, sizeof m->modality, get_str(ds, DCM_Modality));
    put(m->view_position, sizeof m->view_position, get_str(ds, DCM_ViewPosition));
    std::string lat = get_str(ds, DCM_ImageLaterality);
    if (lat.empty())
        lat = get_str(ds, DCM_Laterality);
    put(m->laterality, sizeof m->laterality, lat);
    put(m->patient_orientation, sizeof m->patient_orientation, get_str(ds, DCM_PatientOrientation));
    put(m->body_part, sizeof m->body_part, get_str(ds, DCM_BodyPartExamined));
    put(m->image_type, sizeof m->image_type, get_str(ds, DCM_ImageType));
    put(m->photometric, sizeof m->photometric, get_str(ds, DCM_PhotometricInterpretation));
    put(m->manufacturer, sizeof m->manufacturer, td.decode(get_str(ds, DCM_Manufacturer), "\\"));
    DcmXfer xf(xfer);
    if (xfer != EXS_Unknown) {
        put(m->transfer_syntax_uid, sizeof m->transfer_syntax_uid, xf.getXferID());
        put(m->transfer_syntax_name, sizeof m->transfer_syntax_name, xf.getXferName());
    }
    m->series_number = clamp_int(get_int(ds, DCM_SeriesNumber, 0));
    m->instance_number = clamp_int(get_int(ds, DCM_InstanceNumber, 0));
    m->rows = clamp_int(get_int(ds, DCM_Rows, 0));
    m->columns = clamp_int(get_int(ds, DCM_Columns, 0));
    m->bits_allocated = clamp_int(get_int(ds, DCM_BitsAllocated, 0));
    m->bits_stored = clamp_int(get_int(ds, DCM_BitsStored, 0));
    m->samples_per_pixel = clamp_int(get_int(ds, DCM_SamplesPerPixel, 0));
    m->number_of_frames = clamp_int(get_int(ds, DCM_NumberOfFrames, 1));
    if (m->number_of_frames < 1)
        m->number_of_frames = 1;
    m->has_pixel_data = ds->tagExists(DCM_PixelData) ? 1 : 0;
    double r = 0, c = 0;
    if ((get_double(ds, DCM_PixelSpacing, r, 0) && get_double(ds, DCM_PixelSpacing, c, 1)) ||
        (get_double(ds, DCM_ImagerPixelSpacing, r, 0) &&
         get_double(ds, DCM_ImagerPixelSpacing, c, 1))) {
        if (r > 0 && c > 0) {
            m->pixel_spacing[0] = r;
            m->pixel_spacing[1] = c;
        }
    }
}

/* ---- guards ----------------------------------------------------------------------- */

/* 1 for a Part 10 file, 0 for a plausible raw dataset, -1 for neither. */
int sniff(const char *path)
{
    unsigned char b[132];
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return -1;
    size_t n = fread(b, 1, sizeof b, fp);
    fclose(fp);
    if (n == sizeof b && memcmp(b + 128, "DICM", 4) == 0)
        return 1;
    if (n < 8)
        return -1;
    /* A dataset without meta header begins with a low, even group (little or big endian)
     * and then either an explicit VR (two upper-case letters) or a 32-bit length. */
    unsigned le = b[0] | (b[1] << 8), be = (b[0] << 8) | b[1];
    unsigned grp = le <= 0x0028 ? le : be;
    if (grp < 0x0002 || grp > 0x0028 || (grp & 1))
        return -1;
    bool vr = b[4] >= 'A' && b[4] <= 'Z' && b[5] >= 'A' && b[5] <= 'Z';
    unsigned long len = static_cast<unsigned long>(b[4]) | (static_cast<unsigned long>(b[5]) << 8) |
                        (static_cast<unsigned long>(b[6]) << 16) |
                        (static_cast<unsigned long>(b[7]) << 24);
    return vr || len < (1UL << 24) ? 0 : -1;
}

/* ---- pixels ----------------------------------------------------------------------- */

bool read_lut(DcmItem *item, int pixel_rep, rd_dicom_lut *lut)
{
    long n = 0, first = 0, bits = 0;
    const Uint16 *words = nullptr;
    unsigned long count = 0;
    if (item->findAndGetLongInt(DCM_LUTDescriptor, n, 0).bad() ||
        item->findAndGetLongInt(DCM_LUTDescriptor, first, 1).bad() ||
        item->findAndGetLongInt(DCM_LUTDescriptor, bits, 2).bad())
        return false;
    if (n == 0)
        n = 65536; /* PS3.3 C.11.1.1: 0 means 2^16 entries */
    if (n < 0)
        n += 65536;
    if (pixel_rep == 1 && first >= 32768)
        first -= 65536;
    if (n < 1 || n > 65536 || bits < 8 || bits > 16)
        return false;
    if (item->findAndGetUint16Array(DCM_LUTData, words, &count).bad() || !words)
        return false;
    lut->data = static_cast<uint16_t *>(malloc(static_cast<size_t>(n) * sizeof(uint16_t)));
    if (!lut->data)
        return false;
    if (count >= static_cast<unsigned long>(n)) {
        memcpy(lut->data, words, static_cast<size_t>(n) * sizeof(uint16_t));
    } else if (bits == 8 && count * 2 >= static_cast<unsigned long>(n)) {
        /* 8-bit entries packed two to a word, low byte first. */
        for (long i = 0; i < n; i++)
            lut->data[i] = static_cast<uint16_t>((words[i / 2] >> ((i % 2) * 8)) & 0xff);
    } else {
        free(lut->data);
        lut->data = nullptr;
        return false;
    }
    lut->present = 1;
    lut->n = static_cast<int>(n);
    lut->first = first;
    lut->bits = static_cast<int>(bits);
    return true;
}

void read_display_attributes(DcmDataset *ds, rd_dicom_frame *f)
{
    DcmItem *item = nullptr;
    double v;
    if (ds->findAndGetSequenceItem(DCM_ModalityLUTSequence, item, 0).good() && item)
        read_lut(item, f->pixel_representation, &f->modality_lut);
    if (get_double(ds, DCM_RescaleSlope, v)) {
        f->has_rescale = 1;
        f->rescale_slope = v;
        f->rescale_intercept = 0;
        get_double(ds, DCM_RescaleIntercept, f->rescale_intercept);
    }
    if (get_double(ds, DCM_WindowCenter, f->window_center) &&
        get_double(ds, DCM_WindowWidth, f->window_width))
        f->has_window = 1;
    put(f->voi_function, sizeof f->voi_function, get_str(ds, DCM_VOILUTFunction));
    item = nullptr;
    if (ds->findAndGetSequenceItem(DCM_VOILUTSequence, item, 0).good() && item)
        read_lut(item, f->pixel_representation, &f->voi_lut);
    long pad = 0;
    /* The padding values are stored pixel values; a signed image whose padding was
     * written with VR US carries them as unsigned 16-bit numbers. */
    if (ds->findAndGetLongInt(DCM_PixelPaddingValue, pad).good()) {
        f->has_padding = 1;
        f->padding_value = f->pixel_representation == 1 && pad > 32767 ? pad - 65536 : pad;
        if (ds->findAndGetLongInt(DCM_PixelPaddingRangeLimit, pad).good()) {
            f->has_padding_range = 1;
            f->padding_range_limit =
                f->pixel_representation == 1 && pad > 32767 ? pad - 65536 : pad;
        }
    }
}

/* The fragments of the first frame of an encapsulated JPEG 2000 image, concatenated. */
rd_status first_frame_codestream(DcmPixelSequence *seq, long frames, std::vector<Uint8> &out,
                                 rd_error *err)
{
    unsigned long nitems = seq->card();
    if (nitems < 2)
        return rd_error_set(err, RD_E_CORRUPT, "encapsulated pixel data has no fragment");
    DcmPixelItem *bot = nullptr;
    if (seq->getItem(bot, 0).bad() || !bot)
        return rd_error_set(err, RD_E_CORRUPT, "no basic offset table");
    /* With a Basic Offset Table, frame 2 starts at its second entry; without one, a frame
     * ends where the next fragment begins with a new codestream (SOC marker). */
    unsigned long long frame2 = ~0ULL;
    if (frames > 1 && bot->getLength() >= 8) {
        Uint8 *t = nullptr;
        /* The table is little endian whatever the host; the second entry starts frame 2. */
        if (bot->getUint8Array(t).good() && t)
            frame2 = static_cast<unsigned long long>(t[4]) | (static_cast<unsigned>(t[5]) << 8) |
                     (static_cast<unsigned>(t[6]) << 16) |
                     (static_cast<unsigned long long>(t[7]) << 24);
    }
    unsigned long long pos = 0;
    for (unsigned long i = 1; i < nitems; i++) {
        DcmPixelItem *frag = nullptr;
        if (seq->getItem(frag, i).bad() || !frag)
            return rd_error_set(err, RD_E_CORRUPT, "unreadable fragment %lu", i);
        Uint32 len = frag->getLength();
        Uint8 *bytes = nullptr;
        if (len > 0 && (frag->getUint8Array(bytes).bad() || !bytes))
            return rd_error_set(err, RD_E_CORRUPT, "unreadable fragment %lu", i);
        if (i > 1 && frames > 1) {
            if (pos >= frame2)
                break;
            if (frame2 == ~0ULL && len >= 2 && bytes[0] == 0xff && bytes[1] == 0x4f)
                break;
        }
        out.insert(out.end(), bytes, bytes + len);
        pos += 8ULL + len;
    }
    return RD_OK;
}

rd_status decode_j2k(DcmPixelData *pd, long frames, rd_dicom_frame *f, rd_error *err)
{
    DcmPixelSequence *seq = nullptr;
    E_TransferSyntax xfer = EXS_Unknown;
    const DcmRepresentationParameter *param = nullptr;
    pd->getOriginalRepresentationKey(xfer, param);
    if (pd->getEncapsulatedRepresentation(xfer, param, seq).bad() || !seq)
        return rd_error_set(err, RD_E_CORRUPT, "JPEG 2000 pixel data is not encapsulated");
    if (f->bits_allocated != 8 && f->bits_allocated != 16)
        return rd_error_set(err, RD_E_UNSUPPORTED, "JPEG 2000 with bits allocated %d",
                            f->bits_allocated);
    std::vector<Uint8> cs;
    rd_status st = first_frame_codestream(seq, frames, cs, err);
    if (st != RD_OK)
        return st;
    rd_j2k_expect ex;
    ex.rows = f->rows;
    ex.cols = f->cols;
    ex.samples_per_pixel = f->samples_per_pixel;
    ex.bits_allocated = f->bits_allocated;
    int is_signed = 0, is_rgb = 0;
    st = rd__j2k_decode(cs.data(), cs.size(), ex, &f->data, &f->size, &is_signed, &is_rgb, err);
    if (st != RD_OK)
        return st;
    /* The codestream knows its own signedness better than a mislabelled header. */
    f->pixel_representation = is_signed;
    f->planar_configuration = 0;
    if (f->samples_per_pixel == 3)
        put(f->photometric, sizeof f->photometric, is_rgb ? "RGB" : "YBR_FULL");
    return RD_OK;
}

/* The first frame of an RLE Lossless image: its fragment (PS3.5 A.4.2: each frame is one
 * fragment), decoded by rle.cc. */
rd_status decode_rle(DcmPixelData *pd, rd_dicom_frame *f, rd_error *err)
{
    DcmPixelSequence *seq = nullptr;
    E_TransferSyntax xfer = EXS_Unknown;
    const DcmRepresentationParameter *param = nullptr;
    pd->getOriginalRepresentationKey(xfer, param);
    if (pd->getEncapsulatedRepresentation(xfer, param, seq).bad() || !seq)
        return rd_error_set(err, RD_E_CORRUPT, "RLE pixel data is not encapsulated");
    /* RLE keeps every sample of every pixel: no subsampled (4:2:2) colour. */
    if (f->samples_per_pixel == 3 && strstr(f->photometric, "_422"))
        return rd_error_set(err, RD_E_CORRUPT, "RLE pixel data cannot be %s", f->photometric);
    DcmPixelItem *frag = nullptr;
    if (seq->card() < 2 || seq->getItem(frag, 1).bad() || !frag)
        return rd_error_set(err, RD_E_CORRUPT, "encapsulated pixel data has no fragment");
    Uint32 len = frag->getLength();
    Uint8 *bytes = nullptr;
    if (len > 0 && (frag->getUint8Array(bytes).bad() || !bytes))
        return rd_error_set(err, RD_E_CORRUPT, "unreadable fragment 1");
    rd_rle_expect ex;
    ex.rows = f->rows;
    ex.cols = f->cols;
    ex.samples_per_pixel = f->samples_per_pixel;
    ex.bits_allocated = f->bits_allocated;
    rd_status st = rd__rle_decode(bytes, bytes ? len : 0, ex, &f->data, &f->size, err);
    if (st != RD_OK)
        return st;
    f->planar_configuration = 0; /* rle.cc writes colour by pixel */
    return RD_OK;
}

rd_status decode_frame(DcmDataset *ds, const rd_dicom_meta *meta, const rd_dicom_options *opts,
                       unsigned long long file_size, rd_dicom_frame *f, rd_error *err)
{
    if (!meta->has_pixel_data) {
        if (ds->tagExists(DCM_FloatPixelData) || ds->tagExists(DCM_DoubleFloatPixelData))
            return rd_error_set(err, RD_E_UNSUPPORTED, "float pixel data is not supported");
        return rd_error_set(err, RD_E_NOT_IMAGE, "no pixel data (%s)",
                            meta->sop_class_name[0]  ? meta->sop_class_name
                            : meta->sop_class_uid[0] ? meta->sop_class_uid
                                                     : "unknown SOP class");
    }
    if (meta->rows <= 0 || meta->columns <= 0)
        return rd_error_set(err, RD_E_CORRUPT, "rows %d, columns %d", meta->rows, meta->columns);
    if (meta->rows > opts->max_dimension || meta->columns > opts->max_dimension ||
        meta->rows > RD_IMAGE_MAX_DIM || meta->columns > RD_IMAGE_MAX_DIM)
        return rd_error_set(err, RD_E_TOO_LARGE, "%dx%d pixels exceed the limit of %d",
                            meta->columns, meta->rows, opts->max_dimension);
    if (meta->bits_stored > 16)
        return rd_error_set(err, RD_E_UNSUPPORTED, "bits stored %d exceeds 16", meta->bits_stored);
    if (meta->bits_allocated != 8 && meta->bits_allocated != 16 && meta->bits_allocated != 32)
        return rd_error_set(err, RD_E_UNSUPPORTED, "bits allocated %d is not supported",
                            meta->bits_allocated);
    if (meta->bits_stored < 1 || meta->bits_stored > meta->bits_allocated)
        return rd_error_set(err, RD_E_CORRUPT, "bits stored %d with bits allocated %d",
                            meta->bits_stored, meta->bits_allocated);
    if (meta->samples_per_pixel != 1 && meta->samples_per_pixel != 3)
        return rd_error_set(err, RD_E_UNSUPPORTED, "%d samples per pixel", meta->samples_per_pixel);

    f->rows = meta->rows;
    f->cols = meta->columns;
    f->samples_per_pixel = meta->samples_per_pixel;
    f->bits_allocated = meta->bits_allocated;
    f->bits_stored = meta->bits_stored;
    f->high_bit = clamp_int(get_int(ds, DCM_HighBit, meta->bits_stored - 1));
    f->pixel_representation = get_int(ds, DCM_PixelRepresentation, 0) == 1 ? 1 : 0;
    f->planar_configuration = get_int(ds, DCM_PlanarConfiguration, 0) == 1 ? 1 : 0;
    put(f->photometric, sizeof f->photometric, meta->photometric);
    if (strcmp(f->photometric, "PALETTE COLOR") == 0)
        return rd_error_set(err, RD_E_UNSUPPORTED, "PALETTE COLOR images are not supported");
    read_display_attributes(ds, f);

    if (meta->transfer_syntax_uid[0] == '\0' ||
        DcmXfer(meta->transfer_syntax_uid).getXfer() == EXS_Unknown)
        return rd_error_set(err, RD_E_UNSUPPORTED, "unknown transfer syntax '%s'",
                            meta->transfer_syntax_uid);
    DcmElement *el = nullptr;
    if (ds->findAndGetElement(DCM_PixelData, el).bad() || !el)
        return rd_error_set(err, RD_E_NOT_IMAGE, "no pixel data");
    DcmPixelData *pd = static_cast<DcmPixelData *>(el);
    E_TransferSyntax xfer = ds->getOriginalXfer();
    DcmXfer xf(xfer);
    long frames = meta->number_of_frames;

    if (xf.isEncapsulated()) {
        if (xfer == EXS_JPEG2000LosslessOnly || xfer == EXS_JPEG2000 ||
            xfer == EXS_JPEG2000MulticomponentLosslessOnly || xfer == EXS_JPEG2000Multicomponent)
            return decode_j2k(pd, frames, f, err);
        if (xfer == EXS_RLELossless)
            return decode_rle(pd, f, err);
        if (!DcmCodecList::canChangeCoding(xfer, EXS_LittleEndianExplicit))
            return rd_error_set(err, RD_E_UNSUPPORTED, "no decoder for transfer syntax %s (%s)",
                                xf.getXferID(), xf.getXferName());
    } else {
        /* Native pixel data must hold the whole first frame; check the length field, which
         * the caller already bounded by the file size, before reading anything. */
        size_t need = rd_dicom_frame_bytes(f);
        if (need == 0)
            return rd_error_set(err, RD_E_UNSUPPORTED, "unsupported pixel layout");
        Uint32 have = pd->getLength();
        if (have == DCM_UndefinedLength || static_cast<unsigned long long>(have) < need ||
            static_cast<unsigned long long>(have) > file_size)
            return rd_error_set(err, RD_E_CORRUPT, "pixel data has %lu bytes, the frame needs %zu",
                                static_cast<unsigned long>(have), need);
    }

    OFString model;
    if (xf.isEncapsulated() && pd->getDecompressedColorModel(ds, model).good() && !model.empty())
        put(f->photometric, sizeof f->photometric, model.c_str());
    size_t need = rd_dicom_frame_bytes(f);
    Uint32 frame_size = 0;
    if (need == 0 || pd->getUncompressedFrameSize(ds, frame_size).bad())
        return rd_error_set(err, RD_E_CORRUPT, "cannot determine the frame size");
    size_t bytes = need > frame_size ? need : frame_size;
    bytes += bytes & 1; /* DCMTK wants an even buffer */
    if (bytes > 0xffffffffUL)
        return rd_error_set(err, RD_E_TOO_LARGE, "frame of %zu bytes", bytes);
    f->data = calloc(1, bytes);
    if (!f->data)
        return rd_error_set(err, RD_E_NOMEM, "out of memory for a %zu-byte frame", bytes);
    f->size = bytes;
    Uint32 start = 0;
    OFString decoded_model;
    OFCondition cond = pd->getUncompressedFrame(ds, 0, start, f->data, static_cast<Uint32>(bytes),
                                                decoded_model, nullptr);
    if (cond.bad())
        return rd_error_set(err, RD_E_CORRUPT, "cannot decode the first frame (%s): %s",
                            xf.getXferName(), cond.text());
    if (!decoded_model.empty())
        put(f->photometric, sizeof f->photometric, decoded_model.c_str());
    return RD_OK;
}

rd_status load(const char *path, const rd_dicom_options *opts, rd_dicom_meta *meta,
               rd_dicom_frame *frame, rd_error *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return rd_error_set(err, errno == ENOENT ? RD_E_NOT_FOUND : RD_E_IO, "%s", strerror(errno));
    if (!S_ISREG(sb.st_mode))
        return rd_error_set(err, RD_E_IO, "not a regular file");
    if (static_cast<long long>(sb.st_size) > RD_DICOM_MAX_FILE_BYTES)
        return rd_error_set(err, RD_E_TOO_LARGE, "file of %lld bytes exceeds the limit of %lld",
                            static_cast<long long>(sb.st_size), RD_DICOM_MAX_FILE_BYTES);
    int kind = sniff(path);
    if (kind < 0)
        return rd_error_set(err, RD_E_DICOM, "not a DICOM file");
    std::call_once(g_once, init_once);

    DcmFileFormat ff;
    E_TransferSyntax file_xfer = EXS_Unknown;
    unsigned long long limit = 0;
    rd_status st = rd__dcm_load_file(ff, path, kind == 1, kMaxEagerRead, &file_xfer, &limit, err);
    if (st != RD_OK)
        return st;
    DcmDataset *ds = ff.getDataset();
    if (!ds || ds->card() == 0)
        return rd_error_set(err, RD_E_DICOM, "empty DICOM dataset");
    fill_meta(ds, file_xfer, meta);
    /* The file meta header names the transfer syntax the sender meant; when DCMTK does not
     * know it, it parsed the dataset by guessing, and that is what the caller must see. */
    OFString header_xfer;
    DcmMetaInfo *mi = ff.getMetaInfo();
    if (mi && mi->findAndGetOFString(DCM_TransferSyntaxUID, header_xfer).good() &&
        !header_xfer.empty() && DcmXfer(header_xfer.c_str()).getXfer() == EXS_Unknown) {
        put(meta->transfer_syntax_uid, sizeof meta->transfer_syntax_uid, header_xfer.c_str());
        put(meta->transfer_syntax_name, sizeof meta->transfer_syntax_name, "");
    }
    if (!frame)
        return RD_OK;
    st = decode_frame(ds, meta, opts, limit, frame, err);
    if (st != RD_OK)
        rd_dicom_frame_release(frame);
    return st;
}

} // namespace

extern "C" rd_status rd__dicom_load(const char *path, const rd_dicom_options *opts,
                                    rd_dicom_meta *meta, rd_dicom_frame *frame, rd_error *err)
{
    if (!path || !opts || !meta)
        return rd_error_set(err, RD_E_INVALID, "rd__dicom_load: NULL argument");
    if (frame)
        memset(frame, 0, sizeof *frame);
    try {
        return load(path, opts, meta, frame, err);
    } catch (const std::bad_alloc &) {
        rd_dicom_frame_release(frame);
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    } catch (...) {
        rd_dicom_frame_release(frame);
        return rd_error_set(err, RD_E_INTERNAL, "unexpected exception in the DICOM reader");
    }
}

extern "C" void rd_dicom_frame_release(rd_dicom_frame *f)
{
    if (!f)
        return;
    free(f->data);
    free(f->modality_lut.data);
    free(f->voi_lut.data);
    memset(f, 0, sizeof *f);
}

extern "C" size_t rd_dicom_frame_bytes(const rd_dicom_frame *f)
{
    if (f->rows <= 0 || f->cols <= 0 || (f->samples_per_pixel != 1 && f->samples_per_pixel != 3) ||
        (f->bits_allocated != 8 && f->bits_allocated != 16 && f->bits_allocated != 32))
        return 0;
    /* Native YBR_*_422 stores two luma samples and one pair of chroma per two pixels. */
    size_t samples_per_px =
        (f->samples_per_pixel == 3 && (strcmp(f->photometric, "YBR_FULL_422") == 0 ||
                                       strcmp(f->photometric, "YBR_PARTIAL_422") == 0))
            ? 2
            : static_cast<size_t>(f->samples_per_pixel);
    size_t bytes = 0;
    if (__builtin_mul_overflow(static_cast<size_t>(f->rows), static_cast<size_t>(f->cols),
                               &bytes) ||
        __builtin_mul_overflow(bytes, samples_per_px, &bytes) ||
        __builtin_mul_overflow(bytes, static_cast<size_t>(f->bits_allocated) / 8, &bytes))
        return 0;
    return bytes;
}
