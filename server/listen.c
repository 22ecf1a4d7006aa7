/* SO_REUSEPORT listeners adopted into lws contexts (see listen.h). */
#define _GNU_SOURCE /* accept4 */
#include "listen.h"
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* The first address of host:port, or NULL with the reason logged. */
static struct addrinfo *resolve(const char *host, int port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        sc_log(SC_LOG_ERROR, "cannot resolve %s: %s", host, gai_strerror(rc));
        return NULL;
    }
    return res;
}

int sc_listen_check_free(const char *host, int port)
{
    struct addrinfo *res = resolve(host, port);
    if (!res)
        return -1;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    /* SO_REUSEADDR alone: sockets in TIME_WAIT from a previous run do not
     * count, a listening one does */
    int rc = fd < 0 ? -1
             : setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one)
                 ? -1
                 : bind(fd, res->ai_addr, res->ai_addrlen);
    int e = errno;
    if (fd >= 0)
        close(fd);
    freeaddrinfo(res);
    if (rc == 0)
        return 0;
    if (e == EADDRINUSE)
        sc_log(SC_LOG_ERROR,
               "cannot listen on %s:%d: the port is in use (another "
               "process, perhaps another scopecast, listens there)",
               host, port);
    else
        sc_log(SC_LOG_ERROR, "cannot listen on %s:%d: %s", host, port,
               strerror(e));
    return -1;
}

void sc_listen_peer(int fd, char *buf, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    const void *a = NULL;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
        a = ss.ss_family == AF_INET6
                ? (const void *)&((struct sockaddr_in6 *)&ss)->sin6_addr
                : (const void *)&((struct sockaddr_in *)&ss)->sin_addr;
    if (!a || !inet_ntop(ss.ss_family, a, buf, (socklen_t)len))
        snprintf(buf, len, "?");
}

int sc_listen_open(const char *host, int port, int *bound_port)
{
    struct addrinfo *res = resolve(host, port);
    if (!res)
        return -1;
    int fd =
        socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
        sc_log(SC_LOG_ERROR, "cannot listen on %s:%d: %s", host, port,
               strerror(errno));
        if (fd >= 0)
            close(fd);
        freeaddrinfo(res);
        return -1;
    }
    freeaddrinfo(res);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    *bound_port = port;
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *bound_port = ntohs(ss.ss_family == AF_INET6
                                ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                : ((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

int sc_listen_attach(struct lws_vhost *vhost, int fd, sc_listener_t *l)
{
    lws_sock_file_fd_type u;
    u.filefd = (lws_filefd_type)fd;
    struct lws *wsi = lws_adopt_descriptor_vhost(
        vhost, LWS_ADOPT_RAW_FILE_DESC, u, SC_ACCEPT_PROTOCOL_NAME, NULL);
    if (!wsi)
        return -1;
    lws_set_opaque_user_data(wsi, l);
    return 0;
}

int sc_listen_callback(struct lws *wsi, enum lws_callback_reasons reason,
                       void *user, void *in, size_t len)
{
    (void)user;
    (void)in;
    (void)len;
    switch (reason) {
    case LWS_CALLBACK_RAW_RX_FILE: {
        int lfd = (int)lws_get_socket_fd(wsi);
        sc_listener_t *l = lws_get_opaque_user_data(wsi);
        for (;;) {
            int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EMFILE || errno == ENFILE) {
                    /* Out of descriptors: the backlog stays readable, so
                     * stop listening for a moment rather than spin. */
                    sc_log(SC_LOG_WARN, "accept: %s; pausing accepts",
                           strerror(errno));
                    lws_rx_flow_control(wsi, 0);
                    lws_set_timer_usecs(wsi, 200 * LWS_US_PER_MS);
                }
                break;
            }
            /* lws sets this only on sockets it accepts itself: without it
             * Nagle holds a small push while an earlier one is unacked. */
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            l->fn(l->ud, fd);
        }
        return 0;
    }
    case LWS_CALLBACK_TIMER:
        lws_rx_flow_control(wsi, 1); /* try accepting again */
        return 0;
    case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
        return -1; /* not a WebSocket subprotocol */
    default:
        return 0;
    }
}
