#include "radraft/generator.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "report/embedded.h"
#include "report/report_int.h"
#include "base/util.h"

#define GEN_MAX_TEMPLATE 512  /* bytes in one template sentence */
#define GEN_MAX_EVIDENCE 1000 /* evidence cases considered */
#define GEN_MAX_WORDS 64      /* words in one reused sentence */

/* The four sentences of a finding, in this order, plain and located. */
enum { GEN_PRESENT, GEN_UNCERTAIN, GEN_IMP_PRESENT, GEN_IMP_UNCERTAIN, GEN_N_SENTENCES };
static const char *const sentence_keys[GEN_N_SENTENCES] = {
    "present", "uncertain", "impression_present", "impression_uncertain"};
static const char *const bilateral_keys[GEN_N_SENTENCES] = {
    "present_bilateral", "uncertain_bilateral", "impression_present_bilateral",
    "impression_uncertain_bilateral"};

typedef struct gen_finding {
    int priority;
    char *negative;
    char *present;
    char *uncertain;
    char *imp_present;
    char *imp_uncertain;
    /* "located": what its located sentences may name, and the sentences (with {side},
     * {zone} and {where}); a bilateral sentence may be NULL (then the located one). */
    rd_location_rule rule;
    char *located[GEN_N_SENTENCES];
    char *located_bilateral[GEN_N_SENTENCES];
} gen_finding;

struct rd_generator {
    rd_organ order[RD_ORGAN_COUNT];
    char *organ_normal[RD_ORGAN_COUNT];
    char *negative_sentence; /* holds "{list}" once */
    char *conjunction;
    unsigned char pertinent[RD_FINDING_N_ABNORMAL];
    char *impression_normal;
    gen_finding f[RD_FINDING_N_ABNORMAL];
    int by_priority[RD_FINDING_N_ABNORMAL]; /* findings, most significant first */
    /* "locations": the words of {side} and {zone}, and the phrases of {where} by zone
     * (RD_ZONE_NONE: no zone), for one side and for both; NULL without "locations". */
    char *side_word[RD_SIDE_COUNT];
    char *zone_word[RD_ZONE_COUNT];
    char *where[RD_ZONE_COUNT];
    char *where_bilateral[RD_ZONE_COUNT];
};

/* ---------------------------------------------------------------------------------------
 * Thresholds
 * ------------------------------------------------------------------------------------- */

static rd_status parse_pair(const cJSON *obj, const char *name, const char *origin, double *present,
                            double *uncertain, rd_error *err)
{
    const cJSON *p, *u, *child;
    if (!cJSON_IsObject(obj))
        return rd_error_set(err, RD_E_CONFIG,
                            "%s: thresholds.%s must be an object "
                            "{\"present\": p, \"uncertain\": u}",
                            origin, name);
    cJSON_ArrayForEach(child,
                       obj) if (strcmp(child->string, "present") != 0 &&
                                strcmp(child->string, "uncertain") !=
                                    0) return rd_error_set(err, RD_E_CONFIG,
                                                           "%s: thresholds.%s: unknown key '%.64s' "
                                                           "(present, uncertain)",
                                                           origin, name, child->string);
    p = cJSON_GetObjectItemCaseSensitive(obj, "present");
    u = cJSON_GetObjectItemCaseSensitive(obj, "uncertain");
    if (!cJSON_IsNumber(p) || !cJSON_IsNumber(u))
        return rd_error_set(err, RD_E_CONFIG,
                            "%s: thresholds.%s needs numbers 'present' and "
                            "'uncertain'",
                            origin, name);
    if (!(u->valuedouble >= 0 && u->valuedouble <= p->valuedouble && p->valuedouble <= 1))
        return rd_error_set(err, RD_E_CONFIG,
                            "%s: thresholds.%s: need 0 <= uncertain (%g) <= "
                            "present (%g) <= 1",
                            origin, name, u->valuedouble, p->valuedouble);
    *present = p->valuedouble;
    *uncertain = u->valuedouble;
    return RD_OK;
}

void rd_thresholds_builtin(rd_thresholds *out)
{
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        out->present[f] = 0.5;
        out->uncertain[f] = 0.3;
    }
}

rd_status rd_thresholds_parse(rd_thresholds *out, const char *json, const char *origin,
                              rd_error *err)
{
    cJSON *root = cJSON_Parse(json);
    const cJSON *obj, *child;
    rd_thresholds tmp;
    int set[RD_FINDING_N_ABNORMAL] = {0};
    rd_status st = RD_OK;

    if (!origin)
        origin = "thresholds";
    if (!root)
        return rd_error_set(err, RD_E_CONFIG, "%s: not valid JSON", origin);
    obj = cJSON_GetObjectItemCaseSensitive(root, "thresholds");
    if (!obj)
        obj = root;
    if (!cJSON_IsObject(obj)) {
        st = rd_error_set(err, RD_E_CONFIG, "%s: thresholds must be a JSON object", origin);
        goto out;
    }
    memset(&tmp, 0, sizeof tmp);
    child = cJSON_GetObjectItemCaseSensitive(obj, "default");
    if (child) {
        double p, u;
        st = parse_pair(child, "default", origin, &p, &u, err);
        if (st != RD_OK)
            goto out;
        for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
            tmp.present[f] = p;
            tmp.uncertain[f] = u;
            set[f] = 1;
        }
    }
    cJSON_ArrayForEach(child, obj)
    {
        rd_finding f;
        if (strcmp(child->string, "default") == 0)
            continue;
        if (rd_finding_from_name(child->string, &f, NULL) != RD_OK || f == RD_FINDING_NO_FINDING) {
            st = rd_error_set(err, RD_E_CONFIG, "%s: thresholds: unknown finding '%.64s'", origin,
                              child->string);
            goto out;
        }
        st = parse_pair(child, rd_finding_name(f), origin, &tmp.present[f], &tmp.uncertain[f], err);
        if (st != RD_OK)
            goto out;
        set[f] = 1;
    }
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
        if (!set[f]) {
            st = rd_error_set(err, RD_E_CONFIG,
                              "%s: thresholds: no entry for %s and no "
                              "\"default\"",
                              origin, rd_finding_name((rd_finding)f));
            goto out;
        }
    *out = tmp;
