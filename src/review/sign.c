/* radraft — signing: a draft SR becomes the radiologist's verified report.
 *
 * The verified SR is a new instance (DCMTK's dcmsr in pacs/sr.cc writes it) whose coded
 * findings follow the final text: when the radiologist edited the text, the labeler reads
 * the final text and its present and uncertain findings are coded, so that a PACS or RIS
 * reading the codes never sees what the words no longer say. It owns nothing past the call. */
#include <stdio.h>
#include <string.h>

#include "radraft/codes.h"
#include "radraft/labeler.h"
#include "radraft/review.h"
#include "radraft/store.h"
#include "base/util.h"

/* The coded findings of the final text. `coded` has room for every abnormal finding. */
static rd_status final_findings(const rd_config *cfg, const char *findings_text,
                                const char *impression_text, rd_sr_finding *coded, size_t *n,
                                rd_error *err)
{
    rd_labeler *lab = NULL;
    rd_labels labels;
    rd_status st;
    *n = 0;
    if ((st = rd_labeler_create_from_config(&lab, cfg, err)) != RD_OK ||
        (st = rd_labeler_label(lab, findings_text, impression_text, &labels, err)) != RD_OK)
        goto out;
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        if (labels.state[f] != RD_STATE_PRESENT && labels.state[f] != RD_STATE_UNCERTAIN)
            continue;
        coded[*n].name = rd_finding_name((rd_finding)f);
        coded[*n].state = labels.state[f];
        coded[*n].score = -1; /* the radiologist's, not a model's */
        (*n)++;
    }
out:
    rd_labeler_free(lab);
    return st;
}

rd_status rd_review_sign_file(const rd_config *cfg, const char *draft_path,
                              const rd_review_signature *sig, const char *out_path,
                              const char *out_dir, char *written, size_t size,
                              char predecessor[RD_UID_SIZE], rd_sr_result *res, rd_error *err)
{
    rd_sr_sign_params sp;
    rd_sr_info info;
    rd_sr_finding coded[RD_FINDING_N_ABNORMAL];
    rd_sr_codes codes;
    char path[1024];
    rd_status st;

    memset(&info, 0, sizeof info);
    rd_sr_sign_params_init(&sp);
    sp.verifier_name = sig->verifier_name;
    sp.organization = sig->organization;
    sp.datetime = sig->datetime;
    sp.findings_text = sig->findings_text;
    sp.impression_text = sig->impression_text;
    if ((st = rd_sr_codes_load(&codes, cfg->sr_finding_codes, err)) != RD_OK) {
        st = rd_error_prefix(err, st, "sr.finding_codes");
        goto out;
    }
    sp.codes = &codes;
    if ((st = rd_sr_read(draft_path, NULL, &info, err)) != RD_OK)
        goto out;
    if (sp.findings_text || sp.impression_text) {
        const char *ft = sp.findings_text ? sp.findings_text : info.findings_text;
        const char *it = sp.impression_text ? sp.impression_text : info.impression_text;
        if ((st = final_findings(cfg, ft, it, coded, &sp.n_findings, err)) != RD_OK)
            goto out;
        sp.replace_findings = 1;
        sp.findings = coded;
    }
    if (out_path) {
        if (rd_strlcpy(path, out_path, sizeof path) >= sizeof path) {
            st = rd_error_set(err, RD_E_INVALID, "output path too long");
            goto out;
        }
    } else if (!rd_store_uid_valid(info.study_uid) ||
               snprintf(path, sizeof path, "%s%s%s-signed-sr.dcm", out_dir ? out_dir : "",
                        out_dir ? "/" : "", info.study_uid) >= (int)sizeof path) {
        st = rd_error_set(err, RD_E_INVALID, "%s: malformed Study Instance UID; give -o",
                          draft_path);
        goto out;
    }
    if ((st = rd_sr_write_signed(draft_path, &sp, path, res, err)) != RD_OK)
        goto out;
    if (written && rd_strlcpy(written, path, size) >= size)
        written[0] = '\0';
    if (predecessor)
        rd_strlcpy(predecessor, info.sop_instance_uid, 65);
out:
    rd_sr_info_free(&info);
    return st;
}

rd_status rd_review_sign_air_file(const rd_config *cfg, const char *draft_path,
                                  const char *air_path, const rd_review_signature *sig,
                                  const char *out_path, rd_sr_result *res, rd_error *err)
{
    rd_sr_air_sign_params ap;
    rd_sr_info info;
    rd_sr_codes codes;
    rd_labeler *lab = NULL;
    rd_labels labels;
    rd_status st;

    memset(&info, 0, sizeof info);
    if (!out_path || !out_path[0])
        return rd_error_set(err, RD_E_INVALID, "no output path for the signed AI results SR");
    if ((st = rd_sr_codes_load(&codes, cfg->sr_finding_codes, err)) != RD_OK)
        return rd_error_prefix(err, st, "sr.finding_codes");
    if ((st = rd_sr_read(draft_path, NULL, &info, err)) != RD_OK)
        goto out;
    /* The final states: what the final texts say, as signing in the queue reads them. */
    if ((st = rd_labeler_create_from_config(&lab, cfg, err)) != RD_OK ||
        (st = rd_labeler_label(lab,
                               sig->findings_text   ? sig->findings_text
                               : info.findings_text ? info.findings_text
                                                    : "",
                               sig->impression_text   ? sig->impression_text
                               : info.impression_text ? info.impression_text
                                                      : "",
                               &labels, err)) != RD_OK)
        goto out;
    rd_sr_air_sign_params_init(&ap);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        ap.states[f] = labels.state[f];
    ap.verifier_name = sig->verifier_name;
    ap.organization = sig->organization;
    ap.datetime = sig->datetime;
    ap.codes = &codes;
    st = rd_sr_write_air_signed(air_path, &ap, out_path, res, err);
out:
    rd_labeler_free(lab);
    rd_sr_info_free(&info);
    return st;
}
