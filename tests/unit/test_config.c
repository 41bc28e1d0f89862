#include "radraft/config.h"
#include "radraft/log.h"
#include "rdtest.h"
#include "base/util.h"

RD_TEST(defaults_valid)
{
    rd_config cfg;
    rd_error err;
    rd_config_defaults(&cfg);
    CHECK_STR(cfg.log_level, "info");
    CHECK_EQ_INT(cfg.dicom_max_dimension, 16384);
    CHECK_NEAR(cfg.dicom_voi_percentile_low, 0.5, 1e-12);
    /* Every default must survive a round trip through the validating parser. */
    char *text = NULL;
    size_t len = 0;
    FILE *fp = open_memstream(&text, &len);
    REQUIRE(fp);
    CHECK_OK(rd_config_print(&cfg, fp, &err), &err);
    fclose(fp);
    rd_config again;
    rd_config_defaults(&again);
    CHECK_OK(rd_config_apply_json(&again, text, "printed", &err), &err);
    CHECK(memcmp(&again, &cfg, sizeof cfg) == 0);
    free(text);
}

RD_TEST(nested_and_dotted_keys)
{
    rd_config cfg;
    rd_error err;
    rd_config_defaults(&cfg);
    CHECK_OK(rd_config_apply_json(&cfg, "{\"dicom\": {\"max_dimension\": 4096}}", "t", &err), &err);
    CHECK_EQ_INT(cfg.dicom_max_dimension, 4096);
    CHECK_OK(rd_config_apply_json(&cfg,
                                  "{\"dicom.max_dimension\": 2048, \"log\": "
                                  "{\"level\": \"debug\"}}",
                                  "t", &err),
             &err);
    CHECK_EQ_INT(cfg.dicom_max_dimension, 2048);
    CHECK_STR(cfg.log_level, "debug");
}

RD_TEST(bad_values_rejected_atomically)
{
    rd_config cfg;
    rd_error err;
    rd_config_defaults(&cfg);
    rd_config before = cfg;
    /* The valid first key must not be applied when the second is bad. */
    CHECK_EQ_INT(rd_config_apply_json(&cfg,
                                      "{\"log\":{\"level\":\"debug\"},"
                                      "\"dicom\":{\"max_dimension\": 3}}",
                                      "f.json", &err),
                 RD_E_CONFIG);
    CHECK(strstr(err.msg, "dicom.max_dimension") != NULL);
    CHECK(strstr(err.msg, "f.json") != NULL);
    CHECK(memcmp(&before, &cfg, sizeof cfg) == 0);

    CHECK_EQ_INT(rd_config_apply_json(&cfg, "{\"dicom\":{\"max_dimension\": 100.5}}", "t", &err),
                 RD_E_CONFIG);
    CHECK_EQ_INT(rd_config_apply_json(&cfg, "{\"dicom\":{\"max_dimension\": \"big\"}}", "t", &err),
                 RD_E_CONFIG);
    CHECK_EQ_INT(rd_config_apply_json(&cfg, "{\"log\":{\"level\": \"loud\"}}", "t", &err),
                 RD_E_CONFIG);
    CHECK(strstr(err.msg, "error|warn|info|debug") != NULL);
    CHECK_EQ_INT(rd_config_apply_json(&cfg, "[1,2]", "t", &err), RD_E_CONFIG);
    CHECK_EQ_INT(rd_config_apply_json(&cfg, "{\"log\": ", "t", &err), RD_E_CONFIG);
    CHECK(strstr(err.msg, "not valid JSON") != NULL);
    CHECK_EQ_INT(rd_config_apply_json(&cfg,
                                      "{\"dicom\":{\"voi_percentile_low\": 40, "
                                      "\"voi_percentile_high\": 60}}",
                                      "t", &err),
                 RD_OK);
    CHECK_EQ_INT(rd_config_apply_json(&cfg,
                                      "{\"dicom\":{\"voi_percentile_low\": 45, "
                                      "\"voi_percentile_high\": 51}}",
                                      "t", &err),
                 RD_OK);
    CHECK(memcmp(&before, &cfg, sizeof cfg) != 0);
}

RD_TEST(unknown_key_suggests)
{
    rd_config cfg;
    rd_error err;
    rd_config_defaults(&cfg);
    CHECK_EQ_INT(rd_config_apply_json(&cfg, "{\"dicom\":{\"max_dimention\": 10}}", "t", &err),
                 RD_E_CONFIG);
    CHECK(strstr(err.msg, "unknown key 'dicom.max_dimention'") != NULL);
    CHECK(strstr(err.msg, "did you mean 'dicom.max_dimension'") != NULL);
    CHECK_EQ_INT(rd_config_set(&cfg, "nothing.like.it", "1", &err), RD_E_CONFIG);
}

/* Another patient's sentences are opt-in (issue 14, item 6); the SR code table is the
 * built-in one unless a site names its own. */
