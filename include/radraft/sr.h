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
 * Files are written through a temporary file renamed into place, once it has been read back
 * and found to say what was written (DCMTK leaves out a value it cannot allocate and still
 * succeeds): out of memory is RD_E_NOMEM, with no file left. Every DCMTK condition becomes an
 * rd_status with DCMTK's message; nothing here throws or aborts.
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

/* ---- the IHE AI Results (AIR) SR ----
 *
 * Beside the text report, the model's own result per finding, as IHE AIR and viewers that
 * read measurement reports (OHIF) expect it: a Comprehensive 3D SR instance
 * (1.2.840.10008.5.1.4.1.1.88.34) in the source study, in a new series (Modality SR,
 * RD_SR_AIR_SERIES_DESCRIPTION, series number 9003 by default), rooted in TID 1500
 * "Measurement Report" as PixelMed's DicomSRValidator (its 2022 templates) and dciodvfy
 * check it:
 *
 *   CONTAINER (126000, DCM, "Imaging Measurement Report")          template 1500 / DCMR
 *     HAS CONCEPT MOD  CODE (121049, DCM, "Language of Content Item and Descendants") = en
 *     HAS OBS CONTEXT  CODE (121005, DCM, "Observer Type") = (121007, DCM, "Device")
 *     HAS OBS CONTEXT  UIDREF (121012, DCM, "Device Observer UID") = the model's Device UID
 *     HAS OBS CONTEXT  TEXT (121013 name, 121014 manufacturer) = "radraft",
 *                      TEXT (121015, DCM, "Device Observer Model Name") = "radraft <model>
 *                                                                          <version>"
 *     HAS CONCEPT MOD  CODE (121058, DCM, "Procedure reported") = (363679005, SCT,
 *                      "Imaging procedure"): TID 1500 draws it from CID 100, which has no
 *                      chest radiograph, and PixelMed refuses codes outside it
 *     CONTAINS CONTAINER (111028, DCM, "Image Library")                          TID 1600
 *       CONTAINS CONTAINER (126200, DCM, "Image Library Group")
 *         CONTAINS IMAGE = the frontal image the model read (SOP Class and Instance UIDs)
 *     CONTAINS CONTAINER (126010, DCM, "Imaging Measurements")
 *       CONTAINS CONTAINER (125007, DCM, "Measurement Group")    TID 1501, one per finding
 *         HAS OBS CONTEXT  TEXT (112039, DCM, "Tracking Identifier") = "Cardiomegaly", ...
 *         HAS OBS CONTEXT  UIDREF (112040, DCM, "Tracking Unique Identifier") = a new UID
 *         CONTAINS CODE (121071, DCM, "Finding") = the finding's code from the code table
 *         HAS CONCEPT MOD  TEXT (111001, DCM, "Algorithm Name") = the model's name  TID 4019
 *         HAS CONCEPT MOD  TEXT (111003, DCM, "Algorithm Version") = its version
 *         HAS CONCEPT MOD  TEXT (111002, DCM, "Algorithm Parameters") = the caller's text
 *         CONTAINS NUM = the code table's score concept ((111012, DCM, "Certainty of
 *                  Finding") by default): the calibrated probability, unit (1, UCUM,
 *                  "no units")                                                   TID 300
 *           INFERRED FROM IMAGE = the frontal image
 *         CONTAINS NUM (122411, DCM, "Threshold Value") = the threshold at or above which
 *                  the finding is present, unit (1, UCUM)
 *           HAS CONCEPT MOD TEXT (121050, DCM, "Equivalent Meaning of Concept Name") =
 *                  "Operating threshold: present at or above"
 *         CONTAINS NUM (122411, DCM, "Threshold Value") = the threshold for uncertain, with
 *                  "Operating threshold: uncertain at or above"
 *     CONTAINS CONTAINER (C0034375, UMLS, "Qualitative Evaluations")        TID 1500 row 12
 *       CONTAINS CODE concept = the finding's code, value = its state: the code table's
 *                present, uncertain or absent, one per finding (all 14)
 *
 * The states sit in the Qualitative Evaluations container rather than in each measurement
 * group: TID 1501 gained its qualitative evaluation rows after the templates PixelMed
 * validates with, which would flag them as content outside the template. A finding's group
 * and its evaluation share the finding's code. "Not mentioned" is a property of a text: the
 * model assessed every finding, so one not mentioned is written absent (below the
 * uncertain threshold).
 *
 * The header is the text report's (patient and study copied from the sources as UTF-8,
 * Series Date/Time and Timezone Offset, radraft's Implementation Class UID), the Current
 * Requested Procedure Evidence Sequence names the frontal image only (the one the result
 * was computed from), and the Contributing Equipment Sequence names radraft and the model
 * (purpose (109102, DCM, "Processing Equipment"): DICOM's 109103 is "Modifying
 * Equipment", and IHE AIR's "Processing Algorithm" is a placeholder code of its own, 99IHE)
 * with its Device UID (0018,1002) (which dicom3tools 2022 does not know there yet):
 * rd_sr_air_device_uid, a name-based UID of the model's name and version, so that it
 * changes when the model does and is the same for every result of one model. The same UID
 * is the Device Observer UID.
 *
 * Draft: PARTIAL, UNVERIFIED, PRELIMINARY. Signed (rd_sr_write_air_signed): the draft's
 * tree with the radiologist's final states as the qualitative evaluations (the measurement
 * groups keep the model's probabilities, with its algorithm identification), the person
 * observer before the device observer, COMPLETE, VERIFIED, FINAL, the Verifying Observer
 * and Author Observer Sequences and the Predecessor Documents Sequence naming the draft AIR
 * SR, in the study's signed AIR series (rd_sr_signed_air_series_uid,
 * RD_SR_AIR_SIGNED_SERIES_DESCRIPTION, series number 9004 by default), as
 * rd_sr_write_signed does for the text report. */

