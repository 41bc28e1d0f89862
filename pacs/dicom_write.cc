// Writing projection X-ray images as DICOM (CR and DX For Presentation) over DCMTK.
//
// The dataset is built uncompressed, then DCMTK's registered encoders convert the pixel
// data to the requested transfer syntax (chooseRepresentation), and the file is saved
// next to its destination and renamed into place. Nothing here reads the clock or makes
// random UIDs, so the same arguments give the same bytes.
#include "radraft/dicom_write.h"
#include "radraft/tempname.h"
#include "radraft/uid.h"

#include "first_error.h"

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include <unistd.h>

#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcitem.h>
#include <dcmtk/dcmdata/dcrleerg.h>
#include <dcmtk/dcmdata/dcrlerp.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcuid.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djencode.h>
#include <dcmtk/dcmjpeg/djrplol.h>
#include <dcmtk/dcmjpls/djencode.h>
#include <dcmtk/dcmjpls/djrparam.h>
#include <dcmtk/oflog/oflog.h>

namespace
{

struct syntax_row {
    rd_dicom_syntax syntax;
    E_TransferSyntax xfer;
    const char *uid;
    const char *short_name;
};

const syntax_row syntax_table[] = {
    {RD_DICOM_SYNTAX_EXPLICIT_LE, EXS_LittleEndianExplicit, UID_LittleEndianExplicitTransferSyntax,
     "explicit-le"},
    {RD_DICOM_SYNTAX_JPEG_LOSSLESS, EXS_JPEGProcess14SV1, UID_JPEGProcess14SV1TransferSyntax,
     "jpeg-lossless"},
    {RD_DICOM_SYNTAX_JPEG_LS, EXS_JPEGLSLossless, UID_JPEGLSLosslessTransferSyntax, "jpeg-ls"},
    {RD_DICOM_SYNTAX_RLE, EXS_RLELossless, UID_RLELosslessTransferSyntax, "rle"},
};

// The value of an enum that came from C, read as an int: C lets any int through, and in
// C++ even loading an out-of-range enum is undefined, so it is never loaded as the enum.
template <class E> int enum_value(const E &e)
{
    static_assert(sizeof(E) == sizeof(int), "C enums are int-sized");
    int v;
    std::memcpy(&v, &e, sizeof v);
    return v;
}

const syntax_row *syntax_find(int s)
{
    for (const syntax_row &row : syntax_table)
        if ((int)row.syntax == s)
            return &row;
    return nullptr;
}

// The encoders are registered once per process; registration is not thread-safe in
// DCMTK, hence the once-flag. They stay registered until exit (DCMTK's cleanup must not
// run while another thread might encode).
void register_encoders()
{
    static std::once_flag once;
    std::call_once(once, [] {
        // The JPEG encoder's image layer (dcmimgle) logs at INFO, on every image, that it
        // ignores the modality transform (ours is the identity); warnings still show.
        OFLog::getLogger("dcmtk.dcmimgle").setLogLevel(OFLogger::WARN_LOG_LEVEL);
        DJEncoderRegistration::registerCodecs();
        DJLSEncoderRegistration::registerCodecs();
        DcmRLEEncoderRegistration::registerCodecs();
    });
}

// Every put goes through here so that one failed condition stops the build with a message
// naming the attribute.
class builder : public first_error
{
  public:
    explicit builder(DcmItem *item) : item_(item) {}

    void str(const DcmTagKey &tag, const char *value)
    {
        if (!ok())
            return;
        OFCondition c = item_->putAndInsertString(tag, value ? value : "");
        check(c, tag);
    }
    // Type 3: left out when empty.
    void opt(const DcmTagKey &tag, const char *value)
    {
        if (value && value[0])
            str(tag, value);
    }
    void u16(const DcmTagKey &tag, Uint16 value)
    {
        if (!ok())
            return;
        check(item_->putAndInsertUint16(tag, value), tag);
    }
    void num(const DcmTagKey &tag, double value, int decimals)
    {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.*f", decimals, value);
        str(tag, buf);
    }
    void integer(const DcmTagKey &tag, long value)
    {
        char buf[32];
        std::snprintf(buf, sizeof buf, "%ld", value);
        str(tag, buf);
    }
    // An item of a sequence, created in place; nullptr after a failure.
    DcmItem *seq_item(const DcmTagKey &tag)
    {
        DcmItem *it = nullptr;
        if (!ok())
            return nullptr;
        check(item_->findOrCreateSequenceItem(tag, it, -2), tag);
        return ok() ? it : nullptr;
    }
    void empty_seq(const DcmTagKey &tag)
    {
        if (!ok())
            return;
        check(item_->insertEmptyElement(tag), tag);
    }
    void check(const OFCondition &c, const DcmTagKey &tag)
    {
        if (c.bad())
            fail(std::string(DcmTag(tag).getTagName()) + ": " + c.text());
    }

