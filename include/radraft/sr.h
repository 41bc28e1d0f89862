/* radraft — writing draft and signed reports as DICOM Structured Reports (implemented in
 * pacs/sr.cc over DCMTK's dcmsr).
 *
 * A draft is an Enhanced SR instance in the source study, in a new series (Modality SR),
 * whose content follows TID 2000 "Basic Diagnostic Imaging Report" as PixelMed's
 * DicomSRValidator and dciodvfy check it (no item outside the template, no private code
 * unless the code table has no standard one):
 *
 *   CONTAINER (18748-4, LN, "Diagnostic Imaging Report")           template 2000 / DCMR
 *     HAS CONCEPT MOD  CODE (121049, DCM, "Language of Content Item and Descendants")
 *                           = (en, RFC5646, "English")
 *     HAS CONCEPT MOD  CODE (121058, DCM, "Procedure reported") = the code table's
 *                           procedure, (399208008, SCT, "Plain chest X-ray") by default
 *     HAS OBS CONTEXT  CODE (121005, DCM, "Observer Type") = (121007, DCM, "Device")
 *     HAS OBS CONTEXT  UIDREF (121012, DCM, "Device Observer UID")
 *     HAS OBS CONTEXT  TEXT (121013, DCM, "Device Observer Name") = "radraft"
 *     HAS OBS CONTEXT  TEXT (121014, DCM, "Device Observer Manufacturer") = "radraft"
 *     HAS OBS CONTEXT  TEXT (121015, DCM, "Device Observer Model Name") = "radraft <model>
 *                                                                           <version>"
 *     CONTAINS CONTAINER (121070, DCM, "Findings")
 *       CONTAINS TEXT (121071, DCM, "Finding") = the findings text
 *       CONTAINS CODE (121071, DCM, "Finding") = the finding's code from the code table,
 *                e.g. (8186001, SCT, "Cardiomegaly")      [each PRESENT finding]
 *     CONTAINS CONTAINER (121072, DCM, "Impression")
 *       CONTAINS TEXT (121073, DCM, "Impression") = the impression text
 *
 * TID 2002 (Report Narrative) allows a coded finding only as a concept of CID 7002 with a
 * value, and below it only INFERRED FROM image and measurement references: it has no row
 * for a finding's certainty or negation, and no place for a score. So the text report
 * codes what it asserts, the present findings; an uncertain finding is given (and
 * accepted) but written only in the text, and a finding not coded is not asserted. The
 * codes come from the code table (rd_sr_codes, models/finding-codes.json); the Coding
 * Scheme Identification Sequence declares the private scheme only when a private code is
 * written. The header copies patient (name, ID, birth date, sex) and study (Study Instance
 * UID, date, time, accession number, referring physician, Study ID, description) from the
 * source instances, as UTF-8 (Specific Character Set ISO_IR 192, whatever the source
 * used), and lists every source instance in the Current Requested Procedure Evidence
 * Sequence. Series Date and Time are the time of writing, with the Timezone Offset From
 * UTC. The Contributing Equipment Sequence names radraft and the model (purpose:
 * Processing Equipment) with the Device UID. The file meta information carries radraft's
 * Implementation Class UID and Version Name (RD_SR_IMPLEMENTATION_*). UIDs are "2.25."
 * UUIDs (random, version 4).
 *
 * Draft: Completion Flag PARTIAL, Verification Flag UNVERIFIED, Preliminary Flag
 * PRELIMINARY, Series Description RD_SR_DRAFT_SERIES_DESCRIPTION (an unverified AI draft),
 * series number 9001 (by default),
 * instance number 1, a new series per draft.
 *
 * Signed: a new SOP instance with the draft's content (texts and findings as edited),
 * COMPLETE, VERIFIED, FINAL, instance number + 1, the Verifying Observer Sequence (name,
 * organization, date-time), and the Predecessor Documents Sequence naming the draft. It is
 * in the study's signed series, not the draft's: one series for every signed SR of a study
 * (rd_sr_signed_series_uid), Series Description "radraft signed reports", series number
 * 9002 by default. The radiologist is credited for the text, as TID 1002 describes, by a
 * person observer placed before the device observer in the root's observer context:
 *
 *     HAS OBS CONTEXT  CODE (121005, DCM, "Observer Type") = (121006, DCM, "Person")
 *     HAS OBS CONTEXT  PNAME (121008, DCM, "Person Observer Name") = the verifier
 *     HAS OBS CONTEXT  TEXT (121009, DCM, "Person Observer's Organization Name")
 *     HAS OBS CONTEXT  CODE (121005, DCM, "Observer Type") = (121007, DCM, "Device")
 *     ...                                                     (the draft's device observer)
 *
 * and by the Author Observer Sequence (0040,A078) of the SR Document General Module: one
 * item, Observer Type PSN, Person Name, Institution Name (the organization), and an empty
 * Person Identification Code Sequence and Institution Code Sequence (type 2C and 2: radraft
 * has no codes for them). The device that wrote the draft stays in the content's observer
 * context and in the Contributing Equipment Sequence.
 *
 * Amended: signing a signed SR again (rd_sr_sign_params.amend) writes a new signed version
 * in the same signed series whose Predecessor Documents Sequence names the signed SR it
 * amends; its verifying, person and author observer are the amending radiologist's (the
 * earlier ones are reachable through the predecessor).
 *
 * Files are written through a temporary file renamed into place. Every DCMTK condition
 * becomes an rd_status with DCMTK's message; nothing here throws or aborts.
 */
