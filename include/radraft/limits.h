/* radraft — caps on outside input and fixed sizes that more than one module applies,
 * defined once. */
#ifndef RADRAFT_LIMITS_H
#define RADRAFT_LIMITS_H

/* A DICOM UID: at most 64 characters (PS3.5 section 9.1); a buffer for one with its NUL. */
#define RD_UID_MAX 64
#define RD_UID_SIZE (RD_UID_MAX + 1)

/* A SHA-256 in hex (content versions, patient and study hashes) with its NUL. */
#define RD_SHA256_HEX_SIZE 65

/* Most instances of one study radraft drafts: a larger study is refused whole, with the
 * reason recorded, never cut down to its first instances. */
#define RD_STUDY_MAX_INSTANCES 4096

#endif
