/* radraft — DICOMweb for `radraft batch --from-dicomweb` (src/pipeline/dicomweb.c): the study
 * list by QIDO-RS and a study's instances by WADO-RS, with the types of radraft/qr.h so that
 * the batch source treats a DICOMweb server as it treats a PACS. What the server answers is
 * checked as the C-FIND and C-GET answers are: matches without a valid Study Instance UID or
 * outside the query are left out, and only instances of the study asked for, read by the
 * bounded loader, are kept. */
#ifndef RADRAFT_DICOMWEB_H
#define RADRAFT_DICOMWEB_H

#include <stddef.h>

#include "radraft/error.h"
#include "radraft/http.h"
#include "radraft/qr.h"

#ifdef __cplusplus
extern "C" {
#endif

/* QIDO-RS GET {base}/studies with the query (Study Date range, one modality matched by the
 * server and a list checked here, Study Description, limit max_matches + 1), Accept
 * application/dicom+json. Errors: RD_E_NET (no reply, HTTP 5xx or 429: worth another try),
 * RD_E_DICOM (another status, a reply that is not a JSON array), RD_E_TOO_LARGE (more than
 * q->max_matches), and the callback's. `stats` may be NULL. */
rd_status
rd_dicomweb_find_studies(const char *base, const rd_http_options *http, const rd_qr_query *q,
                         rd_status (*on_match)(void *ctx, const rd_qr_study *s, rd_error *err),
                         void *ctx, rd_qr_find_stats *stats, rd_error *err);

/* WADO-RS GET {base}/studies/{study_uid} as multipart/related application/dicom (any
 * transfer syntax), the reply written to `dir` as it arrives (at most `max_bytes`), then one
 * file per part ("w<n>.dcm"), each checked (rd_qr_check_instance). Errors: as
 * rd_dicomweb_find_studies, RD_E_TOO_LARGE (a reply over max_bytes), RD_E_CORRUPT (a broken
 * multipart body), RD_E_NOT_FOUND (no instance kept). */
rd_status rd_dicomweb_get_study(const char *base, const rd_http_options *http,
                                const char *study_uid, const char *dir, size_t max_bytes,
                                rd_qr_retrieve_stats *stats, rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