  private:
    DcmItem *item_;
};

void put_code(builder &b, DcmItem *it, const char *value, const char *scheme, const char *meaning)
{
    if (!it)
        return;
    builder ib(it);
    ib.str(DCM_CodeValue, value);
    ib.str(DCM_CodingSchemeDesignator, scheme);
    ib.str(DCM_CodeMeaning, meaning);
    if (!ib.ok())
        b.fail(ib.msg());
}

// View codes (DICOM CID 4010) for the View Code Sequence of DX images.
struct view_code {
    const char *position;
    const char *value;
    const char *meaning;
};

const view_code view_codes[] = {
    {"PA", "399348003", "postero-anterior"},
    {"AP", "399182009", "antero-posterior"},
    {"LL", "399173006", "left lateral"},
    {"RL", "399198007", "right lateral"},
};

const view_code *view_code_find(const char *position)
{
    for (const view_code &vc : view_codes)
        if (position && std::strcmp(position, vc.position) == 0)
            return &vc;
    return nullptr;
}

} // namespace

extern "C" const char *rd_dicom_syntax_uid(rd_dicom_syntax syntax)
{
    const syntax_row *row = syntax_find(enum_value(syntax));
    return row ? row->uid : "";
}

extern "C" const char *rd_dicom_syntax_short_name(rd_dicom_syntax syntax)
{
    const syntax_row *row = syntax_find(enum_value(syntax));
    return row ? row->short_name : "";
}

extern "C" const char *rd_dicom_syntax_dcmtk_name(rd_dicom_syntax syntax)
{
    const syntax_row *row = syntax_find(enum_value(syntax));
    return row ? DcmXfer(row->xfer).getXferName() : "";
}

extern "C" rd_status rd_dicom_syntax_parse(const char *name, rd_dicom_syntax *out, rd_error *err)
{
    for (const syntax_row &row : syntax_table)
        if (name && std::strcmp(name, row.short_name) == 0) {
            *out = row.syntax;
            return RD_OK;
        }
    return rd_error_set(err, RD_E_INVALID,
                        "unknown transfer syntax '%s' (explicit-le, jpeg-lossless, jpeg-ls, rle)",
                        name ? name : "");
}

extern "C" void rd_dicom_xray_info_default(rd_dicom_xray_info *info)
{
    std::memset(info, 0, sizeof *info);
    info->sop_class = RD_DICOM_XRAY_DX;
    info->syntax = RD_DICOM_SYNTAX_EXPLICIT_LE;
    info->bits_stored = 12;
    info->monochrome1 = 0;
    info->pixel_spacing = 0.4;
    info->window_center = 2048.0;
    info->window_width = 4096.0;
    info->series_number = 1;
    info->instance_number = 1;
}