#ifndef RADRAFT_SR_H
#define RADRAFT_SR_H

#include <stddef.h>

#include "radraft/error.h"
#include "radraft/findings.h"
#include "radraft/limits.h"
#include "radraft/version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Caps on what the caller hands in. */
#define RD_SR_MAX_TEXT (64u * 1024u)             /* findings or impression text, bytes */
#define RD_SR_MAX_SOURCES RD_STUDY_MAX_INSTANCES /* source instances of one study */

/* The UID written as Device Observer UID when the caller gives none: it names radraft as a
 * kind of device rather than one installation (a site may set its own). */
#define RD_SR_DEFAULT_DEVICE_UID "2.25.36027429572974740587912077665188952685"
#define RD_SR_DEFAULT_SERIES_NUMBER 9001
#define RD_SR_DEFAULT_SIGNED_SERIES_NUMBER 9002

/* The namespace (a UUID, written as its "2.25." UID) of the signed series UIDs: see
 * rd_sr_signed_series_uid. */
#define RD_SR_SIGNED_SERIES_NAMESPACE "2.25.304579798466862766817839100710713265282"

/* radraft's Implementation Class UID (a "2.25." UUID of its own) and Implementation Version
 * Name, written in the file meta information of every SR. */
#define RD_SR_IMPLEMENTATION_CLASS_UID "2.25.160384215838637916498815963712455385379"
#define RD_SR_IMPLEMENTATION_VERSION_NAME "RADRAFT_" RD_VERSION
/* What the draft series says it is. */
#define RD_SR_DRAFT_SERIES_DESCRIPTION "Unverified AI draft report (radraft)"

/* One code: Code Value (or Long Code Value), Coding Scheme Designator, Code Meaning. */
typedef struct rd_sr_code {
    char value[65];
    char scheme[17];
    char meaning[65];
} rd_sr_code;

/* The code table (models/finding-codes.json, or the file of the configuration key
 * sr.finding_codes; read by rd_sr_codes_load, radraft/codes.h). */
typedef struct rd_sr_codes {
    rd_sr_code finding[RD_FINDING_N_ABNORMAL]; /* index rd_finding */
    rd_sr_code procedure;                      /* Procedure reported */
    rd_sr_code present, absent, uncertain;     /* finding states */
    rd_sr_code score;                          /* the concept of a finding's score */
    char private_scheme[17];                   /* the designator of radraft's own codes */
    char private_scheme_name[65];
    char private_scheme_responsible[65];
} rd_sr_codes;