out:
    cJSON_Delete(root);
    return st;
}

rd_status rd_thresholds_load(rd_thresholds *out, const char *path, rd_error *err)
{
    char *text = NULL;
    rd_status st = rd_read_file(path, RD_GENERATOR_MAX_FILE, &text, NULL, err);
    if (st != RD_OK)
        return rd_error_prefix(err, st, "thresholds");
    st = rd_thresholds_parse(out, text, path, err);
    free(text);
    return st;
}

/* ---------------------------------------------------------------------------------------
 * Templates
 * ------------------------------------------------------------------------------------- */

void rd_generator_free(rd_generator *gen)
{
    if (!gen)
        return;
    for (int o = 0; o < RD_ORGAN_COUNT; o++)
        free(gen->organ_normal[o]);
    free(gen->negative_sentence);
    free(gen->conjunction);
    free(gen->impression_normal);
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        free(gen->f[f].negative);
        free(gen->f[f].present);
        free(gen->f[f].uncertain);
        free(gen->f[f].imp_present);
        free(gen->f[f].imp_uncertain);
        for (int k = 0; k < GEN_N_SENTENCES; k++) {
            free(gen->f[f].located[k]);
            free(gen->f[f].located_bilateral[k]);
        }
    }
    for (int i = 0; i < RD_SIDE_COUNT; i++)
        free(gen->side_word[i]);
    for (int i = 0; i < RD_ZONE_COUNT; i++) {
        free(gen->zone_word[i]);
        free(gen->where[i]);
        free(gen->where_bilateral[i]);
    }
    free(gen);
}

/* Copies the string member `key` of `obj` into *dst (owned). `allow_empty` permits "". */
static rd_status get_text(const cJSON *obj, const char *key, int allow_empty, const char *origin,
                          const char *where, char **dst, rd_error *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    size_t len;
    if (!cJSON_IsString(v))
        return rd_error_set(err, RD_E_CONFIG, "%s: %s%s%s must be a string", origin, where,
                            where[0] ? "." : "", key);
    len = strlen(v->valuestring);
    if ((!allow_empty && len == 0) || len >= GEN_MAX_TEMPLATE)
        return rd_error_set(err, RD_E_CONFIG, "%s: %s%s%s: length %zu is outside [%d, %d]", origin,
                            where, where[0] ? "." : "", key, len, allow_empty ? 0 : 1,
                            GEN_MAX_TEMPLATE - 1);
    for (size_t i = 0; i < len; i++)
        if (v->valuestring[i] == '\n' || v->valuestring[i] == '\r')
            return rd_error_set(err, RD_E_CONFIG,
                                "%s: %s%s%s: a sentence may not hold a line "
                                "break",
                                origin, where, where[0] ? "." : "", key);
    *dst = strdup(v->valuestring);
    if (!*dst)
        return rd_error_set(err, RD_E_NOMEM, "out of memory reading templates");
    return RD_OK;
}

/* Every {...} in `text` must be one of `allowed` (NULL-terminated names). */
static rd_status check_placeholders(const char *text, const char *const *allowed,
                                    const char *origin, const char *where, rd_error *err)
{
    for (const char *p = strchr(text, '{'); p; p = strchr(p + 1, '{')) {
        int ok = 0;
        for (int i = 0; allowed[i] && !ok; i++) {
            size_t n = strlen(allowed[i]);
            ok = strncmp(p + 1, allowed[i], n) == 0 && p[1 + n] == '}';
        }
        if (!ok)
            return rd_error_set(err, RD_E_CONFIG,
                                "%s: %s: unknown placeholder at '%.20s' (only {side}, {zone} "
                                "and {where} in a located sentence, {side} in a phrase of "
                                "\"where\")",
                                origin, where, p);
    }
    return RD_OK;
}

/* An object whose keys are all among `keys` (NULL-terminated) and hold the keys that
 * `required` marks, each a non-empty string, copied into dst[index of its key]. */
static rd_status parse_words(const cJSON *obj, const char *const *keys, const int *required,
                             const char *const *allowed, const char *origin, const char *where,
                             char **dst, rd_error *err)
{
    const cJSON *child;
    rd_status st;
    if (!cJSON_IsObject(obj))
        return rd_error_set(err, RD_E_CONFIG, "%s: %s must be an object", origin, where);
    cJSON_ArrayForEach(child, obj)
    {
        int k = -1;
        for (int i = 0; keys[i]; i++)
            if (strcmp(child->string, keys[i]) == 0)
                k = i;
        if (k < 0 || !required[k])
            return rd_error_set(err, RD_E_CONFIG, "%s: %s: unknown key '%.64s'", origin, where,
                                child->string);
    }
    for (int i = 0; keys[i]; i++) {
        if (!required[i])
            continue;
        if ((st = get_text(obj, keys[i], 0, origin, where, &dst[i], err)) != RD_OK)
            return st;
        if ((st = check_placeholders(dst[i], allowed, origin, where, err)) != RD_OK)
            return st;
    }
    return RD_OK;
}

