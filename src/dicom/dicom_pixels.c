/* radraft — the numeric pipeline from DICOM samples to a display image (see dicom_pixels.h).
 *
 * Stored values have at most 16 bits, so every step from a stored value to the final
 * brightness is computed once per possible stored value into a table, and the pixels are
 * then mapped through it. That keeps the per-pixel work to a lookup and makes the
 * percentile window exact: it is taken from a histogram of stored values, each weighted by
 * its modality value, whatever the modality transform is.
 */
#include "dicom/dicom_pixels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

static int is_monochrome(const char *pm)
{
    return strcmp(pm, "MONOCHROME1") == 0 || strcmp(pm, "MONOCHROME2") == 0;
}

static inline uint32_t sample_at(const rd_dicom_frame *f, size_t i)
{
    switch (f->bits_allocated) {
    case 8:
        return ((const uint8_t *)f->data)[i];
    case 16:
        return ((const uint16_t *)f->data)[i];
    default:
        return ((const uint32_t *)f->data)[i];
    }
}

/* The stored value of a raw sample: the bits_stored bits ending at high_bit, sign-extended
 * when the pixel representation says so. Bits above them (overlays, garbage) are dropped. */
static inline long stored_value(uint32_t raw, int shift, uint32_t mask, int sign_bit)
{
    uint32_t v = (raw >> shift) & mask;
    if (sign_bit >= 0 && (v >> sign_bit) & 1u)
        return (long)v - (long)(mask + 1u);
    return (long)v;
}

static double lut_lookup(const rd_dicom_lut *lut, double x)
{
    double idx = floor(x + 0.5) - (double)lut->first;
    if (!(idx > 0))
        return lut->data[0];
    if (idx >= lut->n - 1)
        return lut->data[lut->n - 1];
    return lut->data[(int)idx];
}

static int lut_valid(const rd_dicom_lut *lut)
{
    return lut->present && lut->data && lut->n >= 1 && lut->n <= 65536 && lut->bits >= 1 &&
           lut->bits <= 16;
}

typedef struct entry {
    double value;
    size_t count;
} entry;

static int entry_cmp(const void *a, const void *b)
{
    double x = ((const entry *)a)->value, y = ((const entry *)b)->value;
    return (x > y) - (x < y);
}

/* The modality value at percentile p (0..100) of the non-padding pixels, from the histogram
 * of stored values. `ents` holds `n` (value, count) pairs sorted by value; `total` pixels. */
static double percentile(const entry *ents, size_t n, size_t total, double p)
{
    size_t rank = (size_t)floor(p / 100.0 * (double)(total - 1) + 1e-9), seen = 0;
    for (size_t i = 0; i < n; i++) {
        seen += ents[i].count;
        if (seen > rank)
            return ents[i].value;
    }
    return ents[n - 1].value;
}

/* The VOI step for one modality value: DICOM PS3.3 C.11.2.1.2 (window) or C.11.2.1.3
 * (LUT) or the percentile window [lo, hi], giving a value in [0, 1]. */
typedef struct voi {
    int mode; /* 0 window linear, 1 linear exact, 2 sigmoid, 3 LUT, 4 percentile */
    double c, w, lo, hi, lut_max;
    const rd_dicom_lut *lut;
} voi;

static double apply_voi(const voi *v, double x)
{
    double y;
    switch (v->mode) {
    case 0:
        if (x <= v->c - 0.5 - (v->w - 1) / 2)
            y = 0;
        else if (x > v->c - 0.5 + (v->w - 1) / 2)
            y = 1;
        else
            y = (x - (v->c - 0.5)) / (v->w - 1) + 0.5;
        break;
    case 1:
        y = (x - v->c) / v->w + 0.5;
        break;
    case 2:
        y = 1.0 / (1.0 + exp(-4.0 * (x - v->c) / v->w));
        break;
    case 3:
        y = lut_lookup(v->lut, x) / v->lut_max;
        break;
    default:
        if (v->hi > v->lo)
            y = (x - v->lo) / (v->hi - v->lo);
        else
            y = x > v->lo ? 1.0 : 0.0;
        break;
    }
    if (!(y > 0)) /* also maps NaN to black */
        return 0;
    return y > 1 ? 1 : y;
}

