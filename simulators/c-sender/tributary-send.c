/*
 * tributary-send: posts one batch of deterministic readings to a Tributary aggregator, as C
 * gateway firmware would. It proves the wire contract (proto/tributary/v1) works from C with
 * nothing but libprotobuf-c and libc: a SyncRequest over plain HTTP/1.1 on a POSIX socket,
 * answered by an Ack.
 *
 * Reading i (0-based) of the batch is the double i * 0.5 at start_ms + i * interval_ms, so a
 * test can check the sink exactly. The batch is a pure function of the arguments once
 * --start-ms is given: a rerun is then a resend of the same batch, which the aggregator
 * answers "duplicate".
 *
 * Exit status: 0 accepted or duplicate, 1 anything else (the reason goes to stderr),
 * 2 usage errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "tributary/v1/ack.pb-c.h"
#include "tributary/v1/batch.pb-c.h"
#include "tributary/v1/status.pb-c.h"

#define PROGRAM "tributary-send"
#define AGENT_VERSION "c-sender/0.1"
#define BATCHES_PATH "/v1/batches"
#define PROTOBUF_CONTENT_TYPE "application/x-protobuf"
#define PROTOCOL_VERSION "1"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2 };

/* Well above the aggregator's default limit (100,000 readings a batch), so its refusal can be
 * tried, yet small enough that the arrays always fit in memory. */
#define MAX_READINGS 1000000u
/* An ack is a few dozen bytes; an error page is short. Anything bigger is not an aggregator. */
#define MAX_RESPONSE_BYTES (1 << 20)
/* The span the aggregator holds status times to (1970 up to the year 10000, in ms); readings
 * are kept in it too, so every time this sender makes is one a sink can show. */
#define MAX_TIME_MS INT64_C(253402300800000)
#define MAX_INTERVAL_MS INT64_C(86400000)

struct options {
    const char *url;
    const char *gateway;
    const char *epoch;
    const char *sensor;
    const char *metric;
    const char *topic;          /* NULL: sensors/<gateway>/<sensor> */
    const char *unit;           /* NULL: none */
    const char *integer_metric; /* NULL: no integer series */
    uint64_t sequence;
    uint32_t readings;
    int64_t start_ms;
    int64_t interval_ms;
    int64_t sealed_at_ms;
    int has_sequence, has_readings, has_start, has_sealed;
    int timeout_s;
};

/* Where to POST, split out of --url. */
struct target {
    char host[256];
    char port[8];
    char path[1024]; /* the URL's path prefix plus /v1/batches */
    char host_header[300];
};

/* What the aggregator answered. */
struct response {
    int status;
    int is_protobuf;
    unsigned char *raw; /* everything read, headers and body */
    size_t raw_len;
    unsigned char *body;
    size_t body_len;
    unsigned char *decoded; /* the de-chunked body, when the body was chunked */
};

static void fail(const char *format, ...)
{
    va_list args;
    va_start(args, format);
    fputs(PROGRAM ": ", stderr);
    vfprintf(stderr, format, args);
    fputc('\n', stderr);
    va_end(args);
}

static void usage(FILE *out)
{
    fputs("usage: " PROGRAM " --url http://HOST:PORT --gateway ID --epoch EPOCH --sequence N --readings K\n"
          "                      [--sensor S] [--metric M] [--topic T] [--unit U] [--integer-metric M2]\n"
          "                      [--start-ms T] [--interval-ms D] [--sealed-at-ms T] [--timeout-s S]\n"
          "\n"
          "Posts one batch, identity (ID, EPOCH, N), to the aggregator's " BATCHES_PATH ".\n"
          "Reading i (0 <= i < K) is the double i * 0.5 of sensor S, metric M at T + i * D ms.\n"
          "\n"
          "  --sensor S          sensor id (default c-sensor-1)\n"
          "  --metric M          metric name (default temperature)\n"
          "  --topic T           MQTT topic recorded with the readings (default sensors/ID/S)\n"
          "  --unit U            unit of the readings (default none)\n"
          "  --integer-metric M2 also send an integer series M2 of the same sensor: reading i is\n"
          "                      i * 7 - 1000 at the same time as the double (2K readings in all)\n"
          "  --start-ms T        time of the first reading, ms since the Unix epoch (default now)\n"
          "  --interval-ms D     ms between readings, 0 to 86400000 (default 1)\n"
          "  --sealed-at-ms T    when the batch was sealed (default the time of its last reading)\n"
          "  --timeout-s S       bound on connecting, sending and reading the answer (default 30)\n"
          "\n"
          "With --start-ms the batch depends on the arguments alone, so running the same command\n"
          "again resends the same batch and is answered \"duplicate\"; without it, a rerun under\n"
          "the same identity carries other readings and is refused as a conflict (HTTP 409).\n"
          "\n"
          "Exit status: 0 accepted or duplicate, 1 refused or failed, 2 usage error.\n",
          out);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        return 0; /* cannot fail with CLOCK_REALTIME; 0 reads as "unknown" on the wire */
    }
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t monotonic_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) != 0) {
        return 0;
    }
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- arguments ---- */

