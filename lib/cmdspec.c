/*
 * Command specifications from Redis's `COMMAND` reply (see cmdspec.h). The
 * key-finding walk follows Redis's own getKeysUsingKeySpecs() (db.c), so
 * that the keys found here are the keys Redis itself would find.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cmdspec.h"
#include "error.h"
#include "parse.h"

enum { BS_UNKNOWN, BS_INDEX, BS_KEYWORD };
enum { FK_UNKNOWN, FK_RANGE, FK_KEYNUM };
enum {
    KS_RO = 1, KS_RW = 2, KS_OW = 4, KS_RM = 8, KS_NOT_KEY = 16,
    KS_INCOMPLETE = 32
};
enum {
    CF_WRITE = 1, CF_READONLY = 2, CF_MOVABLE = 4, CF_BLOCKING = 8,
    CF_SCRIPTING = 16, CF_NOSCRIPT = 32
};

typedef struct keyspec {
    unsigned flags;
    int bs_type, bs_index, bs_startfrom;
    char *bs_keyword;
    int fk_type, lastkey, keystep, limit, keynumidx, firstkey;
} keyspec;

typedef struct spec {
    char *name;       /* lower case; "container|sub" for a subcommand */
    const char *leaf; /* after the '|', or the whole name */
    int arity;
    unsigned flags;
    int first, last, step; /* legacy key positions */
    int have_specs;        /* the server sent key specs (Redis 7+) */
    size_t nks;
    keyspec *ks;
    size_t nsub;
    struct spec *sub;
    tc__cmd_class cls;
} spec;

struct tc__cmdtab {
    size_t n;
    spec *cmds;
};

/* Commands that change the state of the connection that runs them (not
 * keys): a shared pool connection must never carry them. */
static const char *const connection_state[] = {
    "auth", "client|caching", "client|no-evict", "client|no-touch",
    "client|reply", "client|setinfo", "client|setname", "client|tracking",
    "discard", "exec", "hello", "monitor", "multi", "psubscribe", "psync",
    "punsubscribe", "quit", "readonly", "readwrite", "replconf", "reset",
    "select", "ssubscribe", "subscribe", "sunsubscribe", "sync",
    "unsubscribe", "unwatch", "watch", NULL};

/* ---- parsing the reply --------------------------------------------------- */

static int is_str(const redisReply *r)
{
    return r && (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_STATUS);
}

static int str_is(const redisReply *r, const char *s)
{
    return is_str(r) && r->len == strlen(s) && !strncasecmp(r->str, s, r->len);
}

/* Value of `key` in a flat [k, v, k, v, ...] array, or NULL. */
static const redisReply *map_get(const redisReply *m, const char *key)
{
    if (!m || m->type != REDIS_REPLY_ARRAY)
        return NULL;
    for (size_t i = 0; i + 1 < m->elements; i += 2)
        if (str_is(m->element[i], key))
            return m->element[i + 1];
    return NULL;
}

static int map_int(const redisReply *m, const char *key, int dflt)
{
    const redisReply *v = map_get(m, key);
    return v && v->type == REDIS_REPLY_INTEGER ? (int)v->integer : dflt;
}

