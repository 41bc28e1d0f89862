/* radraft — the code table: the SNOMED CT / DCM (or, where no standard names the concept,
 * private) codes of the findings, their states and scores in the SRs radraft writes.
 *
 * The table is a JSON document (models/finding-codes.json is compiled into the binary; the
 * configuration key sr.finding_codes names a file that replaces it as a whole):
 *
 *   {"version": 1,
 *    "private_scheme": {"designator": "99RADRAFT", "name": "...", "responsible": "..."},
 *    "procedure": {"code": "399208008", "scheme": "SCT", "meaning": "Plain chest X-ray"},
 *    "findings": {"Atelectasis": {"code": ..., "scheme": ..., "meaning": ..., "source": ...},
 *                 ... every one of the 14 findings},
 *    "states": {"present": {...}, "absent": {...}, "uncertain": {...}},
 *    "score": {...}}
 *
 * Every entry is required. "source" (where the code comes from) is documentation and is
 * not read. Code values hold at most 64 characters, designators 16, meanings 64; two
 * findings may not share a code.
 */
#ifndef RADRAFT_CODES_H
#define RADRAFT_CODES_H

#include "radraft/error.h"
#include "radraft/sr.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Largest code table file accepted. */
#define RD_CODES_MAX_FILE (1u << 20)

/* Parses a code table from JSON (`origin` names it in messages; NULL: the built-in table,
 * whose text is then `json`'s, so pass NULL for both to get the built-in one). On failure
 * `out` is cleared and the error, RD_E_CONFIG, names the entry. */
rd_status rd_sr_codes_parse(rd_sr_codes *out, const char *json, const char *origin, rd_error *err);

/* Reads the table at `path` (at most RD_CODES_MAX_FILE bytes), or the built-in table when
 * `path` is NULL or empty. Errors: RD_E_NOT_FOUND / RD_E_IO (the file), RD_E_CONFIG. */
rd_status rd_sr_codes_load(rd_sr_codes *out, const char *path, rd_error *err);

/* The finding whose code is (value, scheme) in `codes`, or -1. */
int rd_sr_codes_find(const rd_sr_codes *codes, const char *value, const char *scheme);

#ifdef __cplusplus
}
#endif
#endif