static int parse_u64(const char *flag, const char *text, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    unsigned long long value;
    /* strtoull takes "-1" and wraps it; only digits are a count. */
    if (text[0] < '0' || text[0] > '9') {
        fail("%s must be a whole number, not '%s'", flag, text);
        return -1;
    }
    errno = 0;
    value = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || value > max) {
        fail("%s must be a whole number up to %" PRIu64 ", not '%s'", flag, max, text);
        return -1;
    }
    *out = (uint64_t)value;
    return 0;
}

static int parse_i64(const char *flag, const char *text, int64_t min, int64_t max, int64_t *out)
{
    char *end = NULL;
    long long value;
    errno = 0;
    value = strtoll(text, &end, 10);
    if (text[0] == '\0' || errno != 0 || *end != '\0' || value < min || value > max) {
        fail("%s must be a whole number from %" PRId64 " to %" PRId64 ", not '%s'", flag, min, max, text);
        return -1;
    }
    *out = (int64_t)value;
    return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    int i;
    memset(o, 0, sizeof *o);
    o->sensor = "c-sensor-1";
    o->metric = "temperature";
    o->interval_ms = 1;
    o->timeout_s = 30;
    for (i = 1; i < argc; i++) {
        const char *flag = argv[i];
        const char *value;
        uint64_t u;
        if (strcmp(flag, "--help") == 0 || strcmp(flag, "-h") == 0) {
            usage(stdout);
            exit(EXIT_OK);
        }
        if (strncmp(flag, "--", 2) != 0) {
            fail("unexpected argument '%s'", flag);
            return -1;
        }
        if (i + 1 >= argc) {
            fail("%s needs a value", flag);
            return -1;
        }
        value = argv[++i];
        if (strcmp(flag, "--url") == 0) {
            o->url = value;
        } else if (strcmp(flag, "--gateway") == 0) {
            o->gateway = value;
        } else if (strcmp(flag, "--epoch") == 0) {
            o->epoch = value;
        } else if (strcmp(flag, "--sensor") == 0) {
            o->sensor = value;
        } else if (strcmp(flag, "--metric") == 0) {
            o->metric = value;
        } else if (strcmp(flag, "--topic") == 0) {
            o->topic = value;
        } else if (strcmp(flag, "--unit") == 0) {
            o->unit = value;
        } else if (strcmp(flag, "--integer-metric") == 0) {
            o->integer_metric = value;
        } else if (strcmp(flag, "--sequence") == 0) {
            if (parse_u64(flag, value, UINT64_MAX, &o->sequence) != 0) {
                return -1;
            }
            o->has_sequence = 1;
        } else if (strcmp(flag, "--readings") == 0) {
            if (parse_u64(flag, value, MAX_READINGS, &u) != 0) {
                return -1;
            }
            o->readings = (uint32_t)u;
            o->has_readings = 1;
        } else if (strcmp(flag, "--start-ms") == 0) {
            if (parse_i64(flag, value, 0, MAX_TIME_MS, &o->start_ms) != 0) {
                return -1;
            }
            o->has_start = 1;
        } else if (strcmp(flag, "--interval-ms") == 0) {
            if (parse_i64(flag, value, 0, MAX_INTERVAL_MS, &o->interval_ms) != 0) {
                return -1;
            }
        } else if (strcmp(flag, "--sealed-at-ms") == 0) {
            if (parse_i64(flag, value, 0, MAX_TIME_MS, &o->sealed_at_ms) != 0) {
                return -1;
            }
            o->has_sealed = 1;
        } else if (strcmp(flag, "--timeout-s") == 0) {
            if (parse_u64(flag, value, 3600, &u) != 0) {
                return -1;
            }
            if (u == 0) {
                fail("--timeout-s must be at least 1");
                return -1;
            }
            o->timeout_s = (int)u;
        } else {
            fail("unknown option %s", flag);
            return -1;
        }
    }
    if (o->url == NULL || o->gateway == NULL || o->epoch == NULL || !o->has_sequence || !o->has_readings) {
        fail("--url, --gateway, --epoch, --sequence and --readings are required");
        return -1;
    }
    /* The aggregator judges the ids (that is part of what this tool is for); empty ones are
     * plainly a slip on the command line. */
    if (o->gateway[0] == '\0' || o->epoch[0] == '\0' || o->sensor[0] == '\0' || o->metric[0] == '\0'
        || (o->integer_metric != NULL && o->integer_metric[0] == '\0')) {
        fail("--gateway, --epoch, --sensor, --metric and --integer-metric must not be empty");
        return -1;
    }
    /* An agent never seals an empty batch: with nothing to send it sends a heartbeat. */
    if (o->readings == 0) {
        fail("--readings must be at least 1: a batch holds at least one reading");
        return -1;
    }
    if (!o->has_start) {
        o->start_ms = now_ms();
    }
    /* Bounds checked above keep this far from overflow: 1e6 readings * 1 day < 2^63 ms. */
    if (o->start_ms + (int64_t)(o->readings - 1) * o->interval_ms > MAX_TIME_MS) {
        fail("the last reading would be after the year 10000: lower --start-ms, --interval-ms or --readings");
        return -1;
    }
    return 0;
}

