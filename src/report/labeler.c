#include "radraft/labeler.h"

#include <cjson/cJSON.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "report/embedded.h"
#include "report/report_int.h"
#include "base/util.h"

/* Limits on what a phrase file may hold. They keep the matcher's work per word bounded
 * and every phrase in a fixed-size record. */
#define LB_MAX_WORDS 8    /* words in one phrase, gaps included */
#define LB_MAX_WORD 32    /* bytes in one word, NUL included */
#define LB_MAX_PHRASE 160 /* bytes in one phrase as written */
#define LB_MAX_PHRASES 8192
#define LB_GAP 3 /* words a "..." may skip */
/* Words between a trigger and a mention it acts on. Real scopes are a clause long; the cap
 * keeps the work per mention bounded, so that a megabyte without a full stop stays linear. */
#define LB_MAX_SCOPE 32

typedef enum lb_kind {
    LB_MENTION,
    LB_EXCLUDE,
    LB_NEG,
    LB_UNC,
    LB_SPEC,
    LB_HYPO,
    LB_PSEUDO,
    LB_END,
    LB_LIST,
    LB_VERB
} lb_kind;

/* A trigger acts on mentions after it (BEFORE: "no effusion") or before it (AFTER:
 * "effusion is not seen"), or both when listed in both places. */
enum { LB_DIR_BEFORE = 1, LB_DIR_AFTER = 2 };

typedef struct lb_word {
    char text[LB_MAX_WORD];
    unsigned char prefix; /* written "word*": matches any word beginning with text */
    unsigned char gap;    /* written "...": skips up to LB_GAP words */
} lb_word;

typedef struct lb_phrase {
    lb_word words[LB_MAX_WORDS];
    int n;
    lb_kind kind;
    int finding; /* LB_MENTION, LB_EXCLUDE */
    int dir;     /* LB_NEG, LB_UNC, LB_SPEC */
} lb_phrase;

struct rd_labeler {
    lb_phrase *phrases;
    size_t n, cap;
    int speculative_uncertain; /* labeler.speculative = "uncertain" */
};

/* How strongly one mention asserts its finding; the strongest over all mentions wins. */
typedef enum lb_level {
    LB_LEVEL_NONE,        /* not mentioned, or only hypothetically ("evaluate for") */
    LB_LEVEL_ABSENT,      /* negated */
    LB_LEVEL_SPECULATIVE, /* raised as a possibility ("may represent", "cannot exclude") */
    LB_LEVEL_UNCERTAIN,   /* one of a differential ("atelectasis versus scarring") */
    LB_LEVEL_PRESENT
} lb_level;

/* ---------------------------------------------------------------------------------------
 * Phrase files
 * ------------------------------------------------------------------------------------- */

