/* Redis Cluster key slots (see slot.h). */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "slot.h"

/* CRC16-CCITT (XMODEM): polynomial 0x1021, initial value 0, as Redis. */
static uint16_t crc16(const unsigned char *p, size_t n)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        crc ^= (uint16_t)(p[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    return crc;
}

unsigned tc__slot_of(const void *key, size_t klen)
{
    const unsigned char *k = key;
    const unsigned char *open = memchr(k, '{', klen);
    if (open) {
        size_t rest = klen - (size_t)(open - k) - 1;
        const unsigned char *close = memchr(open + 1, '}', rest);
        if (close && close > open + 1) /* "{}" is no tag: the whole key */
            return crc16(open + 1, (size_t)(close - open - 1)) % TC__SLOTS;
    }
    return crc16(k, klen) % TC__SLOTS;
}

static char tags[TC__SLOTS][TC__SLOT_TAG_MAX];
static pthread_once_t tags_once = PTHREAD_ONCE_INIT;

/* Count upwards in base 36 until every slot has its shortest tag: about
 * 16384 * ln(16384) ~ 160,000 CRCs of 3-4 bytes, once per process. */
static void build_tags(void)
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    unsigned left = TC__SLOTS;
    for (unsigned long n = 0; left; n++) {
        char s[TC__SLOT_TAG_MAX];
        size_t len = 0;
        unsigned long v = n;
        unsigned slot;
        do {
            s[len++] = digits[v % 36];
            v /= 36;
        } while (v && len < TC__SLOT_TAG_MAX - 1);
        s[len] = '\0';
        slot = crc16((const unsigned char *)s, len) % TC__SLOTS;
        if (!tags[slot][0]) {
            memcpy(tags[slot], s, len + 1);
            left--;
        }
    }
}

const char *tc__slot_tag(unsigned slot)
{
    pthread_once(&tags_once, build_tags);
    return tags[slot % TC__SLOTS];
}
