/* The FHIR output: Bundles built from draft and signed SRs (what they say, one lifecycle per
 * report key), parameters refused, paths and endpoints, and rd_fhir_post against a server
 * on loopback that answers what each case needs (success, a refusal with an
 * OperationOutcome, 429, garbage, nothing), through libcurl. The Bundles are checked against the
 * FHIR R4 StructureDefinitions and delivered to a FHIR server's transaction endpoint in
 * tests/integration/test_fhir.sh. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "radraft/codes.h"
#include "radraft/fhir.h"
#include "radraft/samples.h"
#include "radraft/sr.h"
#include "rdtest.h"

#define DEVICE_UID "2.25.1234"

static const rd_sr_codes *codes(void)
{
    static rd_sr_codes c;
    static int loaded;
    if (!loaded && rd_sr_codes_load(&c, NULL, NULL) != RD_OK)
        abort();
    loaded = 1;
    return &c;
}

/* A draft SR of sample case 2 (a PA) in `dir`: Cardiomegaly present, Effusion uncertain. */
static int write_draft(const char *dir, char sr[1024])
{
    rd_samples_options opts;
    rd_sr_params p;
    char pa[1024];
    const char *sources[1] = {pa};
    static const rd_sr_finding coded[] = {{"Cardiomegaly", RD_STATE_PRESENT, 0.82},
                                          {"Effusion", RD_STATE_UNCERTAIN, 0.41}};
    rd_error err;
    rd_samples_options_default(&opts);
    opts.rows = 64;
    snprintf(pa, sizeof pa, "%s/pa.dcm", dir);
    snprintf(sr, 1024, "%s/x-draft-sr.dcm", dir);
    if (rd_samples_write_case(2, &opts, pa, &err) != RD_OK)
        return -1;
    rd_sr_params_init(&p);
    p.sources = sources;
    p.n_sources = 1;
    p.findings_text = "The heart is enlarged. Possible small left pleural effusion.";
    p.impression_text = "Cardiomegaly.";
    p.findings = coded;
    p.n_findings = 2;
    p.model_name = "test-model";
    p.model_version = "0.3";
    p.codes = codes();
    return rd_sr_write_draft(&p, sr, NULL, &err) == RD_OK ? 0 : -1;
}

static void params(rd_fhir_params *p, const char *sr, const char *key)
{
    rd_fhir_params_init(p);
    p->sr_path = sr;
    p->report_key = key;
    p->device_uid = DEVICE_UID;
    p->device_name = "radraft test-model 0.3";
    p->codes = codes();
    p->findings[RD_FINDING_CARDIOMEGALY].state = RD_STATE_PRESENT;
    p->findings[RD_FINDING_EFFUSION].state = RD_STATE_UNCERTAIN;
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        p->findings[f].probability = 0.05 * f;
        p->findings[f].uncertain_threshold = 0.2;
        p->findings[f].present_threshold = 0.35;
    }
}

static cJSON *bundle_of(const rd_fhir_params *p)
{
    char *json = NULL;
    rd_error err;
    if (rd_fhir_bundle(p, &json, &err) != RD_OK) {
        fprintf(stderr, "rd_fhir_bundle: %s\n", rd_error_message(&err));
        return NULL;
    }
    cJSON *doc = cJSON_Parse(json);
    free(json);
    return doc;
}

static cJSON *resource(cJSON *bundle, int i)
{
    return cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(bundle, "entry"), i),
                               "resource");
}

static const char *str(cJSON *o, const char *path)
{
    /* "a.b.0.c": object members and array indexes. */
    char buf[256], *save = NULL;
    snprintf(buf, sizeof buf, "%s", path);
    for (char *k = strtok_r(buf, ".", &save); k && o; k = strtok_r(NULL, ".", &save))
        o = (*k >= '0' && *k <= '9') ? cJSON_GetArrayItem(o, (int)strtol(k, NULL, 10))
                                     : cJSON_GetObjectItem(o, k);
    return cJSON_IsString(o) ? o->valuestring : NULL;
}

static int streq(const char *a, const char *b)
{
    return a && b && strcmp(a, b) == 0;
}