static rd_status add_phrase(rd_labeler *lab, const char *text, lb_kind kind, int finding, int dir,
                            const char *origin, const char *where, rd_error *err)
{
    lb_phrase ph;
    size_t len = strlen(text);
    const char *p = text;

    memset(&ph, 0, sizeof ph);
    ph.kind = kind;
    ph.finding = finding;
    ph.dir = dir;
    if (len == 0 || len >= LB_MAX_PHRASE)
        return rd_error_set(err, RD_E_CONFIG, "%s: %s: phrase length %zu is outside [1, %d]",
                            origin, where, len, LB_MAX_PHRASE - 1);
    while (*p) {
        const char *start;
        size_t n;
        lb_word *w;
        while (*p == ' ')
            p++;
        if (!*p)
            break;
        start = p;
        while (*p && *p != ' ')
            p++;
        n = (size_t)(p - start);
        if (ph.n >= LB_MAX_WORDS)
            return rd_error_set(err, RD_E_CONFIG, "%s: %s: '%s' has more than %d words", origin,
                                where, text, LB_MAX_WORDS);
        w = &ph.words[ph.n++];
        if (n == 3 && memcmp(start, "...", 3) == 0) {
            w->gap = 1;
            continue;
        }
        if (start[n - 1] == '*') {
            w->prefix = 1;
            n--;
        }
        if (n == 0 || n >= LB_MAX_WORD)
            return rd_error_set(err, RD_E_CONFIG,
                                "%s: %s: '%s' has a word of length %zu "
                                "(1 to %d)",
                                origin, where, text, n, LB_MAX_WORD - 1);
        for (size_t i = 0; i < n; i++) {
            char c = start[i];
            if (c >= 'A' && c <= 'Z')
                c = (char)(c - 'A' + 'a');
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')))
                return rd_error_set(err, RD_E_CONFIG,
                                    "%s: %s: '%s' may hold only letters, digits, a trailing * "
                                    "and ... (words are split at punctuation)",
                                    origin, where, text);
            w->text[i] = c;
        }
        w->text[n] = '\0';
    }
    if (ph.n == 0)
        return rd_error_set(err, RD_E_CONFIG, "%s: %s: empty phrase", origin, where);
    if (ph.words[0].gap || ph.words[ph.n - 1].gap)
        return rd_error_set(err, RD_E_CONFIG, "%s: %s: '%s' may not begin or end with ...", origin,
                            where, text);
    for (int i = 1; i < ph.n; i++)
        if (ph.words[i].gap && ph.words[i - 1].gap)
            return rd_error_set(err, RD_E_CONFIG, "%s: %s: '%s' has two ... in a row", origin,
                                where, text);
    if (lab->n >= LB_MAX_PHRASES)
        return rd_error_set(err, RD_E_CONFIG, "%s: more than %d phrases", origin, LB_MAX_PHRASES);
    if (lab->n == lab->cap) {
        size_t ncap = lab->cap ? lab->cap * 2 : 256;
        size_t bytes;
        lb_phrase *np;
        if (!rd_mul_size(ncap, sizeof *np, &bytes) || !(np = realloc(lab->phrases, bytes)))
            return rd_error_set(err, RD_E_NOMEM, "%s: out of memory", origin);
        lab->phrases = np;
        lab->cap = ncap;
    }
    lab->phrases[lab->n++] = ph;
    return RD_OK;
}

/* Adds every string of the array `arr` (which `name` names in messages). */
static rd_status add_list(rd_labeler *lab, const cJSON *arr, const char *name, lb_kind kind,
                          int finding, int dir, const char *origin, rd_error *err)
{
    const cJSON *item;
    int i = 0;
    if (!cJSON_IsArray(arr))
        return rd_error_set(err, RD_E_CONFIG, "%s: %s must be a list of strings", origin, name);
    cJSON_ArrayForEach(item, arr)
    {
        char where[160];
        rd_status st;
        snprintf(where, sizeof where, "%s[%d]", name, i++);
        if (!cJSON_IsString(item))
            return rd_error_set(err, RD_E_CONFIG, "%s: %s must be a string", origin, where);
        st = add_phrase(lab, item->valuestring, kind, finding, dir, origin, where, err);
        if (st != RD_OK)
            return st;
    }
    return RD_OK;
}

/* Adds the lists of an object with "before" and "after" members. */
static rd_status add_triggers(rd_labeler *lab, const cJSON *obj, const char *name, lb_kind kind,
                              const char *origin, rd_error *err)
{
    const cJSON *child;
    if (!cJSON_IsObject(obj))
        return rd_error_set(err, RD_E_CONFIG,
                            "%s: %s must be an object with lists 'before' "
                            "and 'after'",
                            origin, name);
    cJSON_ArrayForEach(child, obj)
    {
        char where[96];
        int dir;
        rd_status st;
        if (strcmp(child->string, "before") == 0)
            dir = LB_DIR_BEFORE;
        else if (strcmp(child->string, "after") == 0)
            dir = LB_DIR_AFTER;
        else
            return rd_error_set(err, RD_E_CONFIG,
                                "%s: %s: unknown key '%.64s' (before, "
                                "after)",
                                origin, name, child->string);
        snprintf(where, sizeof where, "%s.%s", name, child->string);
        st = add_list(lab, child, where, kind, 0, dir, origin, err);
        if (st != RD_OK)
            return st;
    }
    return RD_OK;
}

