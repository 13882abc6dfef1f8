/* cds_lfht anchor (see lfht.h). Same hash as the L1 (tc__hash). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

#include "l1.h"
#include "lfht.h"

typedef struct lfht_node {
    struct cds_lfht_node node;
    struct lfht_node *all; /* every node put, for destroy */
    uint32_t klen, vlen;
    char data[]; /* key bytes, then value bytes */
} lfht_node;

struct lfht_tab {
    struct cds_lfht *ht;
    lfht_node *all;
};

typedef struct lookup_key {
    const void *key;
    size_t klen;
} lookup_key;

static int match(struct cds_lfht_node *node, const void *arg)
{
    const lfht_node *n = caa_container_of(node, lfht_node, node);
    const lookup_key *k = arg;
    return n->klen == k->klen && memcmp(n->data, k->key, k->klen) == 0;
}

lfht_tab *lfht_create(size_t n)
{
    lfht_tab *t = calloc(1, sizeof *t);
    unsigned long size = 16;
    if (!t)
        return NULL;
    while (size < n)
        size <<= 1;
    t->ht = cds_lfht_new_flavor(size, size, size, 0, &urcu_memb_flavor, NULL);
    if (!t->ht) {
        free(t);
        return NULL;
    }
    return t;
}

int lfht_put(lfht_tab *t, const void *key, size_t klen, const void *val,
             size_t vlen)
{
    lfht_node *n = malloc(sizeof *n + klen + vlen);
    if (!n)
        return -1;
    cds_lfht_node_init(&n->node);
    n->klen = (uint32_t)klen;
    n->vlen = (uint32_t)vlen;
    memcpy(n->data, key, klen);
    memcpy(n->data + klen, val, vlen);
    n->all = t->all;
    t->all = n;
    urcu_memb_read_lock();
    cds_lfht_add(t->ht, (unsigned long)tc__hash(key, klen), &n->node);
    urcu_memb_read_unlock();
    return 0;
}

int lfht_get(lfht_tab *t, const void *key, size_t klen)
{
    struct cds_lfht_iter it;
    struct cds_lfht_node *node;
    lookup_key k = {key, klen};
    int r = -1;
    urcu_memb_read_lock();
    cds_lfht_lookup(t->ht, (unsigned long)tc__hash(key, klen), match, &k,
                    &it);
    node = cds_lfht_iter_get_node(&it);
    if (node) {
        const lfht_node *n = caa_container_of(node, lfht_node, node);
        r = (unsigned char)n->data[n->klen];
    }
    urcu_memb_read_unlock();
    return r;
}

void lfht_thread_online(void)
{
    urcu_memb_register_thread();
}

void lfht_thread_offline(void)
{
    urcu_memb_unregister_thread();
}

void lfht_destroy(lfht_tab *t)
{
    struct cds_lfht_iter it;
    struct cds_lfht_node *node;
    if (!t)
        return;
    urcu_memb_read_lock();
    cds_lfht_for_each(t->ht, &it, node)
        cds_lfht_del(t->ht, node);
    urcu_memb_read_unlock();
    urcu_memb_synchronize_rcu();
    cds_lfht_destroy(t->ht, NULL);
    while (t->all) {
        lfht_node *n = t->all;
        t->all = n->all;
        free(n);
    }
    free(t);
}
