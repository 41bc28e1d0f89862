/* DICOM SR writer: draft and signed reports written through the API and read back, with the
 * header copied from the source (ISO 2022 Japanese and Korean names included) and bad input
 * refused. The peer checks (dciodvfy, dsrdump, dcmdump) are in
 * tests/integration/test_report.sh. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "radraft/codes.h"
#include "radraft/dicom.h"
#include "radraft/samples.h"
#include "radraft/sr.h"
#include "rdtest.h"

#define ENHANCED_SR "1.2.840.10008.5.1.4.1.1.88.22"

static const char kFindings[] = "The heart is enlarged. There may be a small left pleural "
                                "effusion. No pneumothorax.";
static const char kImpression[] = "Cardiomegaly. Possible small left pleural effusion.";

/* The built-in code table (models/finding-codes.json). */
static const rd_sr_codes *test_codes(void)
{
    static rd_sr_codes codes;
    static int loaded;
    rd_error err;
    if (!loaded) {
        if (rd_sr_codes_load(&codes, NULL, &err) != RD_OK) {
            fprintf(stderr, "rd_sr_codes_load: %s\n", rd_error_message(&err));
            abort();
        }
        loaded = 1;
    }
    return &codes;
}

/* Writes the PA and lateral of sample patient RDS0002 (small images) into `dir`. */
static int write_sample_study(const char *dir, char pa[1024], char lat[1024])
{
    rd_samples_options opts;
    rd_error err;
    rd_samples_options_default(&opts);
    opts.rows = 128;
    /* Cases 2 and 3 are RDS0002's PA and lateral (see samples/README.md). */
    snprintf(pa, 1024, "%s/pa.dcm", dir);
    snprintf(lat, 1024, "%s/lateral.dcm", dir);
    if (rd_samples_write_case(2, &opts, pa, &err) != RD_OK ||
        rd_samples_write_case(3, &opts, lat, &err) != RD_OK) {
        fprintf(stderr, "rd_samples_write_case: %s\n", rd_error_message(&err));
        return -1;
    }
    return 0;
}

static const rd_sr_finding kCoded[] = {
    {"Cardiomegaly", RD_STATE_PRESENT, 0.82},
    {"Effusion", RD_STATE_UNCERTAIN, 0.41},
};

static void draft_params(rd_sr_params *p, const char *const *sources, size_t n)
{
    rd_sr_params_init(p);
    p->sources = sources;
    p->n_sources = n;
    p->findings_text = kFindings;
    p->impression_text = kImpression;
    p->findings = kCoded;
    p->n_findings = 2;
    p->model_name = "test-model";
    p->model_version = "0.3";
    p->codes = test_codes();
}

RD_TEST(draft_round_trip)
{
    const char *dir = rd_test_tmpdir("sr_draft_round_trip");
    char pa[1024], lat[1024], out[1200];
    rd_error err;
    rd_sr_params p;
    rd_sr_result res;
    rd_sr_info info;
    rd_dicom_meta src, sr;
    REQUIRE(write_sample_study(dir, pa, lat) == 0);
    const char *sources[] = {pa, lat};
    draft_params(&p, sources, 2);
    snprintf(out, sizeof out, "%s/draft.dcm", dir);
    REQUIRE_OK(rd_sr_write_draft(&p, out, &res, &err), &err);
    REQUIRE_OK(rd_dicom_read_meta(pa, &src, &err), &err);

    CHECK_STR(res.study_uid, src.study_uid);
    CHECK_STR(res.sop_class_uid, ENHANCED_SR);
    CHECK_EQ_INT(res.n_evidence, 2);
    CHECK(strncmp(res.sop_instance_uid, "2.25.", 5) == 0);
    CHECK(strcmp(res.series_uid, src.series_uid) != 0);

    /* What DCMTK's generic reader sees. */
    REQUIRE_OK(rd_dicom_read_meta(out, &sr, &err), &err);
    CHECK_STR(sr.sop_class_uid, ENHANCED_SR);
    CHECK_STR(sr.modality, "SR");
    CHECK_STR(sr.study_uid, src.study_uid);
    CHECK_STR(sr.series_uid, res.series_uid);
    CHECK_STR(sr.sop_instance_uid, res.sop_instance_uid);
    CHECK_STR(sr.patient_name, src.patient_name);
    CHECK_STR(sr.patient_id, src.patient_id);
    CHECK_STR(sr.patient_birth_date, src.patient_birth_date);
    CHECK_STR(sr.patient_sex, src.patient_sex);
    CHECK_STR(sr.accession_number, src.accession_number);
    CHECK_STR(sr.study_date, src.study_date);
    CHECK_STR(sr.study_time, src.study_time);
    CHECK_STR(sr.specific_charset, "ISO_IR 192");
    CHECK_EQ_INT(sr.series_number, RD_SR_DEFAULT_SERIES_NUMBER);
    CHECK_EQ_INT(sr.instance_number, 1);
    CHECK_EQ_INT(sr.has_pixel_data, 0);

    /* What the SR reader finds in the document. */
    REQUIRE_OK(rd_sr_read(out, test_codes(), &info, &err), &err);
    CHECK_STR(info.completion_flag, "PARTIAL");
    CHECK_STR(info.verification_flag, "UNVERIFIED");
    CHECK_STR(info.preliminary_flag, "PRELIMINARY");
    CHECK_STR(info.findings_text, kFindings);
    CHECK_STR(info.impression_text, kImpression);
    CHECK_STR(info.device_model_name, "radraft test-model 0.3");
    CHECK_STR(info.verifier_name, "");
    CHECK_STR(info.predecessor_sop_uid, "");
    CHECK_EQ_INT(info.n_evidence, 2);
    /* TID 2002 codes what the report asserts: the present finding; the uncertain one is
     * in the text only, and no score is written (radraft/sr.h). */
    CHECK_EQ_INT(info.n_findings, 1);
    CHECK_EQ_INT(info.findings[0].finding, RD_FINDING_CARDIOMEGALY);
    CHECK_EQ_INT(info.findings[0].state, RD_STATE_PRESENT);
    CHECK(info.findings[0].score < 0);
    rd_sr_info_free(&info);
    CHECK(info.findings_text == NULL);
    rd_sr_info_free(NULL);
}