static rd_status add_findings(rd_labeler *lab, const cJSON *obj, const char *origin, rd_error *err)
{
    const cJSON *child;
    if (!cJSON_IsObject(obj))
        return rd_error_set(err, RD_E_CONFIG,
                            "%s: findings must be an object keyed by "
                            "finding name",
                            origin);
    cJSON_ArrayForEach(child, obj)
    {
        rd_finding f;
        const cJSON *list;
        rd_error ferr;
        if (rd_finding_from_name(child->string, &f, &ferr) != RD_OK || f == RD_FINDING_NO_FINDING)
            return rd_error_set(err, RD_E_CONFIG, "%s: findings: unknown finding '%.64s'", origin,
                                child->string);
        if (!cJSON_IsObject(child))
            return rd_error_set(err, RD_E_CONFIG,
                                "%s: findings.%s must be an object with "
                                "lists 'mentions' and 'exclude'",
                                origin, child->string);
        cJSON_ArrayForEach(list, child)
        {
            char where[128];
            lb_kind kind;
            rd_status st;
            if (strcmp(list->string, "mentions") == 0)
                kind = LB_MENTION;
            else if (strcmp(list->string, "exclude") == 0)
                kind = LB_EXCLUDE;
            else
                return rd_error_set(err, RD_E_CONFIG,
                                    "%s: findings.%s: unknown key '%.64s' "
                                    "(mentions, exclude)",
                                    origin, child->string, list->string);
            snprintf(where, sizeof where, "findings.%s.%s", rd_finding_name(f), list->string);
            st = add_list(lab, list, where, kind, (int)f, 0, origin, err);
            if (st != RD_OK)
                return st;
        }
    }
    return RD_OK;
}

/* Parses one phrase document into `lab`. *replace is set when the document asks to
 * replace, rather than extend, what came before. */
static rd_status load_document(rd_labeler *lab, const char *json, const char *origin, int *replace,
                               rd_error *err)
{
    cJSON *root = cJSON_Parse(json);
    const cJSON *child;
    rd_status st = RD_OK;

    *replace = 0;
    if (!root) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= json ? (size_t)(at - json) : 0;
        return rd_error_set(err, RD_E_CONFIG, "%s: not valid JSON (near byte %zu)", origin, off);
    }
    if (!cJSON_IsObject(root)) {
        st = rd_error_set(err, RD_E_CONFIG, "%s: a phrase file must be a JSON object", origin);
        goto out;
    }
    child = cJSON_GetObjectItemCaseSensitive(root, "mode");
    if (child) {
        if (cJSON_IsString(child) && strcmp(child->valuestring, "replace") == 0)
            *replace = 1;
        else if (!cJSON_IsString(child) || strcmp(child->valuestring, "extend") != 0) {
            st = rd_error_set(err, RD_E_CONFIG, "%s: mode must be \"extend\" or \"replace\"",
                              origin);
            goto out;
        }
    }
    cJSON_ArrayForEach(child, root)
    {
        const char *k = child->string;
        if (strcmp(k, "about") == 0 || strcmp(k, "mode") == 0)
            continue;
        if (strcmp(k, "version") == 0) {
            if (!cJSON_IsNumber(child) || child->valuedouble != 1) {
                st = rd_error_set(err, RD_E_CONFIG, "%s: version must be 1", origin);
                goto out;
            }
            continue;
        }
        if (strcmp(k, "findings") == 0)
            st = add_findings(lab, child, origin, err);
        else if (strcmp(k, "negation") == 0)
            st = add_triggers(lab, child, "negation", LB_NEG, origin, err);
        else if (strcmp(k, "uncertainty") == 0)
            st = add_triggers(lab, child, "uncertainty", LB_UNC, origin, err);
        else if (strcmp(k, "speculation") == 0)
            st = add_triggers(lab, child, "speculation", LB_SPEC, origin, err);
        else if (strcmp(k, "hypothetical") == 0)
            st = add_list(lab, child, "hypothetical", LB_HYPO, 0, LB_DIR_BEFORE, origin, err);
        else if (strcmp(k, "pseudo") == 0)
            st = add_list(lab, child, "pseudo", LB_PSEUDO, 0, 0, origin, err);
        else if (strcmp(k, "scope_end") == 0)
            st = add_list(lab, child, "scope_end", LB_END, 0, 0, origin, err);
        else if (strcmp(k, "list_words") == 0)
            st = add_list(lab, child, "list_words", LB_LIST, 0, 0, origin, err);
        else if (strcmp(k, "verbs") == 0)
            st = add_list(lab, child, "verbs", LB_VERB, 0, 0, origin, err);
        else
            st = rd_error_set(err, RD_E_CONFIG,
                              "%s: unknown key '%.64s' (about, version, mode, findings, "
                              "negation, uncertainty, speculation, hypothetical, pseudo, "
                              "scope_end, list_words, verbs)",
                              origin, k);
        if (st != RD_OK)
            goto out;
    }