RD_TEST(neighbour_sentences_off_and_codes_built_in_by_default)
{
    rd_config cfg;
    rd_error err;
    rd_config_defaults(&cfg);
    CHECK_EQ_INT(cfg.generator_reuse_neighbour_sentences, 0);
    CHECK_STR(cfg.sr_finding_codes, "");
    CHECK_OK(rd_config_set(&cfg, "generator.reuse_neighbour_sentences", "true", &err), &err);
    CHECK_EQ_INT(cfg.generator_reuse_neighbour_sentences, 1);
    CHECK_OK(rd_config_apply_json(&cfg, "{\"generator\": {\"reuse_neighbour_sentences\": false}}",
                                  "test", &err),
             &err);
    CHECK_EQ_INT(cfg.generator_reuse_neighbour_sentences, 0);
    CHECK_EQ_INT(rd_config_set(&cfg, "generator.reuse_neighbour_sentences", "sometimes", &err),
                 RD_E_CONFIG);
    CHECK_OK(rd_config_set(&cfg, "sr.finding_codes", "/etc/site-codes.json", &err), &err);
    CHECK_STR(cfg.sr_finding_codes, "/etc/site-codes.json");
}

/* The AI Results SR is written unless a site turns it off (issue 14, item 3). */
RD_TEST(air_sr_on_by_default)
{
    rd_config cfg;
    rd_error err;
    rd_config_defaults(&cfg);
    CHECK_EQ_INT(cfg.sr_air, 1);
    CHECK_OK(rd_config_apply_json(&cfg, "{\"sr\": {\"air\": false}}", "test", &err), &err);
    CHECK_EQ_INT(cfg.sr_air, 0);
    CHECK_OK(rd_config_set(&cfg, "sr.air", "true", &err), &err);
    CHECK_EQ_INT(cfg.sr_air, 1);
    CHECK_EQ_INT(rd_config_set(&cfg, "sr.air", "2", &err), RD_E_CONFIG);
}

RD_TEST(set_from_text)
{
    rd_config cfg;
    rd_error err;
    rd_config_defaults(&cfg);
    CHECK_OK(rd_config_set(&cfg, "dicom.max_dimension", "512", &err), &err);
    CHECK_EQ_INT(cfg.dicom_max_dimension, 512);
    CHECK_EQ_INT(rd_config_set(&cfg, "dicom.max_dimension", "512x", &err), RD_E_CONFIG);
    CHECK_EQ_INT(rd_config_set(&cfg, "dicom.max_dimension", "99999999", &err), RD_E_CONFIG);
    CHECK_EQ_INT(cfg.dicom_max_dimension, 512);
    /* A string longer than its key allows (an AE title is at most 16 characters). */
    CHECK_EQ_INT(rd_config_set(&cfg, "server.ae_title", "ABCDEFGHIJKLMNOPQ", &err), RD_E_CONFIG);
    CHECK_OK(rd_config_set(&cfg, "server.ae_title", "ABCDEFGHIJKLMNOP", &err), &err);
    CHECK_STR(cfg.server_ae_title, "ABCDEFGHIJKLMNOP");
    CHECK_OK(rd_config_set(&cfg, "server.allowed_calling_aes", "PACS,CT1", &err), &err);
    CHECK_EQ_INT(cfg.server_allowed_calling_aes.count, 2);
    CHECK_STR(cfg.server_allowed_calling_aes.items[1], "CT1");
}

RD_TEST(load_file_errors)
{
    rd_config cfg;
    rd_error err;
    const char *dir = rd_test_tmpdir("config_load");
    char path[1200];
    rd_config_defaults(&cfg);
    snprintf(path, sizeof path, "%s/missing.json", dir);
    CHECK_EQ_INT(rd_config_load_file(&cfg, path, &err), RD_E_NOT_FOUND);
    snprintf(path, sizeof path, "%s/ok.json", dir);
    CHECK_OK(rd_write_file_atomic(path, "{\"log\":{\"level\":\"warn\"}}", 25, &err), &err);
    CHECK_OK(rd_config_load_file(&cfg, path, &err), &err);
    CHECK_STR(cfg.log_level, "warn");
}

RD_TEST(status_table)
{
    rd_error err;
    CHECK_STR(rd_status_name(RD_E_IO), "RD_E_IO");
    CHECK_STR(rd_status_name((rd_status)999), "RD_E_UNKNOWN");
    CHECK_EQ_INT(rd_error_set(&err, RD_E_DICOM, "x %d", 5), RD_E_DICOM);
    CHECK_STR(err.msg, "x 5");
    CHECK_EQ_INT(rd_error_prefix(&err, RD_E_IO, "file.dcm"), RD_E_DICOM);
    CHECK_STR(err.msg, "file.dcm: x 5");
    CHECK_EQ_INT(rd_error_set(NULL, RD_E_IO, "ignored"), RD_E_IO);
    rd_log_level lvl;
    CHECK_EQ_INT(rd_log_level_parse("debug", &lvl, &err), RD_OK);
    CHECK_EQ_INT(lvl, RD_LOG_DEBUG);
    CHECK_EQ_INT(rd_log_level_parse("verbose", &lvl, &err), RD_E_INVALID);
}

RD_TEST_MAIN()
