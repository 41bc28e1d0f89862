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
    long finished, drafted, skipped, before, failed;
    struct {
        char text[160];
        long count;
    } reasons[RD_BATCH_MAX_REASONS]; /* of the skipped studies */
    int n_reasons;
    /* Summed over the drafted studies, milliseconds. */
    double ms_read, ms_decode, ms_embed, ms_retrieve, ms_generate, ms_write, ms_record;
} rd_batch_stats;

void rd_batch_get_stats(rd_batch *b, rd_batch_stats *out);

#ifdef __cplusplus
}
#endif
#endif