/* Accepts http://HOST[:PORT][/PREFIX], HOST an IPv4 address, a name, or [IPv6]. */
static int parse_url(const char *url, struct target *t)
{
    const char *p, *host_end, *rest;
    size_t host_len, prefix_len;
    int bracketed = 0;
    memset(t, 0, sizeof *t);
    if (strncmp(url, "http://", 7) != 0) {
        fail("--url must start with http:// (this sender speaks plain HTTP only), not '%s'", url);
        return -1;
    }
    p = url + 7;
    if (*p == '[') {
        bracketed = 1;
        p++;
        host_end = strchr(p, ']');
        if (host_end == NULL) {
            fail("--url '%s' opens an IPv6 address with '[' but never closes it", url);
            return -1;
        }
        rest = host_end + 1;
    } else {
        host_end = p + strcspn(p, ":/?#");
        rest = host_end;
    }
    host_len = (size_t)(host_end - p);
    if (host_len == 0 || host_len >= sizeof t->host) {
        fail("--url '%s' has no host, or one too long", url);
        return -1;
    }
    memcpy(t->host, p, host_len);
    t->host[host_len] = '\0';
    if (*rest == ':') {
        size_t port_len = strcspn(rest + 1, "/?#");
        size_t k;
        unsigned long port;
        if (port_len == 0 || port_len >= sizeof t->port) {
            fail("--url '%s' has a bad port", url);
            return -1;
        }
        for (k = 0; k < port_len; k++) {
            if (rest[1 + k] < '0' || rest[1 + k] > '9') {
                fail("--url '%s' has a bad port", url);
                return -1;
            }
        }
        memcpy(t->port, rest + 1, port_len);
        t->port[port_len] = '\0';
        port = strtoul(t->port, NULL, 10);
        if (port == 0 || port > 65535) {
            fail("--url '%s': port %s is out of range", url, t->port);
            return -1;
        }
        rest += 1 + port_len;
    } else {
        strcpy(t->port, "80");
    }
    if (*rest == '?' || *rest == '#') {
        fail("--url '%s' must not carry a query or fragment", url);
        return -1;
    }
    /* A path is a prefix (e.g. behind a reverse proxy), as the agent's aggregator.url. */
    prefix_len = strlen(rest);
    while (prefix_len > 0 && rest[prefix_len - 1] == '/') {
        prefix_len--;
    }
    if (prefix_len + sizeof BATCHES_PATH > sizeof t->path) {
        fail("--url '%s' has too long a path", url);
        return -1;
    }
    memcpy(t->path, rest, prefix_len);
    memcpy(t->path + prefix_len, BATCHES_PATH, sizeof BATCHES_PATH);
    if (snprintf(t->host_header, sizeof t->host_header, bracketed ? "[%s]:%s" : "%s:%s", t->host, t->port)
        >= (int)sizeof t->host_header) {
        fail("--url '%s' has too long a host", url);
        return -1;
    }
    return 0;
}

/* ---- the request ---- */

/* The batch's interned string table: each distinct string once, strings[0] == "" (the
 * aggregator reads index 0 as "none", e.g. for the unit). */
#define MAX_STRINGS 8
struct string_table {
    char *items[MAX_STRINGS];
    size_t count;
};

static uint32_t intern(struct string_table *table, const char *s)
{
    size_t i;
    for (i = 0; i < table->count; i++) {
        if (strcmp(table->items[i], s) == 0) {
            return (uint32_t)i;
        }
    }
    /* Callers add at most 7 strings, so this never overflows; the cast drops only the const
     * the generated struct lacks (the strings are never written through it). */
    table->items[table->count] = (char *)s;
    return (uint32_t)table->count++;
}

/* One series with room for `count` readings; NULL (after saying why) when memory is short. */
static Tributary__V1__Series *new_series(size_t count, Tributary__V1__ValueKind kind)
{
    Tributary__V1__Series *s = malloc(sizeof *s);
    if (s == NULL) {
        fail("out of memory for a series of %zu readings", count);
        return NULL;
    }
    tributary__v1__series__init(s);
    s->kind = kind;
    s->n_time_delta_ms = count;
    s->time_delta_ms = malloc(count * sizeof *s->time_delta_ms);
    if (kind == TRIBUTARY__V1__VALUE_KIND__VALUE_KIND_DOUBLE) {
        s->n_doubles = count;
        s->doubles = malloc(count * sizeof *s->doubles);
    } else {
        s->n_integers = count;
        s->integers = malloc(count * sizeof *s->integers);
    }
    if (s->time_delta_ms == NULL || (s->doubles == NULL && s->integers == NULL)) {
        free(s->time_delta_ms);
        free(s->doubles);
        free(s->integers);
        free(s);
        fail("out of memory for a series of %zu readings", count);
        return NULL;
    }
    return s;
}

static void free_series(Tributary__V1__Series *s)
{
    if (s != NULL) {
        free(s->time_delta_ms);
        free(s->doubles);
        free(s->integers);
        free(s);
    }
}