RD_TEST(two_drafts_get_distinct_uids)
{
    const char *dir = rd_test_tmpdir("sr_two_drafts");
    char pa[1024], lat[1024], a[1200], b[1200];
    rd_error err;
    rd_sr_params p;
    rd_sr_result ra, rb;
    REQUIRE(write_sample_study(dir, pa, lat) == 0);
    const char *sources[] = {pa};
    draft_params(&p, sources, 1);
    p.n_findings = 0;
    p.series_number = 42;
    snprintf(a, sizeof a, "%s/a.dcm", dir);
    snprintf(b, sizeof b, "%s/b.dcm", dir);
    REQUIRE_OK(rd_sr_write_draft(&p, a, &ra, &err), &err);
    REQUIRE_OK(rd_sr_write_draft(&p, b, &rb, &err), &err);
    CHECK(strcmp(ra.sop_instance_uid, rb.sop_instance_uid) != 0);
    CHECK(strcmp(ra.series_uid, rb.series_uid) != 0);
    CHECK(strlen(ra.sop_instance_uid) <= 64);
    CHECK_STR(ra.study_uid, rb.study_uid);
    CHECK_EQ_INT(ra.n_evidence, 1);
    rd_dicom_meta m;
    REQUIRE_OK(rd_dicom_read_meta(a, &m, &err), &err);
    CHECK_EQ_INT(m.series_number, 42);
    rd_sr_info info;
    REQUIRE_OK(rd_sr_read(a, test_codes(), &info, &err), &err);
    CHECK_EQ_INT(info.n_findings, 0);
    rd_sr_info_free(&info);
}

RD_TEST(signed_version)
{
    const char *dir = rd_test_tmpdir("sr_signed");
    char pa[1024], lat[1024], draft[1200], signed_path[1200], again[1200];
    rd_error err;
    rd_sr_params p;
    rd_sr_result dres, sres;
    rd_sr_sign_params s;
    rd_sr_info info;
    REQUIRE(write_sample_study(dir, pa, lat) == 0);
    const char *sources[] = {pa, lat};
    draft_params(&p, sources, 2);
    snprintf(draft, sizeof draft, "%s/draft.dcm", dir);
    snprintf(signed_path, sizeof signed_path, "%s/signed.dcm", dir);
    REQUIRE_OK(rd_sr_write_draft(&p, draft, &dres, &err), &err);

    rd_sr_sign_params_init(&s);
    s.codes = test_codes();
    s.verifier_name = "Müller^Anna";
    s.organization = "Radiology, St. Elsewhere";
    s.datetime = "20260102103000";
    s.impression_text = "Cardiomegaly.";
    REQUIRE_OK(rd_sr_write_signed(draft, &s, signed_path, &sres, &err), &err);
    CHECK(strcmp(sres.sop_instance_uid, dres.sop_instance_uid) != 0);
    CHECK_STR(sres.study_uid, dres.study_uid);
    /* Its own series: the study's signed series, not the draft's. */
    char signed_series[RD_UID_SIZE];
    REQUIRE_OK(rd_sr_signed_series_uid(dres.study_uid, signed_series, &err), &err);
    CHECK(strcmp(sres.series_uid, dres.series_uid) != 0);
    CHECK_STR(sres.series_uid, signed_series);

    REQUIRE_OK(rd_sr_read(signed_path, test_codes(), &info, &err), &err);
    CHECK_STR(info.sop_instance_uid, sres.sop_instance_uid);
    CHECK_STR(info.completion_flag, "COMPLETE");
    CHECK_STR(info.verification_flag, "VERIFIED");
    CHECK_STR(info.preliminary_flag, "FINAL");
    CHECK_STR(info.verifier_name, "Müller^Anna");
    CHECK_STR(info.verifier_organization, "Radiology, St. Elsewhere");
    CHECK(strncmp(info.verification_datetime, "20260102103000", 14) == 0);
    CHECK_STR(info.predecessor_sop_uid, dres.sop_instance_uid);
    CHECK_STR(info.findings_text, kFindings);         /* kept */
    CHECK_STR(info.impression_text, "Cardiomegaly."); /* edited */
    CHECK_EQ_INT(info.n_findings, 1);                 /* kept */
    CHECK_EQ_INT(info.n_evidence, 2);
    CHECK_STR(info.series_uid, signed_series);
    CHECK_STR(info.series_description, "radraft signed reports");
    /* The radiologist is the person observer and the author; the device stays. */
    CHECK_STR(info.person_observer_name, "Müller^Anna");
    CHECK_STR(info.person_observer_organization, "Radiology, St. Elsewhere");
    CHECK_STR(info.author_name, "Müller^Anna");
    CHECK_STR(info.author_organization, "Radiology, St. Elsewhere");
    CHECK_STR(info.device_model_name, "radraft test-model 0.3");
    rd_sr_info_free(&info);

    rd_dicom_meta m;
    REQUIRE_OK(rd_dicom_read_meta(signed_path, &m, &err), &err);
    CHECK_EQ_INT(m.instance_number, 2);
    CHECK_EQ_INT(m.series_number, RD_SR_DEFAULT_SIGNED_SERIES_NUMBER);
    CHECK_STR(m.series_uid, signed_series);
    CHECK_STR(m.modality, "SR");

    /* The draft is unchanged, and a signed report cannot be signed again (only amended). */
    REQUIRE_OK(rd_sr_read(draft, test_codes(), &info, &err), &err);
    CHECK_STR(info.verification_flag, "UNVERIFIED");
    CHECK_STR(info.impression_text, kImpression);
    CHECK_STR(info.series_description, RD_SR_DRAFT_SERIES_DESCRIPTION);
    CHECK_STR(info.person_observer_name, "");
    CHECK_STR(info.author_name, "");
    rd_sr_info_free(&info);
    snprintf(again, sizeof again, "%s/again.dcm", dir);
    CHECK_EQ_INT(rd_sr_write_signed(signed_path, &s, again, NULL, &err), RD_E_INVALID);
}

