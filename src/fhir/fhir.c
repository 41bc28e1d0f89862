/* radraft — a report as a FHIR R4 transaction Bundle (see radraft/fhir.h). The text SR is
 * read back, so that the Bundle says what the SR says: its patient, study, texts, flags
 * and observers. */
#include "radraft/fhir.h"

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/util.h"
#include "radraft/uid.h"

#define LOINC "http://loinc.org"
#define DICOM_UID_SYSTEM "urn:dicom:uid"
#define URI_SYSTEM "urn:ietf:rfc:3986"
#define UCUM "http://unitsofmeasure.org"

void rd_fhir_params_init(rd_fhir_params *p)
{
    memset(p, 0, sizeof *p);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        p->findings[f].state = RD_STATE_ABSENT;
        p->findings[f].probability = -1;
        p->findings[f].present_threshold = -1;
        p->findings[f].uncertain_threshold = -1;
    }
}

int rd_fhir_is_endpoint(const char *d)
{
    return d && (strncmp(d, "http://", 7) == 0 || strncmp(d, "https://", 8) == 0);
}

rd_status rd_fhir_path(const char *sr_path, char *out, size_t size, rd_error *err)
{
    return rd_path_beside_sr(sr_path, "-fhir.json", "FHIR Bundle", out, size, err);
}

/* The FHIR system of a DICOM coding scheme designator (PS3.16 Section 8), NULL if none. */
static const char *system_of(const char *scheme, const rd_sr_codes *codes)
{
    static const struct {
        const char *designator, *system;
    } known[] = {
        {"SCT", "http://snomed.info/sct"},
        {"DCM", "http://dicom.nema.org/resources/ontology/DCM"},
        {"LN", LOINC},
        {"UCUM", UCUM},
        {"UMLS", "http://www.nlm.nih.gov/research/umls"},
        {"RADLEX", "http://radlex.org"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (strcmp(scheme, known[i].designator) == 0)
            return known[i].system;
    return strcmp(scheme, codes->private_scheme) == 0 ? RD_FHIR_PRIVATE_SYSTEM : NULL;
}

/* A UUID named by `key` and `part`: the first 128 bits of SHA-256 over both, with the
 * version (8, RFC 9562's custom form) and variant bits set. The same names give the same
 * UUID, on any machine. */
static void named_uuid(const char *key, const char *part, char out[37])
{
    char name[1024], hex[RD_SHA256_HEX_SIZE];
    int n = snprintf(name, sizeof name, "radraft fhir\n%s\n%s", key, part);
    rd_sha256_hex(name, n < 0 ? 0 : (size_t)n < sizeof name ? (size_t)n : sizeof name - 1, hex);
    hex[12] = '8';
    hex[16] = "89ab"[(hex[16] >= 'a' ? hex[16] - 'a' + 10 : hex[16] - '0') & 3];
    snprintf(out, 37, "%.8s-%.4s-%.4s-%.4s-%.12s", hex, hex + 8, hex + 12, hex + 16, hex + 20);
}

static int digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

/* A FHIR dateTime from DICOM DA, TM and Timezone Offset From UTC (which, in DICOM, applies
 * to every date and time of the instance): the date alone when there is no time or no
 * offset (FHIR requires a zone with a time), "" when the date is malformed. */
static void fhir_datetime(const char *da, const char *tm, const char *tz, char out[40])
{
    out[0] = '\0';
    if (strlen(da) != 8 || !digits(da, 8))
        return;
    if (strlen(tm) >= 4 && digits(tm, 4) && strlen(tz) == 5 && (tz[0] == '+' || tz[0] == '-') &&
        digits(tz + 1, 4)) {
        const char *ss = strlen(tm) >= 6 && digits(tm + 4, 2) ? tm + 4 : "00";
        snprintf(out, 40, "%.4s-%.2s-%.2sT%.2s:%.2s:%.2s%c%.2s:%.2s", da, da + 4, da + 6, tm,
                 tm + 2, ss, tz[0], tz + 1, tz + 3);
    } else {
        snprintf(out, 40, "%.4s-%.2s-%.2s", da, da + 4, da + 6);
    }
}

/* Now as a FHIR instant, in UTC. */
static void now_instant(char out[32])
{
    time_t t = time(NULL);
    struct tm g;
    if (!gmtime_r(&t, &g) || !strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &g))
        rd_strlcpy(out, "1970-01-01T00:00:00Z", 32);
}

/* A DICOM person name as people read it: "Family^Given^Middle^Prefix^Suffix" becomes
 * "Prefix Given Middle Family Suffix" (the alphabetic group only). */
static void person_display(const char *pn, char *out, size_t size)
{
    char part[5][128] = {{0}};
    const char *p = pn;
    size_t used = 0;
    for (int i = 0; i < 5 && *p && *p != '='; i++) {
        size_t n = strcspn(p, "^=");
        snprintf(part[i], sizeof part[i], "%.*s", (int)(n < 127 ? n : 127), p);
        p += n;
        if (*p == '^')
            p++;
    }
    out[0] = '\0';
    static const int order[5] = {3, 1, 2, 0, 4};
    for (int k = 0; k < 5; k++) {
        const char *s = part[order[k]];
        if (!s[0])
            continue;
        int n = snprintf(out + used, size - used, "%s%s", used ? " " : "", s);
        if (n < 0 || (size_t)n >= size - used)
            break;
        used += (size_t)n;
    }
}

static char *base64(const char *data, size_t len)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
    if (!out)
        return NULL;
    for (size_t i = 0; i < len; i += 3) {
        unsigned v = (unsigned char)data[i] << 16;
        if (i + 1 < len)
            v |= (unsigned char)data[i + 1] << 8;
        if (i + 2 < len)
            v |= (unsigned char)data[i + 2];
        *o++ = tab[v >> 18 & 63];
        *o++ = tab[v >> 12 & 63];
        *o++ = i + 1 < len ? tab[v >> 6 & 63] : '=';
        *o++ = i + 2 < len ? tab[v & 63] : '=';
    }
    *o = '\0';
    return out;
}

