/* radraft — report: the findings vocabulary (names, display names, organs, states) that the
 * labeler (report text -> states), the generator (scores -> report text), the SR's codes and
 * every evaluation share. This folder owns the phrase and template data compiled into the
 * binary and what is parsed from them. */
#include "radraft/findings.h"

#include <strings.h>

typedef struct finding_row {
    const char *name;
    const char *display;
    rd_organ organ;
} finding_row;

/* Indexed by rd_finding. Hernia (in chest radiographs nearly always a hiatal hernia) is
 * described with the mediastinum, which is where it projects. */
static const finding_row finding_table[RD_FINDING_COUNT] = {
    {"Atelectasis", "atelectasis", RD_ORGAN_LUNGS},
    {"Cardiomegaly", "cardiomegaly", RD_ORGAN_HEART_MEDIASTINUM},
    {"Effusion", "pleural effusion", RD_ORGAN_PLEURA},
    {"Infiltration", "infiltrate", RD_ORGAN_LUNGS},
    {"Mass", "mass", RD_ORGAN_LUNGS},
    {"Nodule", "nodule", RD_ORGAN_LUNGS},
    {"Pneumonia", "pneumonia", RD_ORGAN_LUNGS},
    {"Pneumothorax", "pneumothorax", RD_ORGAN_PLEURA},
    {"Consolidation", "consolidation", RD_ORGAN_LUNGS},
    {"Edema", "pulmonary edema", RD_ORGAN_LUNGS},
    {"Emphysema", "emphysema", RD_ORGAN_LUNGS},
    {"Fibrosis", "fibrosis", RD_ORGAN_LUNGS},
    {"Pleural_Thickening", "pleural thickening", RD_ORGAN_PLEURA},
    {"Hernia", "hernia", RD_ORGAN_HEART_MEDIASTINUM},
    {"No Finding", "no finding", RD_ORGAN_LUNGS},
};

static const char *const state_names[RD_STATE_COUNT] = {"not mentioned", "absent", "uncertain",
                                                        "present"};

static const char *const organ_names[RD_ORGAN_COUNT] = {"lines_tubes", "lungs", "pleura",
                                                        "heart_mediastinum", "bones"};

const char *rd_finding_name(rd_finding f)
{
    return (unsigned)f < RD_FINDING_COUNT ? finding_table[f].name : NULL;
}

const char *rd_finding_display(rd_finding f)
{
    return (unsigned)f < RD_FINDING_COUNT ? finding_table[f].display : NULL;
}

rd_organ rd_finding_organ(rd_finding f)
{
    return (unsigned)f < RD_FINDING_COUNT ? finding_table[f].organ : RD_ORGAN_LUNGS;
}

/* Compares treating '_' and ' ' as the same character and ignoring case, so that
 * "Pleural Thickening" and "pleural_thickening" both name the same finding. */
static int same_name(const char *a, const char *b)
{
    for (;; a++, b++) {
        char ca = *a == '_' ? ' ' : *a, cb = *b == '_' ? ' ' : *b;
        if (ca >= 'A' && ca <= 'Z')
            ca = (char)(ca - 'A' + 'a');
        if (cb >= 'A' && cb <= 'Z')
            cb = (char)(cb - 'A' + 'a');
        if (ca != cb)
            return 0;
        if (ca == '\0')
            return 1;
    }
}

rd_status rd_finding_from_name(const char *name, rd_finding *out, rd_error *err)
{
    if (!name)
        return rd_error_set(err, RD_E_INVALID, "finding name is NULL");
    for (int i = 0; i < RD_FINDING_COUNT; i++)
        if (same_name(name, finding_table[i].name) || same_name(name, finding_table[i].display)) {
            *out = (rd_finding)i;
            return RD_OK;
        }
    return rd_error_set(err, RD_E_NOT_FOUND, "unknown finding '%.64s'", name);
}

const char *rd_state_name(rd_finding_state s)
{
    return (unsigned)s < RD_STATE_COUNT ? state_names[s] : "invalid";
}

rd_status rd_state_from_name(const char *name, rd_finding_state *out, rd_error *err)
{
    if (!name)
        return rd_error_set(err, RD_E_INVALID, "finding state is NULL");
    for (int i = 0; i < RD_STATE_COUNT; i++)
        if (same_name(name, state_names[i])) {
            *out = (rd_finding_state)i;
            return RD_OK;
        }
    return rd_error_set(err, RD_E_INVALID,
                        "unknown finding state '%.64s' (present, absent, uncertain or "
                        "not mentioned)",
                        name);
}

const char *rd_organ_name(rd_organ o)
{
    return (unsigned)o < RD_ORGAN_COUNT ? organ_names[o] : "invalid";
}

rd_status rd_organ_from_name(const char *name, rd_organ *out, rd_error *err)
{
    if (!name)
        return rd_error_set(err, RD_E_INVALID, "organ system is NULL");
    for (int i = 0; i < RD_ORGAN_COUNT; i++)
        if (same_name(name, organ_names[i])) {
            *out = (rd_organ)i;
            return RD_OK;
        }
    return rd_error_set(err, RD_E_INVALID, "unknown organ system '%.64s'", name);
}