RD_TEST(signed_replaces_findings)
{
    const char *dir = rd_test_tmpdir("sr_signed_replace");
    char pa[1024], lat[1024], draft[1200], out[1200];
    rd_error err;
    rd_sr_params p;
    rd_sr_sign_params s;
    rd_sr_info info;
    REQUIRE(write_sample_study(dir, pa, lat) == 0);
    const char *sources[] = {pa};
    draft_params(&p, sources, 1);
    snprintf(draft, sizeof draft, "%s/draft.dcm", dir);
    snprintf(out, sizeof out, "%s/signed.dcm", dir);
    REQUIRE_OK(rd_sr_write_draft(&p, draft, NULL, &err), &err);
    static const rd_sr_finding edited[] = {{"Nodule", RD_STATE_PRESENT, -1}};
    rd_sr_sign_params_init(&s);
    s.codes = test_codes();
    s.verifier_name = "Doe^Jane";
    s.organization = "General Hospital";
    s.findings_text = "A nodule in the right upper lobe.";
    s.impression_text = "Right upper lobe nodule.";
    s.replace_findings = 1;
    s.findings = edited;
    s.n_findings = 1;
    REQUIRE_OK(rd_sr_write_signed(draft, &s, out, NULL, &err), &err);
    REQUIRE_OK(rd_sr_read(out, test_codes(), &info, &err), &err);
    CHECK_STR(info.findings_text, "A nodule in the right upper lobe.");
    CHECK_EQ_INT(info.n_findings, 1);
    CHECK_EQ_INT(info.findings[0].finding, RD_FINDING_NODULE);
    CHECK_EQ_INT(info.findings[0].state, RD_STATE_PRESENT);
    CHECK(info.findings[0].score < 0);
    rd_sr_info_free(&info);

    /* Missing verifier details are refused. */
    s.organization = "";
    CHECK_EQ_INT(rd_sr_write_signed(draft, &s, out, NULL, &err), RD_E_INVALID);
}

/* Writes a draft of the sample study into `dir`/`name` and signs it into `dir`/`out`. */
static int draft_and_sign(const char *dir, const char *pa, const char *name, const char *out,
                          rd_sr_result *dres, rd_sr_result *sres)
{
    char draft[1200], path[1200];
    rd_error err;
    rd_sr_params p;
    rd_sr_sign_params s;
    const char *sources[] = {pa};
    draft_params(&p, sources, 1);
    snprintf(draft, sizeof draft, "%s/%s", dir, name);
    snprintf(path, sizeof path, "%s/%s", dir, out);
    rd_sr_sign_params_init(&s);
    s.codes = test_codes();
    s.verifier_name = "Doe^Jane";
    s.organization = "General Hospital";
    if (rd_sr_write_draft(&p, draft, dres, &err) != RD_OK ||
        rd_sr_write_signed(draft, &s, path, sres, &err) != RD_OK) {
        fprintf(stderr, "draft_and_sign: %s\n", rd_error_message(&err));
        return -1;
    }
    return 0;
}

RD_TEST(signed_series_uid_reference)
{
    char uid[RD_UID_SIZE];
    rd_error err;
    /* Python: "2.25.%d" % uuid.uuid5(uuid.UUID(int=<namespace>), "1.2.3.4").int */
    REQUIRE_OK(rd_sr_signed_series_uid("1.2.3.4", uid, &err), &err);
    CHECK_STR(uid, "2.25.195680479289070476507066447205996582266");
    REQUIRE_OK(rd_sr_signed_series_uid("2.25.58841464432832177699264732244969919231", uid, &err),
               &err);
    CHECK_STR(uid, "2.25.75596119301446561738493173632298593187");
    CHECK_EQ_INT(rd_sr_signed_series_uid("1.2.x", uid, &err), RD_E_INVALID);
    CHECK_STR(uid, "");
    CHECK_EQ_INT(rd_sr_signed_series_uid(NULL, uid, &err), RD_E_INVALID);
    CHECK_EQ_INT(rd_sr_signed_series_uid("", uid, &err), RD_E_INVALID);
}

RD_TEST(signatures_of_a_study_share_the_signed_series)
{
    const char *dir = rd_test_tmpdir("sr_signed_series");
    char pa[1024], lat[1024];
    rd_sr_result d1, s1, d2, s2;
    REQUIRE(write_sample_study(dir, pa, lat) == 0);
    REQUIRE(draft_and_sign(dir, pa, "draft1.dcm", "signed1.dcm", &d1, &s1) == 0);
    REQUIRE(draft_and_sign(dir, pa, "draft2.dcm", "signed2.dcm", &d2, &s2) == 0);
    CHECK(strcmp(d1.series_uid, d2.series_uid) != 0); /* a series per draft */
    CHECK_STR(s1.series_uid, s2.series_uid);          /* one signed series */
    CHECK(strcmp(s1.series_uid, d1.series_uid) != 0);
    CHECK(strcmp(s1.series_uid, d2.series_uid) != 0);
    CHECK(strcmp(s1.sop_instance_uid, s2.sop_instance_uid) != 0);
    CHECK(strncmp(s1.series_uid, "2.25.", 5) == 0 && strlen(s1.series_uid) <= 64);
}