/* ---- building blocks; each returns NULL when out of memory (cJSON hands NULL on) ---- */

static cJSON *coding(const char *system, const char *code, const char *display)
{
    cJSON *c = cJSON_CreateObject();
    if (c && (!cJSON_AddStringToObject(c, "system", system) ||
              !cJSON_AddStringToObject(c, "code", code) ||
              (display && !cJSON_AddStringToObject(c, "display", display)))) {
        cJSON_Delete(c);
        return NULL;
    }
    return c;
}

/* {"coding": [the code], "text": text or the code's meaning}. */
static cJSON *concept(const rd_sr_code *code, const char *system, const char *text)
{
    cJSON *c = cJSON_CreateObject(), *list = cJSON_AddArrayToObject(c, "coding");
    if (!list || !cJSON_AddItemToArray(list, coding(system, code->value, code->meaning)) ||
        !cJSON_AddStringToObject(c, "text", text ? text : code->meaning)) {
        cJSON_Delete(c);
        return NULL;
    }
    return c;
}

static cJSON *identifier(const char *system, const char *value)
{
    cJSON *c = cJSON_CreateObject();
    if (c && (!cJSON_AddStringToObject(c, "system", system) ||
              !cJSON_AddStringToObject(c, "value", value))) {
        cJSON_Delete(c);
        return NULL;
    }
    return c;
}

/* A logical reference: {"type": type, "identifier": {...}, "display": display}. */
static cJSON *logical_ref(const char *type, cJSON *ident, const char *display)
{
    cJSON *c = cJSON_CreateObject();
    if (!c || !ident || (type && !cJSON_AddStringToObject(c, "type", type)) ||
        !cJSON_AddItemToObject(c, "identifier", ident)) {
        cJSON_Delete(ident);
        cJSON_Delete(c);
        return NULL;
    }
    if (display && display[0] && !cJSON_AddStringToObject(c, "display", display)) {
        cJSON_Delete(c);
        return NULL;
    }
    return c;
}

/* An identifier without a system (a Patient ID whose issuer radraft does not know). */
static cJSON *identifier_value(const char *value)
{
    cJSON *c = cJSON_CreateObject();
    if (c && !cJSON_AddStringToObject(c, "value", value)) {
        cJSON_Delete(c);
        return NULL;
    }
    return c;
}