/* Everything the request points to, owned here so one call frees it all. */
struct request_parts {
    Tributary__V1__SyncRequest request;
    Tributary__V1__GatewayStatus status;
    Tributary__V1__Batch batch;
    Tributary__V1__BatchId id;
    struct string_table strings;
    Tributary__V1__Series *series[2];
    char *topic; /* the default topic, when built */
};

static void free_request(struct request_parts *parts)
{
    free_series(parts->series[0]);
    free_series(parts->series[1]);
    free(parts->topic);
}

/* Fills in the SyncRequest as the Swift agent's BatchCodec.encode would for these readings
 * (double i, then integer i, for each i): grouped by series, strings interned, times
 * delta-encoded from base_time_ms (the first reading's time), no received offsets (every
 * reading received at its event time). */
static int build_request(const struct options *o, struct request_parts *parts)
{
    const int64_t last_time = o->start_ms + (int64_t)(o->readings - 1) * o->interval_ms;
    const char *topic = o->topic;
    Tributary__V1__Series *doubles, *integers = NULL;
    uint32_t gateway, sensor, metric, topic_index, unit;
    size_t i, n_series;

    memset(parts, 0, sizeof *parts);
    if (topic == NULL) {
        size_t size = strlen("sensors///") + strlen(o->gateway) + strlen(o->sensor);
        parts->topic = malloc(size);
        if (parts->topic == NULL) {
            fail("out of memory for the topic");
            return -1;
        }
        (void)snprintf(parts->topic, size, "sensors/%s/%s", o->gateway, o->sensor);
        topic = parts->topic;
    }

    /* Interned in BatchCodec's order (gateway, sensor, metric, topic, unit), so the batch is
     * the one the Swift agent would seal for these readings, string table included. */
    intern(&parts->strings, "");
    gateway = intern(&parts->strings, o->gateway);
    sensor = intern(&parts->strings, o->sensor);
    metric = intern(&parts->strings, o->metric);
    topic_index = intern(&parts->strings, topic);
    unit = o->unit != NULL ? intern(&parts->strings, o->unit) : 0;

    doubles = parts->series[0] = new_series(o->readings, TRIBUTARY__V1__VALUE_KIND__VALUE_KIND_DOUBLE);
    if (doubles == NULL) {
        return -1;
    }
    doubles->metric = metric;
    n_series = 1;
    if (o->integer_metric != NULL) {
        integers = parts->series[1] = new_series(o->readings, TRIBUTARY__V1__VALUE_KIND__VALUE_KIND_INTEGER);
        if (integers == NULL) {
            return -1;
        }
        integers->metric = intern(&parts->strings, o->integer_metric);
        n_series = 2;
    }
    for (i = 0; i < n_series; i++) {
        Tributary__V1__Series *s = parts->series[i];
        s->gateway = gateway;
        s->sensor = sensor;
        s->topic = topic_index;
        s->unit = unit;
    }
    for (i = 0; i < o->readings; i++) {
        /* The first delta is from base_time_ms, which is the first reading's time. */
        const int64_t delta = i == 0 ? 0 : o->interval_ms;
        doubles->time_delta_ms[i] = delta;
        doubles->doubles[i] = (double)i * 0.5; /* exact in binary: a test compares with == */
        if (integers != NULL) {
            integers->time_delta_ms[i] = delta;
            /* Starts negative, so the sint64 (zigzag) encoding of both signs is exercised. */
            integers->integers[i] = (int64_t)i * 7 - 1000;
        }
    }

    tributary__v1__batch_id__init(&parts->id);
    parts->id.gateway_id = (char *)o->gateway;
    parts->id.epoch = (char *)o->epoch;
    parts->id.sequence = o->sequence;

    tributary__v1__batch__init(&parts->batch);
    parts->batch.id = &parts->id;
    parts->batch.base_time_ms = o->start_ms;
    parts->batch.n_strings = parts->strings.count;
    parts->batch.strings = parts->strings.items;
    parts->batch.n_series = n_series;
    parts->batch.series = parts->series;
    parts->batch.reading_count = o->readings * (uint32_t)n_series;
    /* The aggregator digests the whole batch, sealed_at_ms included, to tell a resend
     * (duplicate) from other contents under the same identity (conflict). Defaulting to the
     * last reading's time rather than the clock keeps a rerun a true resend. */
    parts->batch.sealed_at_ms = o->has_sealed ? o->sealed_at_ms : last_time;

    tributary__v1__gateway_status__init(&parts->status);
    parts->status.gateway_id = (char *)o->gateway;
    parts->status.agent_version = (char *)AGENT_VERSION;
    parts->status.ingested_total = parts->batch.reading_count;
    parts->status.sealed_batches = 1;
    /* This request's batch is "the round": the status describes the gateway as it will be once
     * the batch is committed (nothing left), and the aggregator adds the round back if not. */
    parts->status.round_readings = parts->batch.reading_count;
    parts->status.round_oldest_ms = o->start_ms;
    parts->status.clock_ms = now_ms();

    tributary__v1__sync_request__init(&parts->request);
    parts->request.batch = &parts->batch;
    parts->request.status = &parts->status;
    return 0;
}