RD_TEST(amend_signed)
{
    const char *dir = rd_test_tmpdir("sr_amend");
    char pa[1024], lat[1024], draft[1200], signed_path[1200], amended[1200], twice[1200], bad[1200];
    rd_error err;
    rd_sr_result dres, sres, ares, tres;
    rd_sr_sign_params s;
    rd_sr_info info;
    REQUIRE(write_sample_study(dir, pa, lat) == 0);
    REQUIRE(draft_and_sign(dir, pa, "draft.dcm", "signed.dcm", &dres, &sres) == 0);
    snprintf(draft, sizeof draft, "%s/draft.dcm", dir);
    snprintf(signed_path, sizeof signed_path, "%s/signed.dcm", dir);
    snprintf(amended, sizeof amended, "%s/amended.dcm", dir);
    snprintf(twice, sizeof twice, "%s/amended2.dcm", dir);
    snprintf(bad, sizeof bad, "%s/bad.dcm", dir);

    /* Another radiologist amends the impression. */
    rd_sr_sign_params_init(&s);
    s.codes = test_codes();
    s.verifier_name = "Roe^Richard";
    s.organization = "Radiology, County Hospital";
    s.datetime = "20260103090000";
    s.impression_text = "Cardiomegaly. Small left pleural effusion.";
    s.amend = 1;
    REQUIRE_OK(rd_sr_write_signed(signed_path, &s, amended, &ares, &err), &err);
    CHECK_STR(ares.series_uid, sres.series_uid); /* stays in the signed series */
    CHECK(strcmp(ares.sop_instance_uid, sres.sop_instance_uid) != 0);
    REQUIRE_OK(rd_sr_read(amended, test_codes(), &info, &err), &err);
    CHECK_STR(info.predecessor_sop_uid, sres.sop_instance_uid);
    CHECK_STR(info.completion_flag, "COMPLETE");
    CHECK_STR(info.verification_flag, "VERIFIED");
    CHECK_STR(info.preliminary_flag, "FINAL");
    CHECK_STR(info.verifier_name, "Roe^Richard");
    CHECK(strncmp(info.verification_datetime, "20260103090000", 14) == 0);
    CHECK_STR(info.person_observer_name, "Roe^Richard");
    CHECK_STR(info.person_observer_organization, "Radiology, County Hospital");
    CHECK_STR(info.author_name, "Roe^Richard");
    CHECK_STR(info.author_organization, "Radiology, County Hospital");
    CHECK_STR(info.series_description, "radraft signed reports");
    CHECK_STR(info.impression_text, "Cardiomegaly. Small left pleural effusion.");
    CHECK_STR(info.findings_text, kFindings);
    CHECK_STR(info.device_model_name, "radraft test-model 0.3");
    rd_sr_info_free(&info);
    rd_dicom_meta m;
    REQUIRE_OK(rd_dicom_read_meta(amended, &m, &err), &err);
    CHECK_EQ_INT(m.instance_number, 3);
    CHECK_EQ_INT(m.series_number, RD_SR_DEFAULT_SIGNED_SERIES_NUMBER);

    /* An amendment of the amendment: same series, the amendment as its predecessor, one
     * verifying observer; a series number given once is kept by later amendments. */
    s.verifier_name = "Doe^Jane";
    s.organization = "General Hospital";
    s.impression_text = NULL;
    s.series_number = 77;
    REQUIRE_OK(rd_sr_write_signed(amended, &s, twice, &tres, &err), &err);
    CHECK_STR(tres.series_uid, sres.series_uid);
    REQUIRE_OK(rd_sr_read(twice, test_codes(), &info, &err), &err);
    CHECK_STR(info.predecessor_sop_uid, ares.sop_instance_uid);
    CHECK_STR(info.verifier_name, "Doe^Jane");
    CHECK_STR(info.person_observer_name, "Doe^Jane");
    CHECK_STR(info.impression_text, "Cardiomegaly. Small left pleural effusion.");
    rd_sr_info_free(&info);
    REQUIRE_OK(rd_dicom_read_meta(twice, &m, &err), &err);
    CHECK_EQ_INT(m.series_number, 77);
    s.series_number = 0;
    REQUIRE_OK(rd_sr_write_signed(twice, &s, bad, NULL, &err), &err);
    REQUIRE_OK(rd_dicom_read_meta(bad, &m, &err), &err);
    CHECK_EQ_INT(m.series_number, 77);

    /* A draft is not amended, and a signed SR is not signed without amend. */
    CHECK_EQ_INT(rd_sr_write_signed(draft, &s, bad, NULL, &err), RD_E_INVALID);
    s.amend = 0;
    CHECK_EQ_INT(rd_sr_write_signed(amended, &s, bad, NULL, &err), RD_E_INVALID);
}

RD_TEST(signed_chosen_sop_instance_uid)
{
    const char *dir = rd_test_tmpdir("sr_signed_uid");
    char pa[1024], lat[1024], draft[1200], out[1200];
    rd_error err;
    rd_sr_params p;
    rd_sr_result dres, sres;
    rd_sr_sign_params s;
    rd_sr_info info;
    rd_dicom_meta m;
    const char uid[] = "2.25.123456789012345678901234567890123456";
    REQUIRE(write_sample_study(dir, pa, lat) == 0);
    const char *sources[] = {pa};
    draft_params(&p, sources, 1);
    snprintf(draft, sizeof draft, "%s/draft.dcm", dir);
    snprintf(out, sizeof out, "%s/signed.dcm", dir);
    REQUIRE_OK(rd_sr_write_draft(&p, draft, &dres, &err), &err);
    rd_sr_sign_params_init(&s);
    s.codes = test_codes();
    s.verifier_name = "Doe^Jane";
    s.organization = "General Hospital";
    s.sop_instance_uid = uid;
    /* Written twice, as a retry after a crash would: the same instance both times. */
    for (int i = 0; i < 2; i++) {
        REQUIRE_OK(rd_sr_write_signed(draft, &s, out, &sres, &err), &err);
        CHECK_STR(sres.sop_instance_uid, uid);
        REQUIRE_OK(rd_sr_read(out, test_codes(), &info, &err), &err);
        CHECK_STR(info.sop_instance_uid, uid);
        CHECK_STR(info.predecessor_sop_uid, dres.sop_instance_uid);
        rd_sr_info_free(&info);
        REQUIRE_OK(rd_dicom_read_meta(out, &m, &err), &err);
        CHECK_STR(m.sop_instance_uid, uid);
    }
    /* A malformed UID, or the draft's own, is refused. */
    s.sop_instance_uid = "1.2.abc";
    CHECK_EQ_INT(rd_sr_write_signed(draft, &s, out, NULL, &err), RD_E_INVALID);
    s.sop_instance_uid = dres.sop_instance_uid;
    CHECK_EQ_INT(rd_sr_write_signed(draft, &s, out, NULL, &err), RD_E_INVALID);
    /* The signed series number must differ from the draft's. */
    s.sop_instance_uid = NULL;
    s.series_number = RD_SR_DEFAULT_SERIES_NUMBER;
    CHECK_EQ_INT(rd_sr_write_signed(draft, &s, out, NULL, &err), RD_E_INVALID);
    CHECK(strstr(err.msg, "draft's") != NULL);
    s.series_number = -1;
    CHECK_EQ_INT(rd_sr_write_signed(draft, &s, out, NULL, &err), RD_E_INVALID);
}

