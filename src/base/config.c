#include "radraft/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

typedef enum cfg_type { CFG_INT, CFG_DOUBLE, CFG_BOOL, CFG_STRING, CFG_STRLIST } cfg_type;

typedef struct cfg_key {
    const char *name;
    cfg_type type;
    size_t offset, size; /* where the value lives in rd_config, and its size */
    double min, max;     /* INT, DOUBLE: inclusive range; STRING: length bounds */
    const char *def;     /* default in text form, parsed by the same code as overrides */
    const char *choices; /* STRING: '|'-separated allowed values, or NULL */
    const char *help;
} cfg_key;

#define OFF(field) offsetof(rd_config, field), sizeof(((rd_config *)0)->field)

/* The configuration table. Add a key here and in rd_config; nothing else is needed for it
 * to be parsed, validated, overridable and printed. */
static const cfg_key cfg_keys[] = {
    {"log.level", CFG_STRING, OFF(log_level), 1, 15, "info", "error|warn|info|debug",
     "least severe level written to the log"},
    {"dicom.max_dimension", CFG_INT, OFF(dicom_max_dimension), 16, 65535, "16384", NULL,
     "largest Rows or Columns accepted when decoding an image; larger ones are refused"},
    {"dicom.voi_percentile_low", CFG_DOUBLE, OFF(dicom_voi_percentile_low), 0, 49, "0.5", NULL,
     "lower percentile of pixel values mapped to black when the image has no VOI window"},
    {"dicom.voi_percentile_high", CFG_DOUBLE, OFF(dicom_voi_percentile_high), 51, 100, "99.5", NULL,
     "upper percentile of pixel values mapped to white when the image has no VOI window"},
    {"labeler.phrases", CFG_STRING, OFF(labeler_phrases), 0, RD_CONFIG_STR_MAX - 1, "", NULL,
     "JSON phrase file that extends (or, with \"mode\": \"replace\", replaces) the built-in "
     "labeler phrases; empty: built-in only"},
    {"labeler.speculative", CFG_STRING, OFF(labeler_speculative), 1, 15, "not_mentioned",
     "not_mentioned|uncertain",
     "state of a finding a report only raises as a possibility (\"may represent\", \"cannot "
     "exclude\"): not_mentioned, as the expert labels count it, or uncertain"},
    {"generator.templates", CFG_STRING, OFF(generator_templates), 0, RD_CONFIG_STR_MAX - 1, "",
     NULL, "JSON report template file used instead of the built-in templates; empty: built-in"},
    {"generator.thresholds", CFG_STRING, OFF(generator_thresholds), 0, RD_CONFIG_STR_MAX - 1, "",
     NULL, "JSON file of per-finding present/uncertain score thresholds; empty: the model's"},
    {"generator.reuse_neighbour_sentences", CFG_BOOL, OFF(generator_reuse_neighbour_sentences), 0,
     1, "false", NULL,
     "let the generator take a finding's sentence from a similar past case's report instead "
     "of the template (another patient's wording in this patient's draft); off by default"},
    {"sr.finding_codes", CFG_STRING, OFF(sr_finding_codes), 0, RD_CONFIG_STR_MAX - 1, "", NULL,
     "JSON code table (SNOMED CT / DCM codes of the findings, states and score) used instead "
     "of the built-in models/finding-codes.json; empty: built-in"},
    {"sr.air", CFG_BOOL, OFF(sr_air), 0, 1, "true", NULL,
     "write an IHE AI Results SR (Comprehensive 3D SR, TID 1500: the model's probability, "
     "thresholds and state of each finding) beside each draft and signed text report, and "
     "queue it to the same destinations"},
    {"generator.localize", CFG_BOOL, OFF(generator_localize), 0, 1, "true", NULL,
     "name the side and zone of each finding the draft mentions, from the encoder's class "
     "activation maps, and keep a heat map per finding with the review item"},
    {"encoder.model", CFG_STRING, OFF(encoder_model), 0, RD_CONFIG_STR_MAX - 1,
     RD_MODELS_DIR "/cxr-resnet-small", NULL,
     "encoder model: a folder holding model.json (+ its safetensors), or the JSON file; "
     "default: the model radraft ships; empty: none (drafting off)"},
    {"encoder.threads", CFG_INT, OFF(encoder_threads), 0, 256, "0", NULL,
     "threads of one encoder (its OpenBLAS calls run inside them); 0: one per core"},
    {"encoder.batch", CFG_INT, OFF(encoder_batch), 1, 256, "8", NULL,
     "images per forward pass when several are embedded together (radraft embed)"},
    {"retrieval.k", CFG_INT, OFF(retrieval_k), 0, 1024, "0", NULL,
     "similar past studies that vote on each finding; 0: the model's value, else 10"},
    {"retrieval.encoder_weight", CFG_DOUBLE, OFF(retrieval_encoder_weight), -1, 1, "-1", NULL,
     "w in score = w * encoder + (1 - w) * neighbour votes; -1: the model's value, else 0.5"},
    {"retrieval.min_similarity", CFG_DOUBLE, OFF(retrieval_min_similarity), -1, 1, "-1", NULL,
     "neighbours less similar (cosine) are ignored; -1: the model's value, else no minimum"},
    {"retrieval.date_window_days", CFG_INT, OFF(retrieval_date_window_days), 0, 36500, "0", NULL,
     "only neighbours dated within this many days of the study; 0: any date"},
    {"retrieval.uncertain_value", CFG_DOUBLE, OFF(retrieval_uncertain_value), -1, 1, "-1", NULL,
     "vote of a neighbour whose report is uncertain (present 1, absent 0); -1: the model's "
     "value, else 0.5"},
    {"retrieval.temperature", CFG_DOUBLE, OFF(retrieval_temperature), -1, 10, "-1", NULL,
     "> 0: neighbours weigh exp((sim - best) / temperature); 0: weigh their similarity; "
     "-1: the model's value, else 0"},
    {"retrieval.storage", CFG_STRING, OFF(retrieval_storage), 1, 7, "f32", "f32|f16|int8",
     "what one query scans: f32 rows; f16 or int8, a second copy of the archive's rows at half "
     "or a quarter of their size (scanned about 1.7x or 3x faster), the best 4k + 32 then "
     "re-ranked with the f32 rows, which stay in memory (1.5x or 1.25x the memory of f32)"},
    {"archive.patient_salt", CFG_STRING, OFF(archive_patient_salt), 0, RD_CONFIG_ITEM_MAX - 1, "",
     NULL, "site secret mixed into the patient id hashes kept in the archive"},
    {"archive.load_seed", CFG_BOOL, OFF(archive_load_seed), 0, 1, "true", NULL,
     "load the model's seed-archive.bin when the archive holds nothing of its model version"},
    {"archive.refresh_seconds", CFG_DOUBLE, OFF(archive_refresh_seconds), 0, 3600, "1", NULL,
     "how often a running pipeline picks up archive entries added by others (signed "
     "reports); 0: before every study"},
    {"review.urgent_findings", CFG_STRLIST, OFF(review_urgent_findings), 0, 0, "Pneumothorax", NULL,
     "findings that make a draft urgent in the review queue when drafted present or "
     "uncertain"},
    {"review.claim_minutes", CFG_INT, OFF(review_claim_minutes), 1, 1440, "30", NULL,
     "how long a claim on a review item lasts; an expired claim can be taken over"},
    {"review.organization", CFG_STRING, OFF(review_organization), 0, 64, "", NULL,
     "the verifying organization named in signed SRs (required to sign)"},
    {"web.port", CFG_INT, OFF(web_port), 0, 65535, "0", NULL,
     "TCP port of the review web page and its JSON API (radraft serve, radraft web); 0: off"},
    {"web.bind", CFG_STRING, OFF(web_bind), 1, 63, "127.0.0.1", NULL,
     "address the web server listens on (IPv4 or IPv6; 0.0.0.0 or :: for every interface)"},
    {"web.tls_certificate", CFG_STRING, OFF(web_tls_certificate), 0, 1000, "", NULL,
     "PEM certificate: when set the web server speaks HTTPS only"},
    {"web.tls_private_key", CFG_STRING, OFF(web_tls_private_key), 0, 1000, "", NULL,
     "PEM private key of web.tls_certificate"},
    {"web.max_connections", CFG_INT, OFF(web_max_connections), 1, 4096, "64", NULL,
     "HTTP connections served at once; more are refused"},
    {"web.max_body_bytes", CFG_INT, OFF(web_max_body_bytes), 1024, 16777216, "262144", NULL,
     "largest request body accepted; a larger one is answered 413 without being read"},
    {"web.max_header_bytes", CFG_INT, OFF(web_max_header_bytes), 4096, 1048576, "16384", NULL,
     "memory of one connection for its request line and headers (larger requests fail)"},
    {"web.request_timeout_seconds", CFG_INT, OFF(web_request_timeout_seconds), 1, 3600, "30", NULL,
     "seconds a connection may stay idle (a slow client is disconnected)"},
    {"web.session_idle_minutes", CFG_INT, OFF(web_session_idle_minutes), 1, 1440, "30", NULL,
     "a web session without a request for this long ends"},
    {"web.login_max_failures", CFG_INT, OFF(web_login_max_failures), 1, 1000, "5", NULL,
     "failed logins of one user or from one address before further attempts get 429"},
    {"web.lockout_seconds", CFG_INT, OFF(web_lockout_seconds), 1, 86400, "300", NULL,
     "the window in which failed logins are counted, and how long a lockout lasts"},
    {"pipeline.workers", CFG_INT, OFF(pipeline_workers), 0, 64, "0", NULL,
     "drafting workers; 0: serve uses half the cores (at least 1), batch one per core; "
     "workers x encoder.threads never exceeds the cores"},
    {"pipeline.block", CFG_INT, OFF(pipeline_block), 1, 64, "16", NULL,
     "studies a radraft batch worker drafts together: each is read, decoded and embedded, "
     "then their archive searches run as one (a single pass over the archive, sgemm), then "
     "each is written; 1: one at a time (serve always drafts one at a time)"},
    {"pipeline.retry_max_attempts", CFG_INT, OFF(pipeline_retry_max_attempts), 1, 100, "5", NULL,
     "attempts of a study job whose failure may pass (I/O, database) before it is failed"},
    {"pipeline.retry_initial_seconds", CFG_INT, OFF(pipeline_retry_initial_seconds), 0, 86400, "2",
     NULL,
     "delay before the second attempt of a study job (serve and batch); doubled at "
     "each retry"},
    {"pipeline.retry_max_seconds", CFG_INT, OFF(pipeline_retry_max_seconds), 0, 86400, "300", NULL,
     "longest delay between two attempts of a study job"},
    {"server.port", CFG_INT, OFF(server_port), 1, 65535, "11112", NULL,
     "TCP port of the DICOM listener (radraft serve)"},
    {"server.bind", CFG_STRING, OFF(server_bind), 1, 63, "0.0.0.0", NULL,
     "IPv4 address the DICOM listener binds; 0.0.0.0 is every interface, as DICOM nodes "
     "expect (then allow only known peers with server.allowed_calling_aes)"},
    {"server.ae_title", CFG_STRING, OFF(server_ae_title), 1, 16, "RADRAFT", NULL,
     "AE title of the listener, also the calling AE title when radraft sends"},
    {"server.data_dir", CFG_STRING, OFF(server_data_dir), 1, 1000, "./radraft-data", NULL,
     "data directory: store/ (received files) and radraft.db (the index)"},
    {"server.max_associations", CFG_INT, OFF(server_max_associations), 1, 1024, "16", NULL,
     "associations served at once; more are rejected (local limit exceeded)"},
    {"server.stable_seconds", CFG_INT, OFF(server_stable_seconds), 0, 86400, "30", NULL,
     "a study without a new instance for this long is complete: its job is queued"},
    {"server.node_name", CFG_STRING, OFF(server_node_name), 0, 63, "", NULL,
     "this node's name in the jobs and deliveries it takes, unique among the nodes of one "
     "database; empty: hostname:server.port"},
    {"server.node_timeout_seconds", CFG_DOUBLE, OFF(server_node_timeout_seconds), 2, 3600, "30",
     NULL,
     "a node without a heartbeat for this long has stopped: its running jobs and deliveries go "
     "back to the queues for the other nodes"},
    {"server.allowed_calling_aes", CFG_STRLIST, OFF(server_allowed_calling_aes), 0, 0, "", NULL,
     "calling AE titles allowed to associate; empty allows every peer"},
    {"server.check_called_ae", CFG_BOOL, OFF(server_check_called_ae), 0, 1, "true", NULL,
     "reject associations whose called AE title is not server.ae_title"},
    {"server.max_pdu", CFG_INT, OFF(server_max_pdu), 4096, 131072, "116794", NULL,
     "largest PDU received, in bytes (DCMTK's default is 16384)"},
    {"server.acse_timeout", CFG_INT, OFF(server_acse_timeout), 1, 3600, "30", NULL,
     "seconds to wait for association messages (request, release)"},
    {"server.dimse_timeout", CFG_INT, OFF(server_dimse_timeout), 1, 3600, "60", NULL,
     "seconds to wait for the next part of a DIMSE message once it has begun"},
    {"server.idle_timeout", CFG_INT, OFF(server_idle_timeout), 1, 86400, "300", NULL,
     "seconds an association may stay idle before radraft aborts it"},
    {"server.request_timeout", CFG_INT, OFF(server_request_timeout), 1, 3600, "10", NULL,
     "seconds a new connection has to complete its association request (TLS handshake "
     "included); a slower one is closed"},
    {"server.max_pending_per_peer", CFG_INT, OFF(server_max_pending_per_peer), 1, 1024, "4", NULL,
     "connections of one IP address whose association request is still being read; more are "
     "closed at once"},
    {"server.max_inflated_mb", CFG_INT, OFF(server_max_inflated_mb), 1, 256, "256", NULL,
     "a deflated dataset that inflates to more MiB is refused (0xA700)"},
    {"server.max_inflate_ratio", CFG_INT, OFF(server_max_inflate_ratio), 1, 100000, "200", NULL,
     "a deflated dataset inflating to over 16 MiB and more than this many times its size is "
     "refused (0xA700)"},
    {"server.receive_memory_mb", CFG_INT, OFF(server_receive_memory_mb), 1, 1048576, "1024", NULL,
     "memory for receiving (association buffers, inflating deflated datasets); a new "
     "association that does not fit is rejected"},
    {"server.tls_certificate", CFG_STRING, OFF(server_tls_certificate), 0, 1000, "", NULL,
     "PEM certificate: when set the listener speaks DICOM TLS only (and the sender presents it)"},
    {"server.tls_private_key", CFG_STRING, OFF(server_tls_private_key), 0, 1000, "", NULL,
     "PEM private key of server.tls_certificate"},
    {"server.tls_ca_certificates", CFG_STRING, OFF(server_tls_ca_certificates), 0, 1000, "", NULL,
     "PEM file of trusted CAs: TLS peers must present a certificate they signed (empty: the "
     "system store /etc/ssl/certs)"},
    {"server.tls_verify_peer", CFG_BOOL, OFF(server_tls_verify_peer), 0, 1, "true", NULL,
     "require and verify the TLS peer's certificate (listener and sender); false accepts any "
     "certificate, with a warning"},
    {"outbox.tls", CFG_BOOL, OFF(outbox_tls), 0, 1, "false", NULL,
     "send to the destinations (and radraft send/echo) over DICOM TLS, but those ending +plain"},
    {"store.duplicate_policy", CFG_STRING, OFF(store_duplicate_policy), 1, 15, "keep-first",
     "keep-first|replace",
     "an instance received again with different content: keep the first or replace it"},
    {"store.sync", CFG_STRING, OFF(store_sync), 1, 15, "auto", "auto|file|filesystem",
     "how a received instance is made durable before its success response (SQLite): fsync of "
     "its file and folder, or one syncfs of the data directory's file system per commit group; "
     "auto: filesystem when the data directory is a mount point, file otherwise"},
    {"store.backend", CFG_STRING, OFF(store_backend), 1, 15, "sqlite", "sqlite|postgresql",
     "where the index lives: SQLite in the data directory, or a PostgreSQL database that several "
     "nodes share (their data directories then one shared folder)"},
    {"store.postgresql_dsn", CFG_STRING, OFF(store_postgresql_dsn), 0, 1023, "", NULL,
     "libpq connection string or postgresql:// URI of the database (store.backend postgresql); "
     "keep the password in ~/.pgpass or PGPASSFILE, not here"},
    {"store.postgresql_schema", CFG_STRING, OFF(store_postgresql_schema), 1, 63, "radraft", NULL,
     "schema of radraft's tables in that database (created when missing): lower-case letters, "
     "digits and _; auto: radraft_ and the start of the data folder's id (DATA/store-id)"},
    {"outbox.destinations", CFG_STRLIST, OFF(outbox_destinations), 0, 0, "", NULL,
     "DICOM destinations (AE@host:port, +tls or +plain after the port to override outbox.tls) "
     "that results are sent to"},
    {"outbox.retry_initial_seconds", CFG_INT, OFF(outbox_retry_initial_seconds), 1, 86400, "5",
     NULL, "delay before the first retry of a failed delivery; doubled at each retry"},
    {"outbox.retry_max_seconds", CFG_INT, OFF(outbox_retry_max_seconds), 1, 604800, "600", NULL,
     "longest delay between two attempts of a delivery"},
    {"qr.retrieve", CFG_STRING, OFF(qr_retrieve), 1, 7, "get", "get|move",
     "how batch --from-pacs retrieves a study: get (C-GET, on radraft's own association: the "
     "PACS needs no route to radraft) or move (C-MOVE to radraft's listener on server.port, "
     "which the PACS must know by qr.move_destination)"},
    {"qr.move_destination", CFG_STRING, OFF(qr_move_destination), 0, 16, "", NULL,
     "the AE title the PACS moves studies to (radraft's, as configured in the PACS); empty: "
     "server.ae_title"},
    {"qr.studies_per_minute", CFG_DOUBLE, OFF(qr_studies_per_minute), 0, 100000, "0", NULL,
     "most retrievals batch --from-pacs starts per minute, to spare the PACS; 0: no limit"},
    {"qr.page_days", CFG_INT, OFF(qr_page_days), 1, 36600, "31", NULL,
     "days of study dates asked per C-FIND, so that a long archive is never one huge answer"},
    {"qr.page_max_matches", CFG_INT, OFF(qr_page_max_matches), 1, 1000000, "2000", NULL,
     "most matches taken from one C-FIND; a page with more is asked again in halves"},
    {"dicomweb.user", CFG_STRING, OFF(dicomweb_user), 0, 255, "", NULL,
     "user name for HTTP basic authentication at the DICOMweb server of batch "
     "--from-dicomweb; empty: none"},
    {"dicomweb.password_file", CFG_STRING, OFF(dicomweb_password_file), 0, 1000, "", NULL,
     "file whose first line is dicomweb.user's password"},
    {"dicomweb.bearer_token_file", CFG_STRING, OFF(dicomweb_bearer_token_file), 0, 1000, "", NULL,
     "file whose first line is sent to the DICOMweb server as a bearer token"},
    {"dicomweb.ca_certificates", CFG_STRING, OFF(dicomweb_ca_certificates), 0, 1000, "", NULL,
     "PEM file of the CAs an https DICOMweb server's certificate must chain to (empty: the "
     "system store)"},
    {"dicomweb.timeout_seconds", CFG_INT, OFF(dicomweb_timeout_seconds), 1, 86400, "600", NULL,
     "longest one QIDO-RS or WADO-RS request may take (a whole study's instances)"},
    {"dicomweb.max_study_mb", CFG_INT, OFF(dicomweb_max_study_mb), 1, 1048576, "4096", NULL,
     "largest WADO-RS reply for one study, in MiB; a larger one fails the study"},
    {"fhir.enabled", CFG_BOOL, OFF(fhir_enabled), 0, 1, "true", NULL,
     "write a FHIR R4 transaction Bundle (a DiagnosticReport and one Observation per finding) "
     "beside each draft and signed text report"},
    {"fhir.endpoint", CFG_STRING, OFF(fhir_endpoint), 0, 255, "", NULL,
     "base URL of a FHIR R4 server (http:// or https://) that each Bundle is POSTed to through "
     "the outbox, with its retries; empty: written only"},
    {"fhir.ca_certificates", CFG_STRING, OFF(fhir_ca_certificates), 0, 1000, "", NULL,
     "PEM file of the CAs an https FHIR server's certificate must chain to (empty: the system "
     "store /etc/ssl/certs); its host name is checked too"},
    {"fhir.bearer_token_file", CFG_STRING, OFF(fhir_bearer_token_file), 0, 1000, "", NULL,
     "file whose first line is sent to the FHIR server as \"Authorization: Bearer <token>\"; "
     "empty: no Authorization header"},
    {"fhir.timeout_seconds", CFG_INT, OFF(fhir_timeout_seconds), 1, 3600, "30", NULL,
     "longest a POST to the FHIR server may take, connecting included"},
    {"outbox.retry_max_attempts", CFG_INT, OFF(outbox_retry_max_attempts), 0, 1000000, "150", NULL,
     "attempts before a delivery is given up as failed (150: about a day with the default "
     "backoff); 0 retries forever"},
};