RD_TEST(draft_and_signed_bundles)
{
    const char *dir = rd_test_tmpdir("fhir_bundles");
    char sr[1024], signed_sr[1200];
    rd_fhir_params p;
    rd_sr_sign_params sp;
    rd_error err;
    REQUIRE(write_draft(dir, sr) == 0);

    params(&p, sr, "study/v1");
    cJSON *b = bundle_of(&p);
    REQUIRE(b);
    CHECK(streq(str(b, "type"), "transaction"));
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(b, "entry")) == 1 + RD_FINDING_N_ABNORMAL);
    cJSON *dr = resource(b, 0);
    CHECK(streq(str(dr, "resourceType"), "DiagnosticReport"));
    CHECK(streq(str(dr, "status"), "preliminary"));
    CHECK(streq(str(dr, "code.coding.0.code"), "18748-4"));
    CHECK(!cJSON_GetObjectItem(dr, "resultsInterpreter"));
    CHECK(streq(str(dr, "conclusion"), "Cardiomegaly."));
    /* Only the present finding is a conclusion code. */
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItem(dr, "conclusionCode")) == 1);
    CHECK(streq(str(dr, "conclusionCode.0.coding.0.code"), codes()->finding[1].value));
    /* The study time with the SR's timezone offset, or the date alone. */
    const char *eff = str(dr, "effectiveDateTime");
    REQUIRE(eff);
    CHECK(strlen(eff) == 10 ||
          (strlen(eff) == 25 && eff[10] == 'T' && (eff[19] == '+' || eff[19] == '-')));
    /* One Observation per finding, each referenced by the report. */
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        cJSON *o = resource(b, 1 + f);
        const rd_sr_code *want = f == RD_FINDING_CARDIOMEGALY ? &codes()->present
                                 : f == RD_FINDING_EFFUSION   ? &codes()->uncertain
                                                              : &codes()->absent;
        char ref[80];
        snprintf(ref, sizeof ref, "result.%d.reference", f);
        CHECK(streq(str(dr, ref),
                    str(cJSON_GetArrayItem(cJSON_GetObjectItem(b, "entry"), 1 + f), "fullUrl")));
        CHECK(streq(str(o, "code.coding.0.code"), codes()->finding[f].value));
        CHECK(streq(str(o, "valueCodeableConcept.coding.0.code"), want->value));
        CHECK(streq(str(o, "device.identifier.value"), "urn:oid:" DEVICE_UID));
        cJSON *q = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(o, "component"), 0),
                                       "valueQuantity");
        CHECK(q && fabs(cJSON_GetObjectItem(q, "value")->valuedouble - 0.05 * f) < 1e-12);
    }
    /* Pleural thickening has only the private code: radraft's system. */
    CHECK(streq(str(resource(b, 1 + RD_FINDING_PLEURAL_THICKENING), "code.coding.0.system"),
                RD_FHIR_PRIVATE_SYSTEM));

    /* The signed version: final, the verifier as interpreter, the same identifiers. */
    snprintf(signed_sr, sizeof signed_sr, "%s/x-signed-v1-sr.dcm", dir);
    rd_sr_sign_params_init(&sp);
    sp.verifier_name = "Doe^Jane^Q^Dr";
    sp.organization = "General Hospital";
    REQUIRE(rd_sr_write_signed(sr, &sp, signed_sr, NULL, &err) == RD_OK);
    params(&p, signed_sr, "study/v1");
    cJSON *s = bundle_of(&p);
    REQUIRE(s);
    CHECK(streq(str(resource(s, 0), "status"), "final"));
    CHECK(streq(str(resource(s, 0), "resultsInterpreter.0.display"), "Dr Jane Q Doe"));
    CHECK(streq(str(resource(s, 0), "performer.0.display"), "General Hospital"));
    CHECK(streq(str(resource(s, 3), "status"), "final"));
    CHECK(streq(str(resource(s, 0), "identifier.0.value"), str(dr, "identifier.0.value")));
    CHECK(!streq(str(resource(s, 0), "identifier.1.value"), str(dr, "identifier.1.value")));
    CHECK(streq(str(s, "entry.5.fullUrl"), str(b, "entry.5.fullUrl")));
    CHECK(streq(str(s, "entry.0.request.method"), "PUT"));
    p.amended = 1;
    cJSON *a = bundle_of(&p);
    CHECK(a && streq(str(resource(a, 0), "status"), "amended"));
    /* Another report key, another lifecycle. */
    params(&p, sr, "study/v2");
    cJSON *o = bundle_of(&p);
    CHECK(o && !streq(str(resource(o, 0), "identifier.0.value"), str(dr, "identifier.0.value")));
    cJSON_Delete(b);
    cJSON_Delete(s);
    cJSON_Delete(a);
    cJSON_Delete(o);
}