static void check_name_source(const char *file, const char *expected_name, const char *tmp)
{
    const char *data = rd_test_shared_data();
    char src[1024], out[1200];
    rd_error err;
    rd_sr_params p;
    rd_sr_info info;
    rd_dicom_meta m;
    snprintf(src, sizeof src, "%s/dicom/edge/%s", data, file);
    snprintf(out, sizeof out, "%s/draft.dcm", rd_test_tmpdir(tmp));
    const char *sources[] = {src};
    draft_params(&p, sources, 1);
    REQUIRE_OK(rd_sr_write_draft(&p, out, NULL, &err), &err);
    REQUIRE_OK(rd_dicom_read_meta(out, &m, &err), &err);
    CHECK_STR(m.specific_charset, "ISO_IR 192");
    CHECK_STR(m.patient_name, expected_name);
    REQUIRE_OK(rd_sr_read(out, test_codes(), &info, &err), &err);
    CHECK_STR(info.patient_name, expected_name);
    rd_sr_info_free(&info);
}

RD_TEST(japanese_name_in_utf8)
{
    /* ISO 2022 IR 87 source: the name is hiragana "yamada^tarou". */
    check_name_source("chrJapMulti-CR-chest.dcm", "やまだ^たろう", "sr_japanese");
}

RD_TEST(korean_name_in_utf8)
{
    /* ISO 2022 IR 149 source. */
    check_name_source("chrKoreanMulti-CR-chest.dcm", "김희중", "sr_korean");
}

RD_TEST(read_other_producers)
{
    const char *data = rd_test_shared_data();
    char path[1024], out[1200];
    rd_error err;
    rd_sr_info info;
    rd_sr_sign_params s;

    /* DCMTK's test document: Latin-1 text comes back as UTF-8. */
    snprintf(path, sizeof path, "%s/dicom/sr/test_SR-comprehensive.dcm", data);
    REQUIRE_OK(rd_sr_read(path, test_codes(), &info, &err), &err);
    CHECK_STR(info.sop_class_uid, "1.2.840.10008.5.1.4.1.1.88.33");
    CHECK_STR(info.completion_flag, "COMPLETE");
    CHECK_STR(info.verification_flag, "VERIFIED");
    CHECK_STR(info.verifier_name, "Riesmeier^Jörg");
    CHECK_STR(info.verifier_organization, "OFFIS e.V.");
    CHECK(info.findings_text == NULL); /* not a TID 2000 report */
    CHECK_EQ_INT(info.n_findings, 0);
    rd_sr_info_free(&info);

    /* A Basic Text SR with an invalid image reference: read leniently. */
    snprintf(path, sizeof path, "%s/dicom/sr/reportsi-basic-text.dcm", data);
    REQUIRE_OK(rd_sr_read(path, test_codes(), &info, &err), &err);
    CHECK_STR(info.sop_class_uid, "1.2.840.10008.5.1.4.1.1.88.11");
    CHECK(info.patient_name[0] != '\0');
    rd_sr_info_free(&info);

    /* Neither is a draft radraft can sign. */
    snprintf(out, sizeof out, "%s/signed.dcm", rd_test_tmpdir("sr_other_producers"));
    rd_sr_sign_params_init(&s);
    s.codes = test_codes();
    s.verifier_name = "Doe^Jane";
    s.organization = "General Hospital";
    snprintf(path, sizeof path, "%s/dicom/sr/test_SR-comprehensive.dcm", data);
    CHECK_EQ_INT(rd_sr_write_signed(path, &s, out, NULL, &err), RD_E_INVALID);
}

