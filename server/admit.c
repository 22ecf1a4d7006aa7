/* Connections per client address (see admit.h). */
#include "admit.h"
#include "common.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BUCKETS 4096

struct sc_admit_ip {
    uint8_t addr[16]; /* IPv4 as ::ffff:a.b.c.d */
    unsigned count;   /* {mu} open connections of this address */
    struct sc_admit_ip *next;
};

struct sc_admit {
    int max_per_ip; /* {const} */
    pthread_mutex_t mu;
    struct sc_admit_ip *bucket[BUCKETS]; /* {mu} */
};

int sc_admit_create(int max_per_ip, sc_admit_t **out)
{
    sc_admit_t *a = calloc(1, sizeof *a);
    if (!a)
        return SC_ENOMEM;
    a->max_per_ip = max_per_ip;
    pthread_mutex_init(&a->mu, NULL);
    *out = a;
    return SC_OK;
}

void sc_admit_destroy(sc_admit_t *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < BUCKETS; i++)
        for (struct sc_admit_ip *e = a->bucket[i], *n; e; e = n) {
            n = e->next;
            free(e);
        }
    pthread_mutex_destroy(&a->mu);
    free(a);
}

/* The peer's address as 16 bytes; false when unknown. */
static bool peer_addr(int fd, uint8_t out[16])
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return false;
    if (ss.ss_family == AF_INET6) {
        memcpy(out, &((struct sockaddr_in6 *)&ss)->sin6_addr, 16);
        return true;
    }
    if (ss.ss_family == AF_INET) {
        static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0,    0,
                                             0, 0, 0, 0, 0xff, 0xff};
        memcpy(out, v4mapped, 12);
        memcpy(out + 12, &((struct sockaddr_in *)&ss)->sin_addr, 4);
        return true;
    }
    return false;
}

static size_t hash16(const uint8_t a[16])
{
    uint64_t h = 14695981039346656037ULL;
    for (int i = 0; i < 16; i++)
        h = (h ^ a[i]) * 1099511628211ULL;
    return (size_t)(h % BUCKETS);
}

bool sc_admit_take(sc_admit_t *a, int fd, sc_admit_ip_t **ip)
{
    *ip = NULL;
    uint8_t addr[16];
    if (a->max_per_ip <= 0 || !peer_addr(fd, addr))
        return true;
    size_t b = hash16(addr);
    bool ok = true;
    pthread_mutex_lock(&a->mu);
    struct sc_admit_ip *e = a->bucket[b];
    while (e && memcmp(e->addr, addr, 16) != 0)
        e = e->next;
    if (!e && (e = calloc(1, sizeof *e)) != NULL) {
        memcpy(e->addr, addr, 16);
        e->next = a->bucket[b];
        a->bucket[b] = e;
    }
    if (!e) {
        /* out of memory: let it in uncounted rather than refuse everyone */
    } else if (e->count >= (unsigned)a->max_per_ip) {
        ok = false;
    } else {
        e->count++;
        *ip = e;
    }
    pthread_mutex_unlock(&a->mu);
    return ok;
}

void sc_admit_release(sc_admit_t *a, sc_admit_ip_t *ip)
{
    if (!ip)
        return;
    size_t b = hash16(ip->addr);
    pthread_mutex_lock(&a->mu);
    if (--ip->count == 0) { /* the last one: forget the address */
        struct sc_admit_ip **p = &a->bucket[b];
        while (*p != ip)
            p = &(*p)->next;
        *p = ip->next;
        free(ip);
    }
    pthread_mutex_unlock(&a->mu);
}