/* One structured finding. `name` is a vocabulary name (rd_finding_name: "Cardiomegaly",
 * "Pleural_Thickening"; the 14 abnormal findings only); the string is borrowed. */
typedef struct rd_sr_finding {
    const char *name;
    rd_finding_state state; /* RD_STATE_PRESENT or RD_STATE_UNCERTAIN */
    double score;           /* the model's score in [0, 1]; negative: none written */
} rd_sr_finding;

/* What a draft is made of. Strings are UTF-8 and borrowed for the duration of the call. */
typedef struct rd_sr_params {
    const char *const *sources;    /* paths of the study's instances (all of one study) */
    size_t n_sources;              /* 1..RD_SR_MAX_SOURCES */
    const char *findings_text;     /* required, non-empty */
    const char *impression_text;   /* required, non-empty */
    const rd_sr_finding *findings; /* may be NULL when n_findings is 0 */
    size_t n_findings;             /* at most RD_FINDING_N_ABNORMAL */
    const char *model_name;        /* e.g. "radraft-cxr-resnet"; required */
    const char *model_version;     /* e.g. "1.0"; required */
    const char *device_uid;        /* NULL or "": RD_SR_DEFAULT_DEVICE_UID */
    int series_number;             /* 0: RD_SR_DEFAULT_SERIES_NUMBER */
    const rd_sr_codes *codes;      /* the code table; required */
} rd_sr_params;

/* Fills `p` with zeros/NULLs (the defaults above apply to them). */
void rd_sr_params_init(rd_sr_params *p);

/* What was written. */
typedef struct rd_sr_result {
    char study_uid[RD_UID_SIZE];
    char series_uid[RD_UID_SIZE];
    char sop_instance_uid[RD_UID_SIZE];
    char sop_class_uid[RD_UID_SIZE];
    int n_evidence;    /* source instances referenced */
    char warning[256]; /* "" or a note: an attribute that could not be converted to UTF-8
                        * (left empty), or a source value DCMTK finds invalid for its VR
                        * (copied as is, so that the SR still matches its images) */
} rd_sr_result;

/* Writes a draft SR for the study of `p->sources` to `out_path`. `res` may be NULL.
 * Errors: RD_E_INVALID (missing text or model, an unknown finding name, a state other than
 * present/uncertain, a score outside [0, 1], invalid UTF-8, sources of several studies or
 * patients, a source without study/series/SOP UIDs), RD_E_TOO_LARGE (text or source count
 * over the caps), RD_E_NOT_FOUND / RD_E_DICOM (a source that cannot be read), RD_E_IO (the
 * output cannot be written), RD_E_DICOM (a DCMTK failure, with its message). */
rd_status rd_sr_write_draft(const rd_sr_params *p, const char *out_path, rd_sr_result *res,
                            rd_error *err);

/* What signing adds or changes. Strings borrowed, UTF-8. */
typedef struct rd_sr_sign_params {
    const char *verifier_name;   /* DICOM PN, "Family^Given"; required */
    const char *organization;    /* required */
    const char *datetime;        /* DICOM DT of the verification; NULL or "": now */
    const char *findings_text;   /* NULL: keep the draft's; otherwise the edited text */
    const char *impression_text; /* NULL: keep the draft's */
    int replace_findings;        /* non-zero: the coded findings become `findings` */
    const rd_sr_finding *findings;
    size_t n_findings;
    int amend; /* 0: the input must be a draft (neither complete nor verified). Non-zero: it
                * must be a signed SR (complete and verified), and the output is its amended
                * version, in the same signed series. */
    const char *sop_instance_uid; /* NULL or "": a new "2.25." UID. Otherwise the output's
                                   * SOP Instance UID (a valid UID other than the input's),
                                   * so that a caller that retries after a crash rewrites
                                   * the same instance rather than a second one. */
    int series_number;            /* 0: the input's when amending an SR that is already in
                                   * the signed series, else
                                   * RD_SR_DEFAULT_SIGNED_SERIES_NUMBER. Signing a
                                   * draft, it must differ from the draft's. */
    const rd_sr_codes *codes;     /* the code table; required with replace_findings */
} rd_sr_sign_params;