RD_TEST(bad_input_refused)
{
    const char *data = rd_test_shared_data();
    const char *dir = rd_test_tmpdir("sr_bad_input");
    char pa[1024], lat[1024], out[1200], other[1200], missing[1200];
    rd_error err;
    rd_sr_params p;
    rd_sr_info info;
    REQUIRE(write_sample_study(dir, pa, lat) == 0);
    snprintf(out, sizeof out, "%s/out.dcm", dir);
    snprintf(other, sizeof other, "%s/dicom/edge/chrKoreanMulti-CR-chest.dcm", data);
    snprintf(missing, sizeof missing, "%s/missing.dcm", dir);
    const char *one[] = {pa};

    draft_params(&p, one, 1);
    p.findings_text = "";
    CHECK_EQ_INT(rd_sr_write_draft(&p, out, NULL, &err), RD_E_INVALID);
    draft_params(&p, one, 1);
    p.impression_text = "bad \xff\xfe bytes";
    CHECK_EQ_INT(rd_sr_write_draft(&p, out, NULL, &err), RD_E_INVALID);
    draft_params(&p, one, 1);
    p.model_name = NULL;
    CHECK_EQ_INT(rd_sr_write_draft(&p, out, NULL, &err), RD_E_INVALID);
    draft_params(&p, one, 1);
    p.codes = NULL;
    CHECK_EQ_INT(rd_sr_write_draft(&p, out, NULL, &err), RD_E_INVALID);

    static const rd_sr_finding unknown[] = {{"Broken heart", RD_STATE_PRESENT, 0.9}};
    static const rd_sr_finding absent[] = {{"Mass", RD_STATE_ABSENT, 0.1}};
    static const rd_sr_finding high[] = {{"Mass", RD_STATE_PRESENT, 1.5}};
    static const rd_sr_finding nan_score[] = {{"Mass", RD_STATE_PRESENT, NAN}};
    static const rd_sr_finding twice[] = {{"Mass", RD_STATE_PRESENT, 0.9},
                                          {"mass", RD_STATE_UNCERTAIN, 0.5}};
    const rd_sr_finding *bad[] = {unknown, absent, high, nan_score, twice};
    const size_t nbad[] = {1, 1, 1, 1, 2};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        draft_params(&p, one, 1);
        p.findings = bad[i];
        p.n_findings = nbad[i];
        CHECK_MSG(rd_sr_write_draft(&p, out, NULL, &err) == RD_E_INVALID, "bad finding set %zu", i);
    }

    /* Instances of two studies (the sample and the Korean edge file). */
    const char *two[] = {pa, other};
    draft_params(&p, two, 2);
    CHECK_EQ_INT(rd_sr_write_draft(&p, out, NULL, &err), RD_E_INVALID);
    CHECK(strstr(err.msg, "one report per study") != NULL);

    const char *gone[] = {missing};
    draft_params(&p, gone, 1);
    CHECK_EQ_INT(rd_sr_write_draft(&p, out, NULL, &err), RD_E_NOT_FOUND);

    /* An image is not an SR; the output was never written by the failures above. */
    CHECK_EQ_INT(rd_sr_read(pa, test_codes(), &info, &err), RD_E_DICOM);
    FILE *fp = fopen(out, "rb");
    CHECK(fp == NULL);
    if (fp)
        fclose(fp);
}

/* ---- the AI results (AIR) SR ---- */

#define COMPREHENSIVE_3D_SR "1.2.840.10008.5.1.4.1.1.88.34"

/* A mix of the four states, their probabilities consistent with thresholds 0.5 / 0.3. */
static void air_params(rd_sr_air_params *p, const char *const *sources, size_t n,
                       const char *frontal_uid)
{
    static const rd_finding_state states[RD_FINDING_N_ABNORMAL] = {
        RD_STATE_ABSENT,        RD_STATE_PRESENT,   RD_STATE_UNCERTAIN, RD_STATE_NOT_MENTIONED,
        RD_STATE_ABSENT,        RD_STATE_UNCERTAIN, RD_STATE_ABSENT,    RD_STATE_PRESENT,
        RD_STATE_NOT_MENTIONED, RD_STATE_ABSENT,    RD_STATE_ABSENT,    RD_STATE_ABSENT,
        RD_STATE_PRESENT,       RD_STATE_ABSENT};
    rd_sr_air_params_init(p);
    p->sources = sources;
    p->n_sources = n;
    p->frontal_sop_instance_uid = frontal_uid;
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        rd_finding_state st = states[f];
        p->findings[f].state = st;
        p->findings[f].probability = st == RD_STATE_PRESENT     ? 0.8125
                                     : st == RD_STATE_UNCERTAIN ? 0.375
                                                                : 0.0625 + 0.01 * f;
        p->findings[f].present_threshold = 0.5;
        p->findings[f].uncertain_threshold = 0.3;
    }
    p->model_name = "test-model";
    p->model_version = "0.3";
    p->algorithm_parameters = "thresholds: present 0.5, uncertain 0.3";
    p->codes = test_codes();
}

/* What an AIR SR says of finding f: its state (AIR has no "not mentioned") and score. */
static rd_finding_state air_state(rd_finding_state st)
{
    return st == RD_STATE_NOT_MENTIONED ? RD_STATE_ABSENT : st;
}

static void check_air_findings(const rd_sr_info *info, const rd_finding_state *states,
                               const rd_sr_air_params *p)
{
    CHECK_EQ_INT(info->n_findings, RD_FINDING_N_ABNORMAL);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        int k = 0;
        while (k < info->n_findings && info->findings[k].finding != (rd_finding)f)
            k++;
        REQUIRE(k < info->n_findings);
        CHECK_EQ_INT(info->findings[k].state, air_state(states[f]));
        CHECK(fabs(info->findings[k].score - p->findings[f].probability) < 1e-9);
    }
}

RD_TEST(air_round_trip)
{
    const char *dir = rd_test_tmpdir("sr_air_round_trip");
    char pa[1024], lat[1024], out[1200], device[RD_UID_SIZE];
    rd_error err;
    rd_sr_air_params p;
    rd_sr_result res;
    rd_sr_info info;
    rd_dicom_meta src, sr;
    rd_finding_state states[RD_FINDING_N_ABNORMAL];
    REQUIRE(write_sample_study(dir, pa, lat) == 0);
    REQUIRE_OK(rd_dicom_read_meta(pa, &src, &err), &err);
    const char *sources[] = {lat, pa};
    air_params(&p, sources, 2, src.sop_instance_uid);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        states[f] = p.findings[f].state;
    snprintf(out, sizeof out, "%s/air.dcm", dir);
    REQUIRE_OK(rd_sr_write_air(&p, out, &res, &err), &err);
    CHECK_STR(res.sop_class_uid, COMPREHENSIVE_3D_SR);
    CHECK_STR(res.study_uid, src.study_uid);
    CHECK_EQ_INT(res.n_evidence, 1); /* the frontal image only */
    CHECK(strcmp(res.series_uid, src.series_uid) != 0);

    REQUIRE_OK(rd_dicom_read_meta(out, &sr, &err), &err);
    CHECK_STR(sr.sop_class_uid, COMPREHENSIVE_3D_SR);
    CHECK_STR(sr.modality, "SR");
    CHECK_STR(sr.study_uid, src.study_uid);
    CHECK_STR(sr.patient_id, src.patient_id);
    CHECK_STR(sr.patient_name, src.patient_name);
    CHECK_EQ_INT(sr.series_number, RD_SR_AIR_SERIES_NUMBER);

    REQUIRE_OK(rd_sr_read(out, test_codes(), &info, &err), &err);
    CHECK(info.is_air);
    CHECK_STR(info.completion_flag, "PARTIAL");
    CHECK_STR(info.verification_flag, "UNVERIFIED");
    CHECK_STR(info.preliminary_flag, "PRELIMINARY");
    CHECK_STR(info.series_description, RD_SR_AIR_SERIES_DESCRIPTION);
    CHECK_STR(info.device_model_name, "radraft test-model 0.3");
    REQUIRE_OK(rd_sr_air_device_uid("test-model", "0.3", device, &err), &err);
    CHECK_STR(info.device_uid, device);
    CHECK_EQ_INT(info.n_evidence, 1);
    CHECK(info.findings_text == NULL);
    check_air_findings(&info, states, &p);
    rd_sr_info_free(&info);

    /* Without a code table nothing is read as a finding. */
    REQUIRE_OK(rd_sr_read(out, NULL, &info, &err), &err);
    CHECK_EQ_INT(info.n_findings, 0);
    rd_sr_info_free(&info);
}

