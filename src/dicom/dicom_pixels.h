/* radraft — private: the numeric pipeline from DICOM samples to a display image.
 *
 * The shim in pacs/ fills an rd_dicom_frame (pacs/dicom_shim.h) with the first frame's
 * samples, already decompressed, and the attributes that say how to show them;
 * rd_dicom_pixels_to_image() turns that into an rd_image in [0, 1], brighter = higher.
 * Keeping this step in C, apart from DCMTK, lets the unit tests drive it with synthetic
 * buffers.
 */
#ifndef RADRAFT_DICOM_PIXELS_H
#define RADRAFT_DICOM_PIXELS_H

#include "dicom_shim.h" /* pacs/dicom_shim.h: rd_dicom_frame, filled by the DCMTK shim */

#include "radraft/dicom.h"
#include "radraft/error.h"
#include "radraft/image.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Converts the frame into a new image (*out, owned by the caller): stored values (masked
 * to bits_stored, sign-extended), modality LUT or rescale, then for monochrome images the
 * VOI window (or VOI LUT, or the opts' percentile window over the non-padding pixels when
 * neither is valid), MONOCHROME1 inverted and padding pixels black. Colour images (RGB,
 * YBR_FULL, YBR_FULL_422 / YBR_PARTIAL_422 as stored) become luminance scaled by the
 * largest stored value. Errors: RD_E_CORRUPT when `size` is shorter than the frame,
 * RD_E_UNSUPPORTED for a colour model it does not know, RD_E_INVALID for bad fields. */
rd_status rd_dicom_pixels_to_image(const rd_dicom_frame *f, const rd_dicom_options *opts,
                                   rd_image **out, rd_error *err);

#ifdef __cplusplus
}
#endif
#endif
