/* radraft — private to src/pipeline: study selection (study.c), used by the stages in
 * pipeline.c. */
#ifndef RADRAFT_PIPELINE_INT_H
#define RADRAFT_PIPELINE_INT_H

#include "radraft/dicom.h"
#include "radraft/error.h"
#include "radraft/limits.h"

/* 1 if a Body Part Examined is chest-like (or absent: many chest radiographs do not say). */
int rd__study_chest_like(const char *body_part);

/* 1 if the modality is a radiograph's (CR or DX). */
int rd__study_radiograph_modality(const char *modality);

/* The content version of a study: SHA-256 of the sorted SOP Instance UIDs of the instances
 * with pixel data (all instances when none has any), one per line, as 64 hex digits. */
rd_status rd__study_content_version(const rd_dicom_meta *metas, int n, char out[RD_SHA256_HEX_SIZE],
                                    rd_error *err);

#endif