RD_TEST(bad_parameters_refused)
{
    const char *dir = rd_test_tmpdir("fhir_bad_parameters");
    char sr[1024], *json = NULL;
    rd_fhir_params p;
    rd_sr_codes odd = *codes();
    rd_error err;
    REQUIRE(write_draft(dir, sr) == 0);
    params(&p, sr, "");
    CHECK(rd_fhir_bundle(&p, &json, &err) == RD_E_INVALID);
    params(&p, sr, "k");
    p.device_uid = "1.02.3";
    CHECK(rd_fhir_bundle(&p, &json, &err) == RD_E_INVALID);
    params(&p, sr, "k");
    p.findings[3].state = (rd_finding_state)7;
    CHECK(rd_fhir_bundle(&p, &json, &err) == RD_E_INVALID);
    params(&p, sr, "k");
    p.findings[3].probability = 1.5;
    CHECK(rd_fhir_bundle(&p, &json, &err) == RD_E_INVALID);
    params(&p, sr, "k");
    p.findings[3].uncertain_threshold = 0.9;
    CHECK(rd_fhir_bundle(&p, &json, &err) == RD_E_INVALID);
    params(&p, sr, "k");
    snprintf(odd.finding[4].scheme, sizeof odd.finding[4].scheme, "ACME");
    p.codes = &odd;
    CHECK(rd_fhir_bundle(&p, &json, &err) == RD_E_CONFIG);
    CHECK(strstr(rd_error_message(&err), "ACME") != NULL);
    params(&p, "/nonexistent/sr.dcm", "k");
    CHECK(rd_fhir_bundle(&p, &json, &err) != RD_OK);
    CHECK(json == NULL);
}

