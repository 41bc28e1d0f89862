/* radraft — batch: a pipeline job source over folders of DICOM files (`radraft batch`).
 *
 * The files found under the roots are grouped into studies by Study Instance UID; each
 * study is one job of the pipeline's pool (radraft/pipeline.h), run by the same stages and
 * the same retry policy as serve's. Outcomes are recorded as serve records them: a failed
 * study as a failed job with its message, so that a rerun retries it and an operator sees
 * why; a drafted or skipped study through its study version, so that a rerun skips it.
 */
#ifndef RADRAFT_BATCH_H
#define RADRAFT_BATCH_H

#include "radraft/error.h"
#include "radraft/http.h"
#include "radraft/net.h"
#include "radraft/pipeline.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Most DICOM files one batch run takes. */
#define RD_BATCH_MAX_FILES 10000000L
/* Distinct skip reasons counted one by one; further ones count with the last. */
#define RD_BATCH_MAX_REASONS 32

typedef struct rd_batch rd_batch;

/* An empty batch. On success *out is the caller's (rd_batch_free). */
rd_status rd_batch_create(rd_batch **out, rd_error *err);
/* Accepts NULL. The pool running its source must be stopped first. */
void rd_batch_free(rd_batch *b);

/* Adds a file, or the DICOM files under a folder (recursively; symbolic links below the
 * root are not followed; folders that cannot be read or lie more than 32 levels deep are
 * skipped, so that an archive is scanned as far as it can be). A root that does not exist
 * is warned about and skipped. Errors: RD_E_NOMEM, RD_E_TOO_LARGE (over
 * RD_BATCH_MAX_FILES). */
rd_status rd_batch_add_root(rd_batch *b, const char *root, rd_error *err);

/* Groups the files added into studies; call once, after the last rd_batch_add_root and
 * before the source is used. Errors: RD_E_NOMEM. */
rd_status rd_batch_group(rd_batch *b, rd_error *err);

/* The pool's source over the grouped studies: each study is claimed once, again after a
 * retry delay when the policy asks for one, and the source finishes when every study has
 * its final outcome. Valid while `b` lives. Its block is 1; the caller sets it
 * (radraft batch: pipeline.block). */
rd_pipeline_source rd_batch_source(rd_batch *b);

/* What a batch found and what became of its studies so far (a consistent copy; safe to call
 * while the pool runs). */
typedef struct rd_batch_stats {
    long instances, studies, not_dicom, unreadable;
    long finished, drafted, skipped, before, failed, imported;
    struct {
        char text[160];
        long count;
    } reasons[RD_BATCH_MAX_REASONS]; /* of the skipped studies */
    int n_reasons;
    /* Summed over the drafted studies, milliseconds. */
    double ms_read, ms_decode, ms_embed, ms_retrieve, ms_generate, ms_write, ms_record;
} rd_batch_stats;

void rd_batch_get_stats(rd_batch *b, rd_batch_stats *out);

/* Counts a finished study's outcome in `bs` (drafted with its times, skipped with its
 * reason, done before), as every batch source does. */
void rd_batch_stats_count(rd_batch_stats *bs, const rd_pipeline_result *res);

/* ---- batch --from-pacs / --from-dicomweb: the studies of a PACS as a job source
 * (src/pipeline/qr.c) ----
 *
 * The studies are found by C-FIND at STUDY level (radraft/qr.h), in pages of dates when a
 * start date is given (a page with too many matches is split), and recorded in the data
 * directory with their states (rd_store_qr_*), so that a rerun continues: pages asked in
 * full are not asked again (except the one that reaches today), drafted and skipped
 * studies are not retrieved again unless the PACS counts another number of instances.
 * Each claimed study is retrieved by C-GET, or by C-MOVE to radraft's own listener, into
 * its own folder under `work_dir`, drafted by the pool like a folder's study, and the
 * folder removed afterwards unless `keep`. A retrieval that fails follows the pipeline's
 * retry policy (the PACS busy or down: later, with backoff). */
typedef struct rd_qr_batch_options {
    rd_net_peer peer;
    rd_net_scu_options scu;
    const char *date_from, *date_to; /* YYYYMMDD; NULL: open */
    const char *modalities;          /* NULL: "CR\\DX" */
    const char *description;         /* Study Description pattern; NULL: any */
    long limit;                      /* most studies retrieved by this run; 0: all */
    int use_move;                    /* C-MOVE to move_destination instead of C-GET */
    const char *move_destination;    /* radraft's AE title, known to the PACS */
    const char *work_dir;            /* where retrieved studies are put (created) */
    int keep;                        /* leave the retrieved files */
    double studies_per_minute;       /* most retrievals started per minute; 0: no limit */
    int page_days;                   /* days per C-FIND page, >= 1 */
    long page_max_matches;           /* more in one page: split it (one day: an error) */
    /* DICOMweb instead of DICOM: the studies by QIDO-RS and WADO-RS at this base URL
     * (`peer` and the C-MOVE options unused), with `http` (its strings copied too) and at
     * most max_study_bytes per study's reply. NULL: DICOM query/retrieve. */
    const char *dicomweb_url;
    rd_http_options http;
    size_t max_study_bytes;
    /* Each study's own report (its SR) and frontal image go into the similar-case archive
     * (rd_pipeline_import_study) instead of a draft. */
    int import_reports;
} rd_qr_batch_options;

typedef struct rd_qr_batch rd_qr_batch;

/* `o` is copied (its strings too). */
rd_status rd_qr_batch_create(rd_qr_batch **out, const rd_qr_batch_options *o, rd_error *err);
void rd_qr_batch_free(rd_qr_batch *qb);

/* Queries the PACS page by page, recording every study found in `s`, then takes the
 * studies left to retrieve (queried or retrieved; at most `limit`) as this run's. *found
 * (may be NULL) gets the number of matches this run asked for. Errors: those of
 * rd_qr_find_studies (RD_E_TOO_LARGE for a single day with too many matches), RD_E_DB. */
rd_status rd_qr_batch_query(rd_qr_batch *qb, rd_store *s, long *found, rd_error *err);

/* The pool's source over this run's studies; valid while `qb` lives. */
rd_pipeline_source rd_qr_batch_source(rd_qr_batch *qb);

/* The run's counters (studies: this run's; instances: retrieved so far). */
void rd_qr_batch_get_stats(rd_qr_batch *qb, rd_batch_stats *out);

/* The folder retrieved studies go to (a subfolder each). */
const char *rd_qr_batch_work_dir(const rd_qr_batch *qb);

/* Where C-MOVE'd instances of a study go: the listener's store callback files `spool` (a
 * received instance of `study_uid`) into the study's folder under work_dir. */
rd_status rd_qr_batch_file_moved(rd_qr_batch *qb, const char *study_uid,
                                 const char *sop_instance_uid, const char *spool, rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