out:
    cJSON_Delete(root);
    return st;
}

rd_status rd_labeler_create_from_json(rd_labeler **out, const char *json, const char *origin,
                                      rd_error *err)
{
    rd_labeler *lab = calloc(1, sizeof *lab);
    rd_labeler *site = NULL;
    int replace = 0;
    rd_status st;

    if (!lab)
        return rd_error_set(err, RD_E_NOMEM, "out of memory creating the labeler");
    st = load_document(lab, rd_embedded_labeler_json, "built-in labeler phrases", &replace, err);
    if (st != RD_OK || !json)
        goto out;
    /* The site document is parsed into its own labeler first, so that "replace" can drop
     * the built-in phrases only once the site file is known to be valid. */
    site = calloc(1, sizeof *site);
    if (!site) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory creating the labeler");
        goto out;
    }
    st = load_document(site, json, origin ? origin : "phrase file", &replace, err);
    if (st != RD_OK)
        goto out;
    if (replace) {
        rd_labeler *tmp = lab;
        lab = site;
        site = tmp;
    } else {
        for (size_t i = 0; i < site->n && st == RD_OK; i++) {
            if (lab->n >= LB_MAX_PHRASES) {
                st = rd_error_set(err, RD_E_CONFIG, "%s: more than %d phrases in all", origin,
                                  LB_MAX_PHRASES);
                break;
            }
            if (lab->n == lab->cap) {
                size_t bytes;
                lb_phrase *np;
                if (!rd_mul_size(lab->cap * 2, sizeof *np, &bytes) ||
                    !(np = realloc(lab->phrases, bytes))) {
                    st = rd_error_set(err, RD_E_NOMEM, "out of memory creating the labeler");
                    break;
                }
                lab->phrases = np;
                lab->cap *= 2;
            }
            lab->phrases[lab->n++] = site->phrases[i];
        }
    }
out:
    rd_labeler_free(site);
    if (st != RD_OK) {
        rd_labeler_free(lab);
        return st;
    }
    *out = lab;
    return RD_OK;
}

rd_status rd_labeler_create_from_config(rd_labeler **out, const rd_config *cfg, rd_error *err)
{
    rd_status st = rd_labeler_create(out, cfg->labeler_phrases, err);
    if (st == RD_OK)
        (*out)->speculative_uncertain = strcmp(cfg->labeler_speculative, "uncertain") == 0;
    return st;
}

rd_status rd_labeler_create(rd_labeler **out, const char *path, rd_error *err)
{
    char *text = NULL;
    rd_status st;
    if (!path || !path[0])
        return rd_labeler_create_from_json(out, NULL, NULL, err);
    st = rd_read_file(path, RD_LABELER_MAX_FILE, &text, NULL, err);
    if (st != RD_OK)
        return rd_error_prefix(err, st, "labeler phrases");
    st = rd_labeler_create_from_json(out, text, path, err);
    free(text);
    return st;
}

void rd_labeler_free(rd_labeler *lab)
{
    if (!lab)
        return;
    free(lab->phrases);
    free(lab);
}

size_t rd__labeler_phrase_count(const rd_labeler *lab)
{
    return lab ? lab->n : 0;
}

/* ---------------------------------------------------------------------------------------
 * Text
 * ------------------------------------------------------------------------------------- */

typedef struct lb_tok {
    const char *w;            /* lower-case word, NUL-terminated, in the scratch buffer */
    int sent;                 /* sentence number */
    int seg;                  /* clause number (commas split a sentence), unique over the text */
    unsigned char list, verb; /* set from the phrase lists */
} lb_tok;

typedef struct lb_trig {
    lb_kind kind;
    int dir;
    int start, end; /* tokens [start, end) */
} lb_trig;

typedef struct lb_text {
    char *buf;
    lb_tok *toks;
    int n;
    int *seg_first;          /* index of a clause's first token, by clause number */
    unsigned char *seg_verb; /* whether a clause holds a verb */
    int nseg;
} lb_text;