static void parse_keyspec(const redisReply *m, keyspec *ks)
{
    const redisReply *f = map_get(m, "flags"), *bs = map_get(m, "begin_search"),
                     *fk = map_get(m, "find_keys"), *t, *s;
    memset(ks, 0, sizeof(*ks));
    for (size_t i = 0; f && f->type == REDIS_REPLY_ARRAY && i < f->elements;
         i++) {
        const redisReply *e = f->element[i];
        ks->flags |= str_is(e, "RO")           ? KS_RO
                     : str_is(e, "RW")         ? KS_RW
                     : str_is(e, "OW")         ? KS_OW
                     : str_is(e, "RM")         ? KS_RM
                     : str_is(e, "not_key")    ? KS_NOT_KEY
                     : str_is(e, "incomplete") ? KS_INCOMPLETE
                                               : 0;
    }
    t = map_get(bs, "type"), s = map_get(bs, "spec");
    if (str_is(t, "index")) {
        ks->bs_type = BS_INDEX;
        ks->bs_index = map_int(s, "index", 0);
    } else if (str_is(t, "keyword")) {
        const redisReply *kw = map_get(s, "keyword");
        ks->bs_type = BS_KEYWORD;
        ks->bs_startfrom = map_int(s, "startfrom", 1);
        if (is_str(kw) && (ks->bs_keyword = malloc(kw->len + 1))) {
            memcpy(ks->bs_keyword, kw->str, kw->len);
            ks->bs_keyword[kw->len] = '\0';
        } else {
            ks->bs_type = BS_UNKNOWN;
        }
    }
    t = map_get(fk, "type"), s = map_get(fk, "spec");
    if (str_is(t, "range")) {
        ks->fk_type = FK_RANGE;
        ks->lastkey = map_int(s, "lastkey", 0);
        ks->keystep = map_int(s, "keystep", 1);
        ks->limit = map_int(s, "limit", 0);
    } else if (str_is(t, "keynum")) {
        ks->fk_type = FK_KEYNUM;
        ks->keynumidx = map_int(s, "keynumidx", 0);
        ks->firstkey = map_int(s, "firstkey", 1);
        ks->keystep = map_int(s, "keystep", 1);
    }
    if (ks->keystep < 1)
        ks->keystep = 1;
}

static void free_spec(spec *s)
{
    for (size_t i = 0; i < s->nks; i++)
        free(s->ks[i].bs_keyword);
    free(s->ks);
    for (size_t i = 0; i < s->nsub; i++)
        free_spec(&s->sub[i]);
    free(s->sub);
    free(s->name);
}

static int spec_cmp(const void *a, const void *b)
{
    return strcmp(((const spec *)a)->leaf, ((const spec *)b)->leaf);
}

static int parse_entries(const redisReply *arr, spec **out, size_t *n);

/* One entry: [name, arity, flags, first, last, step, acl, tips, key specs,
 * subcommands]; Redis before 7 sends the first six or seven only. */
static int parse_spec(const redisReply *e, spec *s)
{
    const redisReply *name, *flags;
    char *bar;
    memset(s, 0, sizeof(*s));
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 6 ||
        !is_str(e->element[0]))
        return 0; /* skipped */
    name = e->element[0];
    if (!(s->name = malloc(name->len + 1)))
        return -1;
    for (size_t i = 0; i < name->len; i++)
        s->name[i] = (char)tolower((unsigned char)name->str[i]);
    s->name[name->len] = '\0';
    bar = strchr(s->name, '|');
    s->leaf = bar ? bar + 1 : s->name;
    s->arity = e->element[1]->type == REDIS_REPLY_INTEGER
                   ? (int)e->element[1]->integer : 0;
    flags = e->element[2];
    for (size_t i = 0; flags->type == REDIS_REPLY_ARRAY && i < flags->elements;
         i++) {
        const redisReply *f = flags->element[i];
        s->flags |= str_is(f, "write")         ? CF_WRITE
                    : str_is(f, "readonly")    ? CF_READONLY
                    : str_is(f, "movablekeys") ? CF_MOVABLE
                    : str_is(f, "blocking")    ? CF_BLOCKING
                    : str_is(f, "noscript")    ? CF_NOSCRIPT
                                               : 0;
    }
    s->first = e->element[3]->type == REDIS_REPLY_INTEGER
                   ? (int)e->element[3]->integer : 0;
    s->last = e->element[4]->type == REDIS_REPLY_INTEGER
                  ? (int)e->element[4]->integer : 0;
    s->step = e->element[5]->type == REDIS_REPLY_INTEGER
                  ? (int)e->element[5]->integer : 0;
    if (e->elements > 6 && e->element[6]->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < e->element[6]->elements; i++)
            if (str_is(e->element[6]->element[i], "@scripting"))
                s->flags |= CF_SCRIPTING;
    if (e->elements > 8 && e->element[8]->type == REDIS_REPLY_ARRAY) {
        const redisReply *ks = e->element[8];
        s->have_specs = 1;
        if (ks->elements &&
            !(s->ks = calloc(ks->elements, sizeof(*s->ks))))
            return -1;
        for (; s->nks < ks->elements; s->nks++)
            parse_keyspec(ks->element[s->nks], &s->ks[s->nks]);
    }
    if (e->elements > 9 && e->element[9]->type == REDIS_REPLY_ARRAY &&
        e->element[9]->elements &&
        parse_entries(e->element[9], &s->sub, &s->nsub) != 0)
        return -1;
    for (size_t i = 0; connection_state[i]; i++)
        if (!strcmp(s->name, connection_state[i]))
            s->cls = TC__CLASS_CONNECTION;
    if (s->cls == TC__CLASS_PLAIN && (s->flags & CF_BLOCKING))
        s->cls = TC__CLASS_BLOCKING;
    return 1;
}

