/* radraft — query/retrieve from a PACS (implemented in pacs/qr.cc over DCMTK's DcmSCU):
 * C-FIND of studies, and C-GET or C-MOVE of one study. What `radraft batch --from-pacs`
 * uses (src/pipeline/qr.c).
 *
 * Every association is opened as rd_net_send_files opens one (calling AE, timeouts, DICOM
 * TLS from the sender options) and uses the Study Root information model. What the PACS
 * answers is checked, not trusted: a match without a valid Study Instance UID is counted
 * and skipped, a match outside the date range or without a modality asked for is dropped
 * (a PACS may ignore a matching key), and a C-GET names each file it writes itself (never
 * after a UID the peer sent) and keeps only instances of the study asked for.
 */
#ifndef RADRAFT_QR_H
#define RADRAFT_QR_H

#include "radraft/error.h"
#include "radraft/limits.h"
#include "radraft/net.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A study query. Dates are "YYYYMMDD" (NULL or "": open). */
typedef struct rd_qr_query {
    const char *date_from, *date_to;
    const char *modalities;  /* Modalities in Study, e.g. "CR\\DX"; NULL or "": any */
    const char *description; /* Study Description with * and ? wildcards; NULL or "": any */
    long max_matches;        /* more than this: the query is cancelled, RD_E_TOO_LARGE */
} rd_qr_query;

/* One study found (strings as the PACS sent them, control characters replaced by '?'). */
typedef struct rd_qr_study {
    char study_uid[RD_UID_SIZE];
    char study_date[9]; /* "" when absent or malformed */
    char modalities[68];
    char description[132];
    char accession[36];
    int n_instances; /* Number of Study Related Instances, -1 when not given */
} rd_qr_study;

typedef struct rd_qr_find_stats {
    long matches;  /* passed to the callback */
    long invalid;  /* answers without a valid Study Instance UID */
    long filtered; /* valid answers outside the query (date, modality) */
} rd_qr_find_stats;

/* C-FIND at STUDY level: `on_match` for each study that matches `q`; a callback error ends
 * the query (cancelled) and is returned. Errors: RD_E_NET (no association, a C-FIND that
 * failed or a failure status, with the status), RD_E_TOO_LARGE (more than q->max_matches:
 * ask for a shorter date range), RD_E_INVALID. `stats` may be NULL. */
rd_status rd_qr_find_studies(const rd_net_peer *peer, const rd_net_scu_options *opts,
                             const rd_qr_query *q,
                             rd_status (*on_match)(void *ctx, const rd_qr_study *s, rd_error *err),
                             void *ctx, rd_qr_find_stats *stats, rd_error *err);

typedef struct rd_qr_retrieve_stats {
    int completed, failed, warning; /* the PACS's final sub-operation counts (-1: not given) */
    int received;                   /* C-GET: instances written */
    int refused;                    /* C-GET: instances refused (another study, invalid UIDs,
                                     * unreadable) */
} rd_qr_retrieve_stats;

/* C-GET of study `study_uid` into folder `dir` (which must exist): each instance of the
 * study (CR, DX, secondary capture and SR storage classes are negotiated) as its own file
 * "i<n>.dcm", written as received. RD_OK when the PACS ended with success or a warning and
 * at least one instance was kept. Errors: RD_E_NET (no association, a session that broke
 * off, 0xA7xx), RD_E_DICOM (another failure status), RD_E_NOT_FOUND (nothing of the study
 * arrived), RD_E_INVALID. `stats` may be NULL. */
rd_status rd_qr_get_study(const rd_net_peer *peer, const rd_net_scu_options *opts,
                          const char *study_uid, const char *dir, rd_qr_retrieve_stats *stats,
                          rd_error *err);

/* Checks a retrieved file: a DICOM file radraft's bounded loader reads (at most
 * RD_DICOM_MAX_FILE_BYTES), of study `study_uid`, with valid series and SOP Instance UIDs.
 * Errors: RD_E_NOT_FOUND, RD_E_TOO_LARGE, RD_E_DICOM / RD_E_CORRUPT (unreadable),
 * RD_E_INVALID (another study, invalid UIDs). */
rd_status rd_qr_check_instance(const char *path, const char *study_uid, rd_error *err);

/* C-MOVE of study `study_uid` to the AE `destination` (radraft's own listener, which the
 * PACS must know by that AE title). RD_OK when the PACS ended with success or a warning.
 * Errors: RD_E_CONFIG (0xA801: the PACS does not know `destination`), RD_E_NET (no
 * association, a session that broke off, "out of resources" 0xA7xx: worth another try),
 * RD_E_DICOM (another failure status, e.g. 0xC000, which some PACSs also answer for an
 * unknown destination: the message says to check it). C-GET's statuses mean the same. */
rd_status rd_qr_move_study(const rd_net_peer *peer, const rd_net_scu_options *opts,
                           const char *study_uid, const char *destination,
                           rd_qr_retrieve_stats *stats, rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
