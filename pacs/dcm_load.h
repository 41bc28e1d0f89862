/* radraft — private to pacs/: loading a DICOM file into a DcmFileFormat within bounds, for
 * the instance reader (dicom.cc) and the SR reader (sr.cc).
 *
 * DCMTK allocates an element's value at the length its header claims when it loads it.
 * From a plain file it loads values above `max_read` only on first use, so radraft first
 * checks every length against the file's size. A deflated dataset (Deflated Explicit VR
 * Little Endian) cannot be read lazily: DCMTK would load every value as it inflates, at
 * whatever length is claimed (a 4 KB file made it allocate 2 GiB; found by
 * tests/fuzz/fuzz_dicom), and inflate without bound. So radraft inflates it itself, at most
 * RD_DICOM_MAX_INFLATED_BYTES, into an anonymous in-memory file that DCMTK then reads as a
 * plain Explicit VR Little Endian dataset, with the same length check against the inflated
 * size. */
#ifndef RADRAFT_PACS_DCM_LOAD_H
#define RADRAFT_PACS_DCM_LOAD_H

#include "radraft/error.h"

#include <dcmtk/config/osconfig.h>

#include <dcmtk/dcmdata/dcfilefo.h>

/* The largest dataset a deflated file may inflate to (larger: RD_E_TOO_LARGE). A chest
 * radiograph is at most some tens of megabytes. */
#define RD_DICOM_MAX_INFLATED_BYTES ((unsigned long long)256 << 20)

/* The status of a failed DCMTK call: RD_E_NOMEM when DCMTK says memory ran out
 * (EC_MemoryExhausted: its value buffers are allocated with new (std::nothrow), so an
 * exhausted heap comes back as that condition rather than as std::bad_alloc), else
 * `otherwise`. */
inline rd_status rd__dcm_status(const OFCondition &cond, rd_status otherwise)
{
    return cond == EC_MemoryExhausted ? RD_E_NOMEM : otherwise;
}

/* The same for a DCMTK call that stores radraft's own values (a dataset or SR being built,
 * not one being read): there an element whose value buffer could not be allocated fails
 * later as EC_InvalidStream (a length, no value, no file to load it from), which is memory
 * running out too. */
inline rd_status rd__dcm_build_status(const OFCondition &cond, rd_status otherwise)
{
    return cond == EC_MemoryExhausted || cond == EC_InvalidStream ? RD_E_NOMEM : otherwise;
}

/* Loads `path` into `ff`: with `part10`, a Part 10 file (meta header and dataset) or, when
 * it has no meta header, a raw dataset (DCMTK's ERM_autoDetect); else a raw dataset. Values above
 * `max_read` bytes left in the file until used (every value, for a deflated dataset, which is then
 * fully in memory). Checks that no element is longer than the file (or the inflated dataset) before
 * any value is loaded; *data_size gets that bound (the file's size, or the inflated dataset's).
 * *xfer gets the file's own transfer syntax (Deflated for a deflated file, whose dataset `ff` holds
 * inflated, without the meta header). The caller has checked the file's size against
 * RD_DICOM_MAX_FILE_BYTES. Errors: RD_E_DICOM (unreadable), RD_E_CORRUPT (truncated, an element
 * longer than the data), RD_E_TOO_LARGE (a deflated dataset over the cap), RD_E_NOMEM, RD_E_IO. The
 * messages do not name the file. */
rd_status rd__dcm_load_file(DcmFileFormat &ff, const char *path, bool part10, Uint32 max_read,
                            E_TransferSyntax *xfer, unsigned long long *data_size, rd_error *err);

#endif
