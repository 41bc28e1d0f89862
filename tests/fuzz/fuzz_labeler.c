/* Fuzz target: the report labeler (include/radraft/labeler.h) with its built-in phrases.
 *
 * The input is a report: the findings section, a NUL byte, then the impression (no NUL: all
 * findings, no impression), labelled by rd_labeler_label as the archive import and the
 * review queue label report texts; the whole input is also one JSON Lines record for
 * rd_labeler_label_json, as `radraft label` reads them, and the labels it gives are written
 * back as JSON. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "radraft/labeler.h"

static rd_labeler *g_lab;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    rd_error err;
    (void)argc;
    (void)argv;
    rd_fuzz_init();
    if (rd_labeler_create(&g_lab, NULL, &err) != RD_OK) {
        fprintf(stderr, "fuzz_labeler: built-in phrases: %s\n", rd_error_message(&err));
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = rd_fuzz_strndup(data, size);
    size_t first = strlen(text);
    const char *impression = first < size ? text + first + 1 : NULL;
    char id[128];
    rd_labels labels;
    rd_error err;

    (void)rd_labeler_label(g_lab, text, impression, &labels, &err);
    if (first < size)
        text[first] = ' '; /* the record is the whole input */
    if (rd_labeler_label_json(g_lab, text, id, sizeof id, &labels, &err) == RD_OK)
        (void)rd_labels_write_json(rd_fuzz_null(), id, &labels, &err);
    free(text);
    return 0;
}