static cJSON *display_ref(const char *display)
{
    cJSON *c = cJSON_CreateObject();
    if (c && !cJSON_AddStringToObject(c, "display", display)) {
        cJSON_Delete(c);
        return NULL;
    }
    return c;
}

static cJSON *array_of(cJSON *item)
{
    cJSON *a = cJSON_CreateArray();
    if (!a || !item || !cJSON_AddItemToArray(a, item)) {
        cJSON_Delete(item);
        cJSON_Delete(a);
        return NULL;
    }
    return a;
}

static cJSON *quantity(double v)
{
    cJSON *q = cJSON_CreateObject();
    if (q &&
        (!cJSON_AddNumberToObject(q, "value", v) || !cJSON_AddStringToObject(q, "unit", "1") ||
         !cJSON_AddStringToObject(q, "system", UCUM) || !cJSON_AddStringToObject(q, "code", "1"))) {
        cJSON_Delete(q);
        return NULL;
    }
    return q;
}

/* Adds `item` (NULL: out of memory) to `obj` under `key`; 0 on failure. */
static int put(cJSON *obj, const char *key, cJSON *item)
{
    if (!item)
        return 0;
    if (!cJSON_AddItemToObject(obj, key, item)) {
        cJSON_Delete(item);
        return 0;
    }
    return 1;
}

/* ---- the Bundle ---- */

typedef struct context {
    const rd_fhir_params *p;
    const rd_sr_info *sr;
    const char *status;
    char effective[40], issued[32];
    char study_oid[RD_UID_SIZE + 8], device_oid[RD_UID_SIZE + 8], device_name[160];
    char patient[256], verifier[256];
} context;

/* {"system": ..., "value": "urn:uuid:..."} and the conditional URL that finds it. */
static void conditional_url(const char *type, const char *uuid, char *out, size_t size)
{
    snprintf(out, size, "%s?identifier=urn%%3Aietf%%3Arfc%%3A3986%%7Curn%%3Auuid%%3A%s", type,
             uuid);
}

static cJSON *entry(cJSON *resource, const char *type, const char *uuid)
{
    char full[64], url[160];
    cJSON *e = resource ? cJSON_CreateObject() : NULL, *req = NULL;
    snprintf(full, sizeof full, "urn:uuid:%.36s", uuid);
    conditional_url(type, uuid, url, sizeof url);
    if (!e) {
        cJSON_Delete(resource);
        return NULL;
    }
    /* The resource first: from here on `e` owns it, whatever fails (put frees it if the
     * adding itself fails). */
    if (!put(e, "resource", resource) || !cJSON_AddStringToObject(e, "fullUrl", full) ||
        !(req = cJSON_AddObjectToObject(e, "request")) ||
        !cJSON_AddStringToObject(req, "method", "PUT") ||
        !cJSON_AddStringToObject(req, "url", url)) {
        cJSON_Delete(e);
        return NULL;
    }
    return e;
}

/* The fields the DiagnosticReport and its Observations share: status, subject, effective,
 * issued, and the signer under `signer_key` (NULL: none). */
static int common(cJSON *r, const context *c, const char *signer_key)
{
    if (!cJSON_AddStringToObject(r, "status", c->status))
        return 0;
    if (c->sr->patient_id[0] &&
        !put(r, "subject", logical_ref("Patient", identifier_value(c->sr->patient_id), c->patient)))
        return 0;
    if (c->effective[0] && !cJSON_AddStringToObject(r, "effectiveDateTime", c->effective))
        return 0;
    if (!cJSON_AddStringToObject(r, "issued", c->issued))
        return 0;
    if (c->verifier[0] && signer_key && !put(r, signer_key, array_of(display_ref(c->verifier))))
        return 0;
    return 1;
}

static cJSON *study_ref(const context *c)
{
    return logical_ref("ImagingStudy", identifier(DICOM_UID_SYSTEM, c->study_oid), NULL);
}

static const rd_sr_code *state_code(const rd_sr_codes *codes, rd_finding_state s)
{
    return s == RD_STATE_PRESENT     ? &codes->present
           : s == RD_STATE_UNCERTAIN ? &codes->uncertain
                                     : &codes->absent;
}