#define N_KEYS (sizeof cfg_keys / sizeof cfg_keys[0])

static const char *type_name(cfg_type t)
{
    switch (t) {
    case CFG_INT:
        return "int";
    case CFG_DOUBLE:
        return "number";
    case CFG_BOOL:
        return "bool";
    case CFG_STRING:
        return "string";
    case CFG_STRLIST:
        return "list";
    }
    return "?";
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t row[128];
    if (lb >= sizeof row / sizeof row[0])
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static const cfg_key *find_key(const char *name)
{
    for (size_t i = 0; i < N_KEYS; i++)
        if (strcmp(cfg_keys[i].name, name) == 0)
            return &cfg_keys[i];
    return NULL;
}

static rd_status unknown_key(const char *origin, const char *name, rd_error *err)
{
    const cfg_key *best = NULL;
    size_t best_d = 4; /* suggest only close matches */
    for (size_t i = 0; i < N_KEYS; i++) {
        size_t d = edit_distance(name, cfg_keys[i].name);
        if (d < best_d) {
            best_d = d;
            best = &cfg_keys[i];
        }
    }
    if (best)
        return rd_error_set(err, RD_E_CONFIG, "%s: unknown key '%s' (did you mean '%s'?)", origin,
                            name, best->name);
    return rd_error_set(err, RD_E_CONFIG, "%s: unknown key '%s' (radraft config --keys lists them)",
                        origin, name);
}

static rd_status set_int(rd_config *cfg, const cfg_key *k, double v, const char *origin,
                         rd_error *err)
{
    if (!(v >= k->min && v <= k->max) || v != floor(v))
        return rd_error_set(err, RD_E_CONFIG, "%s: key '%s': %g is not an integer in [%.0f, %.0f]",
                            origin, k->name, v, k->min, k->max);
    *(int *)((char *)cfg + k->offset) = (int)v;
    return RD_OK;
}

static rd_status set_double(rd_config *cfg, const cfg_key *k, double v, const char *origin,
                            rd_error *err)
{
    if (!(v >= k->min && v <= k->max))
        return rd_error_set(err, RD_E_CONFIG, "%s: key '%s': %g is outside [%g, %g]", origin,
                            k->name, v, k->min, k->max);
    *(double *)((char *)cfg + k->offset) = v;
    return RD_OK;
}

static rd_status set_string(rd_config *cfg, const cfg_key *k, const char *v, const char *origin,
                            rd_error *err)
{
    size_t len = strlen(v);
    /* The field's size bounds the value even if a row's maximum were set too high. */
    if ((double)len < k->min || (double)len > k->max || len >= k->size)
        return rd_error_set(err, RD_E_CONFIG, "%s: key '%s': length %zu is outside [%.0f, %.0f]",
                            origin, k->name, len, k->min, k->max);
    if (k->choices) {
        const char *p = k->choices;
        int ok = 0;
        while (*p && !ok) {
            const char *bar = strchr(p, '|');
            size_t n = bar ? (size_t)(bar - p) : strlen(p);
            ok = (n == len && strncmp(p, v, n) == 0);
            p += n + (bar != NULL);
        }
        if (!ok)
            return rd_error_set(err, RD_E_CONFIG, "%s: key '%s': '%s' is not one of %s", origin,
                                k->name, v, k->choices);
    }
    rd_strlcpy((char *)cfg + k->offset, v, k->size);
    return RD_OK;
}

static rd_status list_add(rd_strlist *list, const cfg_key *k, const char *item, size_t n,
                          const char *origin, rd_error *err)
{
    if (list->count >= RD_CONFIG_LIST_MAX)
        return rd_error_set(err, RD_E_CONFIG, "%s: key '%s': more than %d entries", origin, k->name,
                            RD_CONFIG_LIST_MAX);
    if (n == 0 || n >= RD_CONFIG_ITEM_MAX)
        return rd_error_set(err, RD_E_CONFIG, "%s: key '%s': entry length %zu is outside [1, %d]",
                            origin, k->name, n, RD_CONFIG_ITEM_MAX - 1);
    memcpy(list->items[list->count], item, n);
    list->items[list->count][n] = '\0';
    list->count++;
    return RD_OK;
}

/* Parses the text form of a value, as given on a command line or as a default. */
static rd_status set_text(rd_config *cfg, const cfg_key *k, const char *text, const char *origin,
                          rd_error *err)
{
    char *end = NULL;
    double v;

    switch (k->type) {
    case CFG_INT:
    case CFG_DOUBLE:
        errno = 0;
        v = strtod(text, &end);
        if (errno || end == text || *end != '\0')
            return rd_error_set(err, RD_E_CONFIG, "%s: key '%s': '%s' is not a number", origin,
                                k->name, text);
        return k->type == CFG_INT ? set_int(cfg, k, v, origin, err)
                                  : set_double(cfg, k, v, origin, err);
    case CFG_BOOL:
        if (strcmp(text, "true") == 0 || strcmp(text, "1") == 0 || strcmp(text, "yes") == 0)
            *(int *)((char *)cfg + k->offset) = 1;
        else if (strcmp(text, "false") == 0 || strcmp(text, "0") == 0 || strcmp(text, "no") == 0)
            *(int *)((char *)cfg + k->offset) = 0;
        else
            return rd_error_set(err, RD_E_CONFIG, "%s: key '%s': '%s' is not true or false", origin,
                                k->name, text);
        return RD_OK;
    case CFG_STRING:
        return set_string(cfg, k, text, origin, err);
    case CFG_STRLIST: {
        rd_strlist *list = (rd_strlist *)((char *)cfg + k->offset);
        list->count = 0;
        for (const char *p = text; *p;) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            rd_status st = list_add(list, k, p, n, origin, err);
            if (st != RD_OK)
                return st;
            p += n + (comma != NULL);
        }
        return RD_OK;
    }
    }
    return rd_error_set(err, RD_E_INTERNAL, "bad key type");
}