/* The optional top-level "locations": the words and phrases located sentences use. */
static rd_status parse_locations(rd_generator *gen, const cJSON *loc, const char *origin,
                                 rd_error *err)
{
    /* Keys by rd_side and rd_zone; the first ("none") stands for no zone in "where". */
    static const char *const side_keys[] = {"-", "right", "left", "bilateral", NULL};
    static const int side_req[] = {0, 1, 1, 1};
    static const char *const zone_keys[] = {"-",      "upper", "middle",       "lower",
                                            "apical", "basal", "retrocardiac", NULL};
    static const int zone_req[] = {0, 1, 1, 1, 1, 1, 1};
    static const char *const where_keys[] = {"none",   "upper", "middle",       "lower",
                                             "apical", "basal", "retrocardiac", NULL};
    static const int where_req[] = {1, 1, 1, 1, 1, 1, 1};
    /* Only the left side is ever retrocardiac: no phrase for both sides. */
    static const int where_bi_req[] = {1, 1, 1, 1, 1, 1, 0};
    static const char *const none[] = {NULL};
    static const char *const side_only[] = {"side", NULL};
    const cJSON *child;
    rd_status st;
    if (!cJSON_IsObject(loc))
        return rd_error_set(err, RD_E_CONFIG, "%s: locations must be an object", origin);
    cJSON_ArrayForEach(child, loc)
    {
        if (strcmp(child->string, "sides") != 0 && strcmp(child->string, "zones") != 0 &&
            strcmp(child->string, "where") != 0 && strcmp(child->string, "where_bilateral") != 0)
            return rd_error_set(err, RD_E_CONFIG,
                                "%s: locations: unknown key '%.64s' (sides, zones, where, "
                                "where_bilateral)",
                                origin, child->string);
    }
    if ((st = parse_words(cJSON_GetObjectItemCaseSensitive(loc, "sides"), side_keys, side_req, none,
                          origin, "locations.sides", gen->side_word, err)) != RD_OK ||
        (st = parse_words(cJSON_GetObjectItemCaseSensitive(loc, "zones"), zone_keys, zone_req, none,
                          origin, "locations.zones", gen->zone_word, err)) != RD_OK ||
        (st = parse_words(cJSON_GetObjectItemCaseSensitive(loc, "where"), where_keys, where_req,
                          side_only, origin, "locations.where", gen->where, err)) != RD_OK ||
        (st = parse_words(cJSON_GetObjectItemCaseSensitive(loc, "where_bilateral"), where_keys,
                          where_bi_req, none, origin, "locations.where_bilateral",
                          gen->where_bilateral, err)) != RD_OK)
        return st;
    return RD_OK;
}

/* A finding's optional "located" object. */
static rd_status parse_located(gen_finding *g, const cJSON *lo, const char *origin,
                               const char *fwhere, rd_error *err)
{
    static const char *const allowed[] = {"side", "zone", "where", NULL};
    char where[96];
    const cJSON *child, *zones, *bi;
    rd_status st;
    snprintf(where, sizeof where, "%s.located", fwhere);
    if (!cJSON_IsObject(lo))
        return rd_error_set(err, RD_E_CONFIG, "%s: %s must be an object", origin, where);
    cJSON_ArrayForEach(child, lo)
    {
        int ok = strcmp(child->string, "zones") == 0 || strcmp(child->string, "bilateral") == 0;
        for (int k = 0; k < GEN_N_SENTENCES; k++)
            ok |= strcmp(child->string, sentence_keys[k]) == 0 ||
                  strcmp(child->string, bilateral_keys[k]) == 0;
        if (!ok)
            return rd_error_set(err, RD_E_CONFIG, "%s: %s: unknown key '%.64s'", origin, where,
                                child->string);
    }
    zones = cJSON_GetObjectItemCaseSensitive(lo, "zones");
    bi = cJSON_GetObjectItemCaseSensitive(lo, "bilateral");
    if (!cJSON_IsArray(zones))
        return rd_error_set(err, RD_E_CONFIG, "%s: %s.zones must be a list of zone names", origin,
                            where);
    if (!cJSON_IsBool(bi))
        return rd_error_set(err, RD_E_CONFIG, "%s: %s.bilateral must be true or false", origin,
                            where);
    g->rule.sides = 1;
    g->rule.bilateral = cJSON_IsTrue(bi);
    g->rule.zones = 0;
    cJSON_ArrayForEach(child, zones)
    {
        rd_zone z;
        if (!cJSON_IsString(child) || rd_zone_from_name(child->valuestring, &z, NULL) != RD_OK ||
            z == RD_ZONE_NONE)
            return rd_error_set(err, RD_E_CONFIG,
                                "%s: %s.zones: unknown zone (upper, middle, lower, apical, "
                                "basal, retrocardiac)",
                                origin, where);
        g->rule.zones |= 1u << z;
    }
    for (int k = 0; k < GEN_N_SENTENCES; k++) {
        if ((st = get_text(lo, sentence_keys[k], 0, origin, where, &g->located[k], err)) != RD_OK ||
            (st = check_placeholders(g->located[k], allowed, origin, where, err)) != RD_OK)
            return st;
        if (!cJSON_GetObjectItemCaseSensitive(lo, bilateral_keys[k]))
            continue;
        if (!g->rule.bilateral)
            return rd_error_set(err, RD_E_CONFIG, "%s: %s.%s given but bilateral is false", origin,
                                where, bilateral_keys[k]);
        if ((st = get_text(lo, bilateral_keys[k], 0, origin, where, &g->located_bilateral[k],
                           err)) != RD_OK ||
            (st = check_placeholders(g->located_bilateral[k], allowed, origin, where, err)) !=
                RD_OK)
            return st;
    }
    return RD_OK;
}