RD_TEST(air_device_uid_follows_the_model)
{
    char a[RD_UID_SIZE], b[RD_UID_SIZE], c[RD_UID_SIZE], d[RD_UID_SIZE];
    rd_error err;
    REQUIRE_OK(rd_sr_air_device_uid("cxr", "1.0", a, &err), &err);
    REQUIRE_OK(rd_sr_air_device_uid("cxr", "1.0", b, &err), &err);
    REQUIRE_OK(rd_sr_air_device_uid("cxr", "1.1", c, &err), &err);
    REQUIRE_OK(rd_sr_air_device_uid("cxr2", "1.0", d, &err), &err);
    CHECK_STR(a, b);
    CHECK(strcmp(a, c) != 0);
    CHECK(strcmp(a, d) != 0);
    CHECK(strncmp(a, "2.25.", 5) == 0 && strlen(a) <= 64);
    CHECK_EQ_INT(rd_sr_air_device_uid("cxr", "", a, &err), RD_E_INVALID);
    CHECK_EQ_INT(rd_sr_air_device_uid(NULL, "1", a, &err), RD_E_INVALID);
}

RD_TEST(air_signed_carries_the_final_states)
{
    const char *dir = rd_test_tmpdir("sr_air_signed");
    char pa[1024], lat[1024], draft[1200], signed_path[1200], amended[1200];
    char series[RD_UID_SIZE], text_series[RD_UID_SIZE];
    rd_error err;
    rd_sr_air_params p;
    rd_sr_air_sign_params s;
    rd_sr_result dres, sres, ares;
    rd_sr_info info;
    rd_dicom_meta src, m;
    REQUIRE(write_sample_study(dir, pa, lat) == 0);
    REQUIRE_OK(rd_dicom_read_meta(pa, &src, &err), &err);
    const char *sources[] = {pa, lat};
    air_params(&p, sources, 2, src.sop_instance_uid);
    snprintf(draft, sizeof draft, "%s/air.dcm", dir);
    snprintf(signed_path, sizeof signed_path, "%s/air-signed.dcm", dir);
    snprintf(amended, sizeof amended, "%s/air-amended.dcm", dir);
    REQUIRE_OK(rd_sr_write_air(&p, draft, &dres, &err), &err);

    /* The radiologist disagrees on three findings. */
    rd_sr_air_sign_params_init(&s);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        s.states[f] = p.findings[f].state;
    s.states[RD_FINDING_CARDIOMEGALY] = RD_STATE_ABSENT;
    s.states[RD_FINDING_EFFUSION] = RD_STATE_PRESENT;
    s.states[RD_FINDING_HERNIA] = RD_STATE_UNCERTAIN;
    s.verifier_name = "Doe^Jane";
    s.organization = "General Hospital";
    s.datetime = "20260102103000";
    s.codes = test_codes();
    REQUIRE_OK(rd_sr_write_air_signed(draft, &s, signed_path, &sres, &err), &err);
    REQUIRE_OK(rd_sr_signed_air_series_uid(dres.study_uid, series, &err), &err);
    REQUIRE_OK(rd_sr_signed_series_uid(dres.study_uid, text_series, &err), &err);
    CHECK_STR(sres.series_uid, series);
    CHECK(strcmp(series, text_series) != 0); /* its own series, not the signed text's */
    CHECK(strcmp(series, dres.series_uid) != 0);
    CHECK_STR(sres.sop_class_uid, COMPREHENSIVE_3D_SR);

    REQUIRE_OK(rd_sr_read(signed_path, test_codes(), &info, &err), &err);
    CHECK(info.is_air);
    CHECK_STR(info.completion_flag, "COMPLETE");
    CHECK_STR(info.verification_flag, "VERIFIED");
    CHECK_STR(info.preliminary_flag, "FINAL");
    CHECK_STR(info.verifier_name, "Doe^Jane");
    CHECK_STR(info.verifier_organization, "General Hospital");
    CHECK_STR(info.predecessor_sop_uid, dres.sop_instance_uid);
    CHECK_STR(info.person_observer_name, "Doe^Jane");
    CHECK_STR(info.author_name, "Doe^Jane");
    CHECK_STR(info.series_description, RD_SR_AIR_SIGNED_SERIES_DESCRIPTION);
    check_air_findings(&info, s.states, &p); /* the final states, the model's scores */
    rd_sr_info_free(&info);
    REQUIRE_OK(rd_dicom_read_meta(signed_path, &m, &err), &err);
    CHECK_EQ_INT(m.series_number, RD_SR_AIR_SIGNED_SERIES_NUMBER);
    CHECK_EQ_INT(m.instance_number, 2);

    /* The draft is unchanged; a signed AIR SR is amended, not signed again. */
    REQUIRE_OK(rd_sr_read(draft, test_codes(), &info, &err), &err);
    CHECK_STR(info.verification_flag, "UNVERIFIED");
    for (int k = 0; k < info.n_findings; k++)
        if (info.findings[k].finding == RD_FINDING_CARDIOMEGALY)
            CHECK_EQ_INT(info.findings[k].state, RD_STATE_PRESENT);
    rd_sr_info_free(&info);
    CHECK_EQ_INT(rd_sr_write_air_signed(signed_path, &s, amended, NULL, &err), RD_E_INVALID);
    s.amend = 1;
    s.states[RD_FINDING_HERNIA] = RD_STATE_ABSENT;
    s.verifier_name = "Roe^Richard";
    REQUIRE_OK(rd_sr_write_air_signed(signed_path, &s, amended, &ares, &err), &err);
    CHECK_STR(ares.series_uid, series);
    REQUIRE_OK(rd_sr_read(amended, test_codes(), &info, &err), &err);
    CHECK_STR(info.predecessor_sop_uid, sres.sop_instance_uid);
    CHECK_STR(info.person_observer_name, "Roe^Richard");
    check_air_findings(&info, s.states, &p);
    rd_sr_info_free(&info);
    /* A text report is not an AIR SR. */
    rd_sr_params tp;
    char text[1200];
    draft_params(&tp, sources, 2);
    snprintf(text, sizeof text, "%s/text.dcm", dir);
    REQUIRE_OK(rd_sr_write_draft(&tp, text, NULL, &err), &err);
    s.amend = 0;
    CHECK_EQ_INT(rd_sr_write_air_signed(text, &s, amended, NULL, &err), RD_E_INVALID);
}

