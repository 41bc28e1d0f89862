/* radraft — study selection: which instances of a study are a chest radiograph, which one
 * is the frontal view, and the study's content version (what makes it the same study).
 *
 * Used by the check and frontal stages (pipeline.c) and by `radraft report`. It owns
 * nothing beyond the images it decodes while choosing. */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "pipeline/pipeline_int.h"
#include "radraft/image.h"
#include "radraft/index.h"
#include "radraft/log.h"
#include "radraft/pipeline.h"
#include "base/util.h"

/* ---- frontal image ---------------------------------------------------------------- */

int rd_pipeline_is_lateral(const rd_dicom_meta *m)
{
    return rd_view_family_from_position(m->view_position) == RD_VIEW_LATERAL;
}

/* Left-right symmetry of the body in an image. On a 128 x 128 copy, the band of rows from
 * 20% to 70% of the height (the chest) is cut to the body's columns (those brighter than
 * halfway between the darkest and brightest column means), and the correlation of that cut
 * with its mirror image is the answer. A frontal chest radiograph is close to
 * mirror-symmetric about the spine; a lateral is not (spine to one side, sternum to the
 * other), even though its body outline is. Returns -2 when the image cannot be decoded. */
static double symmetry(const char *path, const rd_dicom_options *opts, rd_image **decoded)
{
    enum { S = 128 };
    rd_image *img = NULL, *small = NULL;
    double r = -2, prof[S], lo = 1e30, hi = -1e30;
    const int y0 = S / 5, y1 = S * 7 / 10;
    *decoded = NULL;
    if (rd_dicom_read_image(path, opts, &img, NULL, NULL) != RD_OK ||
        rd_image_resize(img, S, S, &small, NULL) != RD_OK)
        goto out;
    for (int x = 0; x < S; x++) {
        prof[x] = 0;
        for (int y = y0; y < y1; y++)
            prof[x] += small->data[y * S + x];
        prof[x] /= y1 - y0;
        lo = prof[x] < lo ? prof[x] : lo;
        hi = prof[x] > hi ? prof[x] : hi;
    }
    int c0 = 0, c1 = S - 1;
    while (c0 < S - 1 && prof[c0] <= lo + 0.5 * (hi - lo))
        c0++;
    while (c1 > 0 && prof[c1] <= lo + 0.5 * (hi - lo))
        c1--;
    if (c1 - c0 < 8) {
        r = 0;
        goto out;
    }
    double sa = 0, sb = 0, sab = 0, saa = 0, sbb = 0, n = 0;
    for (int y = y0; y < y1; y++) {
        for (int x = c0; x <= c1; x++) {
            double a = small->data[y * S + x], b = small->data[y * S + (c0 + c1 - x)];
            sa += a;
            sb += b;
            sab += a * b;
            saa += a * a;
            sbb += b * b;
            n++;
        }
    }
    double cov = sab - sa * sb / n, va = saa - sa * sa / n, vb = sbb - sb * sb / n;
    r = va > 0 && vb > 0 ? cov / sqrt(va * vb) : 0;
out:
    rd_log_debug("%s: left-right symmetry %.3f", path, r);
    rd_image_free(small);
    if (r > -2)
        *decoded = img;
    else
        rd_image_free(img);
    return r;
}

int rd_pipeline_choose_frontal(const char *const *files, const rd_dicom_meta *metas, int n,
                               const rd_dicom_options *opts, rd_image **decoded, const char **rule)
{
    const char *why = "none found";
    rd_image *best_img = NULL;
    int best = -1;
    double best_s = -1.5;
    if (decoded)
        *decoded = NULL;
    for (int i = 0; i < n; i++)
        if (strcmp(metas[i].view_position, "PA") == 0) {
            if (rule)
                *rule = "view position PA";
            return i;
        }
    for (int i = 0; i < n; i++)
        if (strcmp(metas[i].view_position, "AP") == 0) {
            if (rule)
                *rule = "view position AP";
            return i;
        }
    /* Only the best image so far is kept, so that the decode stage need not read the
     * chosen one again. */
    for (int i = 0; i < n; i++) {
        rd_image *img;
        if (!metas[i].has_pixel_data || rd_pipeline_is_lateral(&metas[i]))
            continue;
        double s = symmetry(files[i], opts, &img);
        if (s > best_s) {
            best_s = s;
            best = i;
            rd_image_free(best_img);
            best_img = img;
        } else {
            rd_image_free(img);
        }
    }
    if (best >= 0)
        why = "most left-right symmetric image";
    if (rule)
        *rule = why;
    if (decoded)
        *decoded = best_img;
    else
        rd_image_free(best_img);
    return best;
}

/* ---- what a study is ---- */

int rd__study_chest_like(const char *body_part)
{
    static const char *const words[] = {"CHEST", "THORAX", "LUNG", "THORACIC"};
    char up[72];
    size_t i;
    if (!body_part[0])
        return 1; /* many chest radiographs do not say; the other checks still apply */
    for (i = 0; body_part[i] && i < sizeof up - 1; i++)
        up[i] = (char)toupper((unsigned char)body_part[i]);
    up[i] = '\0';
    for (i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strstr(up, words[i]))
            return 1;
    return 0;
}

int rd__study_radiograph_modality(const char *m)
{
    return strcmp(m, "CR") == 0 || strcmp(m, "DX") == 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

rd_status rd__study_content_version(const rd_dicom_meta *metas, int n, char out[RD_SHA256_HEX_SIZE],
                                    rd_error *err)
{
    const char **uids = calloc((size_t)n, sizeof *uids);
    char *buf = NULL;
    size_t len = 0, pos = 0;
    int m = 0, any_image = 0;
    for (int i = 0; i < n; i++)
        any_image |= metas[i].has_pixel_data;
    if (!uids)
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    for (int i = 0; i < n; i++)
        if (metas[i].has_pixel_data || !any_image) {
            uids[m++] = metas[i].sop_instance_uid;
            len += strlen(metas[i].sop_instance_uid) + 1;
        }
    qsort(uids, (size_t)m, sizeof *uids, cmp_str);
    buf = malloc(len + 1);
    if (!buf) {
        free(uids);
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < m; i++) {
        size_t l = strlen(uids[i]);
        memcpy(buf + pos, uids[i], l);
        pos += l;
        buf[pos++] = '\n';
    }
    rd_sha256_hex(buf, pos, out);
    free(buf);
    free(uids);
    return RD_OK;
}
