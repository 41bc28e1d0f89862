/* radraft — reported studies into the similar-case archive.
 *
 * What a radiologist reported about a study is the best label radraft gets: its image is
 * embedded by the model in use and its states vote for the next similar study. This is the
 * one "decode, embed, add" path for DICOM studies with reports; it owns nothing past the
 * call (the index and the store stay the caller's). */
#include <stdlib.h>
#include <string.h>

#include "radraft/review.h"

rd_status rd_review_archive_add(rd_index *ix, rd_store *s, rd_encoder *enc, const rd_labeler *lab,
                                const rd_config *cfg, const char *image_path,
                                const rd_dicom_meta *meta, rd_archive_source source,
                                const rd_finding_state states[RD_FINDING_COUNT],
                                const char *findings_text, const char *impression_text, int *added,
                                rd_error *err)
{
    const rd_nn_info *info = rd_encoder_info(enc);
    rd_dicom_options dopts;
    rd_labels labels;
    rd_image *img = NULL;
    rd_index_entry e;
    char patient[RD_SHA256_HEX_SIZE];
    float *emb = NULL;
    int was_added = 0;
    rd_status st;

    if (info->embedding_dim < 1)
        return rd_error_set(err, RD_E_MODEL, "the model has no embedding");
    memset(&e, 0, sizeof e);
    if (states) {
        memcpy(e.state, states, sizeof e.state);
    } else {
        if ((st = rd_labeler_label(lab, findings_text, impression_text, &labels, err)) != RD_OK)
            return st;
        memcpy(e.state, labels.state, sizeof e.state);
    }
    if (!(emb = malloc((size_t)info->embedding_dim * sizeof *emb)))
        return rd_error_set(err, RD_E_NOMEM, "out of memory");
    rd_dicom_options_from_config(&dopts, cfg);
    if ((st = rd_dicom_read_image(image_path, &dopts, &img, NULL, err)) != RD_OK ||
        (st = rd_encoder_embed(enc, img, emb, NULL, err)) != RD_OK)
        goto out;
    e.key = meta->sop_instance_uid;
    e.study_uid = meta->study_uid;
    patient[0] = '\0';
    if (meta->patient_id[0])
        rd_index_patient_hash(cfg->archive_patient_salt, meta->patient_id, patient);
    e.patient_hash = patient;
    e.view = rd_view_family_from_position(meta->view_position);
    e.study_date = rd_index_parse_date(meta->study_date);
    e.source = source;
    e.findings_text = findings_text;
    e.impression_text = impression_text;
    st = rd_index_add(ix, s, &e, emb, NULL, &was_added, err);
    if (st == RD_OK && added)
        *added = was_added;
out:
    rd_image_free(img);
    free(emb);
    return st;
}
