/* radraft — synthetic chest radiographs and the sample studies built from them.
 *
 * rd_sample_render() draws a plausible (not anatomically exact) chest X-ray from a few
 * parameters: body outline, lungs, mediastinum and heart (its size set by the
 * cardiothoracic ratio), hemidiaphragms and costophrenic angles, ribs, clavicles, spine,
 * vessels, and optionally a pleural effusion or a nodule, with noise and a mild blur. The
 * picture is a function of the parameters and the seed only, so it can be regenerated
 * bit for bit. The model works in millimetres on a 430 mm tall detector: it sums the
 * attenuation along each ray through simple solids (elliptic cylinders, tubes, spheres)
 * and maps it to brightness as a processed radiograph would show it.
 *
 * rd_samples_*() describe and write the project's sample studies (a few patients, PA and
 * lateral, CR and DX, several transfer syntaxes) with rd_dicom_write_xray().
 */
#ifndef RADRAFT_SAMPLES_H
#define RADRAFT_SAMPLES_H

#include <stddef.h>
#include <stdint.h>

#include "radraft/dicom_write.h"
#include "radraft/error.h"
#include "radraft/image.h"
#include "radraft/limits.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rd_sample_view {
    RD_SAMPLE_VIEW_PA,     /* frontal, posteroanterior */
    RD_SAMPLE_VIEW_AP,     /* frontal, anteroposterior (heart a little larger, magnified) */
    RD_SAMPLE_VIEW_LATERAL /* left lateral, anterior to the image's left */
} rd_sample_view;

/* The patient's side (the image shows the patient's right on the image's left in frontal
 * views). */
typedef enum rd_sample_side {
    RD_SAMPLE_SIDE_NONE,
    RD_SAMPLE_SIDE_RIGHT,
    RD_SAMPLE_SIDE_LEFT
} rd_sample_side;

#define RD_SAMPLE_MIN_ROWS 64
#define RD_SAMPLE_MAX_ROWS 4096

typedef struct rd_sample_params {
    uint64_t seed; /* the patient: anatomy varies slightly with it; noise too */
    rd_sample_view view;
    int rows;                /* image height in pixels, RD_SAMPLE_MIN_ROWS..MAX_ROWS */
    double ctr;              /* cardiothoracic ratio, 0.30..0.75 (0.45 normal) */
    rd_sample_side effusion; /* side of a pleural effusion, or NONE */
    double effusion_mm;      /* height of its meniscus above the costophrenic angle */
    rd_sample_side nodule;   /* side of an upper-lobe nodule, or NONE */
    double nodule_mm;        /* its diameter */
    double noise;            /* noise scale: 1 is a typical radiograph, 0 none */
} rd_sample_params;

/* A normal PA study at 1024 rows: seed 1, ratio 0.45, no effusion, no nodule, noise 1. */
void rd_sample_params_default(rd_sample_params *p);

/* The width of the image (portrait, about 0.86 x rows) and the pixel spacing in mm for
 * `rows` rows. */
int rd_sample_columns(int rows);
double rd_sample_pixel_spacing(int rows);

/* Renders the radiograph described by `p` into a new image (values in [0, 1], higher is
 * brighter as the radiograph is read), owned by the caller on success.
 * Errors: RD_E_INVALID (a parameter out of range), RD_E_NOMEM. */
rd_status rd_sample_render(const rd_sample_params *p, rd_image **out, rd_error *err);

/* A "2.25." UID (at most 64 characters) derived from a 128-bit hash of `key`, so that the
 * same key always gives the same UID. `out` must hold at least 65 bytes. */
void rd_samples_uid(const char *key, char out[RD_UID_SIZE]);

/* One instance of the sample studies. */
typedef struct rd_sample_case {
    const char *patient_id;
    const char *patient_name; /* UTF-8, DICOM PN */
    const char *birth_date;
    const char *sex;
    const char *finding;   /* "normal", "cardiomegaly", "left effusion", ... */
    const char *file_name; /* "pa.dcm", "lateral.dcm" */
    const char *study_date;
    const char *study_time;
    const char *accession_number;
    rd_sample_params params; /* seed and rows are set from the options at write time */
    rd_dicom_xray_class sop_class;
    int monochrome1;
    rd_dicom_syntax syntax;
} rd_sample_case;

/* The number of sample instances and the i-th one (NULL when i is out of range). */
size_t rd_samples_count(void);
const rd_sample_case *rd_samples_case(size_t i);

typedef struct rd_samples_options {
    uint64_t seed;    /* 1 by default; mixed into every patient's seed and every UID */
    int rows;         /* 1024 by default */
    int force_syntax; /* -1 (the case's own), or an rd_dicom_syntax for every file */
} rd_samples_options;

void rd_samples_options_default(rd_samples_options *opts);

/* Renders case `i` and writes it to `path` (the folder must exist).
 * Errors: those of rd_sample_render and rd_dicom_write_xray; RD_E_INVALID for a bad i. */
rd_status rd_samples_write_case(size_t i, const rd_samples_options *opts, const char *path,
                                rd_error *err);

/* The relative path of case `i` under the output folder ("RDS0001/pa.dcm"). */
rd_status rd_samples_case_path(size_t i, char *buf, size_t size, rd_error *err);

/* A frontal chest radiograph taken from a grayscale PNG (8 or 16 bits, no alpha, at most
 * RD_SAMPLE_MAX_ROWS on a side) and written as a sample instance with made-up patient
 * data: the real studies of the demo (NIH images, samples/README.md). Strings are UTF-8
 * and borrowed for the call. */
typedef struct rd_sample_png {
    const char *patient_id;       /* required, 1..64 characters */
    const char *patient_name;     /* DICOM PN ("Demo^Cardiomegaly"), at most 64 characters */
    const char *birth_date;       /* YYYYMMDD or NULL */
    const char *sex;              /* M, F, O or NULL */
    const char *study_date;       /* YYYYMMDD, required */
    const char *study_time;       /* HHMMSS, required */
    const char *accession_number; /* at most 16 characters, or NULL */
    rd_sample_view view;          /* PA or AP (a lateral is refused) */
    rd_dicom_xray_class sop_class;
    rd_dicom_syntax syntax;
    double pixel_spacing;       /* mm at the detector; 0: a 430 mm tall detector */
    const char *image_comments; /* where the image came from; NULL for a default */
} rd_sample_png;

/* DX, PA, explicit little endian, the nominal spacing, study 20240101 120000, the rest
 * NULL. */
void rd_sample_png_default(rd_sample_png *s);

/* Reads `png_path` and writes it to `path` as a CR or DX For Presentation instance with
 * the attributes of `s`: bits stored as in the PNG (8 or 16), MONOCHROME2, the full-range
 * window, Image Type DERIVED\PRIMARY, Body Part CHEST, View Position and Patient
 * Orientation L\F. Every stored value is the PNG's sample, so reading the file back gives
 * the PNG's pixels. The UIDs are "2.25." UIDs derived from the patient, the accession
 * number, the view and a hash of the pixels, so that the same PNG and attributes always
 * write the same bytes and different pixels never share a SOP Instance UID.
 * Errors: RD_E_INVALID (a missing or malformed attribute, a lateral view), RD_E_UNSUPPORTED
 * (a colour, palette, alpha or sub-8-bit PNG), RD_E_TOO_LARGE (a side over
 * RD_SAMPLE_MAX_ROWS), those of rd_png_read and rd_dicom_write_xray. */
rd_status rd_samples_write_png(const char *png_path, const rd_sample_png *s, const char *path,
                               rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
