/* radraft — private to src/pipeline: study selection (study.c), used by the stages in
 * pipeline.c, and the service thread the scheduler and the outbox are made of (service.c). */
#ifndef RADRAFT_PIPELINE_INT_H
#define RADRAFT_PIPELINE_INT_H

#include <pthread.h>
#include <stdatomic.h>

#include "radraft/config.h"
#include "radraft/dicom.h"
#include "radraft/error.h"
#include "radraft/store.h"
#include "base/util.h"
#include "radraft/limits.h"

/* 1 if a Body Part Examined is chest-like (or absent: many chest radiographs do not say). */
int rd__study_chest_like(const char *body_part);

/* 1 if the modality is a radiograph's (CR or DX). */
int rd__study_radiograph_modality(const char *modality);

/* The content version of a study: SHA-256 of the sorted SOP Instance UIDs of the instances
 * with pixel data (all instances when none has any), one per line, as 64 hex digits. */
rd_status rd__study_content_version(const rd_dicom_meta *metas, int n, char out[RD_SHA256_HEX_SIZE],
                                    rd_error *err);

/* A thread of serve's that works on the store until stopped: its own copy of the
 * configuration, its own store connection, a wakeup and a stop flag. */
typedef struct rd__service {
    rd_config cfg;
    rd_store_options store_opts;
    rd_store *store; /* the thread's connection */
    rd_wake wake;
    atomic_int stop;
    pthread_t thread;
} rd__service;

/* Copies `cfg` and `store_opts` (NULL: the defaults), opens the store of
 * cfg->server_data_dir and starts `main(arg)` on a thread. On failure nothing is left to
 * stop, and the message is prefixed with `name`. */
rd_status rd__service_start(rd__service *svc, const rd_config *cfg,
                            const rd_store_options *store_opts, void *(*main)(void *), void *arg,
                            const char *name, rd_error *err);
/* 1 once rd__service_stop was called: the thread's loop ends. */
int rd__service_stopping(rd__service *svc);
/* Makes the thread look now. Thread-safe. */
void rd__service_wake(rd__service *svc);
/* Sets the stop flag, wakes the thread, joins it and closes its store connection. */
void rd__service_stop(rd__service *svc);

#endif