static rd_status mono_to_image(const rd_dicom_frame *f, const rd_dicom_options *opts, rd_image *img,
                               rd_error *err)
{
    const int bs = f->bits_stored;
    const int shift = f->high_bit + 1 - bs > 0 ? f->high_bit + 1 - bs : 0;
    const uint32_t mask = bs >= 32 ? 0xffffffffu : ((1u << bs) - 1u);
    const int sign_bit = f->pixel_representation == 1 ? bs - 1 : -1;
    const long vmin = sign_bit >= 0 ? -(long)(1u << (bs - 1)) : 0;
    const size_t nvals = (size_t)mask + 1u; /* bs <= 16, so at most 65536 */
    const size_t npix = (size_t)f->rows * (size_t)f->cols;
    size_t *hist = NULL, total = 0, nent = 0;
    double *modv = NULL;
    float *table = NULL;
    unsigned char *pad = NULL;
    entry *ents = NULL;
    double slope = 1, intercept = 0;
    int invert = strcmp(f->photometric, "MONOCHROME1") == 0;
    voi v;
    rd_status st = RD_OK;

    hist = calloc(nvals, sizeof *hist);
    modv = malloc(nvals * sizeof *modv);
    table = malloc(nvals * sizeof *table);
    pad = calloc(nvals, 1);
    if (!hist || !modv || !table || !pad) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory for the pixel tables");
        goto out;
    }
    if (f->has_rescale && isfinite(f->rescale_slope) && isfinite(f->rescale_intercept) &&
        f->rescale_slope != 0) {
        slope = f->rescale_slope;
        intercept = f->rescale_intercept;
    }
    for (size_t i = 0; i < nvals; i++) {
        long sv = vmin + (long)i;
        if (lut_valid(&f->modality_lut))
            modv[i] = lut_lookup(&f->modality_lut, (double)sv);
        else
            modv[i] = slope * (double)sv + intercept;
        if (f->has_padding) {
            long a = f->padding_value, b = f->has_padding_range ? f->padding_range_limit : a;
            long lo = a < b ? a : b, hi = a < b ? b : a;
            pad[i] = sv >= lo && sv <= hi;
        }
    }
    for (size_t i = 0; i < npix; i++) {
        long sv = stored_value(sample_at(f, i), shift, mask, sign_bit);
        size_t k = (size_t)(sv - vmin);
        if (!pad[k]) {
            hist[k]++;
            total++;
        }
    }

    /* VOI: a stored window when it is usable for its function (PS3.3 C.11.2.1.2 wants a
     * LINEAR width of at least 1), else a VOI LUT, else the percentile window. */
    memset(&v, 0, sizeof v);
    int win = f->has_window && isfinite(f->window_center) && isfinite(f->window_width);
    if (win && strcmp(f->voi_function, "SIGMOID") == 0 && f->window_width > 0)
        v.mode = 2;
    else if (win && strcmp(f->voi_function, "LINEAR_EXACT") == 0 && f->window_width > 0)
        v.mode = 1;
    else if (win && f->window_width >= 1)
        v.mode = 0; /* LINEAR, the default, also for a function radraft does not know */
    else if (lut_valid(&f->voi_lut)) {
        v.mode = 3;
        v.lut = &f->voi_lut;
        v.lut_max = (double)((1u << f->voi_lut.bits) - 1u);
    } else
        v.mode = 4;
    v.c = f->window_center;
    v.w = f->window_width;
    if (v.mode == 4 && total > 0) {
        ents = malloc(nvals * sizeof *ents);
        if (!ents) {
            st = rd_error_set(err, RD_E_NOMEM, "out of memory for the histogram");
            goto out;
        }
        for (size_t i = 0; i < nvals; i++)
            if (hist[i])
                ents[nent++] = (entry){modv[i], hist[i]};
        qsort(ents, nent, sizeof *ents, entry_cmp);
        v.lo = percentile(ents, nent, total, opts->voi_percentile_low);
        v.hi = percentile(ents, nent, total, opts->voi_percentile_high);
    }
    for (size_t i = 0; i < nvals; i++) {
        double y = apply_voi(&v, modv[i]);
        if (invert)
            y = 1.0 - y;
        table[i] = pad[i] ? 0.0f : (float)y;
    }
    for (size_t i = 0; i < npix; i++) {
        long sv = stored_value(sample_at(f, i), shift, mask, sign_bit);
        img->data[i] = table[sv - vmin];
    }
out:
    free(hist);
    free(modv);
    free(table);
    free(pad);
    free(ents);
    return st;
}

