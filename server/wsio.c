/*
 * The WebSocket transport (see wsio.h): reads into the thread's buffer,
 * feeds protocol/wsframe.h's parser, writes with send().
 */
#include "wsio.h"
#include "clock.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Reads up to this many buffers per readiness: a publisher's burst is
 * taken in one loop pass, so the writes that follow carry more events per
 * connection; then other connections get their turn. */
#define READS_PER_PASS 8

/* The thread's shared transport settings (kept in the watcher's data
 * pointer: no field of its own in every connection). */
static inline const sc_wsio_env_t *env_of(const sc_wsio_t *io)
{
    return io->watcher.data;
}

/* Sets the watcher's events from write_armed and paused. */
static void arm(sc_wsio_t *io)
{
    int ev = (io->paused ? 0 : EV_READ) | (io->write_armed ? EV_WRITE : 0);
    ev_io_stop(env_of(io)->loop, &io->watcher);
    ev_io_modify(&io->watcher, ev);
    if (ev)
        ev_io_start(env_of(io)->loop, &io->watcher);
}

void sc_wsio_want_write(sc_wsio_t *io, bool on)
{
    if (io->write_armed == on)
        return;
    io->write_armed = on;
    arm(io);
}

static void drop_kept(sc_wsio_t *io)
{
    free(io->kept);
    io->kept = NULL;
    io->kept_len = 0;
}

void sc_wsio_resume(sc_wsio_t *io)
{
    if (!io->paused || io->fd < 0)
        return;
    io->paused = false;
    arm(io);
    if (io->kept) /* parsed in the next pass, even if nothing more comes */
        ev_feed_event(env_of(io)->loop, &io->watcher, EV_READ);
}

void sc_wsio_pause(sc_wsio_t *io)
{
    if (io->paused || io->discard || io->fd < 0)
        return;
    io->paused = true;
    arm(io);
}

ssize_t sc_wsio_send(sc_wsio_t *io, const void *data, size_t n)
{
    const uint8_t *p = data;
    size_t sent = 0;
    while (sent < n) {
        ssize_t w =
            send(io->fd, p + sent, n - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            sent += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        return -1;
    }
    return (ssize_t)sent;
}

void sc_wsio_discard_input(sc_wsio_t *io)
{
    io->discard = true;
    drop_kept(io);
    if (io->paused) { /* what arrives now is read and dropped */
        io->paused = false;
        arm(io);
    }
}

void sc_wsio_shut_write(sc_wsio_t *io)
{
    sc_wsio_discard_input(io);
    shutdown(io->fd, SHUT_WR);
    sc_wsio_want_write(io, false);
}

void sc_wsio_close(sc_wsio_t *io)
{
    if (io->fd < 0)
        return;
    ev_io_stop(env_of(io)->loop, &io->watcher);
    close(io->fd);
    io->fd = -1;
    sc_ws_rx_deinit(&io->rx);
    drop_kept(io);
}

/* The parser's message callback: passes it up unless closing began. */
static int deliver(void *ud, const sc_ws_msg_t *m)
{
    sc_wsio_t *io = ud;
    if (io->discard)
        return 1; /* closing: the rest of the input is dropped */
    int r = env_of(io)->cbs->on_msg(io, m);
    return r != 0 ? r : io->discard ? 1 : 0;
}

/* The owner paused after a message: keeps the `rest` bytes at `at` (the
 * end of the input, which may be io->kept itself) and stops reading.
 * Returns -1 when out of memory. */
static int pause_with(sc_wsio_t *io, const uint8_t *at, size_t rest)
{
    io->paused = true;
    arm(io);
    if (rest == 0) {
        drop_kept(io);
        return 0;
    }
    if (io->kept && at >= io->kept && at < io->kept + io->kept_len) {
        memmove(io->kept, at, rest); /* what is left of the kept input */
    } else {
        free(io->kept);
        if ((io->kept = malloc(rest)) == NULL)
            return -1;
        memcpy(io->kept, at, rest);
    }
    io->kept_len = (uint32_t)rest;
    return 0;
}

/* Feeds one read to the parser. Returns -1 to destroy, 0 otherwise (also
 * when the owner paused: io->paused is then set). */
static int feed(sc_wsio_t *io, uint8_t *p, size_t n)
{
    sc_ws_fail_t fail;
    uint32_t frames = io->rx.frames;
    int rc = sc_ws_rx_feed(&io->rx, p, n, env_of(io)->max_message, deliver, io,
                           &fail);
    if (io->rx.frames != frames)
        io->last_rx_us = sc_now_us(); /* any whole frame is a sign of life */
    if (rc == SC_WSIO_PAUSE && !io->discard)
        return pause_with(io, p + n - sc_ws_rx_rest(&io->rx),
                          sc_ws_rx_rest(&io->rx));
    if (rc == SC_WS_RX_FAIL) {
        io->discard = true;
        return env_of(io)->cbs->on_fail(io, fail.code, fail.reason);
    }
    if (rc == SC_ENOMEM)
        return -1;
    return rc < 0 ? -1 : 0;
}

static int can_read(sc_wsio_t *io)
{
    const sc_wsio_env_t *env = env_of(io);
    if (io->paused)
        return 0;
    if (io->kept) { /* input kept at a pause comes first */
        uint8_t *k = io->kept;
        if (feed(io, k, io->kept_len) < 0)
            return -1;
        if (io->paused)
            return 0; /* paused again: the rest stays kept */
        drop_kept(io);
    }
    for (int i = 0; i < READS_PER_PASS; i++) {
        ssize_t r = recv(io->fd, env->rbuf, env->rbuf_size, 0);
        if (r == 0)
            return -1; /* the peer is gone (or answered our close) */
        if (r < 0)
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR
                       ? 0
                       : -1;
        /* (closing: what arrives is read and dropped) */
        if (!io->discard && feed(io, env->rbuf, (size_t)r) < 0)
            return -1;
        if (io->paused)
            return 0;
        if ((size_t)r < env->rbuf_size)
            return 0; /* drained */
    }
    return 0;
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    sc_wsio_t *io = (sc_wsio_t *)((char *)w - offsetof(sc_wsio_t, watcher));
    const sc_wsio_cbs_t *cbs = env_of(io)->cbs;
    if ((revents & EV_WRITE) && cbs->on_writable(io) < 0) {
        cbs->on_gone(io);
        return;
    }
    if ((revents & EV_READ) && can_read(io) < 0)
        cbs->on_gone(io);
}

void sc_wsio_start(sc_wsio_t *io, const sc_wsio_env_t *env, int fd)
{
    io->fd = fd;
    io->write_armed = false;
    io->discard = false;
    io->paused = false;
    io->kept = NULL;
    io->kept_len = 0;
    io->last_rx_us = sc_now_us();
    sc_ws_rx_init(&io->rx);
    ev_io_init(&io->watcher, on_io, fd, EV_READ);
    io->watcher.data = (void *)env;
    ev_io_start(env->loop, &io->watcher);
}