void rd_config_defaults(rd_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    for (size_t i = 0; i < N_KEYS; i++) {
        rd_status st = set_text(cfg, &cfg_keys[i], cfg_keys[i].def, "default", NULL);
        (void)st; /* the table's defaults are checked by the unit tests */
    }
}

rd_status rd_config_set(rd_config *cfg, const char *key, const char *value, rd_error *err)
{
    const cfg_key *k = find_key(key);
    if (!k)
        return unknown_key("command line", key, err);
    rd_config tmp = *cfg;
    rd_status st = set_text(&tmp, k, value, "command line", err);
    if (st == RD_OK)
        *cfg = tmp;
    return st;
}

static rd_status apply_node(rd_config *cfg, const cJSON *node, const char *prefix,
                            const char *origin, rd_error *err)
{
    const cJSON *child;
    cJSON_ArrayForEach(child, node)
    {
        char name[256];
        int n = snprintf(name, sizeof name, "%s%s%s", prefix, prefix[0] ? "." : "",
                         child->string ? child->string : "");
        if (n < 0 || (size_t)n >= sizeof name)
            return rd_error_set(err, RD_E_CONFIG, "%s: key name too long", origin);
        const cfg_key *k = find_key(name);
        if (!k) {
            if (cJSON_IsObject(child)) {
                rd_status st = apply_node(cfg, child, name, origin, err);
                if (st != RD_OK)
                    return st;
                continue;
            }
            return unknown_key(origin, name, err);
        }
        rd_status st = RD_OK;
        switch (k->type) {
        case CFG_INT:
        case CFG_DOUBLE:
            if (!cJSON_IsNumber(child))
                return rd_error_set(err, RD_E_CONFIG, "%s: key '%s' must be a number", origin,
                                    name);
            st = k->type == CFG_INT ? set_int(cfg, k, child->valuedouble, origin, err)
                                    : set_double(cfg, k, child->valuedouble, origin, err);
            break;
        case CFG_BOOL:
            if (!cJSON_IsBool(child))
                return rd_error_set(err, RD_E_CONFIG, "%s: key '%s' must be true or false", origin,
                                    name);
            *(int *)((char *)cfg + k->offset) = cJSON_IsTrue(child);
            break;
        case CFG_STRING:
            if (!cJSON_IsString(child))
                return rd_error_set(err, RD_E_CONFIG, "%s: key '%s' must be a string", origin,
                                    name);
            st = set_string(cfg, k, child->valuestring, origin, err);
            break;
        case CFG_STRLIST: {
            rd_strlist *list = (rd_strlist *)((char *)cfg + k->offset);
            const cJSON *item;
            if (!cJSON_IsArray(child))
                return rd_error_set(err, RD_E_CONFIG, "%s: key '%s' must be a list of strings",
                                    origin, name);
            list->count = 0;
            cJSON_ArrayForEach(item, child)
            {
                if (!cJSON_IsString(item))
                    return rd_error_set(err, RD_E_CONFIG, "%s: key '%s' must be a list of strings",
                                        origin, name);
                st = list_add(list, k, item->valuestring, strlen(item->valuestring), origin, err);
                if (st != RD_OK)
                    return st;
            }
            break;
        }
        }
        if (st != RD_OK)
            return st;
    }
    return RD_OK;
}