static rd_status parse_templates(rd_generator *gen, const cJSON *root, const char *origin,
                                 rd_error *err)
{
    const cJSON *v, *child;
    int seen[RD_ORGAN_COUNT] = {0}, n = 0;
    rd_status st;

    if (!cJSON_IsObject(root))
        return rd_error_set(err, RD_E_CONFIG, "%s: templates must be a JSON object", origin);
    cJSON_ArrayForEach(child, root)
    {
        static const char *const known[] = {"about",
                                            "version",
                                            "organ_order",
                                            "organs",
                                            "negative_sentence",
                                            "list_conjunction",
                                            "pertinent_negatives",
                                            "impression_normal",
                                            "locations",
                                            "findings"};
        int ok = 0;
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            ok |= strcmp(child->string, known[i]) == 0;
        if (!ok)
            return rd_error_set(err, RD_E_CONFIG, "%s: unknown key '%.64s'", origin, child->string);
    }
    v = cJSON_GetObjectItemCaseSensitive(root, "version");
    if (!cJSON_IsNumber(v) || v->valuedouble != 1)
        return rd_error_set(err, RD_E_CONFIG, "%s: version must be 1", origin);

    v = cJSON_GetObjectItemCaseSensitive(root, "organ_order");
    if (!cJSON_IsArray(v))
        return rd_error_set(err, RD_E_CONFIG, "%s: organ_order must be a list of organ names",
                            origin);
    cJSON_ArrayForEach(child, v)
    {
        rd_organ o;
        if (!cJSON_IsString(child) || rd_organ_from_name(child->valuestring, &o, NULL) != RD_OK)
            return rd_error_set(err, RD_E_CONFIG,
                                "%s: organ_order: unknown organ system "
                                "(lines_tubes, lungs, pleura, heart_mediastinum, bones)",
                                origin);
        if (seen[o] || n >= RD_ORGAN_COUNT)
            return rd_error_set(err, RD_E_CONFIG, "%s: organ_order names %s twice", origin,
                                rd_organ_name(o));
        seen[o] = 1;
        gen->order[n++] = o;
    }
    if (n != RD_ORGAN_COUNT)
        return rd_error_set(err, RD_E_CONFIG, "%s: organ_order must name all %d organ systems",
                            origin, RD_ORGAN_COUNT);

    v = cJSON_GetObjectItemCaseSensitive(root, "organs");
    if (!cJSON_IsObject(v))
        return rd_error_set(err, RD_E_CONFIG, "%s: organs must be an object", origin);
    cJSON_ArrayForEach(child, v)
    {
        rd_organ o;
        if (rd_organ_from_name(child->string, &o, NULL) != RD_OK)
            return rd_error_set(err, RD_E_CONFIG, "%s: organs: unknown organ system '%.64s'",
                                origin, child->string);
    }
    for (int o = 0; o < RD_ORGAN_COUNT; o++) {
        char where[64];
        const cJSON *org = cJSON_GetObjectItemCaseSensitive(v, rd_organ_name((rd_organ)o));
        snprintf(where, sizeof where, "organs.%s", rd_organ_name((rd_organ)o));
        if (!cJSON_IsObject(org))
            return rd_error_set(err, RD_E_CONFIG, "%s: %s must be an object with 'normal'", origin,
                                where);
        st = get_text(org, "normal", 1, origin, where, &gen->organ_normal[o], err);
        if (st != RD_OK)
            return st;
    }

    st = get_text(root, "negative_sentence", 0, origin, "", &gen->negative_sentence, err);
    if (st != RD_OK)
        return st;
    {
        const char *at = strstr(gen->negative_sentence, "{list}");
        if (!at || strstr(at + 1, "{list}"))
            return rd_error_set(err, RD_E_CONFIG,
                                "%s: negative_sentence must hold {list} "
                                "exactly once",
                                origin);
    }
    st = get_text(root, "list_conjunction", 0, origin, "", &gen->conjunction, err);
    if (st != RD_OK)
        return st;
    st = get_text(root, "impression_normal", 0, origin, "", &gen->impression_normal, err);
    if (st != RD_OK)
        return st;

    v = cJSON_GetObjectItemCaseSensitive(root, "pertinent_negatives");
    if (!cJSON_IsArray(v))
        return rd_error_set(err, RD_E_CONFIG,
                            "%s: pertinent_negatives must be a list of "
                            "finding names",
                            origin);
    cJSON_ArrayForEach(child, v)
    {
        rd_finding f;
        if (!cJSON_IsString(child) || rd_finding_from_name(child->valuestring, &f, NULL) != RD_OK ||
            f == RD_FINDING_NO_FINDING)
            return rd_error_set(err, RD_E_CONFIG, "%s: pertinent_negatives: unknown finding",
                                origin);
        gen->pertinent[f] = 1;
    }

    v = cJSON_GetObjectItemCaseSensitive(root, "locations");
    if (v && (st = parse_locations(gen, v, origin, err)) != RD_OK)
        return st;

    v = cJSON_GetObjectItemCaseSensitive(root, "findings");
    if (!cJSON_IsObject(v))
        return rd_error_set(err, RD_E_CONFIG,
                            "%s: findings must be an object keyed by "
                            "finding name",
                            origin);
    cJSON_ArrayForEach(child, v)
    {
        rd_finding f;
        if (rd_finding_from_name(child->string, &f, NULL) != RD_OK || f == RD_FINDING_NO_FINDING)
            return rd_error_set(err, RD_E_CONFIG, "%s: findings: unknown finding '%.64s'", origin,
                                child->string);
    }
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        char where[64];
        const char *name = rd_finding_name((rd_finding)f);
        const cJSON *fo = cJSON_GetObjectItemCaseSensitive(v, name), *pr;
        gen_finding *g = &gen->f[f];
        snprintf(where, sizeof where, "findings.%s", name);
        if (!cJSON_IsObject(fo))
            return rd_error_set(err, RD_E_CONFIG,
                                "%s: %s is missing (every finding needs "
                                "templates)",
                                origin, where);
        pr = cJSON_GetObjectItemCaseSensitive(fo, "priority");
        if (!cJSON_IsNumber(pr) || pr->valuedouble < 1 || pr->valuedouble > 1000 ||
            pr->valuedouble != floor(pr->valuedouble))
            return rd_error_set(err, RD_E_CONFIG,
                                "%s: %s.priority must be an integer in "
                                "[1, 1000]",
                                origin, where);
        g->priority = (int)pr->valuedouble;
        if ((st = get_text(fo, "negative", 0, origin, where, &g->negative, err)) != RD_OK ||
            (st = get_text(fo, "present", 0, origin, where, &g->present, err)) != RD_OK ||
            (st = get_text(fo, "uncertain", 0, origin, where, &g->uncertain, err)) != RD_OK ||
            (st = get_text(fo, "impression_present", 0, origin, where, &g->imp_present, err)) !=
                RD_OK ||
            (st = get_text(fo, "impression_uncertain", 0, origin, where, &g->imp_uncertain, err)) !=
                RD_OK)
            return st;
        cJSON_ArrayForEach(pr, fo)
        {
            static const char *const known[] = {"priority",
                                                "negative",
                                                "present",
                                                "uncertain",
                                                "impression_present",
                                                "impression_uncertain",
                                                "located",
                                                NULL};
            int ok = 0;
            for (int i = 0; known[i]; i++)
                ok |= strcmp(pr->string, known[i]) == 0;
            if (!ok)
                return rd_error_set(err, RD_E_CONFIG, "%s: %s: unknown key '%.64s'", origin, where,
                                    pr->string);
        }
        pr = cJSON_GetObjectItemCaseSensitive(fo, "located");
        if (pr) {
            if (!gen->side_word[RD_SIDE_RIGHT])
                return rd_error_set(err, RD_E_CONFIG,
                                    "%s: %s.located needs the top-level \"locations\"", origin,
                                    where);
            if ((st = parse_located(g, pr, origin, where, err)) != RD_OK)
                return st;
        }
    }
    /* Most significant first; the vocabulary order breaks ties, so the order is stable. */
    for (int i = 0; i < RD_FINDING_N_ABNORMAL; i++)
        gen->by_priority[i] = i;
    for (int i = 1; i < RD_FINDING_N_ABNORMAL; i++)
        for (int j = i; j > 0 && gen->f[gen->by_priority[j]].priority <
                                     gen->f[gen->by_priority[j - 1]].priority;
             j--) {
            int t = gen->by_priority[j];
            gen->by_priority[j] = gen->by_priority[j - 1];
            gen->by_priority[j - 1] = t;
        }
    return RD_OK;
}

