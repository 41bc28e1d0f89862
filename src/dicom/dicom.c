/* radraft — reading DICOM instances: the public API over the DCMTK shim (pacs/dicom.cc)
 * and the pixel pipeline (dicom_pixels.c). */
#include "radraft/dicom.h"

#include "radraft/config.h"

#include <stdio.h>
#include <string.h>

#include "dicom/dicom_int.h"
#include "dicom/dicom_pixels.h"
#include "radraft/log.h"

void rd_dicom_options_default(rd_dicom_options *opts)
{
    opts->max_dimension = 16384;
    opts->voi_percentile_low = 0.5;
    opts->voi_percentile_high = 99.5;
}

void rd_dicom_options_from_config(rd_dicom_options *opts, const rd_config *cfg)
{
    rd_dicom_options_default(opts);
    opts->max_dimension = cfg->dicom_max_dimension;
    opts->voi_percentile_low = cfg->dicom_voi_percentile_low;
    opts->voi_percentile_high = cfg->dicom_voi_percentile_high;
}

static rd_status check_options(const rd_dicom_options *opts, rd_error *err)
{
    if (opts->max_dimension < 1 || !(opts->voi_percentile_low >= 0) ||
        !(opts->voi_percentile_high <= 100) ||
        !(opts->voi_percentile_low < opts->voi_percentile_high))
        return rd_error_set(
            err, RD_E_INVALID, "invalid DICOM options (max_dimension %d, percentiles %g..%g)",
            opts->max_dimension, opts->voi_percentile_low, opts->voi_percentile_high);
    return RD_OK;
}

rd_status rd_dicom_read_meta(const char *path, rd_dicom_meta *meta, rd_error *err)
{
    rd_dicom_options opts;
    rd_status st;
    if (!path || !meta)
        return rd_error_set(err, RD_E_INVALID, "rd_dicom_read_meta: NULL argument");
    rd_dicom_options_default(&opts);
    st = rd__dicom_load(path, &opts, meta, NULL, err);
    if (st != RD_OK)
        return rd_error_prefix(err, st, "%s", path);
    return RD_OK;
}

rd_status rd_dicom_read_image(const char *path, const rd_dicom_options *opts, rd_image **out,
                              rd_dicom_meta *meta, rd_error *err)
{
    rd_dicom_options defaults;
    rd_dicom_meta local;
    rd_dicom_frame frame;
    rd_status st;

    if (!path || !out)
        return rd_error_set(err, RD_E_INVALID, "rd_dicom_read_image: NULL argument");
    if (!opts) {
        rd_dicom_options_default(&defaults);
        opts = &defaults;
    }
    st = check_options(opts, err);
    if (st != RD_OK)
        return st;
    if (!meta)
        meta = &local;
    st = rd__dicom_load(path, opts, meta, &frame, err);
    if (st != RD_OK)
        return rd_error_prefix(err, st, "%s", path);
    if (meta->number_of_frames > 1)
        rd_log_warn("%s: %d frames (SOP instance %s); only the first is decoded", path,
                    meta->number_of_frames, meta->sop_instance_uid);
    st = rd_dicom_pixels_to_image(&frame, opts, out, err);
    rd_dicom_frame_release(&frame);
    if (st != RD_OK)
        return rd_error_prefix(err, st, "%s", path);
    return RD_OK;
}

int rd_dicom_probe(const char *path)
{
    unsigned char b[132];
    size_t n;
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return 0;
    n = fread(b, 1, sizeof b, fp);
    fclose(fp);
    if (n == sizeof b && memcmp(b + 128, "DICM", 4) == 0)
        return 1;
    if (n < 8)
        return 0;
    /* The same test as the reader's: a low even group, then an explicit VR or a modest
     * 32-bit length (a dataset written without its file meta header). */
    {
        unsigned le = (unsigned)b[0] | ((unsigned)b[1] << 8);
        unsigned be = ((unsigned)b[0] << 8) | (unsigned)b[1];
        unsigned grp = le <= 0x0028 ? le : be;
        int vr = b[4] >= 'A' && b[4] <= 'Z' && b[5] >= 'A' && b[5] <= 'Z';
        unsigned long len = (unsigned long)b[4] | ((unsigned long)b[5] << 8) |
                            ((unsigned long)b[6] << 16) | ((unsigned long)b[7] << 24);
        if (grp < 0x0002 || grp > 0x0028 || (grp & 1))
            return 0;
        return vr || len < (1UL << 24);
    }
}
