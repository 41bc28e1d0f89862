/* radraft — a class activation map read in the patient's terms (include/radraft/localize.h
 * has the convention and the rules). */
#include "radraft/localize.h"

#include <math.h>
#include <string.h>

static const char *const side_names[RD_SIDE_COUNT] = {"", "right", "left", "bilateral"};
static const char *const zone_names[RD_ZONE_COUNT] = {"",       "upper", "middle",      "lower",
                                                      "apical", "basal", "retrocardiac"};

const char *rd_side_name(rd_side s)
{
    return (unsigned)s < RD_SIDE_COUNT ? side_names[s] : NULL;
}

const char *rd_zone_name(rd_zone z)
{
    return (unsigned)z < RD_ZONE_COUNT ? zone_names[z] : NULL;
}

rd_status rd_side_from_name(const char *name, rd_side *out, rd_error *err)
{
    for (int i = 1; name && i < RD_SIDE_COUNT; i++)
        if (strcmp(name, side_names[i]) == 0) {
            *out = (rd_side)i;
            return RD_OK;
        }
    return rd_error_set(err, RD_E_INVALID, "unknown side '%.32s' (right, left, bilateral)",
                        name ? name : "");
}

rd_status rd_zone_from_name(const char *name, rd_zone *out, rd_error *err)
{
    for (int i = 1; name && i < RD_ZONE_COUNT; i++)
        if (strcmp(name, zone_names[i]) == 0) {
            *out = (rd_zone)i;
            return RD_OK;
        }
    return rd_error_set(err, RD_E_INVALID,
                        "unknown zone '%.32s' (upper, middle, lower, apical, basal, "
                        "retrocardiac)",
                        name ? name : "");
}

/* ---- orientation ---- */

void rd_orientation_standard(rd_orientation *out)
{
    memset(out, 0, sizeof *out);
    out->known = 1;
    out->rule = "standard display (patient's right at column 0, head at row 0)";
}

/* The main patient direction of one Patient Orientation value: its first letter (an
 * oblique "LP" is mostly L), or 0. */
static char main_direction(const char *v, size_t len)
{
    while (len > 0 && *v == ' ') {
        v++;
        len--;
    }
    if (len == 0)
        return 0;
    switch (*v) {
    case 'L':
    case 'R':
    case 'H':
    case 'F':
    case 'A':
    case 'P':
        return *v;
    default:
        return 0;
    }
}

static int is_lateral_view(const char *vp)
{
    static const char *const lateral[] = {"LL", "RL", "LATERAL", "LAT", NULL};
    for (int i = 0; vp && lateral[i]; i++)
        if (strcmp(vp, lateral[i]) == 0)
            return 1;
    return 0;
}

void rd_orientation_from_dicom(const char *po, const char *view_position, rd_orientation *out)
{
    const char *bs = po ? strchr(po, '\\') : NULL;
    rd_orientation_standard(out);
    if (!po || !po[strspn(po, " ")]) {
        if (is_lateral_view(view_position)) {
            out->known = 0;
            out->rule = "lateral view position: no side";
        } else {
            out->rule = "no Patient Orientation: standard display of a frontal view";
        }
        return;
    }
    char cols = main_direction(po, bs ? (size_t)(bs - po) : strlen(po));
    char rows = bs ? main_direction(bs + 1, strlen(bs + 1)) : 0;
    int cols_lr = cols == 'L' || cols == 'R', rows_lr = rows == 'L' || rows == 'R';
    int cols_hf = cols == 'H' || cols == 'F', rows_hf = rows == 'H' || rows == 'F';
    if (cols_lr && rows_hf) {
        out->mirror = cols == 'R';
        out->flip = rows == 'H';
        out->rule = out->mirror || out->flip ? "Patient Orientation: mirrored or flipped"
                                             : "Patient Orientation: standard display";
    } else if (cols_hf && rows_lr) {
        out->transpose = 1;
        out->mirror = rows == 'R';
        out->flip = cols == 'H';
        out->rule = "Patient Orientation: transposed";
    } else {
        out->known = 0;
        out->rule = "Patient Orientation without a left-right and a head-feet axis: no side";
    }
}

/* ---- reading a map ---- */

void rd_orientation_to_patient(const rd_orientation *o, double u, double v, double *left,
                               double *feet)
{
    double across = o->transpose ? v : u, down = o->transpose ? u : v;
    *left = o->mirror ? 1.0 - across : across;
    *feet = o->flip ? 1.0 - down : down;
}

/* The centre of cell (i, j) of an h x w map in the patient's frame. */
static void patient_frame(const rd_orientation *o, int i, int j, int h, int w, double *left,
                          double *feet)
{
    rd_orientation_to_patient(o, (j + 0.5) / w, (i + 0.5) / h, left, feet);
}

static rd_zone band_of(double feet)
{
    if (feet < RD_LOCALIZE_UPPER_END)
        return RD_ZONE_UPPER;
    if (feet >= RD_LOCALIZE_LOWER_START)
        return RD_ZONE_LOWER;
    return RD_ZONE_MIDDLE;
}