rd_status rd_generator_create_from_json(rd_generator **out, const char *json, const char *origin,
                                        rd_error *err)
{
    rd_generator *gen;
    cJSON *root;
    rd_status st;

    if (!json) {
        json = rd_embedded_templates_json;
        origin = "built-in report templates";
    } else if (!origin) {
        origin = "report templates";
    }
    root = cJSON_Parse(json);
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= json ? (size_t)(at - json) : 0;
        return rd_error_set(err, RD_E_CONFIG, "%s: not valid JSON (near byte %zu)", origin, off);
    }
    gen = calloc(1, sizeof *gen);
    if (!gen) {
        cJSON_Delete(root);
        return rd_error_set(err, RD_E_NOMEM, "out of memory creating the generator");
    }
    st = parse_templates(gen, root, origin, err);
    cJSON_Delete(root);
    if (st != RD_OK) {
        rd_generator_free(gen);
        return st;
    }
    *out = gen;
    return RD_OK;
}

rd_status rd_generator_create(rd_generator **out, const char *path, rd_error *err)
{
    char *text = NULL;
    rd_status st;
    if (!path || !path[0])
        return rd_generator_create_from_json(out, NULL, NULL, err);
    st = rd_read_file(path, RD_GENERATOR_MAX_FILE, &text, NULL, err);
    if (st != RD_OK)
        return rd_error_prefix(err, st, "report templates");
    st = rd_generator_create_from_json(out, text, path, err);
    free(text);
    return st;
}

/* ---------------------------------------------------------------------------------------
 * Cleaning evidence sentences
 * ------------------------------------------------------------------------------------- */

static int in_list(const char *w, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(w, *list) == 0)
            return 1;
    return 0;
}

/* Words that place a sentence in time relative to another study. A clause holding one is
 * dropped; when the main clause holds one the sentence is refused. */
static const char *const comparison_words[] = {
    "compared",     "comparison", "prior",     "previous",       "previously",
    "interval",     "since",      "earlier",   "recent",         "recently",
    "before",       "baseline",   "from",      "than",           "redemonstration",
    "increased",    "increasing", "decreased", "decreasing",     "improved",
    "improving",    "worsened",   "worsening", "resolved",       "resolving",
    "changed",      "unchanged",  "stable",    "again",          "persistent",
    "persistently", "persists",   "persist",   "redemonstrated", "new",
    "newly",        "remains",    "remain",    "remained",       "continues",
    "continued",    "today",      "yesterday", "exam",           "examination",
    "study",        "studies",    "film",      "films",          "radiograph",
    "radiographs",  "ct",         "followup",  "follow",         NULL};

/* Comparison words that only modify ("stable cardiomegaly", "is again seen"): removing
 * them leaves a sentence that still reads. */
static const char *const removable_words[] = {"stable",         "unchanged", "again", "persistent",
                                              "redemonstrated", "new",       "newly", NULL};

/* Words that name or point at a person, a time or a conversation, or that tie a sentence
 * to one patient's history or care: a sentence holding one is never reused. */
static const char *const identifying_words[] = {
    "dr",        "doctor",   "mr",         "mrs",       "ms",         "miss",      "called",
    "discussed", "notified", "telephoned", "telephone", "phone",      "paged",     "communicated",
    "am",        "pm",       "patient",    "patients",  "he",         "she",       "his",
    "her",       "him",      "name",       "named",     "january",    "february",  "march",
    "april",     "june",     "july",       "august",    "september",  "october",   "november",
    "december",  "monday",   "tuesday",    "wednesday", "thursday",   "friday",    "saturday",
    "sunday",    "xxxx",     "history",    "clinical",  "clinically", "recommend", "recommended",
    NULL};

/* Acronyms that may appear in capitals inside a reused sentence. */
static const char *const known_acronyms[] = {
    "PA", "AP",   "COPD", "CHF", "ARDS", "AICD", "ICD", "PICC", "IVC", "SVC", "ET",
    "NG", "CABG", "TB",   "LV",  "RV",   "LUL",  "LLL", "RUL",  "RML", "RLL", NULL};

static const char *const copulas[] = {"is", "are", "was", "were", "be", "been", "with", "of", "and",
                                      "or", "the", "a",   "an",   "to", "in",   "at",   NULL};

