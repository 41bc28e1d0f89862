/* Fuzz target: the DICOM reader (include/radraft/dicom.h) and the SR reader (radraft/sr.h).
 *
 * The input is a file as `radraft info`, `render`, `batch` and the serve path's workers read
 * it: rd_dicom_probe, then rd_dicom_read_image with the default options (metadata, then the
 * first frame decoded by DCMTK, OpenJPEG or radraft's own pixel pipeline), and rd_sr_read
 * as `archive import --dicom` and `label --sr` read a report. Both readers take a path only
 * (DCMTK loads the file itself, with the bounds radraft sets on it), so every input is
 * written to the same file in the scratch folder first. */
#include <stdlib.h>

#include "fuzz.h"
#include "radraft/codes.h"
#include "radraft/dicom.h"
#include "radraft/image.h"
#include "radraft/sr.h"

static rd_sr_codes g_codes;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    rd_error err;
    (void)argc;
    (void)argv;
    rd_fuzz_init();
    if (rd_sr_codes_load(&g_codes, NULL, &err) != RD_OK) {
        fprintf(stderr, "fuzz_dicom: built-in code table: %s\n", rd_error_message(&err));
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = rd_fuzz_write_file("input.dcm", data, size);
    rd_dicom_options opts;
    rd_dicom_meta meta;
    rd_image *img = NULL;
    rd_sr_info sr;
    rd_error err;

    (void)rd_dicom_probe(path);
    rd_dicom_options_default(&opts);
    if (rd_dicom_read_image(path, &opts, &img, &meta, &err) == RD_OK)
        rd_image_free(img);
    if (rd_sr_read(path, &g_codes, &sr, &err) == RD_OK)
        rd_sr_info_free(&sr);
    return 0;
}
