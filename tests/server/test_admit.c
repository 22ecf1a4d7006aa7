/*
 * Unit tests of server/admit.c (--max-connections-per-ip): counts per
 * address over real TCP sockets on 127.0.0.1, given back and forgotten,
 * 0 turns it off, sockets without an address are not counted, and the
 * table under several threads at once (run under TSan: label threads).
 */
#include "admit.h"
#include "common.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdatomic.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

/* A connected TCP socket from 127.0.0.1 (the accepted end of a pair). */
struct pair {
    int client, server;
};

static int listener(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(l, 64), 0);
    return l;
}

static struct pair connect_pair(int l)
{
    struct sockaddr_in a;
    socklen_t al = sizeof a;
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &al), 0);
    struct pair p;
    p.client = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(p.client, (struct sockaddr *)&a, sizeof a), 0);
    p.server = accept(l, NULL, NULL);
    assert_true(p.server >= 0);
    return p;
}

static void close_pair(struct pair p)
{
    close(p.client);
    close(p.server);
}

static void test_counts_per_address_and_gives_back(void **state)
{
    (void)state;
    sc_admit_t *a;
    assert_int_equal(sc_admit_create(3, &a), SC_OK);
    int l = listener();
    struct pair p[4];
    sc_admit_ip_t *ip[4];
    for (int i = 0; i < 3; i++) {
        p[i] = connect_pair(l);
        assert_true(sc_admit_take(a, p[i].server, &ip[i]));
        assert_non_null(ip[i]);
        assert_ptr_equal(ip[i], ip[0]); /* one entry per address */
    }
    p[3] = connect_pair(l);
    assert_false(sc_admit_take(a, p[3].server, &ip[3]));
    assert_null(ip[3]);
    /* one given back: one more admitted, then full again */
    sc_admit_release(a, ip[1]);
    assert_true(sc_admit_take(a, p[3].server, &ip[3]));
    assert_false(sc_admit_take(a, p[3].server, &ip[1]));
    /* all given back: the entry is forgotten, a new one starts at 0 */
    sc_admit_release(a, ip[0]);
    sc_admit_release(a, ip[2]);
    sc_admit_release(a, ip[3]);
    for (int i = 0; i < 3; i++)
        assert_true(sc_admit_take(a, p[i].server, &ip[i]));
    for (int i = 0; i < 3; i++)
        sc_admit_release(a, ip[i]);
    sc_admit_release(a, NULL); /* nothing */
    for (int i = 0; i < 4; i++)
        close_pair(p[i]);
    close(l);
    sc_admit_destroy(a);
    sc_admit_destroy(NULL);
}

static void test_zero_is_off_and_unknown_addresses_pass(void **state)
{
    (void)state;
    sc_admit_t *a;
    assert_int_equal(sc_admit_create(0, &a), SC_OK);
    int l = listener();
    struct pair p = connect_pair(l);
    sc_admit_ip_t *ip;
    for (int i = 0; i < 100; i++) {
        assert_true(sc_admit_take(a, p.server, &ip));
        assert_null(ip); /* nothing counted, nothing to give back */
    }
    sc_admit_destroy(a);
    /* with a limit: a socket without a peer address is let in uncounted */
    assert_int_equal(sc_admit_create(1, &a), SC_OK);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_true(sc_admit_take(a, sv[0], &ip));
    assert_null(ip);
    assert_true(sc_admit_take(a, -1, &ip));
    assert_null(ip);
    /* the TCP one still counts */
    assert_true(sc_admit_take(a, p.server, &ip));
    assert_non_null(ip);
    sc_admit_ip_t *ip2;
    assert_false(sc_admit_take(a, p.server, &ip2));
    sc_admit_release(a, ip);
    close(sv[0]);
    close(sv[1]);
    close_pair(p);
    close(l);
    sc_admit_destroy(a);
}

/* Threads take and give back on one address at once: never more than the
 * limit held, and everything given back in the end. */
#define THREADS 4
#define ROUNDS 20000
struct race {
    sc_admit_t *a;
    int fd;
    _Atomic int held;
    _Atomic int over;
};

static void *racer(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < ROUNDS; i++) {
        sc_admit_ip_t *ip;
        if (!sc_admit_take(r->a, r->fd, &ip))
            continue;
        if (atomic_fetch_add(&r->held, 1) + 1 > 2)
            atomic_fetch_add(&r->over, 1);
        atomic_fetch_sub(&r->held, 1);
        sc_admit_release(r->a, ip);
    }
    return NULL;
}

static void test_threads_never_exceed_the_limit(void **state)
{
    (void)state;
    struct race r = {0};
    assert_int_equal(sc_admit_create(2, &r.a), SC_OK);
    int l = listener();
    struct pair p = connect_pair(l);
    r.fd = p.server;
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&t[i], NULL, racer, &r), 0);
    for (int i = 0; i < THREADS; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&r.over), 0);
    /* all given back: the full limit is free */
    sc_admit_ip_t *ip[2], *extra;
    assert_true(sc_admit_take(r.a, p.server, &ip[0]));
    assert_true(sc_admit_take(r.a, p.server, &ip[1]));
    assert_false(sc_admit_take(r.a, p.server, &extra));
    sc_admit_release(r.a, ip[0]);
    sc_admit_release(r.a, ip[1]);
    close_pair(p);
    close(l);
    sc_admit_destroy(r.a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_counts_per_address_and_gives_back),
        cmocka_unit_test(test_zero_is_off_and_unknown_addresses_pass),
        cmocka_unit_test(test_threads_never_exceed_the_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
