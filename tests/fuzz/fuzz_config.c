/* Fuzz target: the configuration parser (include/radraft/config.h).
 *
 * The input is a configuration file's text as --config and $RADRAFT_CONFIG give it:
 * rd_config_apply_json over the defaults (the table-driven parser, validation and the
 * all-or-nothing rule), and, when it is accepted, rd_config_print of the result. Its first
 * line, when it looks like KEY=VALUE, is also given to rd_config_set as a --set override
 * would be. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "radraft/config.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    rd_fuzz_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = rd_fuzz_strndup(data, size);
    char *eq, *nl;
    rd_config cfg;
    rd_error err;

    rd_config_defaults(&cfg);
    if (rd_config_apply_json(&cfg, text, "fuzz.json", &err) == RD_OK)
        (void)rd_config_print(&cfg, rd_fuzz_null(), &err);
    if ((nl = strchr(text, '\n')) != NULL)
        *nl = '\0';
    if ((eq = strchr(text, '=')) != NULL) {
        *eq = '\0';
        rd_config_defaults(&cfg);
        if (rd_config_set(&cfg, text, eq + 1, &err) == RD_OK)
            (void)rd_config_print(&cfg, rd_fuzz_null(), &err);
    }
    free(text);
    return 0;
}
