/* radraft — a report as FHIR R4 resources, and their delivery to a FHIR server.
 *
 * Beside each draft and signed text SR radraft writes a FHIR R4 Bundle of type
 * "transaction" (JSON, application/fhir+json) that a FHIR server takes in one POST to its
 * base URL:
 *
 *   DiagnosticReport  status preliminary (a draft), final (signed) or amended (signed
 *                     again); category Radiology; code (18748-4, LOINC, "Diagnostic
 *                     imaging study"); subject, the patient by Patient ID (a logical
 *                     reference: radraft knows no Patient resource); basedOn, the order by
 *                     Accession Number; effectiveDateTime, the study's date and time;
 *                     issued; resultsInterpreter and performer, the signing radiologist and
 *                     organization; imagingStudy, the study by Study Instance UID; result,
 *                     the 14 Observations; conclusion, the impression; conclusionCode, the
 *                     present findings' codes; presentedForm, the whole text (text/plain,
 *                     base64).
 *   Observation x 14  one per finding, same status; category imaging; code, the finding's
 *                     code from the code table (models/finding-codes.json);
 *                     valueCodeableConcept, its state (present, uncertain or absent: the
 *                     code table's state codes; a finding the text does not mention is
 *                     absent, as in the AIR SR); component, the model's calibrated
 *                     probability (the code table's score concept, unit "1") with its two
 *                     operating thresholds as reference range; device, the model (by
 *                     its Device UID, as in the AIR SR); derivedFrom, the study.
 *
 * One report is one lifecycle on the server: the draft, its signature and amendments of
 * one review item carry the same identifiers (a UUID named by the caller's report key,
 * with system urn:ietf:rfc:3986), and every entry is a conditional update (PUT
 * DiagnosticReport?identifier=...), so the server holds one DiagnosticReport per report
 * whose status moves from preliminary to final, and a retried delivery changes nothing.
 * The SR's SOP Instance UID is a second identifier (system urn:dicom:uid). DICOM UIDs are
 * written as "urn:oid:" values, coding schemes as their FHIR systems (SCT
 * http://snomed.info/sct, DCM http://dicom.nema.org/resources/ontology/DCM, LN
 * http://loinc.org, UCUM http://unitsofmeasure.org, UMLS
 * http://www.nlm.nih.gov/research/umls, RADLEX http://radlex.org; the table's private
 * scheme as RD_FHIR_PRIVATE_SYSTEM).
 */
#ifndef RADRAFT_FHIR_H
#define RADRAFT_FHIR_H

#include <stddef.h>

#include "radraft/error.h"
#include "radraft/findings.h"
#include "radraft/sr.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The FHIR system of radraft's private coding scheme (99RADRAFT): a UUID of its own. */
#define RD_FHIR_PRIVATE_SYSTEM "urn:uuid:5b0e6a52-2f7e-4d8c-9a51-8f1d3c2e7a90"
/* Largest Bundle written (14 Observations and two texts of at most RD_SR_MAX_TEXT). */
#define RD_FHIR_MAX_BUNDLE (1u << 20)

/* The model's result for one finding, as in the AIR SR. */
typedef struct rd_fhir_finding {
    rd_finding_state state;     /* present, uncertain or absent (not mentioned: absent) */
    double probability;         /* calibrated, [0, 1]; negative: not written */
    double present_threshold;   /* [0, 1]; negative (either threshold): no reference range */
    double uncertain_threshold; /* [0, present_threshold] */
} rd_fhir_finding;

/* What a Bundle is made of. Strings are UTF-8 and borrowed for the call. */
typedef struct rd_fhir_params {
    const char *sr_path;    /* the text SR this Bundle renders (header, texts, observers) */
    const char *report_key; /* names the report's lifecycle, e.g. "<study UID>/<content
                             * version>": the same for its draft and signed versions */
    rd_fhir_finding findings[RD_FINDING_N_ABNORMAL]; /* index rd_finding */
    int amended;                                     /* a signed SR that amends a signed one */
    const char *device_uid;   /* the model's Device UID (rd_sr_air_device_uid); required */
    const char *device_name;  /* e.g. "radraft resnet-small cxr-resnet-small-1"; required */
    const rd_sr_codes *codes; /* the code table; required */
} rd_fhir_params;

/* Fills `p` with zeros/NULLs and every probability and threshold with -1. */
void rd_fhir_params_init(rd_fhir_params *p);

/* Builds the Bundle of `p` as JSON (owned by the caller, free()). Errors: RD_E_INVALID
 * (missing parameters, a state or number out of range, an SR without a study or SOP
 * Instance UID), RD_E_CONFIG (a code whose scheme has no FHIR system), RD_E_NOT_FOUND /
 * RD_E_DICOM (the SR), RD_E_NOMEM. */
rd_status rd_fhir_bundle(const rd_fhir_params *p, char **json, rd_error *err);

/* rd_fhir_bundle written to `out_path` (atomically, 0600). */
rd_status rd_fhir_write(const rd_fhir_params *p, const char *out_path, rd_error *err);

/* The Bundle's path beside an SR: "X-fhir.json" for "X-sr.dcm" (or "X.dcm", "X"). */
rd_status rd_fhir_path(const char *sr_path, char *out, size_t size, rd_error *err);

/* Is `destination` a FHIR server (an http:// or https:// URL) rather than a DICOM peer? */
int rd_fhir_is_endpoint(const char *destination);

/* Checks that `endpoint` is a URL rd_fhir_post takes: http[s]://host[:port][/path], no
 * user, query or fragment. Errors: RD_E_INVALID, saying what is wrong. */
rd_status rd_fhir_endpoint_check(const char *endpoint, rd_error *err);

/* How radraft talks to the FHIR server (configuration keys fhir.*). */
typedef struct rd_fhir_client {
    double timeout_s;        /* connecting, sending and the whole reply; > 0 */
    const char *ca_file;     /* https: PEM CA certificates; NULL or "": the system store */
    const char *bearer_file; /* NULL or "": no Authorization header; else a file whose first
                              * line is sent as "Authorization: Bearer <token>" */
} rd_fhir_client;

/* The outcome of one POST. */
typedef struct rd_fhir_reply {
    int http_status;  /* 0: no reply (connection, TLS or timeout failure) */
    int permanent;    /* retrying cannot help: a 4xx other than 408 and 429 */
    char detail[256]; /* the server's OperationOutcome diagnostics or first body bytes */
} rd_fhir_reply;

/* POSTs the Bundle file `path` to `endpoint` (the server's base URL) and reads the reply.
 * RD_OK only for a 2xx reply; otherwise RD_E_NET with the status, the server's detail, or
 * the connection failure in `err`, and `reply` (may be NULL) says whether a retry may
 * succeed. Redirects are not followed. Errors: RD_E_INVALID (a malformed endpoint),
 * RD_E_NOT_FOUND / RD_E_IO / RD_E_TOO_LARGE (the file), RD_E_NET. */
rd_status rd_fhir_post(const char *endpoint, const char *path, const rd_fhir_client *client,
                       rd_fhir_reply *reply, rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