static int parse_entries(const redisReply *arr, spec **out, size_t *n)
{
    spec *v = calloc(arr->elements ? arr->elements : 1, sizeof(*v));
    size_t k = 0;
    if (!v)
        return -1;
    for (size_t i = 0; i < arr->elements; i++) {
        int rc = parse_spec(arr->element[i], &v[k]);
        if (rc < 0) {
            free_spec(&v[k]);
            for (size_t j = 0; j < k; j++)
                free_spec(&v[j]);
            free(v);
            return -1;
        }
        if (rc > 0)
            k++;
        else
            free_spec(&v[k]);
    }
    qsort(v, k, sizeof(*v), spec_cmp);
    *out = v;
    *n = k;
    return 0;
}

tc__cmdtab *tc__cmdtab_build(const redisReply *r)
{
    tc__cmdtab *t;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        tc__fail(TC_PROTOCOL, "COMMAND: unexpected reply");
        return NULL;
    }
    if (!(t = calloc(1, sizeof(*t))) ||
        parse_entries(r, &t->cmds, &t->n) != 0) {
        free(t);
        tc__fail(TC_NO_MEMORY, "out of memory reading COMMAND");
        return NULL;
    }
    return t;
}

void tc__cmdtab_free(tc__cmdtab *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n; i++)
        free_spec(&t->cmds[i]);
    free(t->cmds);
    free(t);
}

/* ---- lookup -------------------------------------------------------------- */