/* The model's probability, with the operating thresholds as its reference range. */
static cJSON *probability(const context *c, const rd_fhir_finding *x)
{
    const rd_sr_codes *codes = c->p->codes;
    cJSON *comp = cJSON_CreateObject(), *rr;
    char text[160];
    if (!comp ||
        !put(comp, "code",
             concept(&codes->score, system_of(codes->score.scheme, codes),
                     "Probability of the finding (radraft model, calibrated)")) ||
        !put(comp, "valueQuantity", quantity(x->probability)))
        goto fail;
    if (x->present_threshold >= 0 && x->uncertain_threshold >= 0) {
        snprintf(text, sizeof text,
                 "operating thresholds: uncertain at or above %.4g (low), present at or above "
                 "%.4g (high)",
                 x->uncertain_threshold, x->present_threshold);
        if (!(rr = cJSON_CreateObject()) || !put(comp, "referenceRange", array_of(rr)) ||
            !put(rr, "low", quantity(x->uncertain_threshold)) ||
            !put(rr, "high", quantity(x->present_threshold)) ||
            !cJSON_AddStringToObject(rr, "text", text))
            goto fail;
    }
    return comp;
fail:
    cJSON_Delete(comp);
    return NULL;
}

static cJSON *observation(const context *c, int f, const char *uuid)
{
    const rd_fhir_params *p = c->p;
    const rd_fhir_finding *x = &p->findings[f];
    const rd_sr_code *code = &p->codes->finding[f];
    char urn[64];
    cJSON *o = cJSON_CreateObject(), *cat = NULL;
    snprintf(urn, sizeof urn, "urn:uuid:%.36s", uuid);
    if (!o || !cJSON_AddStringToObject(o, "resourceType", "Observation") ||
        !put(o, "identifier", array_of(identifier(URI_SYSTEM, urn))) || !common(o, c, "performer"))
        goto fail;
    if (!(cat = cJSON_CreateObject()) || !put(o, "category", array_of(cat)) ||
        !put(cat, "coding",
             array_of(coding("http://terminology.hl7.org/CodeSystem/observation-category",
                             "imaging", "Imaging"))))
        goto fail;
    if (!put(o, "code", concept(code, system_of(code->scheme, p->codes), NULL)) ||
        !put(o, "valueCodeableConcept",
             concept(state_code(p->codes, x->state),
                     system_of(state_code(p->codes, x->state)->scheme, p->codes), NULL)) ||
        !put(o, "device",
             logical_ref("Device", identifier(DICOM_UID_SYSTEM, c->device_oid), c->device_name)) ||
        !put(o, "derivedFrom", array_of(study_ref(c))))
        goto fail;
    if (x->probability >= 0 && !put(o, "component", array_of(probability(c, x))))
        goto fail;
    return o;
fail:
    cJSON_Delete(o);
    return NULL;
}

