/* radraft — review: what happens to a draft once a radiologist has read it.
 *
 * Signing (src/review/sign.c) turns a draft SR into its verified version: the final texts
 * (the draft's, or the radiologist's edits), their coded findings as the labeler reads the
 * final text (so that the codes never disagree with the words), the verifier and the
 * predecessor reference. `radraft sign` and the review queue call the same function.
 *
 * Reported studies teach the archive (src/review/archive.c): a past study's image, embedded
 * by the current model, and its report's finding states become an archive entry that the
 * next similar study's retrieval finds. `radraft archive import` uses it; signing will.
 *
 * Users (src/review/users.c) are who may act on the queue: viewers read, radiologists also
 * claim, edit, sign and reject, admins also manage users. Passwords are stored only as
 * argon2id hashes (libsodium). Every change to a user is checked against the acting user
 * and commits together with its audit row. `radraft user`, the queue and the web page call
 * the same functions.
 */
#ifndef RADRAFT_REVIEW_H
#define RADRAFT_REVIEW_H

#include <stddef.h>
#include <stdint.h>

#include "radraft/config.h"
#include "radraft/dicom.h"
#include "radraft/encoder.h"
#include "radraft/error.h"
#include "radraft/index.h"
#include "radraft/labeler.h"
#include "radraft/limits.h"
#include "radraft/sr.h"
#include "radraft/store.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a signature says. The strings are borrowed for the call. */
typedef struct rd_review_signature {
    const char *verifier_name;   /* DICOM PN, "Family^Given"; required */
    const char *organization;    /* required */
    const char *datetime;        /* DICOM DT of the verification; NULL or "": now */
    const char *findings_text;   /* NULL: the draft's */
    const char *impression_text; /* NULL: the draft's */
} rd_review_signature;

/* Signs the draft SR at `draft_path` into `out_path` (NULL: "<StudyInstanceUID>-signed-sr.dcm"
 * in `out_dir`, NULL: the current folder; the path written goes to `written`, of `size`
 * bytes, when not NULL). Edited texts are labeled with the labeler of `cfg`, and those
 * states become the signed SR's coded findings. *predecessor (may be NULL, 65 bytes) gets
 * the draft's SOP Instance UID. Errors: RD_E_INVALID (missing verifier or organization, a
 * draft whose Study Instance UID cannot name a file, an SR that is not a radraft draft or is
 * already verified), RD_E_NOT_FOUND, RD_E_DICOM, RD_E_IO, RD_E_CONFIG (the labeler). */
rd_status rd_review_sign_file(const rd_config *cfg, const char *draft_path,
                              const rd_review_signature *sig, const char *out_path,
                              const char *out_dir, char *written, size_t size,
                              char predecessor[RD_UID_SIZE], rd_sr_result *res, rd_error *err);

/* Signs the AI Results SR at `air_path` (the one written beside the draft SR at
 * `draft_path`) into `out_path`: its states become the final ones, what the labeler of
 * `cfg` reads in the final texts (sig's edited texts, else the draft's), as signing in the
 * queue does; the verifier, organization and date-time are sig's
 * (rd_sr_write_air_signed). Errors: those of rd_review_sign_file and
 * rd_sr_write_air_signed. */
rd_status rd_review_sign_air_file(const rd_config *cfg, const char *draft_path,
                                  const char *air_path, const rd_review_signature *sig,
                                  const char *out_path, rd_sr_result *res, rd_error *err);

/* A reported study's image as an archive entry: decodes `image_path` (metadata `meta`,
 * with cfg's dicom.* options), embeds it with `enc` (its embedding only), and adds it to
 * `ix` and the store `s` keyed by its SOP Instance UID, with its patient (hashed with
 * archive.patient_salt), view, date, `source` and report. The states are `states` when not
 * NULL, else the labeler `lab` reads them in the texts. *added (may be NULL) is 0 when the
 * entry was already there. Errors: those of decoding (RD_E_DICOM, RD_E_IO ...), embedding,
 * labeling and the archive (RD_E_INVALID, RD_E_DB). */
rd_status rd_review_archive_add(rd_index *ix, rd_store *s, rd_encoder *enc, const rd_labeler *lab,
                                const rd_config *cfg, const char *image_path,
                                const rd_dicom_meta *meta, rd_archive_source source,
                                const rd_finding_state states[RD_FINDING_COUNT],
                                const char *findings_text, const char *impression_text, int *added,
                                rd_error *err);