int rd__generator_clean_sentence(const char *in, char *out, size_t out_size)
{
    char words[GEN_MAX_WORDS][48];
    char orig[GEN_MAX_WORDS][48];
    int comma_after[GEN_MAX_WORDS], clause[GEN_MAX_WORDS], keep[GEN_MAX_WORDS];
    int n = 0, nclause = 0, o = 0;
    size_t len = in ? strlen(in) : 0;
    const char *p = in;

    if (len == 0 || len > RD_GENERATOR_MAX_SENTENCE || out_size == 0)
        return 0;
    /* Only plain words, spaces, commas, hyphens and apostrophes: digits (dates, IDs,
     * measurements) and every other mark refuse the sentence. */
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == ' ' || c == ',' ||
              c == '-' || c == '\'' || c == '.' || c == '\t'))
            return 0;
        if (c == '.' && in[i + strspn(in + i, ". \t")] != '\0')
            return 0; /* a period inside: an abbreviation ("Dr.") or two sentences */
    }
    while (*p) {
        size_t wl = 0;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '.')
            break;
        if (*p == ',') {
            if (n > 0 && !comma_after[n - 1]) {
                comma_after[n - 1] = 1;
                nclause++;
            }
            p++;
            continue;
        }
        if (n >= GEN_MAX_WORDS)
            return 0;
        while (*p && *p != ' ' && *p != '\t' && *p != ',' && *p != '.') {
            if (wl + 1 >= sizeof words[0])
                return 0;
            orig[n][wl] = *p;
            words[n][wl] = (char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p);
            wl++;
            p++;
        }
        orig[n][wl] = words[n][wl] = '\0';
        comma_after[n] = 0;
        clause[n] = nclause;
        keep[n] = 1;
        /* A capitalized word after the first may be a name ("Jones", "LEE"), unless it is
         * one of the acronyms radiology writes in capitals. */
        if (n > 0 && orig[n][0] >= 'A' && orig[n][0] <= 'Z' && !in_list(orig[n], known_acronyms))
            return 0;
        if (in_list(words[n], identifying_words))
            return 0;
        if (strstr(words[n], "xxx"))
            return 0;
        n++;
    }
    if (n < 2)
        return 0;
    for (int i = 0; i < n; i++) {
        if (!in_list(words[i], comparison_words))
            continue;
        if (clause[i] > 0) {
            for (int k = 0; k < n; k++)
                if (clause[k] == clause[i])
                    keep[k] = 0;
        } else if (in_list(words[i], removable_words)) {
            keep[i] = 0;
        } else {
            return 0;
        }
    }
    /* What is left must not end in a word that needs a complement ("cardiomegaly is"). */
    {
        int last = -1, kept = 0;
        for (int i = 0; i < n; i++)
            if (keep[i]) {
                last = i;
                kept++;
            }
        if (kept < 2 || in_list(words[last], copulas))
            return 0;
    }
    for (int i = 0; i < n; i++) {
        size_t wl;
        int next_kept = 0;
        if (!keep[i])
            continue;
        wl = strlen(orig[i]);
        if (o > 0) {
            if ((size_t)o + 1 >= out_size)
                return 0;
            out[o++] = ' ';
        }
        if ((size_t)o + wl + 2 >= out_size)
            return 0;
        memcpy(out + o, o == 0 ? orig[i] : words[i], wl);
        /* Acronyms keep their capitals; other words after the first are lower case. */
        if (o > 0 && orig[i][0] >= 'A' && orig[i][0] <= 'Z')
            memcpy(out + o, orig[i], wl);
        if (o == 0 && out[0] >= 'a' && out[0] <= 'z')
            out[0] = (char)(out[0] - 'a' + 'A');
        o += (int)wl;
        for (int k = i + 1; k < n; k++)
            if (keep[k]) {
                next_kept = 1;
                break;
            }
        if (comma_after[i] && next_kept)
            out[o++] = ',';
    }
    if ((size_t)o + 2 > out_size)
        return 0;
    out[o++] = '.';
    out[o] = '\0';
    return 1;
}

/* ---------------------------------------------------------------------------------------
 * Drafting
 * ------------------------------------------------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s)
{
    size_t n = strlen(s);
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t ncap = b->cap ? b->cap : 256;
        char *np;
        while (ncap < b->len + n + 1)
            ncap *= 2;
        np = realloc(b->p, ncap);
        if (!np) {
            b->oom = 1;
            return;
        }
        b->p = np;
        b->cap = ncap;
    }
    memcpy(b->p + b->len, s, n + 1);
    b->len += n;
}

/* Appends a sentence, separated from the one before by a space. */
static void sb_sentence(sbuf *b, const char *s)
{
    if (!s[0])
        return;
    if (b->len)
        sb_add(b, " ");
    sb_add(b, s);
}

/* Appends `tpl` with {side}, {zone} and {where} replaced for `side` and `zone` (the {side}
 * inside a phrase of "where" too), then tidied: runs of spaces become one, no space before
 * a comma or a period, the first letter a capital. A placeholder with no word (a zone not
 * named) leaves nothing. */
static void add_located(const rd_generator *gen, sbuf *b, const char *tpl, rd_side side,
                        rd_zone zone)
{
    sbuf raw = {0};
    const char *where = side == RD_SIDE_BILATERAL ? gen->where_bilateral[zone] : gen->where[zone];
    for (const char *p = tpl; *p;) {
        const char *word = NULL;
        size_t skip = 0;
        if (strncmp(p, "{side}", 6) == 0)
            word = gen->side_word[side], skip = 6;
        else if (strncmp(p, "{zone}", 6) == 0)
            word = zone == RD_ZONE_NONE ? "" : gen->zone_word[zone], skip = 6;
        else if (strncmp(p, "{where}", 7) == 0)
            word = where ? where : "", skip = 7;
        if (!word) {
            char one[2] = {*p++, '\0'};
            sb_add(&raw, one);
            continue;
        }
        /* A phrase of "where" names the side itself. */
        for (const char *q = word; *q;) {
            if (strncmp(q, "{side}", 6) == 0) {
                sb_add(&raw, gen->side_word[side]);
                q += 6;
            } else {
                char one[2] = {*q++, '\0'};
                sb_add(&raw, one);
            }
        }
        p += skip;
    }
    if (raw.oom) {
        b->oom = 1;
        return;
    }
    if (raw.p) {
        size_t o = 0;
        for (size_t i = 0; raw.p[i]; i++) {
            char c = raw.p[i];
            if (c == ' ' && (o == 0 || raw.p[o - 1] == ' ' || raw.p[i + 1] == ',' ||
                             raw.p[i + 1] == '.' || raw.p[i + 1] == ' ' || raw.p[i + 1] == '\0'))
                continue;
            raw.p[o++] = c;
        }
        raw.p[o] = '\0';
        if (raw.p[0] >= 'a' && raw.p[0] <= 'z')
            raw.p[0] = (char)(raw.p[0] - 'a' + 'A');
        sb_sentence(b, raw.p);
    }
    free(raw.p);
}

/* The sentence `k` of finding f: located when the draft names a side for it. */
static void add_finding_sentence(const rd_generator *gen, sbuf *b, int f, int k, rd_side side,
                                 rd_zone zone)
{
    const gen_finding *g = &gen->f[f];
    const char *plain[GEN_N_SENTENCES] = {g->present, g->uncertain, g->imp_present,
                                          g->imp_uncertain};
    if (side == RD_SIDE_NONE || !g->located[k]) {
        sb_sentence(b, plain[k]);
        return;
    }
    add_located(gen, b,
                side == RD_SIDE_BILATERAL && g->located_bilateral[k] ? g->located_bilateral[k]
                                                                     : g->located[k],
                side, zone);
}