static cJSON *report(const context *c, const char *uuid, char obs[][37])
{
    const rd_fhir_params *p = c->p;
    const rd_sr_info *sr = c->sr;
    char urn[64], sr_oid[RD_UID_SIZE + 8], title[128];
    cJSON *r = cJSON_CreateObject(), *a, *x, *cat = NULL;
    char *text = NULL, *b64 = NULL;
    size_t len;
    snprintf(urn, sizeof urn, "urn:uuid:%.36s", uuid);
    snprintf(sr_oid, sizeof sr_oid, "urn:oid:%s", sr->sop_instance_uid);
    if (!r || !cJSON_AddStringToObject(r, "resourceType", "DiagnosticReport") ||
        !(a = cJSON_AddArrayToObject(r, "identifier")) ||
        !cJSON_AddItemToArray(a, identifier(URI_SYSTEM, urn)) ||
        !cJSON_AddItemToArray(a, identifier(DICOM_UID_SYSTEM, sr_oid)))
        goto fail;
    if (sr->accession_number[0]) {
        /* The order, as the RIS knows it: the accession number (HL7 v2 identifier type
         * ACSN). */
        cJSON *id = identifier_value(sr->accession_number), *type = NULL;
        if (!id || !(type = cJSON_AddObjectToObject(id, "type")) ||
            !put(type, "coding",
                 array_of(coding("http://terminology.hl7.org/CodeSystem/v2-0203", "ACSN",
                                 "Accession ID")))) {
            cJSON_Delete(id);
            goto fail;
        }
        if (!put(r, "basedOn", array_of(logical_ref("ServiceRequest", id, NULL))))
            goto fail;
    }
    if (!common(r, c, "resultsInterpreter"))
        goto fail;
    if (!(cat = cJSON_CreateObject()) || !put(r, "category", array_of(cat)) ||
        !(a = cJSON_AddArrayToObject(cat, "coding")) ||
        !cJSON_AddItemToArray(
            a, coding("http://terminology.hl7.org/CodeSystem/v2-0074", "RAD", "Radiology")) ||
        !cJSON_AddItemToArray(a, coding(LOINC, "LP29684-5", "Radiology")))
        goto fail;
    if (!(x = cJSON_AddObjectToObject(r, "code")) ||
        !put(x, "coding", array_of(coding(LOINC, "18748-4", "Diagnostic imaging study"))) ||
        !cJSON_AddStringToObject(x, "text", p->codes->procedure.meaning))
        goto fail;
    if (c->verifier[0] && sr->verifier_organization[0] &&
        !put(r, "performer", array_of(display_ref(sr->verifier_organization))))
        goto fail;
    if (!(a = cJSON_AddArrayToObject(r, "result")))
        goto fail;
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        char ref[64];
        cJSON *o = cJSON_CreateObject();
        snprintf(ref, sizeof ref, "urn:uuid:%.36s", obs[f]);
        if (!o || !cJSON_AddItemToArray(a, o)) {
            cJSON_Delete(o);
            goto fail;
        }
        if (!cJSON_AddStringToObject(o, "reference", ref) ||
            !cJSON_AddStringToObject(o, "display", p->codes->finding[f].meaning))
            goto fail;
    }
    if (!put(r, "imagingStudy", array_of(study_ref(c))) ||
        !cJSON_AddStringToObject(r, "conclusion", sr->impression_text))
        goto fail;
    a = NULL;
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        const rd_sr_code *code = &p->codes->finding[f];
        if (p->findings[f].state != RD_STATE_PRESENT)
            continue;
        if ((!a && !(a = cJSON_AddArrayToObject(r, "conclusionCode"))) ||
            !cJSON_AddItemToArray(a, concept(code, system_of(code->scheme, p->codes), NULL)))
            goto fail;
    }
    /* The whole report as the SR's text says it. */
    len = strlen(sr->findings_text) + strlen(sr->impression_text) + 32;
    if (!(text = malloc(len)))
        goto fail;
    len = (size_t)snprintf(text, len, "FINDINGS:\n%s\n\nIMPRESSION:\n%s\n", sr->findings_text,
                           sr->impression_text);
    snprintf(title, sizeof title, "%s report (%s)", p->codes->procedure.meaning,
             c->verifier[0] ? "signed" : "unverified AI draft");
    if (!(b64 = base64(text, len)) || !(x = cJSON_CreateObject()) ||
        !put(r, "presentedForm", array_of(x)) ||
        !cJSON_AddStringToObject(x, "contentType", "text/plain; charset=utf-8") ||
        !cJSON_AddStringToObject(x, "language", "en") || !cJSON_AddStringToObject(x, "data", b64) ||
        !cJSON_AddStringToObject(x, "title", title) ||
        !cJSON_AddStringToObject(x, "creation", c->issued))
        goto fail;
    free(text);
    free(b64);
    return r;
fail:
    free(text);
    free(b64);
    cJSON_Delete(r);
    return NULL;
}

static rd_status check_params(const rd_fhir_params *p, rd_error *err)
{
    if (!p || !p->sr_path || !p->report_key || !p->report_key[0] || !p->device_uid ||
        !rd_uid_valid(p->device_uid) || !p->device_name || !p->device_name[0] || !p->codes)
        return rd_error_set(err, RD_E_INVALID,
                            "FHIR: an SR, a report key, the model's Device UID and name and the "
                            "code table are required");
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        const rd_fhir_finding *x = &p->findings[f];
        const char *name = rd_finding_name((rd_finding)f);
        if ((unsigned)x->state > RD_STATE_PRESENT)
            return rd_error_set(err, RD_E_INVALID, "FHIR: %s: state out of range", name);
        if (!(x->probability <= 1) ||
            (x->present_threshold >= 0 &&
             !(x->present_threshold <= 1 && x->uncertain_threshold <= x->present_threshold)))
            return rd_error_set(err, RD_E_INVALID,
                                "FHIR: %s: probability or thresholds out of range", name);
    }
    /* Every code must have a FHIR system. */
    const rd_sr_code *all[RD_FINDING_N_ABNORMAL + 4] = {&p->codes->present, &p->codes->absent,
                                                        &p->codes->uncertain, &p->codes->score};
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        all[4 + f] = &p->codes->finding[f];
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!system_of(all[i]->scheme, p->codes))
            return rd_error_set(err, RD_E_CONFIG,
                                "FHIR: code %s of scheme %s (%s): no FHIR system is known for "
                                "the scheme",
                                all[i]->value, all[i]->scheme, all[i]->meaning);
    return RD_OK;
}

