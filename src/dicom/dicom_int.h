/* radraft — private to src/dicom and its tests: the DCMTK shim's entry point and frame type
 * (declared by pacs/, which owns that interface) plus the pixel pipeline. */
#ifndef RADRAFT_DICOM_INT_H
#define RADRAFT_DICOM_INT_H

#include "dicom/dicom_pixels.h"
#include "dicom_shim.h" /* pacs/dicom_shim.h: rd__dicom_load, rd_dicom_frame */

#endif