rd_status rd_config_apply_json(rd_config *cfg, const char *json, const char *origin, rd_error *err)
{
    cJSON *root = cJSON_Parse(json);
    rd_status st;
    if (!root) {
        const char *where = cJSON_GetErrorPtr();
        size_t offset = where && where >= json ? (size_t)(where - json) : 0;
        return rd_error_set(err, RD_E_CONFIG, "%s: not valid JSON (near byte %zu)", origin, offset);
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return rd_error_set(err, RD_E_CONFIG, "%s: the configuration must be a JSON object",
                            origin);
    }
    rd_config tmp = *cfg;
    st = apply_node(&tmp, root, "", origin, err);
    if (st == RD_OK && tmp.dicom_voi_percentile_low >= tmp.dicom_voi_percentile_high)
        st = rd_error_set(err, RD_E_CONFIG,
                          "%s: dicom.voi_percentile_low must be below dicom.voi_percentile_high",
                          origin);
    if (st == RD_OK)
        *cfg = tmp;
    cJSON_Delete(root);
    return st;
}

rd_status rd_config_load_file(rd_config *cfg, const char *path, rd_error *err)
{
    char *text = NULL;
    size_t len = 0;
    rd_status st = rd_read_file(path, 1 << 20, &text, &len, err);
    if (st != RD_OK)
        return st;
    st = rd_config_apply_json(cfg, text, path, err);
    free(text);
    return st;
}

