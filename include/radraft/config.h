/* radraft — configuration.
 *
 * One table (src/config.c) names every key with its type, range, default and help text;
 * it drives the defaults, JSON file parsing, command-line overrides, validation and
 * `radraft config --print`. A configuration file is JSON whose nesting follows the dotted
 * key names: {"dicom": {"max_dimension": 8192}} sets `dicom.max_dimension` (a dotted key
 * at any level, {"dicom.max_dimension": 8192}, means the same).
 */
#ifndef RADRAFT_CONFIG_H
#define RADRAFT_CONFIG_H

#include <stdio.h>

#include "radraft/error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RD_CONFIG_STR_MAX 1024
#define RD_CONFIG_LIST_MAX 32
#define RD_CONFIG_ITEM_MAX 256

typedef struct rd_strlist {
    int count;
    char items[RD_CONFIG_LIST_MAX][RD_CONFIG_ITEM_MAX];
} rd_strlist;

/* The effective configuration: plain values, no owned pointers, so it can be copied. */
typedef struct rd_config {
    char log_level[16];
    int dicom_max_dimension;
    double dicom_voi_percentile_low;
    double dicom_voi_percentile_high;
    /* server (listener), store and outbox: see the table in src/config.c */
    int server_port;
    char server_bind[64];
    char server_ae_title[17];
    char server_data_dir[RD_CONFIG_STR_MAX];
    int server_max_associations;
    int server_stable_seconds;
    rd_strlist server_allowed_calling_aes;
    int server_check_called_ae;
    int server_max_pdu;
    int server_acse_timeout;
    int server_dimse_timeout;
    int server_idle_timeout;
    int server_request_timeout;
    int server_max_pending_per_peer;
    int server_max_inflated_mb;
    int server_max_inflate_ratio;
    int server_receive_memory_mb;
    char server_tls_certificate[RD_CONFIG_STR_MAX];
    char server_tls_private_key[RD_CONFIG_STR_MAX];
    char server_tls_ca_certificates[RD_CONFIG_STR_MAX];
    int server_tls_verify_peer;
    int outbox_tls;
    char store_duplicate_policy[16];
    char store_backend[16];
    char store_sync[16];
    char server_node_name[64];
    double server_node_timeout_seconds;
    char store_postgresql_dsn[1024];
    char store_postgresql_schema[64];
    rd_strlist outbox_destinations;
    int outbox_retry_initial_seconds;
    int outbox_retry_max_seconds;
    int outbox_retry_max_attempts;
    /* batch --from-pacs (include/radraft/qr.h, batch.h) */
    char qr_retrieve[8];
    char qr_move_destination[17];
    double qr_studies_per_minute;
    int qr_page_days;
    int qr_page_max_matches;
    char dicomweb_user[256];
    char dicomweb_password_file[RD_CONFIG_STR_MAX];
    char dicomweb_bearer_token_file[RD_CONFIG_STR_MAX];
    char dicomweb_ca_certificates[RD_CONFIG_STR_MAX];
    int dicomweb_timeout_seconds;
    int dicomweb_max_study_mb;
    /* FHIR output (include/radraft/fhir.h) */
    int fhir_enabled;
    char fhir_endpoint[256];
    char fhir_ca_certificates[RD_CONFIG_STR_MAX];
    char fhir_bearer_token_file[RD_CONFIG_STR_MAX];
    int fhir_timeout_seconds;
    /* labeler and generator data files */
    char labeler_phrases[RD_CONFIG_STR_MAX];
    char labeler_speculative[16];
    char generator_templates[RD_CONFIG_STR_MAX];
    char generator_thresholds[RD_CONFIG_STR_MAX];
    int generator_reuse_neighbour_sentences;
    /* the SRs (include/radraft/sr.h, codes.h) */
    char sr_finding_codes[RD_CONFIG_STR_MAX];
    int sr_air; /* also write the AI Results SR of each draft and signature */
    int generator_localize;
    /* encoder (CNN inference) */
    char encoder_model[RD_CONFIG_STR_MAX];
    int encoder_threads;
    int encoder_batch;
    /* similar-case retrieval and the archive (include/radraft/index.h) */
    int retrieval_k;
    double retrieval_encoder_weight;
    double retrieval_min_similarity;
    int retrieval_date_window_days;
    double retrieval_uncertain_value;
    double retrieval_temperature;
    char retrieval_storage[8]; /* f32 | f16 | int8 (rd_index_storage_parse) */
    char archive_patient_salt[RD_CONFIG_ITEM_MAX];
    int archive_load_seed;
    double archive_refresh_seconds;
    /* the review queue (include/radraft/review.h) */
    rd_strlist review_urgent_findings;
    int review_claim_minutes;
    char review_organization[65];
    /* the review web page (include/radraft/web.h) */
    int web_port;
    char web_bind[64];
    char web_tls_certificate[RD_CONFIG_STR_MAX];
    char web_tls_private_key[RD_CONFIG_STR_MAX];
    int web_max_connections;
    int web_max_body_bytes;
    int web_max_header_bytes;
    int web_request_timeout_seconds;
    int web_session_idle_minutes;
    int web_login_max_failures;
    int web_lockout_seconds;
    /* pipeline (drafting workers) */
    int pipeline_workers;
    int pipeline_block; /* studies a batch worker drafts as one block (rd_pipeline_source) */
    int pipeline_retry_max_attempts;
    int pipeline_retry_initial_seconds;
    int pipeline_retry_max_seconds;
} rd_config;

/* Fills `cfg` with every key's default. */
void rd_config_defaults(rd_config *cfg);

/* Applies the keys of a JSON document to `cfg`. `origin` names the source in messages
 * (a file name). All or nothing: on failure `cfg` is unchanged. Unknown keys, wrong types
 * and out-of-range values are errors (RD_E_CONFIG) that name the key. */
rd_status rd_config_apply_json(rd_config *cfg, const char *json, const char *origin, rd_error *err);

/* Reads a JSON file (at most 1 MiB) and applies it as rd_config_apply_json does. */
rd_status rd_config_load_file(rd_config *cfg, const char *path, rd_error *err);

/* Sets one key from its text form ("8192", "true", "info", "a,b" for a list). */
rd_status rd_config_set(rd_config *cfg, const char *key, const char *value, rd_error *err);

/* Writes the configuration as a JSON document (nested by dotted name) to `fp`. */
rd_status rd_config_print(const rd_config *cfg, FILE *fp, rd_error *err);

/* Writes one line per key: name, type, range, default and help. */
void rd_config_describe(FILE *fp);

#ifdef __cplusplus
}
#endif
#endif