/* ---- HTTP over a socket ---- */

/* Milliseconds left before `deadline` (monotonic), at least 0, as poll takes them. */
static int remaining_ms(int64_t deadline)
{
    int64_t left = deadline - monotonic_ms();
    return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

/* Waits until `fd` is ready for `events`; 0 when ready, -1 (after saying why) on timeout or
 * error. `what` names the step for the message. */
static int wait_for(int fd, short events, int64_t deadline, const char *what, int timeout_s)
{
    for (;;) {
        struct pollfd pfd;
        int rc;
        pfd.fd = fd;
        pfd.events = events;
        pfd.revents = 0;
        rc = poll(&pfd, 1, remaining_ms(deadline));
        if (rc > 0) {
            return 0; /* errors and hangups show in the following send or recv */
        }
        if (rc == 0) {
            fail("timed out after %d s %s (--timeout-s)", timeout_s, what);
            return -1;
        }
        if (errno != EINTR) {
            fail("poll failed %s: %s", what, strerror(errno));
            return -1;
        }
    }
}

/* A numeric address as text: IPv6 with a scope id fits (NI_MAXHOST is not POSIX). */
#define ADDRESS_TEXT_MAX 128

static void describe_address(const struct addrinfo *ai, char *out, size_t size)
{
    char host[ADDRESS_TEXT_MAX], port[8];
    if (getnameinfo(ai->ai_addr, ai->ai_addrlen, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        (void)snprintf(out, size, "(unprintable address)");
    } else if (ai->ai_family == AF_INET6) {
        (void)snprintf(out, size, "[%s]:%s", host, port);
    } else {
        (void)snprintf(out, size, "%s:%s", host, port);
    }
}

/* Connects to the first address of `host` that answers; returns a non-blocking socket. */
static int connect_to(const struct target *t, int64_t deadline, int timeout_s)
{
    struct addrinfo hints, *addresses = NULL, *ai;
    char last_error[512] = "no address";
    int rc;

    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* No AI_ADDRCONFIG: on a host with only loopback up it hides 127.0.0.1 itself. */
    rc = getaddrinfo(t->host, t->port, &hints, &addresses);
    if (rc != 0) {
        fail("cannot resolve %s: %s", t->host, rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    for (ai = addresses; ai != NULL; ai = ai->ai_next) {
        char address[ADDRESS_TEXT_MAX + 16];
        int fd, flags, error = 0;
        socklen_t error_len = sizeof error;

        describe_address(ai, address, sizeof address);
        fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            (void)snprintf(last_error, sizeof last_error, "%s: socket: %s", address, strerror(errno));
            continue;
        }
        /* Non-blocking, so connect and every read and write can wait with a deadline. */
        flags = fcntl(fd, F_GETFL);
        if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
            (void)snprintf(last_error, sizeof last_error, "%s: fcntl: %s", address, strerror(errno));
            (void)close(fd);
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            freeaddrinfo(addresses);
            return fd;
        }
        if (errno == EINPROGRESS || errno == EINTR) {
            struct pollfd pfd;
            pfd.fd = fd;
            pfd.events = POLLOUT;
            pfd.revents = 0;
            do {
                rc = poll(&pfd, 1, remaining_ms(deadline));
            } while (rc < 0 && errno == EINTR);
            if (rc == 0) {
                (void)snprintf(last_error, sizeof last_error, "%s: no answer within %d s (--timeout-s)", address, timeout_s);
            } else if (rc < 0) {
                (void)snprintf(last_error, sizeof last_error, "%s: poll: %s", address, strerror(errno));
            } else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &error_len) != 0) {
                (void)snprintf(last_error, sizeof last_error, "%s: getsockopt: %s", address, strerror(errno));
            } else if (error != 0) {
                (void)snprintf(last_error, sizeof last_error, "%s: %s", address, strerror(error));
            } else {
                freeaddrinfo(addresses);
                return fd;
            }
        } else {
            (void)snprintf(last_error, sizeof last_error, "%s: %s", address, strerror(errno));
        }
        (void)close(fd);
        if (remaining_ms(deadline) == 0) {
            break;
        }
    }
    freeaddrinfo(addresses);
    fail("cannot connect to the aggregator at %s (%s); is it running and listening there?", t->host_header, last_error);
    return -1;
}

static int send_all(int fd, const void *data, size_t len, int64_t deadline, int timeout_s)
{
    const unsigned char *p = data;
    while (len > 0) {
        /* MSG_NOSIGNAL: a peer that hangs up is an error to report, not a SIGPIPE death. */
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            if (wait_for(fd, POLLOUT, deadline, "sending the request", timeout_s) != 0) {
                return -1;
            }
        } else {
            fail("sending the request failed: %s", n < 0 ? strerror(errno) : "the connection is closed");
            return -1;
        }
    }
    return 0;
}

static const unsigned char *find_bytes(const unsigned char *haystack, size_t len, const char *needle)
{
    size_t n = strlen(needle), i;
    for (i = 0; n <= len && i <= len - n; i++) {
        if (memcmp(haystack + i, needle, n) == 0) {
            return haystack + i;
        }
    }
    return NULL;
}

