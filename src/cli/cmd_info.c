/* radraft info: metadata of DICOM (and PNG) files as JSON lines. */
#include "cli.h"

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/dicom.h"
#include "radraft/image.h"

static const char help[] =
    "usage: radraft info [OPTIONS] FILE...\n"
    "Prints one JSON object per file and line: \"file\", \"format\" and the DICOM metadata\n"
    "(patient, study, series, instance, modality, view, image geometry, transfer syntax;\n"
    "names as UTF-8), or for a PNG its width, height, bit depth and channels. A file that\n"
    "cannot be read gives \"error\" and \"status\" instead; the exit code is then "
    "1.\n\n" RD_CLI_COMMON_HELP;

/* The metadata fields, in output order: one table so that the JSON keys always match the
 * struct's field names. */
typedef enum { F_STR, F_INT } field_type;
typedef struct field {
    const char *key;
    field_type type;
    size_t off;
} field;

/* clang-format off */
#define S(name) {#name, F_STR, offsetof(rd_dicom_meta, name)}
#define I(name) {#name, F_INT, offsetof(rd_dicom_meta, name)}
/* clang-format on */
static const field fields[] = {
    S(patient_id),
    S(patient_name),
    S(patient_birth_date),
    S(patient_sex),
    S(study_uid),
    S(series_uid),
    S(sop_instance_uid),
    S(sop_class_uid),
    S(sop_class_name),
    S(accession_number),
    S(study_date),
    S(study_time),
    S(study_description),
    S(series_description),
    S(modality),
    S(view_position),
    S(laterality),
    S(patient_orientation),
    S(body_part),
    S(image_type),
    S(photometric),
    S(manufacturer),
    S(transfer_syntax_uid),
    S(transfer_syntax_name),
    S(specific_charset),
    I(series_number),
    I(instance_number),
    I(rows),
    I(columns),
    I(bits_allocated),
    I(bits_stored),
    I(samples_per_pixel),
    I(number_of_frames),
    I(has_pixel_data),
};
#undef S
#undef I

static rd_status describe(const char *path, cJSON *obj, rd_error *err)
{
    if (rd_png_probe(path)) {
        rd_png_info info;
        rd_status st = rd_png_read_info(path, &info, err);
        if (st != RD_OK)
            return st;
        cJSON_AddStringToObject(obj, "format", "png");
        cJSON_AddNumberToObject(obj, "width", info.width);
        cJSON_AddNumberToObject(obj, "height", info.height);
        cJSON_AddNumberToObject(obj, "bit_depth", info.bit_depth);
        cJSON_AddNumberToObject(obj, "channels", info.channels);
        return RD_OK;
    }
    rd_dicom_meta meta;
    rd_status st = rd_dicom_read_meta(path, &meta, err);
    if (st != RD_OK)
        return st;
    cJSON_AddStringToObject(obj, "format", "dicom");
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const char *p = (const char *)&meta + fields[i].off;
        if (fields[i].type == F_STR)
            cJSON_AddStringToObject(obj, fields[i].key, p);
        else
            cJSON_AddNumberToObject(obj, fields[i].key, *(const int *)(const void *)p);
    }
    if (meta.pixel_spacing[0] > 0 && meta.pixel_spacing[1] > 0) {
        cJSON *arr = cJSON_CreateDoubleArray(meta.pixel_spacing, 2);
        if (arr)
            cJSON_AddItemToObject(obj, "pixel_spacing", arr);
    }
    return RD_OK;
}

int rd_cmd_info(int argc, char **argv)
{
    static const struct option opts[] = {RD_CLI_COMMON_LONGOPTS, {NULL, 0, NULL, 0}};
    rd_cli cli;
    int opt, rc, failed = 0;

    rd_cli_init(&cli, "radraft info");
    /* Every option is a common one: the loop only has to run to the end. */
    while ((opt = rd_cli_getopt(&cli, argc, argv, "h", opts, help, &rc)) > 0)
        continue;
    if (opt < 0)
        return rc;
    if (optind >= argc)
        return rd_cli_usage_error(&cli, help, "no FILE given");
    if ((rc = rd_cli_finish(&cli, argc, argv, RD_CLI_OPERANDS)) != RD_EXIT_OK)
        return rc;
    for (int i = optind; i < argc; i++) {
        rd_error err;
        cJSON *obj = cJSON_CreateObject();
        char *text;
        rd_error_clear(&err);
        if (!obj || !cJSON_AddStringToObject(obj, "file", argv[i])) {
            cJSON_Delete(obj);
            rd_cli_error(&cli, "out of memory");
            return RD_EXIT_FAIL;
        }
        rd_status st = describe(argv[i], obj, &err);
        if (st != RD_OK) {
            /* Start again so that a half-filled object never mixes with the error. */
            cJSON_Delete(obj);
            obj = cJSON_CreateObject();
            if (!obj) {
                rd_cli_error(&cli, "out of memory");
                return RD_EXIT_FAIL;
            }
            cJSON_AddStringToObject(obj, "file", argv[i]);
            cJSON_AddStringToObject(obj, "error", rd_error_message(&err));
            cJSON_AddStringToObject(obj, "status", rd_status_name(st));
            failed = 1;
        }
        text = cJSON_PrintUnformatted(obj);
        cJSON_Delete(obj);
        if (!text) {
            rd_cli_error(&cli, "out of memory");
            return RD_EXIT_FAIL;
        }
        puts(text);
        free(text);
    }
    return failed ? RD_EXIT_FAIL : RD_EXIT_OK;
}