RD_TEST(air_bad_input_refused)
{
    const char *dir = rd_test_tmpdir("sr_air_bad");
    char pa[1024], lat[1024], out[1200];
    rd_error err;
    rd_sr_air_params p;
    rd_dicom_meta src;
    REQUIRE(write_sample_study(dir, pa, lat) == 0);
    REQUIRE_OK(rd_dicom_read_meta(pa, &src, &err), &err);
    const char *sources[] = {pa};
    snprintf(out, sizeof out, "%s/air.dcm", dir);
    air_params(&p, sources, 1, src.sop_instance_uid);
    p.findings[3].probability = 1.5;
    CHECK_EQ_INT(rd_sr_write_air(&p, out, NULL, &err), RD_E_INVALID);
    air_params(&p, sources, 1, src.sop_instance_uid);
    p.findings[3].uncertain_threshold = 0.7; /* above the present threshold */
    CHECK_EQ_INT(rd_sr_write_air(&p, out, NULL, &err), RD_E_INVALID);
    air_params(&p, sources, 1, src.sop_instance_uid);
    p.findings[0].state = (rd_finding_state)7;
    CHECK_EQ_INT(rd_sr_write_air(&p, out, NULL, &err), RD_E_INVALID);
    air_params(&p, sources, 1, "1.2.3.4");
    CHECK_EQ_INT(rd_sr_write_air(&p, out, NULL, &err), RD_E_INVALID);
    air_params(&p, sources, 1, src.sop_instance_uid);
    p.model_version = "";
    CHECK_EQ_INT(rd_sr_write_air(&p, out, NULL, &err), RD_E_INVALID);
    air_params(&p, sources, 1, src.sop_instance_uid);
    p.codes = NULL;
    CHECK_EQ_INT(rd_sr_write_air(&p, out, NULL, &err), RD_E_INVALID);
    CHECK_EQ_INT(rd_sr_write_air(NULL, out, NULL, &err), RD_E_INVALID);
    FILE *f = fopen(out, "rb");
    CHECK(f == NULL); /* nothing was written */
    if (f)
        fclose(f);
}

RD_TEST_MAIN()

/* The built-in code table: every finding has a code, standard ones where the table cites
 * one, and a malformed site table is refused naming the entry. */
RD_TEST(code_table)
{
    rd_sr_codes c;
    rd_error err;
    REQUIRE_OK(rd_sr_codes_load(&c, NULL, &err), &err);
    CHECK_STR(c.finding[RD_FINDING_CARDIOMEGALY].value, "8186001");
    CHECK_STR(c.finding[RD_FINDING_CARDIOMEGALY].scheme, "SCT");
    CHECK_STR(c.finding[RD_FINDING_EFFUSION].value, "60046008");
    CHECK_STR(c.finding[RD_FINDING_INFILTRATION].scheme, "DCM");
    CHECK_STR(c.finding[RD_FINDING_INFILTRATION].value, "112121");
    CHECK_STR(c.procedure.value, "399208008");
    CHECK_STR(c.present.value, "52101004");
    CHECK_STR(c.absent.value, "272519000");
    CHECK_STR(c.score.value, "111012");
    CHECK_STR(c.private_scheme, "99RADRAFT");
    int private_codes = 0;
    for (int i = 0; i < RD_FINDING_N_ABNORMAL; i++) {
        CHECK(c.finding[i].value[0] && c.finding[i].meaning[0]);
        CHECK_EQ_INT(rd_sr_codes_find(&c, c.finding[i].value, c.finding[i].scheme), i);
        private_codes += strcmp(c.finding[i].scheme, c.private_scheme) == 0;
    }
    CHECK_EQ_INT(private_codes, 1); /* Pleural thickening only */
    CHECK_EQ_INT(rd_sr_codes_find(&c, "8186001", "DCM"), -1);

    CHECK_EQ_INT(rd_sr_codes_parse(&c, "{\"version\": 1}", "site.json", &err), RD_E_CONFIG);
    CHECK(strstr(err.msg, "site.json") != NULL);
    CHECK_EQ_INT(rd_sr_codes_parse(&c, "[1", "site.json", &err), RD_E_CONFIG);
    CHECK_EQ_INT(rd_sr_codes_load(&c, "/nonexistent/codes.json", &err), RD_E_NOT_FOUND);
}
