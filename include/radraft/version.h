#ifndef RADRAFT_VERSION_H
#define RADRAFT_VERSION_H

#define RD_VERSION "0.1.0"
/* The DICOM implementation identity written into files radraft creates. */
#define RD_IMPLEMENTATION_VERSION_NAME "RADRAFT_010"

#endif