/* Decodes a chunked body into `out` (which has room for `len` bytes: decoding only shrinks).
 * Returns 1 when the last chunk was seen, 0 when more bytes are needed, -1 when malformed. */
static int dechunk(const unsigned char *data, size_t len, unsigned char *out, size_t *out_len)
{
    size_t pos = 0;
    *out_len = 0;
    for (;;) {
        const unsigned char *line_end = find_bytes(data + pos, len - pos, "\r\n");
        unsigned long long size = 0;
        size_t k, digits = 0;
        if (line_end == NULL) {
            return 0;
        }
        for (k = pos; data + k < line_end; k++) {
            int c = data[k], v;
            if (c >= '0' && c <= '9') {
                v = c - '0';
            } else if (c >= 'a' && c <= 'f') {
                v = c - 'a' + 10;
            } else if (c >= 'A' && c <= 'F') {
                v = c - 'A' + 10;
            } else if (c == ';' || c == ' ' || c == '\t') {
                break; /* chunk extensions are ignored, as RFC 9112 allows */
            } else {
                return -1;
            }
            if (size > MAX_RESPONSE_BYTES) {
                return -1;
            }
            size = size * 16 + (unsigned long long)v;
            digits++;
        }
        if (digits == 0) {
            return -1;
        }
        pos = (size_t)(line_end - data) + 2;
        if (size == 0) {
            return 1; /* trailers, if any, carry nothing this sender needs */
        }
        if (len - pos < size + 2) {
            return 0;
        }
        memcpy(out + *out_len, data + pos, (size_t)size);
        *out_len += (size_t)size;
        pos += (size_t)size;
        if (data[pos] != '\r' || data[pos + 1] != '\n') {
            return -1;
        }
        pos += 2;
    }
}

static int is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

/* Whether the header line starts with `name` (which ends in ':'), in any case. */
static int header_is(const unsigned char *line, size_t line_len, const char *name)
{
    size_t n = strlen(name);
    return line_len >= n && strncasecmp((const char *)line, name, n) == 0;
}

static int parse_content_length(const unsigned char *value, size_t len, long long *out)
{
    size_t i = 0;
    long long length = 0;
    while (i < len && (value[i] == ' ' || value[i] == '\t')) {
        i++;
    }
    if (i == len) {
        fail("the aggregator's answer has an empty Content-Length");
        return -1;
    }
    for (; i < len && is_digit(value[i]); i++) {
        length = length * 10 + (value[i] - '0');
        if (length > MAX_RESPONSE_BYTES) {
            fail("the aggregator announced a body of more than %d bytes; is --url a Tributary aggregator?",
                 MAX_RESPONSE_BYTES);
            return -1;
        }
    }
    while (i < len && (value[i] == ' ' || value[i] == '\t')) {
        i++;
    }
    if (i != len) {
        fail("the aggregator's answer has a malformed Content-Length");
        return -1;
    }
    *out = length;
    return 0;
}

/* Reads the whole answer: the status line, the headers it needs, and the body framed by
 * Content-Length, chunked encoding, or the end of the connection. */