/* Finds or creates the object for the dotted prefix of `name` under `root`. */
static cJSON *object_for(cJSON *root, const char *name, const char **leaf)
{
    cJSON *obj = root;
    const char *p = name;
    const char *dot;
    while ((dot = strchr(p, '.')) != NULL) {
        char part[64];
        size_t n = (size_t)(dot - p);
        if (n >= sizeof part)
            return NULL;
        memcpy(part, p, n);
        part[n] = '\0';
        cJSON *next = cJSON_GetObjectItemCaseSensitive(obj, part);
        if (!next) {
            next = cJSON_AddObjectToObject(obj, part);
            if (!next)
                return NULL;
        }
        obj = next;
        p = dot + 1;
    }
    *leaf = p;
    return obj;
}

rd_status rd_config_print(const rd_config *cfg, FILE *fp, rd_error *err)
{
    cJSON *root = cJSON_CreateObject();
    rd_status st = RD_OK;
    char *text = NULL;
    if (!root)
        return rd_error_set(err, RD_E_NOMEM, "out of memory printing configuration");
    for (size_t i = 0; i < N_KEYS; i++) {
        const cfg_key *k = &cfg_keys[i];
        const char *leaf = NULL;
        const char *base = (const char *)cfg + k->offset;
        cJSON *obj = object_for(root, k->name, &leaf);
        cJSON *v = NULL;
        if (!obj) {
            st = rd_error_set(err, RD_E_NOMEM, "out of memory printing configuration");
            goto out;
        }
        switch (k->type) {
        case CFG_INT:
            v = cJSON_AddNumberToObject(obj, leaf, *(const int *)base);
            break;
        case CFG_DOUBLE:
            v = cJSON_AddNumberToObject(obj, leaf, *(const double *)base);
            break;
        case CFG_BOOL:
            v = cJSON_AddBoolToObject(obj, leaf, *(const int *)base);
            break;
        case CFG_STRING:
            v = cJSON_AddStringToObject(obj, leaf, base);
            break;
        case CFG_STRLIST: {
            const rd_strlist *list = (const rd_strlist *)base;
            v = cJSON_AddArrayToObject(obj, leaf);
            for (int j = 0; v && j < list->count; j++) {
                cJSON *s = cJSON_CreateString(list->items[j]);
                if (!s || !cJSON_AddItemToArray(v, s)) {
                    cJSON_Delete(s);
                    v = NULL;
                }
            }
            break;
        }
        }
        if (!v) {
            st = rd_error_set(err, RD_E_NOMEM, "out of memory printing configuration");
            goto out;
        }
    }
    text = cJSON_Print(root);
    if (!text) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory printing configuration");
        goto out;
    }
    fprintf(fp, "%s\n", text);
out:
    free(text);
    cJSON_Delete(root);
    return st;
}

void rd_config_describe(FILE *fp)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const cfg_key *k = &cfg_keys[i];
        char range[128] = "";
        switch (k->type) {
        case CFG_INT:
            snprintf(range, sizeof range, "[%.0f, %.0f]", k->min, k->max);
            break;
        case CFG_DOUBLE:
            snprintf(range, sizeof range, "[%g, %g]", k->min, k->max);
            break;
        case CFG_STRING:
            if (k->choices)
                snprintf(range, sizeof range, "%s", k->choices);
            break;
        default:
            break;
        }
        fprintf(fp, "%-28s %-7s %-22s default %-10s %s\n", k->name, type_name(k->type), range,
                k->def[0] ? k->def : "\"\"", k->help);
    }
}