/* ---- users (src/review/users.c) ---- */

/* Length of a password in bytes. */
#define RD_PASSWORD_MIN 8
#define RD_PASSWORD_MAX 1024

/* Hashes `password` with argon2id (libsodium's crypto_pwhash_str at the interactive limits:
 * about 64 MiB and a tenth of a second) into `out`, a NUL-terminated "$argon2id$..." string
 * with its own random salt. Errors: RD_E_INVALID (a password outside RD_PASSWORD_MIN..MAX
 * bytes), RD_E_NOMEM, RD_E_INTERNAL (libsodium could not start). */
rd_status rd_review_password_hash(const char *password, char out[RD_USER_HASH_MAX + 1],
                                  rd_error *err);

/* RD_OK when `password` matches `hash` (from rd_review_password_hash); RD_E_DENIED when it
 * does not, the hash is empty (no password set) or not a hash libsodium reads. */
rd_status rd_review_password_check(const char *hash, const char *password, rd_error *err);

/* The user `name` (into *out, may be NULL) when it may act with role `at_least`: it exists,
 * is not disabled, and its role is `at_least` or above (viewer < radiologist < admin).
 * Errors: RD_E_NOT_FOUND (no such user), RD_E_DENIED (disabled, or a lower role), with a
 * message naming the user and the role it has or lacks; RD_E_DB. */
rd_status rd_review_user_require(rd_store *s, const char *name, rd_user_role at_least,
                                 rd_store_user *out, rd_error *err);

/* rd_review_user_require with a password: the web page's login. RD_E_DENIED with one
 * message ("wrong user name or password") for an unknown user, a wrong password or a user
 * without one, so that the message does not tell which names exist (the time it takes
 * still may: an unknown name skips the hash); RD_E_DENIED naming the user when the
 * password is right but the user is disabled or below `at_least`. */
rd_status rd_review_user_login(rd_store *s, const char *name, const char *password,
                               rd_user_role at_least, rd_store_user *out, rd_error *err);

/* Adds user `name` with `role`, `display_name` (a DICOM PN) and `password` (NULL: none yet;
 * such a user cannot log in until one is set) on behalf of `acting`, an enabled admin.
 * The bootstrap rule: while the users table is empty, `acting` may be NULL or "", and the
 * user added must then be an admin; once any user exists, an acting admin is required.
 * The table's emptiness is checked inside the transaction that adds the user, so two
 * processes bootstrapping at once add one first admin. The audit row ("user-add", by
 * `acting`, or by radraft itself "" when bootstrapping, detail "user=NAME role=ROLE")
 * commits with the user. Errors: RD_E_DENIED (acting user missing, disabled or not an
 * admin; users exist and no acting user; a first user that is not an admin),
 * RD_E_NOT_FOUND (no user `acting`), RD_E_INVALID (a malformed field, a name taken, a
 * password of the wrong length), RD_E_TOO_LARGE, RD_E_DB. */
rd_status rd_review_user_add(rd_store *s, const char *acting, const char *name, rd_user_role role,
                             const char *display_name, const char *password, rd_error *err);

/* Sets the password of `name` on behalf of `acting` (NULL or "": `name` itself): a user may
 * change their own password, an admin anyone's; the acting user must be enabled. Audit:
 * "user-passwd", detail "user=NAME". Errors as rd_review_user_add. */
rd_status rd_review_user_passwd(rd_store *s, const char *acting, const char *name,
                                const char *password, rd_error *err);

/* Disables (`disabled` non-zero) or enables `name` on behalf of `acting`, an enabled admin
 * other than `name` when disabling (so that an enabled admin always remains). A disabled
 * user keeps its rows and history but can no longer act. Audit: "user-disable" or
 * "user-enable", detail "user=NAME". Errors as rd_review_user_add. */
rd_status rd_review_user_disable(rd_store *s, const char *acting, const char *name, int disabled,
                                 rd_error *err);
/* ---- the review queue (src/review/queue.c) ----
 *
 * States: draft -> in_review (claimed) -> signed | rejected; signed -> signed again by
 * amendment (the earlier version superseded); draft and in_review -> superseded when the
 * study receives new images. Viewers may list and show; radiologists (and admins) claim,
 * release, edit, sign, amend and reject. Every action, and every show, is an audit row
 * written in the same transaction as the change. */

