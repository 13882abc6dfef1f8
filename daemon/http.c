#include "http.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <microhttpd.h>

#include "log.h"
#include "stats.h"

#if MHD_VERSION >= 0x00097002
typedef enum MHD_Result mhd_result;
#else
typedef int mhd_result;
#endif

struct tcd_http {
    struct MHD_Daemon *d;
};

static mhd_result respond(struct MHD_Connection *c, unsigned status,
                          const char *type, const void *body, size_t len)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(
        len, (void *)(uintptr_t)body, MHD_RESPMEM_MUST_COPY);
    mhd_result ok;
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static mhd_result on_request(void *cls, struct MHD_Connection *c,
                             const char *url, const char *method,
                             const char *version, const char *upload,
                             size_t *upload_size, void **state)
{
    tcd_server *srv = cls;
    static int first;
    (void)version;
    (void)upload;
    if (*state == NULL) { /* headers only so far: wait for the body */
        *state = &first;
        return MHD_YES;
    }
    if (*upload_size) { /* we read no bodies */
        *upload_size = 0;
        return MHD_YES;
    }
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
        return respond(c, 405, "text/plain", "method not allowed\n", 19);
    if (strcmp(url, "/metrics") == 0) {
        tcd_buf b = {0};
        mhd_result ok;
        tcd_stats_metrics(srv, &b);
        if (b.oom) {
            tcd_buf_free(&b);
            return respond(c, 500, "text/plain", "out of memory\n", 14);
        }
        ok = respond(c, 200, "text/plain; version=0.0.4; charset=utf-8",
                     b.p ? b.p + b.off : "", tcd_buf_pending(&b));
        tcd_buf_free(&b);
        return ok;
    }
    if (strcmp(url, "/health") == 0) {
        tc_health h;
        char body[256];
        int ok = tcd_stats_healthy(srv, &h);
        int n = snprintf(body, sizeof(body),
                         "{\"healthy\":%s,\"l2_up\":%s,\"bus_up\":%s,"
                         "\"breaker_open\":%s,\"l2_latency_us\":%llu}\n",
                         ok ? "true" : "false", h.l2_up ? "true" : "false",
                         h.bus_up ? "true" : "false",
                         h.breaker_open ? "true" : "false",
                         (unsigned long long)h.l2_latency_us);
        return respond(c, ok ? 200 : 503, "application/json", body,
                       (size_t)n);
    }
    return respond(c, 404, "text/plain", "not found\n", 10);
}

tcd_http *tcd_http_start(tcd_server *srv, int port)
{
    tcd_http *h = calloc(1, sizeof(*h));
    struct sockaddr_in a;
    if (!h)
        return NULL;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    h->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
                           (uint16_t)port, NULL, NULL, on_request, srv,
                           MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&a,
                           MHD_OPTION_CONNECTION_LIMIT, 64u,
                           MHD_OPTION_CONNECTION_TIMEOUT, 10u,
                           MHD_OPTION_END);
    if (!h->d) {
        tcd_error("cannot serve HTTP on 127.0.0.1:%d", port);
        free(h);
        return NULL;
    }
    tcd_info("metrics on http://127.0.0.1:%d/metrics and /health", port);
    return h;
}

void tcd_http_stop(tcd_http *h)
{
    if (!h)
        return;
    MHD_stop_daemon(h->d);
    free(h);
}
