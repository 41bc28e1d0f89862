/* radraft — facts about the DICOM toolkit under pacs/. */
#ifndef RADRAFT_PACS_H
#define RADRAFT_PACS_H

#ifdef __cplusplus
extern "C" {
#endif

/* DCMTK's version string ("3.6.7"). */
const char *rd_pacs_dcmtk_version(void);

#ifdef __cplusplus
}
#endif
#endif
