/* radraft — private: the entry point of the DCMTK shim (pacs/dicom.cc) used by src/dicom.c.
 *
 * The shim fills `err` itself (it does not call into the C library), so that the C++
 * static library depends on nothing but DCMTK and OpenJPEG.
 */
#ifndef RADRAFT_DICOM_INT_H
#define RADRAFT_DICOM_INT_H

#include "dicom/dicom_pixels.h"
#include "radraft/dicom.h"
#include "radraft/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Hard caps on outside input, whatever the configuration says. */
#define RD_DICOM_MAX_FILE_BYTES ((long long)2 << 30) /* larger files are RD_E_TOO_LARGE */

/* Reads `path`: the metadata into *meta (always, when the file parses) and, when `frame`
 * is not NULL, the first frame's samples and display attributes into *frame (owned by the
 * caller on success; release with rd_dicom_frame_release). `opts` must not be NULL. The
 * error messages do not name the file; the caller prefixes them. */
rd_status rd__dicom_load(const char *path, const rd_dicom_options *opts, rd_dicom_meta *meta,
                         rd_dicom_frame *frame, rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