#define RD_SR_AIR_SERIES_NUMBER 9003
#define RD_SR_AIR_SIGNED_SERIES_NUMBER 9004
#define RD_SR_AIR_SERIES_DESCRIPTION "Unverified AI results (radraft)"
#define RD_SR_AIR_SIGNED_SERIES_DESCRIPTION "radraft signed AI results"
#define RD_SR_AIR_MAX_PARAMETERS 1024 /* bytes of the Algorithm Parameters text */
/* The namespaces (UUIDs as "2.25." UIDs) of the model Device UIDs and of the signed AIR
 * series UIDs. */
#define RD_SR_AIR_DEVICE_NAMESPACE "2.25.998150101862245682189133365459381513"
#define RD_SR_AIR_SIGNED_SERIES_NAMESPACE "2.25.103230913604951313464851334400536427111"

/* The model's result for one finding. */
typedef struct rd_sr_air_finding {
    rd_finding_state state;     /* present, uncertain, absent (not mentioned: absent) */
    double probability;         /* the calibrated probability, [0, 1] */
    double present_threshold;   /* present at or above it, [0, 1] */
    double uncertain_threshold; /* uncertain at or above it, [0, present_threshold] */
} rd_sr_air_finding;

/* What an AIR SR is made of. Strings are UTF-8 and borrowed for the call. */
typedef struct rd_sr_air_params {
    const char *const *sources; /* the study's instances, as for rd_sr_write_draft */
    size_t n_sources;
    const char *frontal_sop_instance_uid; /* the image the model read: one of the sources */
    rd_sr_air_finding findings[RD_FINDING_N_ABNORMAL]; /* every finding, index rd_finding */
    const char *model_name;                            /* required, at most 64 bytes */
    const char *model_version;                         /* required, at most 64 bytes */
    const char *algorithm_parameters; /* NULL or "": no Algorithm Parameters item */
    int series_number;                /* 0: RD_SR_AIR_SERIES_NUMBER */
    const rd_sr_codes *codes;         /* the code table; required */
} rd_sr_air_params;

/* Fills `p` with zeros/NULLs. */
void rd_sr_air_params_init(rd_sr_air_params *p);

/* Writes the AIR SR of `p` to `out_path` (atomically). `res` may be NULL; res->n_evidence
 * is 1 (the frontal image).
 * Errors: RD_E_INVALID (missing model, a state, probability or threshold out of range, the
 * frontal image not among the sources, sources of several studies or patients),
 * RD_E_TOO_LARGE, RD_E_NOT_FOUND / RD_E_DICOM (a source), RD_E_IO, RD_E_DICOM. */
rd_status rd_sr_write_air(const rd_sr_air_params *p, const char *out_path, rd_sr_result *res,
                          rd_error *err);