static rd_status color_to_image(const rd_dicom_frame *f, rd_image *img, rd_error *err)
{
    const int bs = f->bits_stored;
    const int shift = f->high_bit + 1 - bs > 0 ? f->high_bit + 1 - bs : 0;
    const uint32_t mask = (1u << bs) - 1u;
    const double maxv = (double)mask;
    const size_t npix = (size_t)f->rows * (size_t)f->cols;
    const char *pm = f->photometric;

    if ((strcmp(pm, "YBR_FULL_422") == 0 || strcmp(pm, "YBR_PARTIAL_422") == 0)) {
        /* Y0 Y1 Cb Cr for each pair of pixels along a row (PS3.5 8.2.3). */
        int partial = strcmp(pm, "YBR_PARTIAL_422") == 0;
        double scale = bs > 8 ? (double)(1u << (bs - 8)) : 1.0;
        if (f->cols % 2 != 0)
            return rd_error_set(err, RD_E_UNSUPPORTED, "%s with an odd number of columns (%d)", pm,
                                f->cols);
        for (size_t i = 0; i < npix; i++) {
            size_t pair = i / 2, k = pair * 4 + (i % 2);
            double y = (double)((sample_at(f, k) >> shift) & mask);
            y = partial ? (y - 16 * scale) / (219 * scale) : y / maxv;
            img->data[i] = (float)(y < 0 ? 0 : y > 1 ? 1 : y);
        }
        return RD_OK;
    }
    int luma_only = strncmp(pm, "YBR_FULL", 8) == 0 || strcmp(pm, "YBR_PARTIAL_420") == 0;
    int rgb = strcmp(pm, "RGB") == 0;
    if (!rgb && !luma_only)
        return rd_error_set(err, RD_E_UNSUPPORTED, "photometric interpretation '%s'", pm);
    for (size_t i = 0; i < npix; i++) {
        size_t i0, i1, i2;
        if (f->planar_configuration == 1) {
            i0 = i;
            i1 = npix + i;
            i2 = 2 * npix + i;
        } else {
            i0 = 3 * i;
            i1 = i0 + 1;
            i2 = i0 + 2;
        }
        double a = (double)((sample_at(f, i0) >> shift) & mask);
        double y;
        if (luma_only) {
            y = a / maxv;
        } else {
            double g = (double)((sample_at(f, i1) >> shift) & mask);
            double b = (double)((sample_at(f, i2) >> shift) & mask);
            y = (0.299 * a + 0.587 * g + 0.114 * b) / maxv;
        }
        img->data[i] = (float)(y < 0 ? 0 : y > 1 ? 1 : y);
    }
    return RD_OK;
}

rd_status rd_dicom_pixels_to_image(const rd_dicom_frame *f, const rd_dicom_options *opts,
                                   rd_image **out, rd_error *err)
{
    rd_dicom_options defaults;
    rd_image *img = NULL;
    size_t need;
    rd_status st;

    if (!f || !out)
        return rd_error_set(err, RD_E_INVALID, "rd_dicom_pixels_to_image: NULL argument");
    if (!opts) {
        rd_dicom_options_default(&defaults);
        opts = &defaults;
    }
    if (f->bits_stored < 1 || f->bits_stored > 16)
        return rd_error_set(err, RD_E_UNSUPPORTED, "bits stored %d outside 1..16", f->bits_stored);
    if (f->bits_stored > f->bits_allocated || f->high_bit < f->bits_stored - 1 ||
        f->high_bit >= f->bits_allocated)
        return rd_error_set(err, RD_E_CORRUPT,
                            "inconsistent bits: allocated %d, stored %d, high bit %d",
                            f->bits_allocated, f->bits_stored, f->high_bit);
    need = rd_dicom_frame_bytes(f);
    if (need == 0)
        return rd_error_set(err, RD_E_UNSUPPORTED,
                            "unsupported pixel layout: %dx%d, %d samples, %d bits allocated",
                            f->cols, f->rows, f->samples_per_pixel, f->bits_allocated);
    if (!f->data || f->size < need)
        return rd_error_set(err, RD_E_CORRUPT, "pixel data has %zu bytes, the frame needs %zu",
                            f->data ? f->size : 0, need);
    if (f->samples_per_pixel == 1 && !is_monochrome(f->photometric))
        return rd_error_set(err, RD_E_UNSUPPORTED,
                            "photometric interpretation '%s' with one sample per pixel",
                            f->photometric);
    if (f->samples_per_pixel == 3 && is_monochrome(f->photometric))
        return rd_error_set(err, RD_E_CORRUPT, "%s with three samples per pixel", f->photometric);
    st = rd_image_create(&img, f->cols, f->rows, err);
    if (st != RD_OK)
        return st;
    if (f->samples_per_pixel == 1)
        st = mono_to_image(f, opts, img, err);
    else
        st = color_to_image(f, img, err);
    if (st != RD_OK) {
        rd_image_free(img);
        return st;
    }
    *out = img;
    return RD_OK;
}