extern "C" rd_status rd_dicom_write_xray(const char *path, const rd_image *img,
                                         const rd_dicom_xray_info *info, rd_error *err)
{
    if (!path || !img || !info || !img->data)
        return rd_error_set(err, RD_E_INVALID, "dicom write: NULL argument");
    if (img->width <= 0 || img->height <= 0 || img->width > 65535 || img->height > 65535)
        return rd_error_set(err, RD_E_INVALID, "%s: image size %dx%d outside 1..65535", path,
                            img->width, img->height);
    if (info->bits_stored < 8 || info->bits_stored > 16)
        return rd_error_set(err, RD_E_INVALID, "%s: bits stored %d outside 8..16", path,
                            info->bits_stored);
    if (!(info->pixel_spacing > 0.0 && info->pixel_spacing < 100.0))
        return rd_error_set(err, RD_E_INVALID, "%s: pixel spacing %g mm outside (0, 100)", path,
                            info->pixel_spacing);
    if (!rd_uid_valid(info->study_uid) || !rd_uid_valid(info->series_uid) ||
        !rd_uid_valid(info->sop_instance_uid))
        return rd_error_set(err, RD_E_INVALID,
                            "%s: study, series and SOP instance UIDs must be 1..64 digits and dots",
                            path);
    const int syntax = enum_value(info->syntax), sop_class = enum_value(info->sop_class);
    const syntax_row *syn = syntax_find(syntax);
    if (!syn)
        return rd_error_set(err, RD_E_INVALID, "%s: unknown transfer syntax %d", path, syntax);
    const bool dx = sop_class == RD_DICOM_XRAY_DX;
    if (!dx && sop_class != RD_DICOM_XRAY_CR)
        return rd_error_set(err, RD_E_INVALID, "%s: unknown SOP class %d", path, sop_class);

    register_encoders();

    // Pixels: [0, 1] -> 0..maxval, inverted for MONOCHROME1.
    const size_t n = (size_t)img->width * (size_t)img->height;
    const unsigned maxval = (1u << info->bits_stored) - 1u;
    std::vector<Uint16> pixels;
    try {
        pixels.resize(n);
    } catch (...) {
        return rd_error_set(err, RD_E_NOMEM, "%s: out of memory for %zu pixels", path, n);
    }
    for (size_t i = 0; i < n; i++) {
        float v = img->data[i];
        if (!(v > 0.0f))
            v = 0.0f; // also NaN
        if (v > 1.0f)
            v = 1.0f;
        unsigned q = (unsigned)std::lround((double)v * maxval);
        pixels[i] = (Uint16)(info->monochrome1 ? maxval - q : q);
    }

    DcmFileFormat ff;
    DcmDataset *ds = ff.getDataset();
    builder b(ds);
    const char *date = info->study_date ? info->study_date : "";
    const char *time = info->study_time ? info->study_time : "";
    char spacing[64];
    std::snprintf(spacing, sizeof spacing, "%.6g\\%.6g", info->pixel_spacing, info->pixel_spacing);

    // SOP common and patient.
    b.str(DCM_SpecificCharacterSet, "ISO_IR 192");
    const bool derived = info->derivation_description && info->derivation_description[0];
    b.str(DCM_ImageType, derived ? "DERIVED\\PRIMARY" : "ORIGINAL\\PRIMARY");
    b.opt(DCM_InstanceCreationDate, date);
    b.opt(DCM_InstanceCreationTime, time);
    b.str(DCM_SOPClassUID,
          dx ? UID_DigitalXRayImageStorageForPresentation : UID_ComputedRadiographyImageStorage);
    b.str(DCM_SOPInstanceUID, info->sop_instance_uid);
    // General study.
    b.str(DCM_StudyDate, date);
    b.str(DCM_SeriesDate, date);
    b.str(DCM_ContentDate, date);
    b.str(DCM_StudyTime, time);
    b.str(DCM_SeriesTime, time);
    b.str(DCM_ContentTime, time);
    b.str(DCM_AccessionNumber, info->accession_number);
    b.str(DCM_Modality, dx ? "DX" : "CR");
    if (dx)
        b.str(DCM_PresentationIntentType, "FOR PRESENTATION");
    b.str(DCM_Manufacturer, "radraft samples");
    b.str(DCM_ReferringPhysicianName, info->referring_physician);
    b.opt(DCM_StudyDescription, info->study_description);
    b.opt(DCM_SeriesDescription, info->series_description);
    b.str(DCM_ManufacturerModelName, "radraft");
    if (dx) {
        DcmItem *region = b.seq_item(DCM_AnatomicRegionSequence);
        put_code(b, region, "43799004", "SCT", "Chest");
    }
    b.str(DCM_PatientName, info->patient_name);
    b.str(DCM_PatientID, info->patient_id);
    b.str(DCM_PatientBirthDate, info->patient_birth_date);
    b.str(DCM_PatientSex, info->patient_sex);
    // Acquisition.
    b.str(DCM_BodyPartExamined, "CHEST");
    b.str(DCM_KVP, "120");
    b.str(DCM_ViewPosition, info->view_position);
    if (dx) {
        const view_code *vc = view_code_find(info->view_position);
        if (vc) {
            DcmItem *view = b.seq_item(DCM_ViewCodeSequence);
            put_code(b, view, vc->value, "SCT", vc->meaning);
        }
        b.str(DCM_PositionerType, "COLUMN");
        b.str(DCM_DetectorType, "SCINTILLATOR");
        b.str(DCM_DetectorConfiguration, "AREA");
    }
    b.str(DCM_ImagerPixelSpacing, spacing);
    // Identification in the study.
    b.str(DCM_StudyInstanceUID, info->study_uid);
    b.str(DCM_SeriesInstanceUID, info->series_uid);
    b.str(DCM_StudyID, info->study_id);
    b.integer(DCM_SeriesNumber, info->series_number);
    b.integer(DCM_InstanceNumber, info->instance_number);
    b.str(DCM_PatientOrientation, info->patient_orientation);
    if (dx)
        b.str(DCM_ImageLaterality, "U");
    b.opt(DCM_ImageComments, info->image_comments);
    b.opt(DCM_DerivationDescription, info->derivation_description);
    // Image pixel.
    b.u16(DCM_SamplesPerPixel, 1);
    b.str(DCM_PhotometricInterpretation, info->monochrome1 ? "MONOCHROME1" : "MONOCHROME2");
    b.u16(DCM_Rows, (Uint16)img->height);
    b.u16(DCM_Columns, (Uint16)img->width);
    b.str(DCM_PixelSpacing, spacing);
    b.u16(DCM_BitsAllocated, 16);
    b.u16(DCM_BitsStored, (Uint16)info->bits_stored);
    b.u16(DCM_HighBit, (Uint16)(info->bits_stored - 1));
    b.u16(DCM_PixelRepresentation, 0);
    b.str(DCM_BurnedInAnnotation, "NO");
    if (dx) {
        // Higher stored values mean less X-ray intensity in MONOCHROME2 (brighter is more
        // attenuation), more intensity in MONOCHROME1.
        b.str(DCM_PixelIntensityRelationship, "LOG");
        b.str(DCM_PixelIntensityRelationshipSign, info->monochrome1 ? "1" : "-1");
    }
    if (info->window_width > 0.0) {
        double center =
            info->monochrome1 ? (double)maxval - info->window_center : info->window_center;
        b.num(DCM_WindowCenter, center, 1);
        b.num(DCM_WindowWidth, info->window_width, 1);
    }
    b.str(DCM_RescaleIntercept, "0");
    b.str(DCM_RescaleSlope, "1");
    b.str(DCM_RescaleType, "US");
    b.str(DCM_LossyImageCompression, "00");
    if (dx) {
        b.empty_seq(DCM_AcquisitionContextSequence);
        b.str(DCM_PresentationLUTShape, info->monochrome1 ? "INVERSE" : "IDENTITY");
    }
    if (b.ok())
        b.check(ds->putAndInsertUint16Array(DCM_PixelData, pixels.data(), (unsigned long)n),
                DCM_PixelData);
    if (!b.ok())
        return rd_error_set(err, RD_E_DICOM, "%s: %s", path, b.msg().c_str());

    // Compression: DCMTK keeps the uncompressed representation too; the file is written
    // in the chosen one only.
    OFCondition c = EC_Normal;
    if (syn->syntax == RD_DICOM_SYNTAX_JPEG_LOSSLESS) {
        DJ_RPLossless rp(1, 0);
        c = ds->chooseRepresentation(syn->xfer, &rp);
    } else if (syn->syntax == RD_DICOM_SYNTAX_JPEG_LS) {
        DJLSRepresentationParameter rp(0, OFTrue);
        c = ds->chooseRepresentation(syn->xfer, &rp);
    } else if (syn->syntax == RD_DICOM_SYNTAX_RLE) {
        DcmRLERepresentationParameter rp;
        c = ds->chooseRepresentation(syn->xfer, &rp);
    }
    if (c.bad())
        return rd_error_set(err, RD_E_DICOM, "%s: cannot encode as %s: %s", path, syn->short_name,
                            c.text());
    if (!ds->canWriteXfer(syn->xfer))
        return rd_error_set(err, RD_E_DICOM, "%s: the dataset cannot be written as %s", path,
                            syn->short_name);

    char tmp_name[4096];
    if (!rd_temp_name(tmp_name, sizeof tmp_name, path))
        return rd_error_set(err, RD_E_INVALID, "%s: path too long", path);
    std::string tmp = tmp_name;
    c = ff.saveFile(tmp.c_str(), syn->xfer, EET_ExplicitLength, EGL_recalcGL, EPD_noChange);
    if (c.bad()) {
        std::remove(tmp.c_str());
        return rd_error_set(err, RD_E_IO, "%s: %s", tmp.c_str(), c.text());
    }
    if (std::rename(tmp.c_str(), path) != 0) {
        int e = errno;
        std::remove(tmp.c_str());
        return rd_error_set(err, RD_E_IO, "%s: %s", path, std::strerror(e));
    }
    return RD_OK;
}