static const spec *find(const spec *v, size_t n, const char *name, size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        const char *leaf = v[mid].leaf;
        size_t ll = strlen(leaf);
        int c = strncasecmp(leaf, name, ll < len ? ll : len);
        if (c == 0)
            c = ll < len ? -1 : ll > len ? 1 : 0;
        if (c == 0)
            return &v[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The command, or its subcommand when it has them and argv[1] names one.
 * *container is set when argv[1] names no subcommand of a container. */
static const spec *lookup(const tc__cmdtab *t, int argc,
                          const char *const *argv, const size_t *argvlen,
                          const spec **container)
{
    const spec *s = find(t->cmds, t->n, argv[0], argvlen[0]);
    *container = NULL;
    if (s && s->nsub) {
        const spec *sub =
            argc > 1 ? find(s->sub, s->nsub, argv[1], argvlen[1]) : NULL;
        if (sub)
            return sub;
        *container = s;
    }
    return s;
}

static int arity_ok(const spec *s, int argc)
{
    return s->arity >= 0 ? argc == s->arity : argc >= -s->arity;
}

int tc__cmdtab_check(const tc__cmdtab *t, int argc, const char *const *argv,
                     const size_t *argvlen, char *err, size_t errlen)
{
    const spec *container, *s = lookup(t, argc, argv, argvlen, &container);
    if (!s)
        return 1;
    if (container && argc > 1) {
        /* Redis: "unknown subcommand '%.128s'. Try %s HELP." */
        char up[64];
        size_t i;
        for (i = 0; i + 1 < sizeof(up) && container->name[i]; i++)
            up[i] = (char)toupper((unsigned char)container->name[i]);
        up[i] = '\0';
        snprintf(err, errlen, "ERR unknown subcommand '%.128s'. Try %s HELP.",
                 argv[1], up);
        return 2;
    }
    if (!arity_ok(s, argc)) {
        snprintf(err, errlen,
                 "ERR wrong number of arguments for '%s' command", s->name);
        return 2;
    }
    return 0;
}

/* ---- finding keys -------------------------------------------------------- */

/* The keys found so far. A position seen twice (named by two specs) is
 * one key; `slot` (argc entries: index in k + 1, or 0) finds it in O(1)
 * once there are more than a few, so that a command of 65,535 keys costs
 * a walk over them, not their square. */
typedef struct key_walk {
    tc__keys *k;
    int argc;
    size_t cap;   /* entries allocated in k->pos and k->written */
    size_t *slot; /* NULL while k->n <= KEYS_LINEAR */
} key_walk;

enum { KEYS_LINEAR = 8 };

static int add_key(key_walk *w, int pos, int written)
{
    tc__keys *k = w->k;
    size_t at = 0; /* index in k + 1 of this position seen before, or 0 */
    if (pos < 1 || pos >= w->argc)
        return 0; /* not an argument: it names no key */
    if (!w->slot && k->n > KEYS_LINEAR) {
        if (!(w->slot = calloc((size_t)w->argc, sizeof(*w->slot))))
            return -1;
        for (size_t i = 0; i < k->n; i++)
            w->slot[k->pos[i]] = i + 1;
    }
    if (w->slot) {
        at = w->slot[pos];
    } else {
        for (size_t i = 0; i < k->n && !at; i++)
            if (k->pos[i] == pos)
                at = i + 1;
    }
    if (at) {
        k->written[at - 1] |= (unsigned char)written;
        return 0;
    }
    if (k->n == w->cap) {
        size_t cap = w->cap ? 2 * w->cap : 4;
        int *p = realloc(k->pos, cap * sizeof(*p));
        unsigned char *wr;
        if (!p)
            return -1;
        k->pos = p;
        if (!(wr = realloc(k->written, cap)))
            return -1;
        k->written = wr;
        w->cap = cap;
    }
    k->pos[k->n] = pos;
    k->written[k->n++] = (unsigned char)written;
    if (w->slot)
        w->slot[pos] = k->n;
    return 0;
}

static void set_all(tc__keys *k, const char *why)
{
    if (k->effect != TC__EFFECT_ALL)
        k->why_all = why;
    k->effect = TC__EFFECT_ALL;
}

/* One key spec over argv, as getKeysUsingKeySpecs() walks it. Returns 0,
 * 1 when the spec cannot name its keys, -1 out of memory. */
static int walk_spec(const spec *s, const keyspec *ks, int argc,
                     const char *const *argv, const size_t *argvlen,
                     key_walk *kw, int written)
{
    int first = 0, last, step;
    if (ks->bs_type == BS_INDEX) {
        first = ks->bs_index;
    } else if (ks->bs_type == BS_KEYWORD) {
        int from = ks->bs_startfrom;
        int start = from > 0 ? from : argc + from;
        int end = from > 0 ? argc - 1 : 0;
        size_t kwl = strlen(ks->bs_keyword);
        for (int i = start; i != end; i = start <= end ? i + 1 : i - 1) {
            if (i >= argc || i < 1)
                break;
            if (argvlen[i] == kwl && !strncasecmp(argv[i], ks->bs_keyword, kwl)) {
                first = i + 1;
                break;
            }
        }
        if (!first)
            return 0; /* keyword absent: this spec names no key */
    } else {
        return 1;
    }
    if (ks->fk_type == FK_RANGE) {
        if (ks->lastkey >= 0)
            last = first + ks->lastkey;
        else if (!ks->limit)
            last = argc + ks->lastkey;
        else
            last = first + ((argc - first) / ks->limit + ks->lastkey);
        step = ks->keystep;
    } else if (ks->fk_type == FK_KEYNUM) {
        int64_t nk;
        int idx = first + ks->keynumidx;
        if (idx >= argc ||
            tc__parse_i64(argv[idx], argvlen[idx], 0, 1 << 30, &nk) != 0)
            return 0; /* Redis answers an error: nothing written */
        first += ks->firstkey;
        last = first + (int)nk - 1;
        step = ks->keystep;
    } else {
        return 1;
    }
    (void)s;
    for (int i = first; i <= last; i += step) {
        if (i >= argc || i < first)
            break; /* wrong arity: Redis answers an error */
        if (add_key(kw, i, written) != 0)
            return -1;
    }
    return 0;
}

static int find_keys(const tc__cmdtab *t, int argc, const char *const *argv,
                     const size_t *argvlen, key_walk *kw)
{
    tc__keys *k = kw->k;
    const spec *container, *s;
    int any_write_spec = 0;
    s = t ? lookup(t, argc, argv, argvlen, &container) : NULL;
    if (!s) {
        set_all(k, "command not listed by COMMAND");
        return 0;
    }
    k->known = 1;
    k->cls = s->cls;
    k->noscript = (s->flags & CF_NOSCRIPT) != 0;
    if (container || !arity_ok(s, argc))
        return 0; /* Redis refuses it: it writes nothing */
    if (s->have_specs) {
        int script = (s->flags & CF_SCRIPTING) && (s->flags & CF_MOVABLE) &&
                     !(s->flags & CF_READONLY);
        for (size_t i = 0; i < s->nks; i++) {
            const keyspec *ks = &s->ks[i];
            int w = (ks->flags & (KS_RW | KS_OW | KS_RM)) != 0;
            int rc;
            if (ks->flags & KS_NOT_KEY)
                continue;
            any_write_spec |= w;
            rc = walk_spec(s, ks, argc, argv, argvlen, kw, w);
            if (rc < 0)
                return -1;
            if (w && (rc > 0 || (ks->flags & KS_INCOMPLETE)))
                set_all(k, "a written key Redis's key spec cannot name");
        }
        if (script) {
            /* A script may write keys it does not declare; with none
             * declared it can only have written undeclared ones. */
            size_t nk = 0;
            for (size_t i = 0; i < k->n; i++)
                nk += k->written[i];
            if (!nk)
                set_all(k, "a script that declares no key");
            else if (k->effect == TC__EFFECT_READ)
                k->effect = TC__EFFECT_KEYS;
            return 0;
        }
        if (!(s->flags & CF_WRITE))
            return 0; /* not a write: no invalidation, keys for prefixing */
        if (!any_write_spec && s->nks == 0)
            set_all(k, "a write command with no key (FLUSHDB, SWAPDB, ...)");
    } else {
        /* Redis before 7: legacy positions; a write with movable keys may
         * write anything. */
        int last = s->last < 0 ? argc + s->last : s->last;
        for (int i = s->first; s->first > 0 && s->step > 0 && i <= last &&
                               i < argc;
             i += s->step)
            if (add_key(kw, i, (s->flags & CF_WRITE) != 0) != 0)
                return -1;
        if (!(s->flags & CF_WRITE))
            return 0;
        if ((s->flags & CF_MOVABLE) || s->first == 0)
            set_all(k, "a write without key specs (Redis before 7)");
    }
    if (k->effect == TC__EFFECT_READ) {
        for (size_t i = 0; i < k->n; i++)
            if (k->written[i])
                k->effect = TC__EFFECT_KEYS;
    }
    return 0;
}

int tc__cmdtab_keys(const tc__cmdtab *t, int argc, const char *const *argv,
                    const size_t *argvlen, tc__keys *k)
{
    key_walk kw;
    int rc;
    memset(k, 0, sizeof(*k));
    memset(&kw, 0, sizeof(kw));
    kw.k = k;
    kw.argc = argc;
    rc = find_keys(t, argc, argv, argvlen, &kw);
    free(kw.slot);
    return rc;
}

void tc__keys_free(tc__keys *k)
{
    free(k->pos);
    free(k->written);
    k->pos = NULL;
    k->written = NULL;
    k->n = 0;
}
