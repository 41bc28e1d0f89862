/* Fuzz target: the labeler's phrase files (rd_labeler_create_from_json, radraft/labeler.h).
 *
 * The input is a phrase file as labeler.phrases names one (models/labeler.json's layout,
 * "extend" or "replace"). A labeler made from it labels a fixed report, so that phrases the
 * parser accepts are also matched. */
#include <stdlib.h>

#include "fuzz.h"
#include "radraft/labeler.h"

static const char findings[] =
    "The heart is enlarged. No pneumothorax, but a small left pleural effusion is seen. "
    "Possible nodule in the right upper lobe versus atelectasis; cannot exclude pneumonia. "
    "XXXX. No change in the mediastinal contour.";
static const char impression[] = "Cardiomegaly. Left effusion, however no consolidation.";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rd_fuzz_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json = rd_fuzz_strndup(data, size);
    rd_labeler *lab = NULL;
    rd_labels labels;
    rd_error err;

    if (rd_labeler_create_from_json(&lab, json, "phrases.json", &err) == RD_OK) {
        (void)rd_labeler_label(lab, findings, impression, &labels, &err);
        rd_labeler_free(lab);
    }
    free(json);
    return 0;
}