RD_TEST(paths_and_endpoints)
{
    char out[64];
    CHECK(rd_fhir_path("a/x-draft-sr.dcm", out, sizeof out, NULL) == RD_OK &&
          strcmp(out, "a/x-draft-fhir.json") == 0);
    CHECK(rd_fhir_path("a.dcm", out, sizeof out, NULL) == RD_OK && strcmp(out, "a-fhir.json") == 0);
    CHECK(rd_fhir_path("b", out, sizeof out, NULL) == RD_OK && strcmp(out, "b-fhir.json") == 0);
    CHECK(rd_fhir_path("0123456789", out, 12, NULL) == RD_E_INVALID && out[0] == '\0');
    const char *good[] = {"http://h", "https://h:8443/fhir", "http://[::1]:80/x",
                          "http://127.0.0.1/fhir/", "https://fhir.example.org/r4"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        CHECK(rd_fhir_is_endpoint(good[i]));
        if (rd_fhir_endpoint_check(good[i], NULL) != RD_OK)
            RD_FAIL_AT("refused %s", good[i]);
    }
    const char *bad[] = {"ftp://h",        "http://",      "http://:80",    "http://h:0",
                         "http://h:65536", "http://h:80x", "http://h/a b",  "http://h/?q=1",
                         "http://u@h/",    "http://h/#f",  "http://[::1/x", "http://h\n/x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        if (rd_fhir_endpoint_check(bad[i], NULL) != RD_E_INVALID)
            RD_FAIL_AT("accepted %s", bad[i]);
    CHECK(!rd_fhir_is_endpoint("AE@host:104"));
}

/* ---- rd_fhir_post against a loopback server that answers one connection ---- */

typedef struct canned {
    int fd;          /* listening */
    const char *say; /* the reply; NULL: say nothing until the client gives up */
    char got[4096];  /* the request as received (its first bytes) */
    double took;     /* seconds rd_fhir_post took */
} canned;

static void *answer(void *arg)
{
    canned *c = arg;
    int fd = accept(c->fd, NULL, NULL);
    size_t n = 0;
    if (fd < 0)
        return NULL;
    /* The head and as much of the body as arrives within a moment. */
    struct timeval tv = {0, 300000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (ssize_t r;
         n + 1 < sizeof c->got && (r = recv(fd, c->got + n, sizeof c->got - 1 - n, 0)) > 0;)
        n += (size_t)r;
    c->got[n] = '\0';
    if (c->say)
        (void)!write(fd, c->say, strlen(c->say));
    else
        sleep(4);
    close(fd);
    return NULL;
}

static rd_status post_to(const char *say, const char *file, double timeout, rd_fhir_reply *reply,
                         canned *c, rd_error *err)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    pthread_t t;
    char url[64];
    rd_fhir_client client = {.timeout_s = timeout};
    memset(c, 0, sizeof *c);
    c->say = say;
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (c->fd < 0 || bind(c->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(c->fd, 1) != 0 ||
        getsockname(c->fd, (struct sockaddr *)&a, &len) != 0)
        abort();
    snprintf(url, sizeof url, "http://127.0.0.1:%d/base/fhir", ntohs(a.sin_port));
    pthread_create(&t, NULL, answer, c);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    rd_status st = rd_fhir_post(url, file, &client, reply, err);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    c->took = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    shutdown(c->fd, SHUT_RDWR);
    pthread_join(t, NULL);
    close(c->fd);
    return st;
}

RD_TEST(post_replies)
{
    const char *dir = rd_test_tmpdir("fhir_post");
    char file[1100];
    rd_fhir_reply r;
    rd_error err;
    canned c;
    snprintf(file, sizeof file, "%s/b.json", dir);
    FILE *fp = fopen(file, "w");
    REQUIRE(fp);
    fputs("{\"resourceType\": \"Bundle\", \"type\": \"transaction\"}", fp);
    fclose(fp);

    CHECK(post_to("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", file, 5, &r, &c, &err) ==
          RD_OK);
    CHECK(r.http_status == 200);
    CHECK(strncmp(c.got, "POST /base/fhir HTTP/1.1\r\n", 26) == 0);
    CHECK(strstr(c.got, "\r\nContent-Type: application/fhir+json") != NULL);
    CHECK(strstr(c.got, "\r\nContent-Length: 49\r\n") != NULL);
    CHECK(strstr(c.got, "\r\n\r\n{\"resourceType\": \"Bundle\"") != NULL);

    CHECK(post_to("HTTP/1.1 400 Bad Request\r\nContent-Type: application/fhir+json\r\n\r\n"
                  "{\"resourceType\": \"OperationOutcome\", \"issue\": [{\"severity\": \"error\","
                  " \"code\": \"invalid\", \"diagnostics\": \"Observation.code: bad\\ncode\"}]}",
                  file, 5, &r, &c, &err) == RD_E_NET);
    CHECK(r.http_status == 400 && r.permanent);
    CHECK(strcmp(r.detail, "Observation.code: bad?code") == 0);
    CHECK(strstr(rd_error_message(&err), "HTTP 400: Observation.code: bad?code") != NULL);

    CHECK(post_to("HTTP/1.1 429 Too Many Requests\r\n\r\nslow down", file, 5, &r, &c, &err) ==
          RD_E_NET);
    CHECK(r.http_status == 429 && !r.permanent && strcmp(r.detail, "slow down") == 0);
    CHECK(post_to("HTTP/1.0 503 Unavailable\r\n\r\n", file, 5, &r, &c, &err) == RD_E_NET);
    CHECK(r.http_status == 503 && !r.permanent);

    CHECK(post_to("SSH-2.0-OpenSSH\r\n", file, 5, &r, &c, &err) == RD_E_NET);
    CHECK(r.http_status == 0 && strstr(rd_error_message(&err), "HTTP/0.9")); /* not HTTP/1 */

    CHECK(post_to(NULL, file, 0.5, &r, &c, &err) == RD_E_NET);
    CHECK(r.http_status == 0 && strstr(rd_error_message(&err), "timed out"));
    CHECK(c.took < 3.5); /* the 0.5 s timeout ended it, not the server's 4 s silence */

    CHECK(rd_fhir_post("http://127.0.0.1:1/x", "/nonexistent.json",
                       &(rd_fhir_client){.timeout_s = 1}, &r, &err) == RD_E_NOT_FOUND);
}

RD_TEST_MAIN()
