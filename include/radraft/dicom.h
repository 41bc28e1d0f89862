/* radraft — reading DICOM instances (implemented in pacs/ over DCMTK and OpenJPEG).
 *
 * rd_dicom_read_meta() reads the attributes radraft uses; rd_dicom_read_image() also decodes
 * the pixels into an rd_image in [0, 1] where higher is brighter as a radiologist sees it
 * (modality LUT / rescale, VOI window or LUT or a percentile fallback, MONOCHROME1
 * inverted, pixel padding ignored). Every failure is a status with a message naming the
 * file and the reason; nothing here aborts on bad input.
 */
#ifndef RADRAFT_DICOM_H
#define RADRAFT_DICOM_H

#include "radraft/error.h"
#include "radraft/image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Attribute values as UTF-8 text (person names decoded from the Specific Character Set),
 * "" when absent. Fixed-size fields: a value longer than its field is cut at a UTF-8
 * character boundary. */
typedef struct rd_dicom_meta {
    char patient_id[72];
    char patient_name[256];
    char patient_birth_date[16];
    char patient_sex[16];
    char study_uid[72];
    char series_uid[72];
    char sop_instance_uid[72];
    char sop_class_uid[72];
    char sop_class_name[96]; /* DCMTK's name of the SOP class, "" when unknown */
    char accession_number[32];
    char study_date[16];
    char study_time[32];
    char study_description[128];
    char series_description[128];
    char modality[32];
    char view_position[32];
    char laterality[16];  /* Image Laterality, else Laterality */
    char body_part[72];   /* Body Part Examined */
    char image_type[128]; /* backslash-separated, as stored */
    char photometric[32]; /* Photometric Interpretation */
    char manufacturer[72];
    char transfer_syntax_uid[72];
    char transfer_syntax_name[96];
    char specific_charset[96];
    /* Patient Orientation (0020,0020): the patient directions of the rows and columns,
     * backslash-separated as stored ("L\\F": column index toward the patient's left, row
     * index toward the feet, the standard display of a frontal chest radiograph) */
    char patient_orientation[32];
    int series_number;
    int instance_number;
    int rows;
    int columns;
    int bits_allocated;
    int bits_stored;
    int samples_per_pixel;
    int number_of_frames; /* 1 when absent */
    int has_pixel_data;
    double pixel_spacing[2]; /* row, column spacing in mm (Pixel Spacing, else Imager Pixel
                              * Spacing); 0 when absent */
} rd_dicom_meta;

typedef struct rd_dicom_options {
    int max_dimension;         /* Rows or Columns above this are refused (RD_E_TOO_LARGE) */
    double voi_percentile_low; /* percentile fallback window when no VOI is stored */
    double voi_percentile_high;
} rd_dicom_options;

/* Fills `opts` with the defaults (16384, 0.5, 99.5). */
void rd_dicom_options_default(rd_dicom_options *opts);

struct rd_config;
/* Fills `opts` from the configuration keys dicom.max_dimension and
 * dicom.voi_percentile_low/high. */
void rd_dicom_options_from_config(rd_dicom_options *opts, const struct rd_config *cfg);

/* Reads the metadata of a DICOM file (Part 10, or a raw dataset without file meta header).
 * Errors: RD_E_NOT_FOUND, RD_E_IO, RD_E_DICOM (not DICOM / unparsable). */
rd_status rd_dicom_read_meta(const char *path, rd_dicom_meta *meta, rd_error *err);

/* Reads the metadata and decodes the first frame into a new image owned by the caller
 * (*out, free with rd_image_free). `opts` may be NULL for the defaults; `meta` may be NULL.
 * Multi-frame: the first frame, with a warning in the log. Colour: luminance.
 * Errors: RD_E_NOT_IMAGE (no pixel data, SR and other non-image objects), RD_E_UNSUPPORTED
 * (bits stored > 16, an unknown codec), RD_E_TOO_LARGE (dimensions over the cap),
 * RD_E_CORRUPT (truncated or inconsistent pixel data), and the errors of rd_dicom_read_meta. */
rd_status rd_dicom_read_image(const char *path, const rd_dicom_options *opts, rd_image **out,
                              rd_dicom_meta *meta, rd_error *err);

/* 1 if the file starts like DICOM (a Part 10 preamble "DICM", or a plausible raw dataset). */
int rd_dicom_probe(const char *path);

#ifdef __cplusplus
}
#endif
#endif