rd_status rd_fhir_bundle(const rd_fhir_params *p, char **json, rd_error *err)
{
    rd_sr_info sr;
    context c;
    char report_uuid[37], obs[RD_FINDING_N_ABNORMAL][37];
    cJSON *bundle = NULL, *entries;
    rd_status st;
    *json = NULL;
    if ((st = check_params(p, err)) != RD_OK ||
        (st = rd_sr_read(p->sr_path, p->codes, &sr, err)) != RD_OK)
        return st;
    memset(&c, 0, sizeof c);
    c.p = p;
    c.sr = &sr;
    if (!sr.study_uid[0] || !sr.sop_instance_uid[0] || !sr.findings_text || !sr.impression_text) {
        st = rd_error_set(err, RD_E_INVALID,
                          "FHIR: %s: an SR with a study, a SOP instance and both texts is "
                          "required",
                          p->sr_path);
        goto out;
    }
    snprintf(c.device_oid, sizeof c.device_oid, "urn:oid:%s", p->device_uid);
    snprintf(c.study_oid, sizeof c.study_oid, "urn:oid:%s", sr.study_uid);
    rd_strlcpy(c.device_name, p->device_name, sizeof c.device_name);
    c.status = strcmp(sr.verification_flag, "VERIFIED") != 0 ? "preliminary"
               : p->amended                                  ? "amended"
                                                             : "final";
    if (strcmp(sr.verification_flag, "VERIFIED") == 0)
        person_display(sr.verifier_name, c.verifier, sizeof c.verifier);
    person_display(sr.patient_name, c.patient, sizeof c.patient);
    fhir_datetime(sr.study_date, sr.study_time, sr.timezone_offset, c.effective);
    now_instant(c.issued);

    named_uuid(p->report_key, "DiagnosticReport", report_uuid);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        named_uuid(p->report_key, rd_finding_name((rd_finding)f), obs[f]);
    if (!(bundle = cJSON_CreateObject()) ||
        !cJSON_AddStringToObject(bundle, "resourceType", "Bundle") ||
        !cJSON_AddStringToObject(bundle, "type", "transaction") ||
        !(entries = cJSON_AddArrayToObject(bundle, "entry")) ||
        !cJSON_AddItemToArray(entries,
                              entry(report(&c, report_uuid, obs), "DiagnosticReport", report_uuid)))
        goto nomem;
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        if (!cJSON_AddItemToArray(entries,
                                  entry(observation(&c, f, obs[f]), "Observation", obs[f])))
            goto nomem;
    if (!(*json = cJSON_Print(bundle)))
        goto nomem;
    if (strlen(*json) > RD_FHIR_MAX_BUNDLE) {
        cJSON_free(*json);
        *json = NULL;
        st = rd_error_set(err, RD_E_TOO_LARGE, "FHIR: the Bundle exceeds %u bytes",
                          RD_FHIR_MAX_BUNDLE);
    }
    goto out;
nomem:
    st = rd_error_set(err, RD_E_NOMEM, "FHIR: out of memory building the Bundle");
out:
    cJSON_Delete(bundle);
    rd_sr_info_free(&sr);
    return st;
}

rd_status rd_fhir_write(const rd_fhir_params *p, const char *out_path, rd_error *err)
{
    char *json;
    rd_status st = rd_fhir_bundle(p, &json, err);
    if (st != RD_OK)
        return st;
    st = rd_write_file_atomic(out_path, json, strlen(json), err);
    cJSON_free(json);
    return st;
}
