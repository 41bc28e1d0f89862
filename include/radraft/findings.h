/* radraft — the findings vocabulary.
 *
 * One table (src/findings.c) names the 14 ChestX-ray14 findings plus "No Finding": the
 * machine name used in JSON, CSV and model labels ("Pleural_Thickening"), a display name for
 * report text ("pleural thickening") and the organ system that orders a report. The
 * labeler, the encoder's training targets, the generator's templates, the SR's coded entries
 * and every evaluation index findings by rd_finding, so the order here is the order of
 * model outputs and CSV columns.
 */
#ifndef RADRAFT_FINDINGS_H
#define RADRAFT_FINDINGS_H

#include "radraft/error.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum rd_finding {
    RD_FINDING_ATELECTASIS = 0,
    RD_FINDING_CARDIOMEGALY,
    RD_FINDING_EFFUSION,
    RD_FINDING_INFILTRATION,
    RD_FINDING_MASS,
    RD_FINDING_NODULE,
    RD_FINDING_PNEUMONIA,
    RD_FINDING_PNEUMOTHORAX,
    RD_FINDING_CONSOLIDATION,
    RD_FINDING_EDEMA,
    RD_FINDING_EMPHYSEMA,
    RD_FINDING_FIBROSIS,
    RD_FINDING_PLEURAL_THICKENING,
    RD_FINDING_HERNIA,
    RD_FINDING_NO_FINDING,
    RD_FINDING_COUNT
} rd_finding;

/* The abnormal findings are 0 .. RD_FINDING_N_ABNORMAL-1; No Finding comes last. */
#define RD_FINDING_N_ABNORMAL 14

/* What a report says about a finding. The numeric order is used when several mentions of
 * one finding disagree: the larger value wins (a finding present anywhere is present). */
typedef enum rd_finding_state {
    RD_STATE_NOT_MENTIONED = 0,
    RD_STATE_ABSENT = 1,
    RD_STATE_UNCERTAIN = 2,
    RD_STATE_PRESENT = 3
} rd_finding_state;
#define RD_STATE_COUNT 4

/* Organ systems in the order a report describes them. */
typedef enum rd_organ {
    RD_ORGAN_LINES_TUBES = 0,
    RD_ORGAN_LUNGS,
    RD_ORGAN_PLEURA,
    RD_ORGAN_HEART_MEDIASTINUM,
    RD_ORGAN_BONES,
    RD_ORGAN_COUNT
} rd_organ;

/* "Pleural_Thickening"; "No Finding"; NULL outside the table. Static strings. */
const char *rd_finding_name(rd_finding f);
/* "pleural thickening" (lower case, for use inside a sentence); NULL outside the table. */
const char *rd_finding_display(rd_finding f);
/* The organ system a finding is described under. */
rd_organ rd_finding_organ(rd_finding f);

/* Looks a finding up by machine name or display name, case-insensitively ("effusion",
 * "Pleural Thickening", "pleural_thickening", "no finding"). RD_E_NOT_FOUND when unknown. */
rd_status rd_finding_from_name(const char *name, rd_finding *out, rd_error *err);

/* "present", "absent", "uncertain", "not mentioned". */
const char *rd_state_name(rd_finding_state s);
/* Parses the names above (also "not_mentioned"); RD_E_INVALID when unknown. */
rd_status rd_state_from_name(const char *name, rd_finding_state *out, rd_error *err);

/* "lines_tubes", "lungs", "pleura", "heart_mediastinum", "bones". */
const char *rd_organ_name(rd_organ o);
rd_status rd_organ_from_name(const char *name, rd_organ *out, rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