static int read_response(int fd, int64_t deadline, int timeout_s, struct response *r)
{
    size_t capacity = 4096, header_len = 0;
    long long content_length = -1;
    int chunked = 0, eof = 0;

    memset(r, 0, sizeof *r);
    r->raw = malloc(capacity);
    if (r->raw == NULL) {
        fail("out of memory for the response");
        return -1;
    }
    for (;;) {
        ssize_t n;
        if (header_len == 0) {
            const unsigned char *end = find_bytes(r->raw, r->raw_len, "\r\n\r\n");
            if (end != NULL) {
                const unsigned char *line = r->raw;
                header_len = (size_t)(end - r->raw) + 4;
                /* "HTTP/1.1 200 OK": the status is the three digits after the first space. */
                if (header_len < 16 || memcmp(r->raw, "HTTP/1.", 7) != 0 || r->raw[8] != ' '
                    || !is_digit(r->raw[9]) || !is_digit(r->raw[10]) || !is_digit(r->raw[11])
                    || r->raw[9] == '0') {
                    fail("the answer is not HTTP/1.x; is --url really a Tributary aggregator?");
                    return -1;
                }
                r->status = (r->raw[9] - '0') * 100 + (r->raw[10] - '0') * 10 + (r->raw[11] - '0');
                /* The header lines, up to the blank line that ends them (each ends in \r\n). */
                while (line < end) {
                    const unsigned char *next = find_bytes(line, (size_t)(end + 2 - line), "\r\n");
                    size_t line_len = (size_t)(next - line);
                    if (header_is(line, line_len, "Content-Length:")) {
                        if (parse_content_length(line + 15, line_len - 15, &content_length) != 0) {
                            return -1;
                        }
                    } else if (header_is(line, line_len, "Transfer-Encoding:")) {
                        chunked = find_bytes(line, line_len, "chunked") != NULL;
                    } else if (header_is(line, line_len, "Content-Type:")) {
                        const unsigned char *value = line + 13;
                        size_t type_len = strlen(PROTOBUF_CONTENT_TYPE);
                        while (*value == ' ' || *value == '\t') {
                            value++;
                        }
                        r->is_protobuf = (size_t)(next - value) >= type_len
                                         && strncasecmp((const char *)value, PROTOBUF_CONTENT_TYPE, type_len) == 0;
                    }
                    line = next + 2;
                }
            }
        }
        if (header_len > 0) {
            size_t have = r->raw_len - header_len;
            if (chunked) {
                int done;
                free(r->decoded);
                r->decoded = malloc(have + 1);
                if (r->decoded == NULL) {
                    fail("out of memory for the response");
                    return -1;
                }
                done = dechunk(r->raw + header_len, have, r->decoded, &r->body_len);
                if (done < 0) {
                    fail("the aggregator's chunked answer is malformed");
                    return -1;
                }
                if (done == 1) {
                    r->body = r->decoded;
                    return 0;
                }
            } else if (content_length >= 0 && have >= (size_t)content_length) {
                r->body = r->raw + header_len;
                r->body_len = (size_t)content_length;
                return 0;
            } else if (content_length < 0 && eof) {
                r->body = r->raw + header_len;
                r->body_len = have;
                return 0;
            }
        }
        if (eof) {
            if (header_len == 0) {
                fail("the aggregator closed the connection before it answered (%zu bytes read)", r->raw_len);
            } else {
                fail("the aggregator closed the connection after %zu of the %lld body bytes it announced",
                     r->raw_len - header_len, content_length);
            }
            return -1;
        }
        if (r->raw_len + 1 >= capacity) {
            unsigned char *bigger;
            /* The body's limit plus room for the headers. */
            if (capacity > MAX_RESPONSE_BYTES) {
                fail("the aggregator's answer exceeds %d bytes; is --url a Tributary aggregator?", MAX_RESPONSE_BYTES);
                return -1;
            }
            bigger = realloc(r->raw, capacity * 2);
            if (bigger == NULL) {
                fail("out of memory for the response");
                return -1;
            }
            r->raw = bigger;
            capacity *= 2;
        }
        if (wait_for(fd, POLLIN, deadline, "waiting for the aggregator's answer", timeout_s) != 0) {
            return -1;
        }
        /* One byte is kept free for a NUL, so a text body can be printed as a C string. */
        n = recv(fd, r->raw + r->raw_len, capacity - r->raw_len - 1, 0);
        if (n > 0) {
            r->raw_len += (size_t)n;
            r->raw[r->raw_len] = '\0';
        } else if (n == 0) {
            eof = 1;
        } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            fail("reading the answer failed: %s", strerror(errno));
            return -1;
        }
    }
}

static void free_response(struct response *r)
{
    free(r->raw);
    free(r->decoded);
}

/* POSTs `body` and reads the answer. */
static int post(const struct target *t, const uint8_t *body, size_t body_len, int timeout_s, struct response *r)
{
    const int64_t deadline = monotonic_ms() + (int64_t)timeout_s * 1000;
    char header[2048];
    int fd, header_len, rc;

    memset(r, 0, sizeof *r);
    /* Connection: close keeps the framing simple: one request, one answer, then the end.
     * No Content-Encoding: identity is accepted, and gzip would need zlib. */
    header_len = snprintf(header, sizeof header,
                          "POST %s HTTP/1.1\r\n"
                          "Host: %s\r\n"
                          "User-Agent: tributary-" AGENT_VERSION "\r\n"
                          "Content-Type: " PROTOBUF_CONTENT_TYPE "\r\n"
                          "X-Tributary-Protocol: " PROTOCOL_VERSION "\r\n"
                          "Accept: " PROTOBUF_CONTENT_TYPE "\r\n"
                          "Content-Length: %zu\r\n"
                          "Connection: close\r\n"
                          "\r\n",
                          t->path, t->host_header, body_len);
    if (header_len < 0 || header_len >= (int)sizeof header) {
        fail("the request header does not fit in %zu bytes (is the --url path very long?)", sizeof header);
        return -1;
    }
    fd = connect_to(t, deadline, timeout_s);
    if (fd < 0) {
        return -1;
    }
    rc = send_all(fd, header, (size_t)header_len, deadline, timeout_s);
    if (rc == 0) {
        rc = send_all(fd, body, body_len, deadline, timeout_s);
    }
    if (rc == 0) {
        rc = read_response(fd, deadline, timeout_s, r);
    }
    if (close(fd) != 0 && rc == 0) {
        fail("closing the connection failed: %s", strerror(errno));
        rc = -1;
    }
    return rc;
}

/* ---- the answer ---- */

/* Prints text from the network without control characters, which could drive a terminal. */
static void print_clean(FILE *out, const char *text, size_t len)
{
    size_t i;
    for (i = 0; i < len && text[i] != '\0'; i++) {
        unsigned char c = (unsigned char)text[i];
        fputc(c < 0x20 || c == 0x7f ? '?' : c, out);
    }
}