void rd_sr_sign_params_init(rd_sr_sign_params *p);

/* Reads the draft (or, with p->amend, the signed SR) at `draft_path` and writes its signed
 * version to `out_path`, in the study's signed series. `res` may be NULL; res->series_uid
 * is the signed series.
 * Errors: RD_E_INVALID (missing verifier or organization, bad texts or findings, an input
 * that is not a radraft-style SR, a verified or complete input without p->amend or a draft
 * with it, a malformed p->sop_instance_uid or the input's own, a negative series number or
 * the draft's), RD_E_NOT_FOUND, RD_E_DICOM, RD_E_IO. */
rd_status rd_sr_write_signed(const char *draft_path, const rd_sr_sign_params *p,
                             const char *out_path, rd_sr_result *res, rd_error *err);

/* The Series Instance UID of the signed reports of study `study_uid`: "2.25." and the
 * decimal value of the version-5 UUID (RFC 4122 name-based, SHA-1; PS3.5 B.2) of the Study
 * Instance UID in the namespace RD_SR_SIGNED_SERIES_NAMESPACE. It depends on the study UID
 * only, so that every signed SR of a study, whoever writes it, lands in one series.
 * Errors: RD_E_INVALID (`study_uid` NULL or not a valid UID). */
rd_status rd_sr_signed_series_uid(const char *study_uid, char out[RD_UID_SIZE], rd_error *err);

/* What an SR says, read back (any SR document; the texts and coded findings are found by
 * their concept names as written above). */
typedef struct rd_sr_info {
    char sop_class_uid[RD_UID_SIZE];
    char sop_instance_uid[RD_UID_SIZE];
    char series_uid[RD_UID_SIZE];
    char study_uid[RD_UID_SIZE];
    char patient_name[256]; /* UTF-8 */
    char patient_id[72];
    char completion_flag[16];   /* "PARTIAL" / "COMPLETE" */
    char verification_flag[16]; /* "UNVERIFIED" / "VERIFIED" */
    char preliminary_flag[16];  /* "PRELIMINARY" / "FINAL" / "" */
    char verifier_name[256];    /* first verifying observer, "" when none */
    char verifier_organization[128];
    char verification_datetime[32];
    char predecessor_sop_uid[RD_UID_SIZE]; /* first predecessor document, "" when none */
    char device_model_name[128];           /* value of (121015, DCM) */
    char series_description[128];          /* "" when absent */
    /* The first person of the Author Observer Sequence and its Institution Name, "" when
     * none. */
    char author_name[256];
    char author_organization[128];
    /* The person observer in the root's observer context: the values of (121008, DCM) and
     * (121009, DCM), "" when none. */
    char person_observer_name[256];
    char person_observer_organization[128];
    int n_evidence;
    char *findings_text;   /* owned (rd_sr_info_free); NULL when absent */
    char *impression_text; /* owned; NULL when absent */
    int n_findings;        /* coded findings whose code is in the table given */
    struct {
        rd_finding finding;
        rd_finding_state state;
        double score; /* -1 when absent */
    } findings[RD_FINDING_N_ABNORMAL];
} rd_sr_info;

/* Reads an SR file (other producers' too, leniently: invalid content items are skipped).
 * A CODE (121071, DCM, "Finding") whose value is a finding's code in `codes` is that
 * finding, present; `codes` NULL: no coded finding is read. On success the caller owns
 * info's texts (rd_sr_info_free).
 * Errors: RD_E_NOT_FOUND, RD_E_DICOM (not an SR or unparsable). */
rd_status rd_sr_read(const char *path, const rd_sr_codes *codes, rd_sr_info *info, rd_error *err);

/* Releases the texts and clears the struct. Accepts NULL. */
void rd_sr_info_free(rd_sr_info *info);

#ifdef __cplusplus
}
#endif
#endif