/* The Device UID of a model: "2.25." and the version-5 UUID of "<name>\n<version>" in the
 * namespace RD_SR_AIR_DEVICE_NAMESPACE. Errors: RD_E_INVALID (NULL or empty name or
 * version). */
rd_status rd_sr_air_device_uid(const char *model_name, const char *model_version,
                               char out[RD_UID_SIZE], rd_error *err);

/* The signed AIR series of study `study_uid`, as rd_sr_signed_series_uid in the namespace
 * RD_SR_AIR_SIGNED_SERIES_NAMESPACE. */
rd_status rd_sr_signed_air_series_uid(const char *study_uid, char out[RD_UID_SIZE], rd_error *err);

/* What signing an AIR SR changes. Strings borrowed, UTF-8. */
typedef struct rd_sr_air_sign_params {
    const char *verifier_name;                      /* DICOM PN; required */
    const char *organization;                       /* required */
    const char *datetime;                           /* DICOM DT; NULL or "": now */
    rd_finding_state states[RD_FINDING_N_ABNORMAL]; /* the final states (not mentioned:
                                                     * written absent) */
    int amend;                                      /* as rd_sr_sign_params.amend */
    const char *sop_instance_uid;                   /* as rd_sr_sign_params.sop_instance_uid */
    int series_number;        /* 0: the input's when amending within the signed AIR
                               * series, else RD_SR_AIR_SIGNED_SERIES_NUMBER */
    const rd_sr_codes *codes; /* the code table; required */
} rd_sr_air_sign_params;

void rd_sr_air_sign_params_init(rd_sr_air_sign_params *p);

/* Reads the draft AIR SR at `air_path` (with p->amend: a signed one) and writes its signed
 * version to `out_path`. `res` may be NULL.
 * Errors: RD_E_INVALID (missing verifier, an input that is not a radraft AIR SR, one
 * without an evaluation of every finding, the draft/amend mismatches rd_sr_write_signed
 * refuses), RD_E_NOT_FOUND, RD_E_DICOM, RD_E_IO. */
rd_status rd_sr_write_air_signed(const char *air_path, const rd_sr_air_sign_params *p,
                                 const char *out_path, rd_sr_result *res, rd_error *err);

/* What an SR says, read back (any SR document; the texts and coded findings are found by
 * their concept names as written above). */
typedef struct rd_sr_info {
    char sop_class_uid[RD_UID_SIZE];
    char sop_instance_uid[RD_UID_SIZE];
    char series_uid[RD_UID_SIZE];
    char study_uid[RD_UID_SIZE];
    char patient_name[256]; /* UTF-8 */
    char patient_id[72];
    char accession_number[72];
    char study_date[16];        /* DA, "" when absent */
    char study_time[32];        /* TM, "" when absent */
    char timezone_offset[8];    /* Timezone Offset From UTC ("+0100"), "" when absent */
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
    char device_uid[RD_UID_SIZE]; /* value of (121012, DCM), "" when none */
    int is_air;                   /* the root is (126000, DCM): an AIR SR */
    char *findings_text;          /* owned (rd_sr_info_free); NULL when absent */
    char *impression_text;        /* owned; NULL when absent */
    int n_findings;               /* coded findings whose code is in the table given */
    struct {
        rd_finding finding;
        rd_finding_state state;
        double score; /* -1 when absent */
    } findings[RD_FINDING_N_ABNORMAL];
} rd_sr_info;

/* Reads an SR file (other producers' too, leniently: invalid content items are skipped).
 * A CODE (121071, DCM, "Finding") whose value is a finding's code in `codes` is that
 * finding, present; `codes` NULL: no coded finding is read. In an AIR SR (is_air) the
 * findings are its qualitative evaluations instead: a CODE in the Qualitative Evaluations
 * container whose concept is a finding's code and whose value is a state's, with the score
 * of the finding's measurement group (the NUM of codes->score after its Finding; -1 when
 * none). On success the caller owns
 * info's texts (rd_sr_info_free).
 * Errors: RD_E_NOT_FOUND, RD_E_DICOM (not an SR or unparsable). */
rd_status rd_sr_read(const char *path, const rd_sr_codes *codes, rd_sr_info *info, rd_error *err);

/* Releases the texts and clears the struct. Accepts NULL. */
void rd_sr_info_free(rd_sr_info *info);

#ifdef __cplusplus
}
#endif
#endif