void rd_generator_location_rule(const rd_generator *gen, rd_finding f, rd_location_rule *out)
{
    memset(out, 0, sizeof *out);
    if ((unsigned)f < RD_FINDING_N_ABNORMAL)
        *out = gen->f[f].rule;
}

/* Appends the negative sentence for `list` (findings, n of them) of one organ. */
static void add_negatives(const rd_generator *gen, sbuf *b, const int *list, int n)
{
    const char *at = strstr(gen->negative_sentence, "{list}");
    sbuf tmp = {0};
    if (n == 0)
        return;
    /* Everything before {list}, the list, everything after. */
    for (const char *c = gen->negative_sentence; c < at; c++) {
        char one[2] = {*c, '\0'};
        sb_add(&tmp, one);
    }
    for (int i = 0; i < n; i++) {
        if (i > 0) {
            if (n > 2)
                sb_add(&tmp, ",");
            if (i == n - 1) {
                sb_add(&tmp, " ");
                sb_add(&tmp, gen->conjunction);
            }
            sb_add(&tmp, " ");
        }
        sb_add(&tmp, gen->f[list[i]].negative);
    }
    sb_add(&tmp, at + 6);
    if (tmp.oom)
        b->oom = 1;
    else if (tmp.p && tmp.p[0]) {
        /* The list may start the sentence ("{list} are not seen."). */
        if (tmp.p[0] >= 'a' && tmp.p[0] <= 'z')
            tmp.p[0] = (char)(tmp.p[0] - 'a' + 'A');
        sb_sentence(b, tmp.p);
    }
    free(tmp.p);
}

/* Looks through the evidence for a sentence to describe finding `f`; on success copies it to
 * `buf` and returns 1, with covers[g] set for each finding the sentence states. */
static int find_evidence_sentence(int f, const rd_finding_state *chosen, const rd_evidence_case *ev,
                                  size_t n_ev, const rd_labeler *lab, const unsigned char *located,
                                  char *buf, size_t buf_size, unsigned char *covers)
{
    size_t order[GEN_MAX_EVIDENCE];
    size_t n = n_ev < GEN_MAX_EVIDENCE ? n_ev : GEN_MAX_EVIDENCE;

    /* Most similar case first (insertion sort: n is small). */
    for (size_t i = 0; i < n; i++) {
        size_t j = i;
        order[i] = i;
        while (j > 0 && ev[order[j]].similarity > ev[order[j - 1]].similarity) {
            size_t t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
            j--;
        }
    }
    for (size_t k = 0; k < n; k++) {
        const rd_evidence_case *c = &ev[order[k]];
        const char *texts[2] = {c->findings_text, c->impression_text};
        if (c->state[f] != chosen[f])
            continue;
        for (int t = 0; t < 2; t++) {
            const char *s = texts[t];
            while (s && *s) {
                char raw[RD_GENERATOR_MAX_SENTENCE + 1];
                size_t len = strcspn(s, ".!?;\n");
                rd_labels lb;
                int ok = 1;
                if (len > 0 && len <= RD_GENERATOR_MAX_SENTENCE) {
                    memcpy(raw, s, len);
                    raw[len] = '\0';
                    if (rd__generator_clean_sentence(raw, buf, buf_size) &&
                        rd_labeler_label(lab, buf, NULL, &lb, NULL) == RD_OK) {
                        /* A sentence that raises a finding only as a possibility says
                         * more than its states show: it is not reused. */
                        /* Nor one that states a finding this draft locates: the other
                         * patient's side is not this one's. */
                        for (int g = 0; g < RD_FINDING_N_ABNORMAL && ok; g++)
                            ok = !lb.speculative[g] && (lb.state[g] == RD_STATE_NOT_MENTIONED ||
                                                        (lb.state[g] == chosen[g] && !located[g]));
                        if (ok && lb.state[f] == chosen[f]) {
                            for (int g = 0; g < RD_FINDING_N_ABNORMAL; g++)
                                covers[g] = lb.state[g] == chosen[g];
                            return 1;
                        }
                    }
                }
                s += len;
                if (*s)
                    s++;
            }
        }
    }
    return 0;
}

void rd_draft_free(rd_draft *d)
{
    if (!d)
        return;
    free(d->findings_text);
    free(d->impression_text);
    memset(d, 0, sizeof *d);
}

rd_status rd_generator_draft_states(const rd_generator *gen, const rd_finding_state *states,
                                    const double *confidence, const rd_evidence_case *evidence,
                                    size_t n_evidence, const rd_labeler *lab, rd_draft *out,
                                    rd_error *err)
{
    return rd_generator_draft_states_at(gen, states, confidence, NULL, evidence, n_evidence, lab,
                                        out, err);
}