static const char *outcome_name(Tributary__V1__Ack__Outcome outcome)
{
    switch (outcome) {
    case TRIBUTARY__V1__ACK__OUTCOME__OUTCOME_ACCEPTED: return "accepted";
    case TRIBUTARY__V1__ACK__OUTCOME__OUTCOME_DUPLICATE: return "duplicate";
    case TRIBUTARY__V1__ACK__OUTCOME__OUTCOME_HEARTBEAT: return "heartbeat";
    case TRIBUTARY__V1__ACK__OUTCOME__OUTCOME_RETRY: return "retry";
    case TRIBUTARY__V1__ACK__OUTCOME__OUTCOME_REJECTED: return "rejected";
    default: return "unspecified outcome";
    }
}

/* Turns the answer into the exit status, printing one line: the result on stdout, or what
 * went wrong on stderr. */
static int report(const struct response *r, const Tributary__V1__Batch *batch)
{
    const Tributary__V1__BatchId *id = batch->id;
    Tributary__V1__Ack *ack = NULL;
    int result = EXIT_FAILED;

    if (r->is_protobuf) {
        ack = tributary__v1__ack__unpack(NULL, r->body_len, r->body);
    }
    if (ack == NULL) {
        /* Not an aggregator's ack: a proxy's error page, a 404 from another server... */
        if (r->body_len == 0) {
            fail("the aggregator answered HTTP %d with an empty body, not a tributary.v1.Ack; is --url its address?",
                 r->status);
            return EXIT_FAILED;
        }
        fprintf(stderr, PROGRAM ": the aggregator answered HTTP %d without a tributary.v1.Ack (%zu bytes%s): ",
                r->status, r->body_len, r->is_protobuf ? " that do not decode" : " of another Content-Type");
        print_clean(stderr, (const char *)r->body, r->body_len < 300 ? r->body_len : 300);
        fputc('\n', stderr);
        return EXIT_FAILED;
    }
    if (r->status == 200
        && (ack->outcome == TRIBUTARY__V1__ACK__OUTCOME__OUTCOME_ACCEPTED
            || ack->outcome == TRIBUTARY__V1__ACK__OUTCOME__OUTCOME_DUPLICATE)) {
        /* As the Swift agent does: an ack for another batch acknowledges nothing of ours. */
        if (ack->batch_id == NULL || strcmp(ack->batch_id->gateway_id, id->gateway_id) != 0
            || strcmp(ack->batch_id->epoch, id->epoch) != 0 || ack->batch_id->sequence != id->sequence) {
            fail("the ack names another batch than %s/%s/%" PRIu64 "; nothing is known to be written",
                 id->gateway_id, id->epoch, id->sequence);
        } else if (ack->reading_count != batch->reading_count) {
            fail("the aggregator acknowledged %" PRIu32 " readings of batch %s/%s/%" PRIu64 ", which holds %" PRIu32,
                 ack->reading_count, id->gateway_id, id->epoch, id->sequence, batch->reading_count);
        } else {
            printf("%s %" PRIu32 " readings (batch %s/%s/%" PRIu64 ")\n", outcome_name(ack->outcome),
                   ack->reading_count, id->gateway_id, id->epoch, id->sequence);
            result = EXIT_OK;
        }
    } else {
        fprintf(stderr, PROGRAM ": batch %s/%s/%" PRIu64 " not written: the aggregator answered HTTP %d, %s: ",
                id->gateway_id, id->epoch, id->sequence, r->status, outcome_name(ack->outcome));
        print_clean(stderr, ack->reason, strlen(ack->reason));
        if (ack->outcome == TRIBUTARY__V1__ACK__OUTCOME__OUTCOME_RETRY && ack->retry_after_ms > 0) {
            fprintf(stderr, " (retry after %" PRIu32 " ms)", ack->retry_after_ms);
        }
        fputc('\n', stderr);
    }
    tributary__v1__ack__free_unpacked(ack, NULL);
    return result;
}

int main(int argc, char **argv)
{
    struct options o;
    struct target t;
    struct request_parts parts;
    struct response r;
    uint8_t *body;
    size_t size, packed;
    int result;

    if (parse_options(argc, argv, &o) != 0 || parse_url(o.url, &t) != 0) {
        fputs("run " PROGRAM " --help for the options\n", stderr);
        return EXIT_USAGE;
    }
    if (build_request(&o, &parts) != 0) {
        free_request(&parts);
        return EXIT_FAILED;
    }
    size = tributary__v1__sync_request__get_packed_size(&parts.request);
    body = malloc(size > 0 ? size : 1);
    if (body == NULL) {
        fail("out of memory for a request of %zu bytes", size);
        free_request(&parts);
        return EXIT_FAILED;
    }
    packed = tributary__v1__sync_request__pack(&parts.request, body);
    if (packed != size) {
        fail("protobuf-c packed %zu bytes where it announced %zu; the request is not sent", packed, size);
        free(body);
        free_request(&parts);
        return EXIT_FAILED;
    }
    result = post(&t, body, size, o.timeout_s, &r) == 0 ? report(&r, &parts.batch) : EXIT_FAILED;
    free_response(&r);
    free(body);
    free_request(&parts);
    if (fflush(stdout) != 0) {
        fail("cannot write the result: %s", strerror(errno));
        return EXIT_FAILED;
    }
    return result;
}
