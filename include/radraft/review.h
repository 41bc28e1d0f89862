/* radraft — review: what happens to a draft once a radiologist has read it.
 *
 * Signing (src/review/sign.c) turns a draft SR into its verified version: the final texts
 * (the draft's, or the radiologist's edits), their coded findings as the labeler reads the
 * final text (so that the codes never disagree with the words), the verifier and the
 * predecessor reference. `radraft sign` and the review queue call the same function.
 *
 * Reported studies teach the archive (src/review/archive.c): a past study's image, embedded
 * by the current model, and its report's finding states become an archive entry that the
 * next similar study's retrieval finds. `radraft archive import` uses it; signing will.
 */
#ifndef RADRAFT_REVIEW_H
#define RADRAFT_REVIEW_H

#include <stddef.h>

#include "radraft/config.h"
#include "radraft/dicom.h"
#include "radraft/encoder.h"
#include "radraft/error.h"
#include "radraft/index.h"
#include "radraft/labeler.h"
#include "radraft/limits.h"
#include "radraft/sr.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a signature says. The strings are borrowed for the call. */
typedef struct rd_review_signature {
    const char *verifier_name;   /* DICOM PN, "Family^Given"; required */
    const char *organization;    /* required */
    const char *datetime;        /* DICOM DT of the verification; NULL or "": now */
    const char *findings_text;   /* NULL: the draft's */
    const char *impression_text; /* NULL: the draft's */
} rd_review_signature;

/* Signs the draft SR at `draft_path` into `out_path` (NULL: "<StudyInstanceUID>-signed-sr.dcm"
 * in `out_dir`, NULL: the current folder; the path written goes to `written`, of `size`
 * bytes, when not NULL). Edited texts are labeled with the labeler of `cfg`, and those
 * states become the signed SR's coded findings. *predecessor (may be NULL, 65 bytes) gets
 * the draft's SOP Instance UID. Errors: RD_E_INVALID (missing verifier or organization, a
 * draft whose Study Instance UID cannot name a file, an SR that is not a radraft draft or is
 * already verified), RD_E_NOT_FOUND, RD_E_DICOM, RD_E_IO, RD_E_CONFIG (the labeler). */
rd_status rd_review_sign_file(const rd_config *cfg, const char *draft_path,
                              const rd_review_signature *sig, const char *out_path,
                              const char *out_dir, char *written, size_t size,
                              char predecessor[RD_UID_SIZE], rd_sr_result *res, rd_error *err);

/* A reported study's image as an archive entry: decodes `image_path` (metadata `meta`,
 * with cfg's dicom.* options), embeds it with `enc` (its embedding only), and adds it to
 * `ix` and the store `s` keyed by its SOP Instance UID, with its patient (hashed with
 * archive.patient_salt), view, date, `source` and report. The states are `states` when not
 * NULL, else the labeler `lab` reads them in the texts. *added (may be NULL) is 0 when the
 * entry was already there. Errors: those of decoding (RD_E_DICOM, RD_E_IO ...), embedding,
 * labeling and the archive (RD_E_INVALID, RD_E_DB). */
rd_status rd_review_archive_add(rd_index *ix, rd_store *s, rd_encoder *enc, const rd_labeler *lab,
                                const rd_config *cfg, const char *image_path,
                                const rd_dicom_meta *meta, rd_archive_source source,
                                const rd_finding_state states[RD_FINDING_COUNT],
                                const char *findings_text, const char *impression_text, int *added,
                                rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