rd_status rd_generator_draft_states_at(const rd_generator *gen, const rd_finding_state *states,
                                       const double *confidence, const rd_location *where,
                                       const rd_evidence_case *evidence, size_t n_evidence,
                                       const rd_labeler *lab, rd_draft *out, rd_error *err)
{
    char reused[RD_FINDING_N_ABNORMAL][RD_GENERATOR_MAX_SENTENCE + 8];
    unsigned char has_reused[RD_FINDING_N_ABNORMAL] = {0};
    unsigned char covered[RD_FINDING_N_ABNORMAL] = {0};
    unsigned char located[RD_FINDING_N_ABNORMAL] = {0};
    rd_side side[RD_FINDING_N_ABNORMAL] = {RD_SIDE_NONE};
    rd_zone zone[RD_FINDING_N_ABNORMAL] = {RD_ZONE_NONE};
    sbuf fb = {0}, ib = {0};
    int any = 0;

    memset(out, 0, sizeof *out);
    /* What the sentences of each mentioned finding will say about where it is. */
    for (int f = 0; where && f < RD_FINDING_N_ABNORMAL; f++) {
        if ((unsigned)states[f] < RD_STATE_COUNT && states[f] >= RD_STATE_UNCERTAIN &&
            gen->f[f].rule.sides)
            rd_location_name(&where[f], &gen->f[f].rule, &side[f], &zone[f]);
        located[f] = side[f] != RD_SIDE_NONE;
    }
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        if ((unsigned)states[f] >= RD_STATE_COUNT)
            return rd_error_set(err, RD_E_INVALID, "%s: invalid state %d",
                                rd_finding_name((rd_finding)f), (int)states[f]);
        if (confidence && !(confidence[f] >= 0 && confidence[f] <= 1))
            return rd_error_set(err, RD_E_INVALID, "%s: confidence %g is outside [0, 1]",
                                rd_finding_name((rd_finding)f), confidence[f]);
        out->state[f] = states[f];
        out->confidence[f] = confidence ? confidence[f] : 1.0;
        if (states[f] >= RD_STATE_UNCERTAIN)
            any = 1;
    }
    out->state[RD_FINDING_NO_FINDING] = any ? RD_STATE_NOT_MENTIONED : RD_STATE_PRESENT;
    out->confidence[RD_FINDING_NO_FINDING] = 1.0;
    if (any) {
        double best = 0;
        for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++)
            if (states[f] >= RD_STATE_UNCERTAIN && out->confidence[f] > best)
                best = out->confidence[f];
        out->confidence[RD_FINDING_NO_FINDING] = 1.0 - best;
    }

    /* Evidence sentences, most significant finding first. */
    if (lab && evidence && n_evidence > 0)
        for (int i = 0; i < RD_FINDING_N_ABNORMAL; i++) {
            int f = gen->by_priority[i];
            unsigned char covers[RD_FINDING_N_ABNORMAL] = {0};
            /* A located finding is described by its located template. */
            if (states[f] < RD_STATE_UNCERTAIN || covered[f] || located[f])
                continue;
            if (!find_evidence_sentence(f, states, evidence, n_evidence, lab, located, reused[f],
                                        sizeof reused[f], covers))
                continue;
            has_reused[f] = 1;
            out->n_reused++;
            for (int g = 0; g < RD_FINDING_N_ABNORMAL; g++)
                if (covers[g] && states[g] >= RD_STATE_UNCERTAIN)
                    covered[g] = 1;
        }

    for (int oi = 0; oi < RD_ORGAN_COUNT; oi++) {
        rd_organ organ = gen->order[oi];
        int absent[RD_FINDING_N_ABNORMAL], n_absent = 0, abnormal = 0;
        for (int i = 0; i < RD_FINDING_N_ABNORMAL; i++) {
            int f = gen->by_priority[i];
            if (rd_finding_organ((rd_finding)f) != organ)
                continue;
            if (states[f] == RD_STATE_ABSENT)
                absent[n_absent++] = f;
            if (states[f] < RD_STATE_UNCERTAIN)
                continue;
            abnormal = 1;
            if (has_reused[f])
                sb_sentence(&fb, reused[f]);
            else if (!covered[f])
                add_finding_sentence(gen, &fb, f,
                                     states[f] == RD_STATE_PRESENT ? GEN_PRESENT : GEN_UNCERTAIN,
                                     side[f], zone[f]);
        }
        if (!abnormal)
            sb_sentence(&fb, gen->organ_normal[organ]);
        add_negatives(gen, &fb, absent, n_absent);
    }

    /* Impression: what is present before what is only possible, each group most
     * significant first, so the first line is the firmest and most important finding. */
    for (int k = 0; k < 2 * RD_FINDING_N_ABNORMAL; k++) {
        int f = gen->by_priority[k % RD_FINDING_N_ABNORMAL];
        rd_finding_state want = k < RD_FINDING_N_ABNORMAL ? RD_STATE_PRESENT : RD_STATE_UNCERTAIN;
        if (states[f] != want)
            continue;
        add_finding_sentence(gen, &ib, f,
                             states[f] == RD_STATE_PRESENT ? GEN_IMP_PRESENT : GEN_IMP_UNCERTAIN,
                             side[f], zone[f]);
        out->items[out->n_items].finding = (rd_finding)f;
        out->items[out->n_items].state = states[f];
        out->items[out->n_items].confidence = out->confidence[f];
        out->items[out->n_items].side = side[f];
        out->items[out->n_items].zone = zone[f];
        out->n_items++;
    }
    if (!any)
        sb_sentence(&ib, gen->impression_normal);
    if (!fb.p)
        sb_add(&fb, "");
    if (!ib.p)
        sb_add(&ib, "");
    if (fb.oom || ib.oom) {
        free(fb.p);
        free(ib.p);
        memset(out, 0, sizeof *out);
        return rd_error_set(err, RD_E_NOMEM, "out of memory drafting a report");
    }
    out->findings_text = fb.p;
    out->impression_text = ib.p;
    return RD_OK;
}

rd_status rd_generator_draft_scores(const rd_generator *gen, const double *scores,
                                    const rd_thresholds *th, const rd_evidence_case *evidence,
                                    size_t n_evidence, const rd_labeler *lab, rd_draft *out,
                                    rd_error *err)
{
    return rd_generator_draft_scores_at(gen, scores, th, NULL, evidence, n_evidence, lab, out, err);
}

rd_status rd_generator_draft_scores_at(const rd_generator *gen, const double *scores,
                                       const rd_thresholds *th, const rd_location *where,
                                       const rd_evidence_case *evidence, size_t n_evidence,
                                       const rd_labeler *lab, rd_draft *out, rd_error *err)
{
    rd_finding_state states[RD_FINDING_N_ABNORMAL];
    double conf[RD_FINDING_N_ABNORMAL];
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        double s = scores[f];
        if (!(s >= 0 && s <= 1)) {
            memset(out, 0, sizeof *out);
            return rd_error_set(err, RD_E_INVALID, "%s: score %g is outside [0, 1]",
                                rd_finding_name((rd_finding)f), s);
        }
        if (s >= th->present[f])
            states[f] = RD_STATE_PRESENT;
        else if (s >= th->uncertain[f])
            states[f] = RD_STATE_UNCERTAIN;
        else
            states[f] = gen->pertinent[f] ? RD_STATE_ABSENT : RD_STATE_NOT_MENTIONED;
        conf[f] = states[f] >= RD_STATE_UNCERTAIN ? s : 1.0 - s;
    }
    return rd_generator_draft_states_at(gen, states, conf, where, evidence, n_evidence, lab, out,
                                        err);
}
