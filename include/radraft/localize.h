/* radraft — where a finding is: a class activation map read in the patient's terms.
 *
 * A map (rd_encoder_embed_batch_cam: one per finding, height x width cells covering the
 * image as stored) says where the encoder found the evidence for a finding. This module
 * turns it into what a radiologist writes: the side (the patient's right, left, or both)
 * and the vertical zone (upper, middle, lower), plus the position of the map's maximum.
 * Which of these a sentence names, and in which words (apical, basal, retrocardiac), is the
 * templates' choice (rd_location_rule, read from models/report-templates.json).
 *
 * Radiographic convention. A frontal chest radiograph (PA or AP) is displayed as if the
 * viewer faced the patient: the patient's right is on the viewer's left, that is on the
 * side of image column 0, and the head is at the top (row 0). DICOM says how the stored
 * pixels lie in Patient Orientation (0020,0020): two values, the patient direction of
 * increasing column index and of increasing row index ("L\F" for the standard display: the
 * columns run toward the patient's left, the rows toward the feet). radraft reads it when
 * present: "R\F" is a mirrored image (column 0 is the patient's left), "L\H" upside down,
 * "F\L" or "H\R" transposed; an orientation along A/P (a lateral view) names no side. With
 * no Patient Orientation, a View Position marking a lateral view names no side, and
 * anything else (PA, AP, none: NIH's PNGs, most CR) is taken as the standard display.
 *
 * How a map is read (rd_localize_map). Only the map's hot region counts: the part above
 * half-way between its minimum and maximum (e(p) = max(0, map(p) - (min + max) / 2)), so
 * that a map's overall level, which says how likely the finding is and not where, does not
 * move the answer. The side is the patient half with more of e (a column on the midline
 * counts half to each side) when it holds more than 1 / RD_LOCALIZE_BILATERAL_RATIO times the
 * other's (twice: two thirds of the hot region), else both sides ("bilateral"). A map
 * whose evidence is spread over both halves does not say which side: a finding whose
 * sentences never name both sides (a nodule, a pneumothorax) then names no side, and its
 * plain sentence is written. The zone is the band of the e-weighted centroid
 * of the named side (of the whole map when bilateral), by fractions of the image height from
 * the top of a standard display: upper above RD_LOCALIZE_UPPER_END, lower below
 * RD_LOCALIZE_LOWER_START, middle between. These fractions come from the anatomy of a frontal
 * chest radiograph whole in its image (apices near 12 % of the height, costophrenic angles
 * near 78 %; the lung height split in thirds), not fitted to any data. Retrocardiac: the
 * patient's left, lower zone, the centroid within RD_LOCALIZE_MEDIAL of the image width
 * from the midline (behind the heart). A flat map (max == min) has no location.
 */
#ifndef RADRAFT_LOCALIZE_H
#define RADRAFT_LOCALIZE_H

#include "radraft/error.h"
#include "radraft/image.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_LOCALIZE_BILATERAL_RATIO 0.5
#define RD_LOCALIZE_UPPER_END 0.35
#define RD_LOCALIZE_LOWER_START 0.57
#define RD_LOCALIZE_MEDIAL 0.2
/* The largest map accepted (cells per side). */
#define RD_LOCALIZE_MAX_CELLS 4096

/* The patient's side, as a report names it. */
typedef enum rd_side {
    RD_SIDE_NONE = 0, /* not known (no map, a flat map, a lateral view) or not named */
    RD_SIDE_RIGHT,
    RD_SIDE_LEFT,
    RD_SIDE_BILATERAL,
    RD_SIDE_COUNT
} rd_side;

/* A zone of the chest. Upper, middle and lower are the bands rd_localize_map finds; apical,
 * basal and retrocardiac are the words some findings use for a band (rd_location_rule). */
typedef enum rd_zone {
    RD_ZONE_NONE = 0,
    RD_ZONE_UPPER,
    RD_ZONE_MIDDLE,
    RD_ZONE_LOWER,
    RD_ZONE_APICAL,
    RD_ZONE_BASAL,
    RD_ZONE_RETROCARDIAC,
    RD_ZONE_COUNT
} rd_zone;

/* "right", "left", "bilateral"; "" for RD_SIDE_NONE; NULL outside the enum. */
const char *rd_side_name(rd_side s);
/* "upper", "middle", "lower", "apical", "basal", "retrocardiac"; "" for RD_ZONE_NONE. */
const char *rd_zone_name(rd_zone z);
/* The names above; RD_E_INVALID when unknown. */
rd_status rd_side_from_name(const char *name, rd_side *out, rd_error *err);
rd_status rd_zone_from_name(const char *name, rd_zone *out, rd_error *err);