static int is_alnum(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* A de-identification token: a word of three or more x's ("XXXX"). It stands for a word
 * that was removed, so it is skipped rather than read. */
static int is_deid(const char *w, size_t n)
{
    if (n < 3)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (w[i] != 'x')
            return 0;
    return 1;
}

/* Splits the sections into words, sentences and clauses. A period ends a sentence unless it
 * sits between two digits ("1.5 cm"); ! ? ; : and line breaks end one too; a comma or a
 * parenthesis ends a clause. */
static rd_status tokenize(lb_text *t, const char *const *sections, int nsections, rd_error *err)
{
    size_t total = 0, bytes;
    int sent = 0, seg = 0, seg_used = 0, sent_used = 0;
    char *o;

    for (int s = 0; s < nsections; s++)
        if (sections[s]) {
            size_t len = strlen(sections[s]);
            if (len > RD_LABELER_MAX_TEXT || total + len > RD_LABELER_MAX_TEXT)
                return rd_error_set(err, RD_E_TOO_LARGE, "report text longer than %u bytes",
                                    RD_LABELER_MAX_TEXT);
            total += len + 1;
        }
    t->buf = malloc(total + 1);
    /* A text of N bytes has at most N/2+1 words and as many clauses. */
    if (!t->buf || !rd_mul_size(total / 2 + 2, sizeof *t->toks, &bytes) ||
        !(t->toks = malloc(bytes)) || !(t->seg_first = malloc((total / 2 + 2) * sizeof(int))) ||
        !(t->seg_verb = calloc(total / 2 + 2, 1)))
        return rd_error_set(err, RD_E_NOMEM, "out of memory labeling a report");
    o = t->buf;
    for (int s = 0; s < nsections; s++) {
        const unsigned char *p = (const unsigned char *)sections[s];
        if (!p)
            continue;
        while (*p) {
            if (is_alnum(*p)) {
                char *w = o;
                size_t n = 0;
                while (is_alnum(*p)) {
                    char c = (char)*p++;
                    if (c >= 'A' && c <= 'Z')
                        c = (char)(c - 'A' + 'a');
                    *o++ = c;
                    n++;
                }
                *o++ = '\0';
                if (is_deid(w, n)) {
                    o = w;
                    continue;
                }
                if (!seg_used) {
                    t->seg_first[seg] = t->n;
                    seg_used = 1;
                }
                sent_used = 1;
                t->toks[t->n].w = w;
                t->toks[t->n].sent = sent;
                t->toks[t->n].seg = seg;
                t->toks[t->n].list = t->toks[t->n].verb = 0;
                t->n++;
                continue;
            }
            int end_sent = 0, end_seg = 0;
            switch (*p) {
            case '.':
                end_sent = !(p > (const unsigned char *)sections[s] && p[-1] >= '0' &&
                             p[-1] <= '9' && p[1] >= '0' && p[1] <= '9');
                break;
            case '!':
            case '?':
            case ';':
            case ':':
            case '\n':
            case '\r':
                end_sent = 1;
                break;
            case ',':
            case '(':
            case ')':
            case '[':
            case ']':
                end_seg = 1;
                break;
            default:
                break;
            }
            if ((end_sent && sent_used) || ((end_sent || end_seg) && seg_used)) {
                if (seg_used)
                    seg++;
                seg_used = 0;
                if (end_sent && sent_used) {
                    sent++;
                    sent_used = 0;
                }
            }
            p++;
        }
        /* A section always ends a sentence. */
        if (seg_used)
            seg++;
        seg_used = 0;
        if (sent_used)
            sent++;
        sent_used = 0;
    }
    t->nseg = seg;
    return RD_OK;
}

static void text_free(lb_text *t)
{
    free(t->buf);
    free(t->toks);
    free(t->seg_first);
    free(t->seg_verb);
}

static int word_eq(const lb_word *w, const char *tok)
{
    if (w->prefix)
        return strncmp(tok, w->text, strlen(w->text)) == 0;
    return strcmp(tok, w->text) == 0;
}

/* Matches phrase words [wi..] at token ti within clause `seg`; *end receives the token
 * after the match. A "..." tries the shortest gap first. */
static int match_from(const lb_phrase *ph, int wi, const lb_text *t, int ti, int seg, int *end)
{
    if (wi == ph->n) {
        *end = ti;
        return 1;
    }
    if (ph->words[wi].gap) {
        for (int skip = 0; skip <= LB_GAP; skip++) {
            int k = ti + skip;
            if (k >= t->n || t->toks[k].seg != seg)
                break;
            if (match_from(ph, wi + 1, t, k, seg, end))
                return 1;
        }
        return 0;
    }
    if (ti >= t->n || t->toks[ti].seg != seg || !word_eq(&ph->words[wi], t->toks[ti].w))
        return 0;
    return match_from(ph, wi + 1, t, ti + 1, seg, end);
}

static int match_at(const lb_phrase *ph, const lb_text *t, int ti, int *end)
{
    return match_from(ph, 0, t, ti, t->toks[ti].seg, end);
}

/* ---------------------------------------------------------------------------------------
 * Scopes
 * ------------------------------------------------------------------------------------- */

/* Index of the first trigger starting at or after token `pos` (triggers are found, and so
 * stored, in text order). */
static int first_trigger_from(const lb_trig *trigs, int ntrig, int pos)
{
    int lo = 0, hi = ntrig;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        if (trigs[mid].start < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int has_end_between(const lb_trig *trigs, int ntrig, int from, int to)
{
    for (int i = first_trigger_from(trigs, ntrig, from); i < ntrig && trigs[i].start < to; i++)
        if (trigs[i].kind == LB_END)
            return 1;
    return 0;
}

/* Whether clause `s` continues the clause before it, for a forward scope to cross the
 * comma between them: it does when it starts with a list word ("..., or consolidation") or
 * has no verb before `limit` ("no effusion, pneumothorax or consolidation is seen"), but not
 * when it is a new statement ("no effusion, the heart is enlarged"). */
static int continues_forward(const lb_text *t, int s, int limit)
{
    if (t->toks[t->seg_first[s]].list)
        return 1;
    for (int i = t->seg_first[s]; i < limit && i < t->n && t->toks[i].seg == s; i++)
        if (t->toks[i].verb)
            return 0;
    return 1;
}

/* Backward: a list word at the start of the later clause joins them ("effusion, or
 * consolidation is not seen"), and so does an earlier clause without a verb. */
static int continues_backward(const lb_text *t, int s)
{
    return t->toks[t->seg_first[s]].list || !t->seg_verb[s - 1];
}

/* Whether, between tokens `from` and `to`, a list word is followed by a verb: a second
 * statement joined by "and" ("no effusion and the heart is enlarged"), which ends a
 * scope. */
static int new_statement(const lb_text *t, int from, int to)
{
    int seen_list = 0;
    for (int i = from; i < to; i++) {
        if (t->toks[i].list)
            seen_list = 1;
        else if (seen_list && t->toks[i].verb)
            return 1;
    }
    return 0;
}

/* Distance from trigger `tr` to the mention [ms, me), or -1 when the mention is outside
 * the trigger's scope. */
static int scope_distance(const lb_text *t, const lb_trig *trigs, int ntrig, const lb_trig *tr,
                          int ms, int me)
{
    if (t->toks[tr->start].sent != t->toks[ms].sent)
        return -1;
    /* A trigger inside a gapped mention ("heart is not enlarged") applies to it. */
    if (tr->start > ms && tr->start < me)
        return 0;
    if ((tr->dir & LB_DIR_BEFORE) && tr->end <= ms) {
        if (ms - tr->end > LB_MAX_SCOPE)
            return -1;
        if (has_end_between(trigs, ntrig, tr->end, ms))
            return -1;
        for (int s = t->toks[tr->start].seg + 1; s <= t->toks[ms].seg; s++)
            if (!continues_forward(t, s, s == t->toks[ms].seg ? me : t->n))
                return -1;
        if (new_statement(t, tr->end, me))
            return -1;
        return ms - tr->end;
    }
    if ((tr->dir & LB_DIR_AFTER) && tr->start >= me) {
        if (tr->start - me > LB_MAX_SCOPE)
            return -1;
        if (has_end_between(trigs, ntrig, me, tr->start))
            return -1;
        for (int s = t->toks[ms].seg + 1; s <= t->toks[tr->start].seg; s++)
            if (!continues_backward(t, s))
                return -1;
        /* "the heart is enlarged and pneumothorax is not seen": a verb, then a list word,
         * before the trigger means the mention was a statement of its own. */
        {
            int seen_verb = 0;
            for (int i = ms; i < tr->start; i++) {
                if (t->toks[i].verb)
                    seen_verb = 1;
                else if (seen_verb && t->toks[i].list)
                    return -1;
            }
        }
        return tr->start - me;
    }
    return -1;
}

/* ---------------------------------------------------------------------------------------
 * Labeling
 * ------------------------------------------------------------------------------------- */

/* Marks tokens that are list words or verbs, for the scope rules. */
static void mark_words(const rd_labeler *lab, lb_text *t)
{
    for (int i = 0; i < t->n; i++) {
        for (size_t p = 0; p < lab->n; p++) {
            const lb_phrase *ph = &lab->phrases[p];
            int end;
            if ((ph->kind != LB_LIST && ph->kind != LB_VERB) || !match_at(ph, t, i, &end))
                continue;
            for (int k = i; k < end; k++) {
                if (ph->kind == LB_LIST)
                    t->toks[k].list = 1;
                else
                    t->toks[k].verb = 1;
            }
        }
        if (t->toks[i].verb)
            t->seg_verb[t->toks[i].seg] = 1;
    }
}

/* Finds the triggers: at each word the longest trigger phrase wins (so "cannot be
 * excluded" is uncertainty, not the negation "not"), and its words are not read again. */
static rd_status find_triggers(const rd_labeler *lab, const lb_text *t, lb_trig **out, int *nout,
                               rd_error *err)
{
    lb_trig *trigs = NULL;
    int n = 0;
    size_t bytes;
    if (!rd_mul_size((size_t)t->n + 1, sizeof *trigs, &bytes) || !(trigs = malloc(bytes)))
        return rd_error_set(err, RD_E_NOMEM, "out of memory labeling a report");
    for (int i = 0; i < t->n;) {
        int best_end = -1, best_dir = 0;
        lb_kind best_kind = LB_PSEUDO;
        for (size_t p = 0; p < lab->n; p++) {
            const lb_phrase *ph = &lab->phrases[p];
            int end;
            if (ph->kind != LB_NEG && ph->kind != LB_UNC && ph->kind != LB_SPEC &&
                ph->kind != LB_HYPO && ph->kind != LB_PSEUDO && ph->kind != LB_END)
                continue;
            if (!match_at(ph, t, i, &end))
                continue;
            if (end > best_end) {
                best_end = end;
                best_kind = ph->kind;
                best_dir = ph->dir;
            } else if (end == best_end && ph->kind == best_kind) {
                best_dir |= ph->dir; /* listed both before and after */
            }
        }
        if (best_end < 0) {
            i++;
            continue;
        }
        if (best_kind != LB_PSEUDO) {
            trigs[n].kind = best_kind;
            trigs[n].dir = best_dir;
            trigs[n].start = i;
            trigs[n].end = best_end;
            n++;
        }
        i = best_end;
    }
    *out = trigs;
    *nout = n;
    return RD_OK;
}

/* The level of one mention: the nearest trigger whose scope holds it decides. */
static lb_level mention_level(const lb_text *t, const lb_trig *trigs, int ntrig, int ms, int me)
{
    int best = -1;
    lb_level level = LB_LEVEL_PRESENT;
    /* Only triggers near enough to act: a trigger is at most LB_MAX_WORDS * (LB_GAP + 1)
     * words long and must end within LB_MAX_SCOPE words of the mention. */
    int from = ms - LB_MAX_SCOPE - LB_MAX_WORDS * (LB_GAP + 1);
    for (int i = first_trigger_from(trigs, ntrig, from);
         i < ntrig && trigs[i].start <= me + LB_MAX_SCOPE; i++) {
        int d;
        if (trigs[i].kind != LB_NEG && trigs[i].kind != LB_UNC && trigs[i].kind != LB_SPEC &&
            trigs[i].kind != LB_HYPO)
            continue;
        /* A trigger overlapping the mention itself ("no" in a phrase) is not one. */
        if (trigs[i].start <= ms && trigs[i].end > ms)
            continue;
        d = scope_distance(t, trigs, ntrig, &trigs[i], ms, me);
        if (d < 0)
            continue;
        if (best < 0 || d < best) {
            best = d;
            switch (trigs[i].kind) {
            case LB_NEG:
                level = LB_LEVEL_ABSENT;
                break;
            case LB_UNC:
                level = LB_LEVEL_UNCERTAIN;
                break;
            case LB_SPEC:
                level = LB_LEVEL_SPECULATIVE;
                break;
            default:
                level = LB_LEVEL_NONE;
                break;
            }
        }
    }
    return level;
}

rd_status rd_labeler_label(const rd_labeler *lab, const char *findings, const char *impression,
                           rd_labels *out, rd_error *err)
{
    const char *sections[2] = {findings, impression};
    lb_text t;
    lb_trig *trigs = NULL;
    int ntrig = 0;
    unsigned char *excluded = NULL; /* [finding][token]: inside an exclusion phrase */
    lb_level level[RD_FINDING_N_ABNORMAL] = {LB_LEVEL_NONE};
    size_t bytes;
    rd_status st;

    memset(&t, 0, sizeof t);
    memset(out, 0, sizeof *out);
    st = tokenize(&t, sections, 2, err);
    if (st != RD_OK)
        goto out;
    mark_words(lab, &t);
    st = find_triggers(lab, &t, &trigs, &ntrig, err);
    if (st != RD_OK)
        goto out;
    if (!rd_mul_size((size_t)t.n + 1, RD_FINDING_N_ABNORMAL, &bytes) ||
        !(excluded = calloc(bytes, 1))) {
        st = rd_error_set(err, RD_E_NOMEM, "out of memory labeling a report");
        goto out;
    }
    for (int i = 0; i < t.n; i++)
        for (size_t p = 0; p < lab->n; p++) {
            const lb_phrase *ph = &lab->phrases[p];
            int end;
            if (ph->kind == LB_EXCLUDE && match_at(ph, &t, i, &end))
                memset(excluded + (size_t)ph->finding * ((size_t)t.n + 1) + i, 1,
                       (size_t)(end - i));
        }
    for (int i = 0; i < t.n; i++)
        for (size_t p = 0; p < lab->n; p++) {
            const lb_phrase *ph = &lab->phrases[p];
            const unsigned char *ex;
            int end, skip = 0;
            lb_level lv;
            if (ph->kind != LB_MENTION || !match_at(ph, &t, i, &end))
                continue;
            ex = excluded + (size_t)ph->finding * ((size_t)t.n + 1);
            for (int k = i; k < end && !skip; k++)
                skip = ex[k];
            if (skip)
                continue;
            lv = mention_level(&t, trigs, ntrig, i, end);
            if (lv > level[ph->finding])
                level[ph->finding] = lv;
        }
    out->state[RD_FINDING_NO_FINDING] = RD_STATE_PRESENT;
    for (int f = 0; f < RD_FINDING_N_ABNORMAL; f++) {
        switch (level[f]) {
        case LB_LEVEL_PRESENT:
            out->state[f] = RD_STATE_PRESENT;
            break;
        case LB_LEVEL_UNCERTAIN:
            out->state[f] = RD_STATE_UNCERTAIN;
            break;
        case LB_LEVEL_SPECULATIVE:
            /* Expert labels do not count a finding the report only raises as a
             * possibility (see labeler.h); a site may ask for it to be uncertain. */
            out->speculative[f] = 1;
            out->state[f] =
                lab->speculative_uncertain ? RD_STATE_UNCERTAIN : RD_STATE_NOT_MENTIONED;
            break;
        case LB_LEVEL_ABSENT:
            out->state[f] = RD_STATE_ABSENT;
            break;
        default:
            out->state[f] = RD_STATE_NOT_MENTIONED;
            break;
        }
        /* A report that raises a finding, even as a possibility, is not a normal one. */
        if (out->state[f] >= RD_STATE_UNCERTAIN || out->speculative[f])
            out->state[RD_FINDING_NO_FINDING] = RD_STATE_NOT_MENTIONED;
    }
out:
    free(excluded);
    free(trigs);
    text_free(&t);
    return st;
}