/* The longest findings or impression text accepted from a user. */
#define RD_REVIEW_MAX_TEXT 65536

/* The reject reasons ("wrong-findings", "poor-image", "not-chest-radiograph", "other"),
 * NULL-terminated. */
const char *const *rd_review_reject_reasons(void);

/* What a radiologist changes: texts (NULL: keep) and explicit finding states. */
typedef struct rd_review_changes {
    const char *findings_text;
    const char *impression_text;
    int n_set;
    rd_finding set_finding[RD_FINDING_COUNT];
    rd_finding_state set_state[RD_FINDING_COUNT];
} rd_review_changes;

/* Claims item `id` for `user` for review.claim_minutes. RD_E_DENIED names the holder of a
 * live claim. */
rd_status rd_review_claim(rd_store *s, const rd_config *cfg, int64_t id, const char *user,
                          rd_error *err);
/* Gives a claim back: the item is a draft again. */
rd_status rd_review_release(rd_store *s, int64_t id, const char *user, rd_error *err);
/* Reads item `id` whole for `user` (a viewer at least), and audits the view. On success
 * *out is the caller's (rd_store_review_item_clear). */
rd_status rd_review_show(rd_store *s, int64_t id, const char *user, rd_store_review_item *out,
                         rd_error *err);
/* Saves an edit of a claimed item: the final texts (each at most RD_REVIEW_MAX_TEXT bytes of
 * UTF-8 without control characters but newline and tab), the explicit choices, the final
 * states (the choices, else the labeler's reading of the final text) and the edit's size
 * against the draft. */
rd_status rd_review_edit(rd_store *s, const rd_config *cfg, int64_t id, const char *user,
                         const rd_review_changes *c, rd_error *err);
/* Rejects a claimed item with a reason of rd_review_reject_reasons ("other" needs a note).
 * Nothing is sent; the study is drafted again only when it receives new images. */
rd_status rd_review_reject(rd_store *s, int64_t id, const char *user, const char *reason,
                           const char *note, rd_error *err);

/* What signing wrote. */
typedef struct rd_review_signed {
    int version; /* 1: the first signature, 2...: amendments */
    char sr_path[1024];
    char sr_sop_instance_uid[RD_UID_SIZE];
    char series_uid[RD_UID_SIZE];
    char predecessor_sop_instance_uid[RD_UID_SIZE];
    /* The signed AI Results SR (sr.air, an item drafted with one): "" when none. */
    char air_sr_path[1024];
    char air_sr_sop_instance_uid[RD_UID_SIZE];
    char fhir_path[1200]; /* the signed FHIR Bundle (fhir.enabled): "" when none */
    int destinations;     /* DICOM destinations the SRs are queued for */
    int archived;         /* the study became (or replaced) its archive entry */
} rd_review_signed;

/* Signs a claimed item (`amend` NULL), or amends a signed one with `amend`'s changes: writes
 * the verified SR (COMPLETE, VERIFIED, FINAL; the user's display name as verifier and
 * author, review.organization; predecessor: the draft, or the previous signed version)
 * and, with sr.air and an item drafted with one, the signed AI Results SR (the final states;
 * rd_sr_write_air_signed, in the study's signed AI results series, beside the signed SR as
 * "...-signed-vN-air-sr.dcm"), then in one transaction records them, queues both to every
 * outbox destination, makes the study an archive entry of source signed with the
 * draft-time embedding and the final states (replacing an earlier one), and audits it. RD_E_CONFIG
 * without review.organization. */
rd_status rd_review_sign(rd_store *s, const rd_config *cfg, int64_t id, const char *user,
                         const rd_review_changes *amend, rd_review_signed *out, rd_error *err);

/* How the drafts fare: items per state, signed items left unchanged, per-finding agreement
 * of the draft with what was signed, the mean edit size and the median time from draft to
 * signature, over the items drafted since `since` (seconds since the epoch; 0: all). */
typedef struct rd_review_stats {
    long items;
    long per_state[RD_REVIEW_STATE_COUNT];
    long signed_unchanged;
    long chars_edited_sum;
    long tp[RD_FINDING_N_ABNORMAL], fp[RD_FINDING_N_ABNORMAL], fn[RD_FINDING_N_ABNORMAL];
    double median_seconds_to_sign; /* 0 when nothing was signed */
} rd_review_stats;

rd_status rd_review_compute_stats(rd_store *s, double since, rd_review_stats *out, rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