/* How the stored pixels lie relative to the patient. */
typedef struct rd_orientation {
    int known;        /* 0: the image cannot tell sides (a lateral view, an unreadable value) */
    int transpose;    /* the columns run head-feet and the rows left-right */
    int mirror;       /* after transposing: column 0 is the patient's left (standard: right) */
    int flip;         /* after transposing: row 0 is toward the feet (standard: the head) */
    const char *rule; /* static: how it was decided ("Patient Orientation L\F", ...) */
} rd_orientation;

/* The standard display of a frontal view: known, not transposed, mirrored or flipped. */
void rd_orientation_standard(rd_orientation *out);

/* From the Patient Orientation and View Position values as stored (either may be NULL or
 * empty), by the convention above. */
void rd_orientation_from_dicom(const char *patient_orientation, const char *view_position,
                               rd_orientation *out);

/* A point of the stored image (u, v: fractions of its width and height from the top left)
 * in the patient's frame: *left from 0 at the patient's right edge to 1 at the left edge,
 * *feet from 0 at the head end to 1 at the feet end. Meaningful only when o->known. */
void rd_orientation_to_patient(const rd_orientation *o, double u, double v, double *left,
                               double *feet);

/* Where a map puts its finding, in the patient's terms. The arrays are indexed by side:
 * RD_SIDE_RIGHT and RD_SIDE_LEFT for that half of the hot region, RD_SIDE_BILATERAL for the
 * whole of it. */
typedef struct rd_location {
    rd_side side; /* right, left or bilateral; NONE when the map says nothing */
    /* Shares of the hot region on the patient's right and left (sum 1; both 0 without a
     * side). */
    double right_share, left_share;
    /* The hot region's centroid in the patient's frame: 0 at the patient's right edge of
     * the image, 1 at the left edge; 0 at the head end, 1 at the feet end. */
    double centroid_left[RD_SIDE_COUNT], centroid_feet[RD_SIDE_COUNT];
    /* Its band: upper, middle or lower (NONE for a half with no hot region). */
    rd_zone band[RD_SIDE_COUNT];
    int retrocardiac; /* the left half's centroid is in the lower band and medial */
    /* The map's maximum: its cell (row, column as stored; the first one in row-major order
     * when several share it), and that cell's centre as fractions of the stored image's
     * width and height, which is where the maximum of the map upsampled bilinearly to the
     * image lies. Filled whatever the orientation. */
    int peak_row, peak_col;
    double peak_x, peak_y;
} rd_location;

/* Reads `map` (height x width floats, row-major, cells covering the stored image) as
 * above. A flat map, or an orientation that is not known, gives side NONE (the peak is
 * still filled). Errors: RD_E_INVALID (no map, a size outside 1..RD_LOCALIZE_MAX_CELLS, a
 * value that is not finite). */
rd_status rd_localize_map(const float *map, int height, int width, const rd_orientation *o,
                          rd_location *out, rd_error *err);

/* What a finding's sentences may name: whether both sides (else a bilateral map names no
 * side at all), and which zones (a bit per rd_zone: 1u << RD_ZONE_UPPER, ...).
 * A band the finding has no word for is not named: the upper band is called apical when
 * the finding lists apical, else upper when it lists upper; the lower band basal, else
 * lower; a retrocardiac location retrocardiac when listed, else as its band. */
typedef struct rd_location_rule {
    int sides;     /* 0: the finding names no side (and no zone); 1: it does */
    int bilateral; /* both sides may be named */
    unsigned zones;
} rd_location_rule;

/* The side and zone a sentence of a finding with `rule` names for `loc` (NONE, NONE when
 * it names nothing). */
void rd_location_name(const rd_location *loc, const rd_location_rule *rule, rd_side *side,
                      rd_zone *zone);

/* The heat map of `map` for an image of width x height pixels (1..RD_IMAGE_MAX_DIM): the
 * hot region as rd_localize_map reads it, scaled to [0, 1] (0 outside it, 1 at the peak cell)
 * and upsampled bilinearly (rd_image_resize, cell centres aligned) to the image, ready to
 * lay over it (as a gray PNG, or as the alpha of a colour). A flat map gives zeros. On
 * success *out is the caller's (rd_image_free). Errors as rd_localize_map, and those of
 * rd_image_create. */
rd_status rd_localize_heatmap(const float *map, int height, int width, int image_width,
                              int image_height, rd_image **out, rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