rd_status rd_localize_map(const float *map, int h, int w, const rd_orientation *o, rd_location *out,
                          rd_error *err)
{
    double lo = INFINITY, hi = -INFINITY, mid;
    double mass[RD_SIDE_COUNT] = {0}, sl[RD_SIDE_COUNT] = {0}, sf[RD_SIDE_COUNT] = {0};
    int best = 0;

    memset(out, 0, sizeof *out);
    if (!map || h < 1 || w < 1 || h > RD_LOCALIZE_MAX_CELLS || w > RD_LOCALIZE_MAX_CELLS)
        return rd_error_set(err, RD_E_INVALID, "no map of %d x %d cells to read", h, w);
    for (int p = 0; p < h * w; p++) {
        if (!isfinite(map[p]))
            return rd_error_set(err, RD_E_INVALID, "map cell %d is not a finite number", p);
        if (map[p] > map[best])
            best = p;
        lo = fmin(lo, map[p]);
        hi = fmax(hi, map[p]);
    }
    out->peak_row = best / w;
    out->peak_col = best % w;
    out->peak_x = (out->peak_col + 0.5) / w;
    out->peak_y = (out->peak_row + 0.5) / h;
    if (!o || !o->known || !(hi > lo))
        return RD_OK;
    mid = 0.5 * (lo + hi);
    for (int i = 0; i < h; i++)
        for (int j = 0; j < w; j++) {
            double e = map[i * w + j] - mid, left, feet;
            if (e <= 0)
                continue;
            patient_frame(o, i, j, h, w, &left, &feet);
            /* A cell on the midline counts half to each side. */
            double to_left = fabs(left - 0.5) < 1e-9 ? 0.5 : left > 0.5 ? 1.0 : 0.0;
            double part[RD_SIDE_COUNT] = {0, e * (1.0 - to_left), e * to_left, e};
            for (int s = RD_SIDE_RIGHT; s < RD_SIDE_COUNT; s++) {
                mass[s] += part[s];
                sl[s] += part[s] * left;
                sf[s] += part[s] * feet;
            }
        }
    if (!(mass[RD_SIDE_BILATERAL] > 0))
        return RD_OK;
    for (int s = RD_SIDE_RIGHT; s < RD_SIDE_COUNT; s++)
        if (mass[s] > 0) {
            out->centroid_left[s] = sl[s] / mass[s];
            out->centroid_feet[s] = sf[s] / mass[s];
            out->band[s] = band_of(out->centroid_feet[s]);
        }
    out->right_share = mass[RD_SIDE_RIGHT] / mass[RD_SIDE_BILATERAL];
    out->left_share = mass[RD_SIDE_LEFT] / mass[RD_SIDE_BILATERAL];
    {
        double small = fmin(mass[RD_SIDE_RIGHT], mass[RD_SIDE_LEFT]);
        double large = fmax(mass[RD_SIDE_RIGHT], mass[RD_SIDE_LEFT]);
        if (small >= RD_LOCALIZE_BILATERAL_RATIO * large)
            out->side = RD_SIDE_BILATERAL;
        else
            out->side = mass[RD_SIDE_RIGHT] > mass[RD_SIDE_LEFT] ? RD_SIDE_RIGHT : RD_SIDE_LEFT;
    }
    out->retrocardiac = out->band[RD_SIDE_LEFT] == RD_ZONE_LOWER &&
                        out->centroid_left[RD_SIDE_LEFT] - 0.5 < RD_LOCALIZE_MEDIAL;
    return RD_OK;
}

void rd_location_name(const rd_location *loc, const rd_location_rule *rule, rd_side *side,
                      rd_zone *zone)
{
    rd_side s = loc ? loc->side : RD_SIDE_NONE;
    rd_zone z = RD_ZONE_NONE;
    unsigned zs = rule ? rule->zones : 0;
    *side = RD_SIDE_NONE;
    *zone = RD_ZONE_NONE;
    if (!rule || !rule->sides || s == RD_SIDE_NONE || (unsigned)s >= RD_SIDE_COUNT)
        return;
    /* Evidence spread over both halves says nothing about the side of a finding that is on
     * one side only. */
    if (s == RD_SIDE_BILATERAL && !rule->bilateral)
        return;
    if (s == RD_SIDE_LEFT && loc->retrocardiac && (zs & (1u << RD_ZONE_RETROCARDIAC)))
        z = RD_ZONE_RETROCARDIAC;
    else if (loc->band[s] == RD_ZONE_UPPER)
        z = (zs & (1u << RD_ZONE_APICAL))  ? RD_ZONE_APICAL
            : (zs & (1u << RD_ZONE_UPPER)) ? RD_ZONE_UPPER
                                           : RD_ZONE_NONE;
    else if (loc->band[s] == RD_ZONE_LOWER)
        z = (zs & (1u << RD_ZONE_BASAL))   ? RD_ZONE_BASAL
            : (zs & (1u << RD_ZONE_LOWER)) ? RD_ZONE_LOWER
                                           : RD_ZONE_NONE;
    else if (loc->band[s] == RD_ZONE_MIDDLE && (zs & (1u << RD_ZONE_MIDDLE)))
        z = RD_ZONE_MIDDLE;
    *side = s;
    *zone = z;
}

rd_status rd_localize_heatmap(const float *map, int h, int w, int image_width, int image_height,
                              rd_image **out, rd_error *err)
{
    rd_location unused;
    rd_image *cells = NULL;
    double lo = INFINITY, hi = -INFINITY;
    rd_status st;
    *out = NULL;
    /* The same checks as reading the map. */
    if ((st = rd_localize_map(map, h, w, NULL, &unused, err)) != RD_OK)
        return st;
    if ((st = rd_image_create(&cells, w, h, err)) != RD_OK)
        return st;
    for (int p = 0; p < h * w; p++) {
        lo = fmin(lo, map[p]);
        hi = fmax(hi, map[p]);
    }
    if (hi > lo) {
        double mid = 0.5 * (lo + hi);
        for (int p = 0; p < h * w; p++)
            cells->data[p] = map[p] > mid ? (float)((map[p] - mid) / (hi - mid)) : 0.0f;
    }
    st = rd_image_resize(cells, image_width, image_height, out, err);
    rd_image_free(cells);
    if (st == RD_OK)
        rd_image_clamp(*out);
    return st;
}
