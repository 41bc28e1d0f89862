/* radraft — writing projection X-ray images as DICOM instances (implemented in pacs/ over
 * DCMTK's dcmdata, dcmjpeg, dcmjpls and RLE codecs).
 *
 * rd_dicom_write_xray() turns a grayscale rd_image into a complete CR Image Storage or
 * Digital X-Ray Image Storage - For Presentation instance: patient, study, series,
 * equipment, image and SOP common modules, in one of four transfer syntaxes. It is what
 * `radraft samples` uses to write the synthetic studies; the same code can write test
 * fixtures. Every DCMTK condition becomes an rd_status with DCMTK's message.
 */
#ifndef RADRAFT_DICOM_WRITE_H
#define RADRAFT_DICOM_WRITE_H

#include "radraft/error.h"
#include "radraft/image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The transfer syntaxes the writer produces; all of them are lossless. */
typedef enum rd_dicom_syntax {
    RD_DICOM_SYNTAX_EXPLICIT_LE,   /* 1.2.840.10008.1.2.1 */
    RD_DICOM_SYNTAX_JPEG_LOSSLESS, /* 1.2.840.10008.1.2.4.70, process 14 selection value 1 */
    RD_DICOM_SYNTAX_JPEG_LS,       /* 1.2.840.10008.1.2.4.80, JPEG-LS lossless */
    RD_DICOM_SYNTAX_RLE,           /* 1.2.840.10008.1.2.5, RLE lossless */
    RD_DICOM_SYNTAX_COUNT
} rd_dicom_syntax;

/* The transfer syntax UID, its short name ("explicit-le", "jpeg-lossless", "jpeg-ls",
 * "rle") for command lines and listings, and the name DCMTK's dcmdump prints for it
 * (DCMTK's own table: "Little Endian Explicit", "RLE Lossless", ...).
 * All three return "" for a value outside the enum. */
const char *rd_dicom_syntax_uid(rd_dicom_syntax syntax);
const char *rd_dicom_syntax_short_name(rd_dicom_syntax syntax);
const char *rd_dicom_syntax_dcmtk_name(rd_dicom_syntax syntax);

/* Parses a short name; RD_E_INVALID (listing the valid names) when unknown. */
rd_status rd_dicom_syntax_parse(const char *name, rd_dicom_syntax *out, rd_error *err);

/* Which storage SOP class to write. */
typedef enum rd_dicom_xray_class {
    RD_DICOM_XRAY_CR, /* Computed Radiography Image Storage, modality CR */
    RD_DICOM_XRAY_DX  /* Digital X-Ray Image Storage - For Presentation, modality DX */
} rd_dicom_xray_class;

/* What goes into the instance besides the pixels. Strings are UTF-8 (the instance declares
 * Specific Character Set ISO_IR 192); NULL or "" leaves an optional attribute empty (type 2)
 * or absent (type 3). Strings are borrowed for the duration of the call only. */
typedef struct rd_dicom_xray_info {
    rd_dicom_xray_class sop_class;
    rd_dicom_syntax syntax;

    const char *patient_name; /* "Family^Given" */
    const char *patient_id;
    const char *patient_birth_date; /* YYYYMMDD */
    const char *patient_sex;        /* M, F or O */

    const char *study_uid;        /* required, <= 64 characters */
    const char *series_uid;       /* required */
    const char *sop_instance_uid; /* required */
    const char *study_date;       /* YYYYMMDD; also used as series/content date */
    const char *study_time;       /* HHMMSS; also used as series/content time */
    const char *accession_number;
    const char *referring_physician;
    const char *study_id;
    const char *study_description;
    const char *series_description;
    int series_number;
    int instance_number;

    const char *view_position;       /* "PA", "AP", "LL", "RL" */
    const char *patient_orientation; /* row\column directions, e.g. "L\F" for a PA */
    const char *image_comments;      /* optional free text */
    /* NULL or "": Image Type ORIGINAL\PRIMARY. Otherwise the pixels were derived from
     * another image (resized, converted from a PNG): Image Type DERIVED\PRIMARY and this
     * text as the Derivation Description. */
    const char *derivation_description;

    int bits_stored;      /* 8..16; pixels are written 16-bit allocated, unsigned */
    int monochrome1;      /* 1: MONOCHROME1 (stored values inverted), 0: MONOCHROME2 */
    double pixel_spacing; /* mm, square pixels at the detector; > 0 */
    double window_center; /* in stored values as a MONOCHROME2 image would have them; a */
    double window_width;  /*  width <= 0 writes no window */
} rd_dicom_xray_info;

/* Fills `info` with neutral defaults: DX, explicit little endian, 12 bits stored,
 * MONOCHROME2, 0.4 mm spacing, the full-range window, series and instance number 1, and
 * NULL strings. */
void rd_dicom_xray_info_default(rd_dicom_xray_info *info);

/* Writes `img` (values in [0, 1], higher brighter, clamped; width x height >= 1) as the
 * instance described by `info` to `path`, through a temporary file renamed into place so
 * that a reader never sees half a file. Stored value = round(v * (2^bits_stored - 1)),
 * inverted for MONOCHROME1. The output is a pure function of the arguments (no clock, no
 * random UIDs), so the same call writes the same bytes.
 * Errors: RD_E_INVALID (missing UID, bad bits or spacing, a UID over 64 characters),
 * RD_E_DICOM (an encoder or DCMTK failure, with its message), RD_E_IO. */
rd_status rd_dicom_write_xray(const char *path, const rd_image *img, const rd_dicom_xray_info *info,
                              rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
