/*
 * harness-load: the harness's native HTTP/1.1 load generator (load.generator: native).
 *
 * Why it exists: Locust spends about 200 us of Python CPU per request, enough to slow a server
 * that shares the machine. This engine replaces the Locust user of
 * harness/load/locustfiles/predict.py with one single-threaded epoll process whose request path
 * is a send(), a recv() and a little parsing, and it speaks the same file protocol, so
 * harness/load/native_driver.py reuses the Locust driver's watch, windows and result.
 *
 * Build: cc -O2 -std=gnu11 -Wall -Wextra -o harness-load harness_load.c -lm  (native_build.py)
 * Run:   harness-load CONFIG_PATH
 *
 * CONFIG: one `key value` per line (value = the rest of the line after the first space); blank
 * lines and lines starting with # are skipped; an unknown key is fatal.
 *   users N              in-flight slots (1..10000)
 *   spawn_rate R         users started per second: user i starts at i/R s (absent or 0: all at once)
 *   mode closed|open
 *   rate_rps R           open loop (required there): requests per second
 *   arrival constant|poisson   open-loop gaps: 1/R, or exponential with mean 1/R (default constant)
 *   seed S               unsigned 64-bit seed of the Poisson gaps (default 0)
 *   timeout_s T          per-request timeout, seconds
 *   flush_s F            how often finished requests are appended to the samples (default 0.5)
 *   max_run_s M          stop on our own after M s, as if stopped with stop_due M (default 3600)
 *   samples_path P       samples CSV: header at the test start, rows appended every flush_s
 *   started_path P       written at the test start: {"test_start_epoch_s": <epoch seconds>}
 *   meta_path P          written last; its presence says the samples are complete
 *   stop_path P          the driver creates it to stop the test: {"stop_due_s": <float>}
 *   slice_s S            interleave: slice length (0 = one target, not interleaved)
 *   pattern i i ...      interleave: target of slice k = floor(t / slice_s); past its end k % targets
 *   target HOST PORT ROWS WIDTH   a new target (index 0, 1, ... in order); WIDTH -1 = unknown
 *   target_requests PATH the last target's requests: repeated [8-byte little-endian length][bytes],
 *                        each a whole HTTP/1.1 request, sent verbatim in turn (one cursor per target)
 *   target_output PATH   the last target's dotted path to the outputs in its JSON responses
 *                        (absent: responses are not checked)
 * Required: users, mode, timeout_s, the four paths and at least one target with its requests.
 *
 * Files written (JSON atomically: PATH.tmp, then rename):
 *   samples: `start_s,latency_ms,outcome,late_ms,service_ms,target,message` (harness/load/samples.py);
 *            only whole lines, one write per flush.
 *   meta:    {"test_start_epoch_s", "spawning_complete_s" (null if some user never started),
 *             "stop_s", "requests" (requests sent and finished), "undrained", "pid"}; then exit 0.
 * Fatal problems print one line `harness-load: fatal: ...` on stderr and exit 2.
 *
 * Behaviour, as predict.py's lean client and user:
 *  - Each user keeps one keep-alive connection per target, opened on first use. Closed loop: it
 *    sends back to back; a row's start_s is the send time. Open loop: one seeded schedule; a
 *    free user takes the next due time, waits for it and sends; if that due time is more than
 *    timeout_s old the request is a timeout without being sent. latency counts from the due time,
 *    late_ms is the slip past max(due, the time the user became free), service_ms send to end.
 *  - Classification order as predict.py's _classify: non-2xx status, timeout, connection error,
 *    service over timeout_s, status other than 200, then the output check (JSON walk of the
 *    dotted path, rows counted as _row_count). After a connection error the user pauses 50 ms.
 *  - Stop: closed loop users finish the request in flight; open loop first sends every request
 *    due before stop_due (drain), bounded by 2 * timeout_s + 5 s; users still holding an earlier
 *    due time at that bound are counted as `undrained`.
 * Deliberate differences from predict.py: a response with neither Content-Length nor chunked
 * encoding is read until the server closes (predict.py assumes an empty body), interim 1xx
 * responses are skipped, bytes after a complete response close the connection instead of
 * being kept as the start of a response nobody asked for, JSON nested deeper than 1000 levels
 * is bad_payload (Python's parser raises RecursionError), and messages name errors in C's words
 * (strerror, the parser's reason) where predict.py names Python exceptions.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define MAX_USERS 10000
#define MAX_MESSAGE_CHARS 200 /* code points, as predict.py's message[:200] */
#define BODY_TEXT_BYTES 200   /* body bytes quoted in a message, as predict.py's _text */
#define CONNECTION_BACKOFF_S 0.05
#define CONTROL_POLL_S 0.1
#define STOP_FILE_RETRIES 10 /* polls of an unreadable stop file before stopping anyway */
#define FIRST_BUFFER_BYTES 4096
#define MAX_HEAD_BYTES 65536
#define MAX_CHUNK_LINE_BYTES 4096
#define MAX_RESPONSE_BYTES ((size_t)1 << 30)
#define MAX_EVENTS 256
#define JSON_MAX_DEPTH 1000 /* Python's json gives up near its recursion limit too */

enum outcome { OUT_OK, OUT_CONNECTION, OUT_TIMEOUT, OUT_HTTP_STATUS, OUT_BAD_PAYLOAD };
static const char *const OUTCOME_NAMES[] = {"ok", "connection", "timeout", "http_status", "bad_payload"};

enum user_state {
    S_UNSTARTED, /* timer: its spawn time */
    S_WAIT_DUE,  /* open loop, timer: the due time it holds */
    S_BACKOFF,   /* after a connection error, timer: end of the pause */
    S_CONNECTING, S_SENDING, S_RECEIVING, /* in flight, timer: send time + timeout_s */
    S_DONE
};

enum parse_state { PS_HEAD, PS_BODY, PS_CHUNK_SIZE, PS_CHUNK_DATA, PS_TRAILER, PS_UNTIL_CLOSE };

struct target {
    char *host;
    char port[8];
    struct sockaddr_storage addr;
    socklen_t addr_len;
    int family;
    long rows;
    long width; /* -1: unknown */
    char *output; /* dotted path, NULL: no check */
    char *requests_path;
    char *data;  /* the whole requests file */
    size_t *off, *len, n, cursor;
};

struct conn {
    int fd;          /* -1: not connected */
    uint32_t gen;    /* bumped on close: events from an older socket are recognised as stale */
    uint32_t events; /* what epoll watches now */
};

struct user {
    enum user_state state;
    int heap_pos; /* -1: no timer */
    double deadline;
    int target; /* of the request in flight */
    const char *req;
    size_t req_len, req_sent;
    double sent, due, free_at;
    bool holds_due; /* open loop: has taken a due time it has not finished */
    uint32_t seq;   /* bumped per request: tells an event handler its exchange has ended */
    /* the response in flight; one buffer per user, reused (only one exchange at a time) */
    char *buf;
    size_t cap, len;
    enum parse_state ps;
    size_t scan, pos, body_start, body_end, need;
    int status;
    bool keep;
    struct conn *conns; /* one per target */
};

struct row {
    double start_s, latency_ms, late_ms, service_ms; /* service_ms < 0: empty (closed loop) */
    uint32_t msg_off, msg_len;
    int32_t target;
    uint8_t outcome;
};

static struct {
    int users;
    double spawn_rate;
    bool open;
    double rate_rps;
    bool poisson;
    uint64_t seed;
    double timeout_s, flush_s, max_run_s, slice_s;
    char *samples_path, *started_path, *meta_path, *stop_path;
    int *pattern;
    size_t npattern;
    struct target *targets;
    int ntargets;
} cfg;

static struct {
    struct timespec t0;
    double epoch0;
    int epfd;
    bool stopping;
    double stop_s, stop_due, drain_deadline;
    double spawned_s; /* < 0: not every user has started */
    int started, active;
    long long requests, undrained;
    int stop_file_failures;
    double next_due; /* open loop: the schedule's last due time */
    uint64_t rng[4];
    int samples_fd;
} run;

static struct user *users;
static int *heap;
static int heap_n;

/* finished requests since the last flush; formatted only at the flush, off the request path */
static struct row *rows;
static size_t nrows, rows_cap;
static char *msgs;
static size_t msgs_len, msgs_cap;
static char *out_buf;
static size_t out_cap;

/* ------------------------------------------------------------------ errors and memory */

static void fatal(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
static void fatal(const char *fmt, ...) {
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    for (char *p = line; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' '; /* the driver scans the log line by line */
    fprintf(stderr, "harness-load: fatal: %s\n", line);
    exit(2);
}

static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) fatal("out of memory (%zu bytes)", n);
    return q;
}

static char *xstrdup(const char *s) {
    char *d = strdup(s);
    if (!d) fatal("out of memory");
    return d;
}

/* ------------------------------------------------------------------ clock */

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)(ts.tv_sec - run.t0.tv_sec) + (double)(ts.tv_nsec - run.t0.tv_nsec) * 1e-9;
}

/* ------------------------------------------------------------------ PRNG (Poisson gaps) */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t xoshiro256ss(void) {
    uint64_t *s = run.rng;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* The next due time; the first is one gap after the start, as harness ArrivalSchedule. */
static double schedule_next(void) {
    if (cfg.poisson) {
        double u = (double)(xoshiro256ss() >> 11) * 0x1.0p-53; /* [0, 1) */
        run.next_due += -log1p(-u) / cfg.rate_rps;
    } else {
        run.next_due += 1.0 / cfg.rate_rps;
    }
    return run.next_due;
}

/* ------------------------------------------------------------------ timers: one per user, a min-heap */

static bool heap_less(int a, int b) { return users[heap[a]].deadline < users[heap[b]].deadline; }

static void heap_swap(int a, int b) {
    int t = heap[a];
    heap[a] = heap[b];
    heap[b] = t;
    users[heap[a]].heap_pos = a;
    users[heap[b]].heap_pos = b;
}

static void heap_up(int i) {
    while (i > 0 && heap_less(i, (i - 1) / 2)) {
        heap_swap(i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < heap_n && heap_less(l, m)) m = l;
        if (r < heap_n && heap_less(r, m)) m = r;
        if (m == i) return;
        heap_swap(i, m);
        i = m;
    }
}

static void timer_set(struct user *u, double t) {
    u->deadline = t;
    if (u->heap_pos < 0) {
        u->heap_pos = heap_n;
        heap[heap_n++] = (int)(u - users);
        heap_up(u->heap_pos);
    } else {
        heap_up(u->heap_pos);
        heap_down(u->heap_pos);
    }
}

static void timer_clear(struct user *u) {
    int i = u->heap_pos;
    if (i < 0) return;
    u->heap_pos = -1;
    heap_n--;
    if (i == heap_n) return;
    int moved = heap[heap_n];
    heap[i] = moved;
    users[moved].heap_pos = i;
    heap_up(i);
    heap_down(users[moved].heap_pos);
}

/* ------------------------------------------------------------------ messages */

/* Length of the well-formed UTF-8 sequence at p (1..4), 0 if ill-formed (Python rejects it too). */
static size_t utf8_len(const unsigned char *p, const unsigned char *e, uint32_t *cp) {
    unsigned c = p[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, min;
    if (c >= 0xc2 && c <= 0xdf) n = 2, v = c & 0x1f, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef) n = 3, v = c & 0x0f, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4) n = 4, v = c & 0x07, min = 0x10000;
    else return 0;
    if ((size_t)(e - p) < n) return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        v = (v << 6) | (p[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return n;
}

static bool line_break(uint32_t c) {
    /* what Python's str.splitlines splits on */
    return c == '\n' || c == '\r' || c == 0x0b || c == 0x0c || (c >= 0x1c && c <= 0x1e) || c == 0x85 ||
           c == 0x2028 || c == 0x2029;
}

static size_t utf8_put(char *o, uint32_t c) {
    if (c < 0x80) {
        o[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (char)(0xc0 | (c >> 6));
        o[1] = (char)(0x80 | (c & 0x3f));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (char)(0xe0 | (c >> 12));
        o[1] = (char)(0x80 | ((c >> 6) & 0x3f));
        o[2] = (char)(0x80 | (c & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | (c >> 18));
    o[1] = (char)(0x80 | ((c >> 12) & 0x3f));
    o[2] = (char)(0x80 | ((c >> 6) & 0x3f));
    o[3] = (char)(0x80 | (c & 0x3f));
    return 4;
}

/*
 * Store a message as predict.py does: decoded lossily (the CSV must be valid UTF-8 whatever the
 * server sent), cut to MAX_MESSAGE_CHARS, then its lines joined by spaces. Other control
 * characters become spaces too, so that no CSV reader trips on a NUL.
 */
static void store_message(struct row *r, const char *raw, size_t n) {
    uint32_t cps[MAX_MESSAGE_CHARS];
    size_t k = 0;
    const unsigned char *p = (const unsigned char *)raw, *e = p + n;
    while (p < e && k < MAX_MESSAGE_CHARS) {
        uint32_t c;
        size_t len = utf8_len(p, e, &c);
        if (len == 0) c = 0xfffd, len = 1;
        cps[k++] = c;
        p += len;
    }
    if (msgs_cap - msgs_len < k * 4) {
        msgs_cap = (msgs_cap + k * 4) * 2;
        msgs = xrealloc(msgs, msgs_cap);
    }
    r->msg_off = (uint32_t)msgs_len;
    char *o = msgs + msgs_len;
    for (size_t i = 0; i < k; i++) {
        uint32_t c = cps[i];
        if (line_break(c)) {
            if (c == '\r' && i + 1 < k && cps[i + 1] == '\n') i++;
            if (i + 1 < k) *o++ = ' '; /* splitlines drops a final line break */
        } else if (c < 0x20 && c != '\t') {
            *o++ = ' ';
        } else {
            o += utf8_put(o, c);
        }
    }
    r->msg_len = (uint32_t)(o - (msgs + msgs_len));
    msgs_len += r->msg_len;
}

/* Room for one more row; the arrays keep their size between flushes, so this rarely allocates. */
static struct row *new_row(void) {
    if (nrows == rows_cap) {
        rows_cap = rows_cap ? rows_cap * 2 : 4096;
        rows = xrealloc(rows, rows_cap * sizeof *rows);
    }
    struct row *r = &rows[nrows++];
    r->msg_off = r->msg_len = 0;
    return r;
}

/* ------------------------------------------------------------------ files */

static void write_all(int fd, const char *data, size_t n, const char *path) {
    while (n > 0) {
        ssize_t w = write(fd, data, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            fatal("cannot write %s: %s", path, strerror(errno));
        }
        data += w;
        n -= (size_t)w;
    }
}

static void write_json_atomic(const char *path, const char *text) {
    size_t n = strlen(path) + 5;
    char *tmp = xrealloc(NULL, n);
    snprintf(tmp, n, "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) fatal("cannot write %s: %s", tmp, strerror(errno));
    write_all(fd, text, strlen(text), tmp);
    if (close(fd) != 0) fatal("cannot write %s: %s", tmp, strerror(errno));
    if (rename(tmp, path) != 0) fatal("cannot rename %s to %s: %s", tmp, path, strerror(errno));
    free(tmp);
}

static char *read_file(const char *path, size_t *size, const char *what) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fatal("cannot read %s %s: %s", what, path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) fatal("cannot read %s %s: %s", what, path, strerror(errno));
    size_t n = (size_t)st.st_size, got = 0;
    char *data = xrealloc(NULL, n + 1);
    while (got < n) {
        ssize_t r = read(fd, data + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) fatal("cannot read %s %s: %s", what, path, strerror(errno));
        if (r == 0) break;
        got += (size_t)r;
    }
    close(fd);
    data[got] = '\0';
    *size = got;
    return data;
}

/* The digits of v, zero-padded to at least `min`. */
static char *put_uint(char *o, uint64_t v, int min) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v || n < min);
    while (n) *o++ = tmp[--n];
    return o;
}

/*
 * printf's "%.<decimals>f" at a tenth of its cost: a flush formats every row of the last
 * flush_s in one go, and at tens of thousands of rows sprintf stalled the loop for milliseconds
 * (late sends). Rounding the scaled double can differ from printf in the last digit at an exact
 * tie, which no measured time is worth.
 */
static char *put_fixed(char *o, double x, int decimals) {
    static const double scales[] = {1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6};
    double scaled = x * scales[decimals];
    if (!(scaled >= 0 && scaled < 1e18)) { /* no measured time gets here; keep to the row's budget */
        int n = snprintf(o, 32, "%.*f", decimals, x);
        return o + (n < 32 ? n : 31);
    }
    uint64_t v = (uint64_t)(scaled + 0.5), scale = (uint64_t)scales[decimals];
    o = put_uint(o, v / scale, 1);
    *o++ = '.';
    return put_uint(o, v % scale, decimals);
}

static void csv_field(char **o, const char *s, size_t n) {
    if (n == 0) return; /* an ok row: msgs may not even be allocated yet */
    bool quote = false;
    for (size_t i = 0; i < n && !quote; i++)
        quote = s[i] == ',' || s[i] == '"' || s[i] == '\r' || s[i] == '\n';
    if (!quote) {
        memcpy(*o, s, n);
        *o += n;
        return;
    }
    *(*o)++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') *(*o)++ = '"';
        *(*o)++ = s[i];
    }
    *(*o)++ = '"';
}

/* Append the finished requests to the samples: whole lines, one write, so a reader never sees
 * half a row from us. */
static void flush_rows(void) {
    if (nrows == 0) return;
    size_t need = 0;
    for (size_t i = 0; i < nrows; i++) need += 160 + 2 * (size_t)rows[i].msg_len;
    if (out_cap < need) {
        out_cap = need * 2;
        out_buf = xrealloc(out_buf, out_cap);
    }
    char *o = out_buf;
    for (size_t i = 0; i < nrows; i++) {
        const struct row *r = &rows[i];
        const char *name = OUTCOME_NAMES[r->outcome];
        size_t name_len = strlen(name);
        o = put_fixed(o, r->start_s, 6);
        *o++ = ',';
        o = put_fixed(o, r->latency_ms, 4);
        *o++ = ',';
        memcpy(o, name, name_len);
        o += name_len;
        *o++ = ',';
        o = put_fixed(o, r->late_ms, 4);
        *o++ = ',';
        if (r->service_ms >= 0) o = put_fixed(o, r->service_ms, 4);
        *o++ = ',';
        o = put_uint(o, (uint64_t)r->target, 1);
        *o++ = ',';
        csv_field(&o, msgs + r->msg_off, r->msg_len);
        *o++ = '\n';
    }
    write_all(run.samples_fd, out_buf, (size_t)(o - out_buf), cfg.samples_path);
    nrows = 0;
    msgs_len = 0;
}

/* ------------------------------------------------------------------ config */

static double parse_double(const char *v, const char *key, int line) {
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (end == v || *end != '\0' || errno == ERANGE || !isfinite(d))
        fatal("config line %d: %s needs a number, got '%s'", line, key, v);
    return d;
}

static long parse_long(const char *v, const char *key, int line) {
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (end == v || *end != '\0' || errno == ERANGE) fatal("config line %d: %s needs an integer, got '%s'", line, key, v);
    return n;
}

static struct target *last_target(const char *key, int line) {
    if (cfg.ntargets == 0) fatal("config line %d: %s before any target line", line, key);
    return &cfg.targets[cfg.ntargets - 1];
}

static void parse_target(char *v, int line) {
    char *fields[5];
    int n = 0;
    for (char *tok = strtok(v, " \t"); tok; tok = strtok(NULL, " \t")) {
        if (n == 4) fatal("config line %d: target needs HOST PORT ROWS WIDTH", line);
        fields[n++] = tok;
    }
    if (n != 4) fatal("config line %d: target needs HOST PORT ROWS WIDTH", line);
    cfg.targets = xrealloc(cfg.targets, (size_t)(cfg.ntargets + 1) * sizeof *cfg.targets);
    struct target *t = &cfg.targets[cfg.ntargets++];
    memset(t, 0, sizeof *t);
    t->host = xstrdup(fields[0]);
    long port = parse_long(fields[1], "target PORT", line);
    if (port < 1 || port > 65535) fatal("config line %d: target port %ld is not 1..65535", line, port);
    snprintf(t->port, sizeof t->port, "%ld", port);
    t->rows = parse_long(fields[2], "target ROWS", line);
    t->width = parse_long(fields[3], "target WIDTH", line);
    if (t->rows < 1) fatal("config line %d: target ROWS must be at least 1", line);
    if (t->width < -1) fatal("config line %d: target WIDTH must be -1 (unknown) or a width", line);
}

static void parse_pattern(char *v, int line) {
    cfg.npattern = 0;
    for (char *tok = strtok(v, " \t"); tok; tok = strtok(NULL, " \t")) {
        long i = parse_long(tok, "pattern", line);
        if (i < 0 || i > 1000000) fatal("config line %d: pattern index %ld out of range", line, i);
        cfg.pattern = xrealloc(cfg.pattern, (cfg.npattern + 1) * sizeof *cfg.pattern);
        cfg.pattern[cfg.npattern++] = (int)i;
    }
}

static void load_config(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) fatal("cannot read config %s: %s", path, strerror(errno));
    bool have_mode = false, have_timeout = false, have_rate = false;
    cfg.flush_s = 0.5;
    cfg.max_run_s = 3600.0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int lineno = 0;
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        if (n == 0 || line[0] == '#') continue;
        char *v = strchr(line, ' ');
        if (!v) fatal("config line %d: '%s' has no value", lineno, line);
        *v++ = '\0';
        const char *k = line;
        if (!strcmp(k, "users")) {
            long u = parse_long(v, k, lineno);
            if (u < 1 || u > MAX_USERS) fatal("config line %d: users must be 1..%d, got %ld", lineno, MAX_USERS, u);
            cfg.users = (int)u;
        } else if (!strcmp(k, "spawn_rate")) {
            cfg.spawn_rate = parse_double(v, k, lineno);
            if (cfg.spawn_rate < 0) fatal("config line %d: spawn_rate must not be negative", lineno);
        } else if (!strcmp(k, "mode")) {
            if (strcmp(v, "closed") && strcmp(v, "open")) fatal("config line %d: mode must be closed or open", lineno);
            cfg.open = !strcmp(v, "open");
            have_mode = true;
        } else if (!strcmp(k, "rate_rps")) {
            cfg.rate_rps = parse_double(v, k, lineno);
            if (cfg.rate_rps <= 0) fatal("config line %d: rate_rps must be above 0", lineno);
            have_rate = true;
        } else if (!strcmp(k, "arrival")) {
            if (strcmp(v, "constant") && strcmp(v, "poisson"))
                fatal("config line %d: arrival must be constant or poisson", lineno);
            cfg.poisson = !strcmp(v, "poisson");
        } else if (!strcmp(k, "seed")) {
            char *end;
            errno = 0;
            cfg.seed = strtoull(v, &end, 10);
            if (end == v || *end || errno || v[0] == '-') fatal("config line %d: seed must be an unsigned 64-bit integer", lineno);
        } else if (!strcmp(k, "timeout_s")) {
            cfg.timeout_s = parse_double(v, k, lineno);
            if (cfg.timeout_s <= 0) fatal("config line %d: timeout_s must be above 0", lineno);
            have_timeout = true;
        } else if (!strcmp(k, "flush_s")) {
            cfg.flush_s = parse_double(v, k, lineno);
            if (cfg.flush_s <= 0) fatal("config line %d: flush_s must be above 0", lineno);
        } else if (!strcmp(k, "max_run_s")) {
            cfg.max_run_s = parse_double(v, k, lineno);
            if (cfg.max_run_s <= 0) fatal("config line %d: max_run_s must be above 0", lineno);
        } else if (!strcmp(k, "slice_s")) {
            cfg.slice_s = parse_double(v, k, lineno);
            if (cfg.slice_s < 0) fatal("config line %d: slice_s must not be negative", lineno);
        } else if (!strcmp(k, "samples_path")) {
            cfg.samples_path = xstrdup(v);
        } else if (!strcmp(k, "started_path")) {
            cfg.started_path = xstrdup(v);
        } else if (!strcmp(k, "meta_path")) {
            cfg.meta_path = xstrdup(v);
        } else if (!strcmp(k, "stop_path")) {
            cfg.stop_path = xstrdup(v);
        } else if (!strcmp(k, "pattern")) {
            parse_pattern(v, lineno);
        } else if (!strcmp(k, "target")) {
            parse_target(v, lineno);
        } else if (!strcmp(k, "target_requests")) {
            last_target(k, lineno)->requests_path = xstrdup(v);
        } else if (!strcmp(k, "target_output")) {
            struct target *t = last_target(k, lineno);
            t->output = v[0] ? xstrdup(v) : NULL;
        } else {
            fatal("config line %d: unknown key '%s'", lineno, k);
        }
    }
    free(line);
    fclose(f);
    if (!cfg.users) fatal("config: users is missing");
    if (!have_mode) fatal("config: mode is missing");
    if (!have_timeout) fatal("config: timeout_s is missing");
    if (cfg.open && !have_rate) fatal("config: mode open needs rate_rps");
    if (!cfg.samples_path || !cfg.started_path || !cfg.meta_path || !cfg.stop_path)
        fatal("config: samples_path, started_path, meta_path and stop_path are all required");
    if (cfg.ntargets == 0) fatal("config: no target");
    if (cfg.ntargets > 1 && cfg.slice_s <= 0) fatal("config: %d targets need slice_s above 0", cfg.ntargets);
    for (size_t i = 0; i < cfg.npattern; i++)
        if (cfg.pattern[i] >= cfg.ntargets)
            fatal("config: pattern names target %d of %d", cfg.pattern[i], cfg.ntargets);
    for (int i = 0; i < cfg.ntargets; i++)
        if (!cfg.targets[i].requests_path) fatal("config: target %d has no target_requests", i);
}

static void load_requests(struct target *t, int index) {
    size_t size;
    t->data = read_file(t->requests_path, &size, "requests file");
    size_t at = 0, cap = 0;
    while (at < size) {
        if (size - at < 8) fatal("requests file %s ends inside a length", t->requests_path);
        uint64_t len = 0;
        for (int i = 7; i >= 0; i--) len = (len << 8) | (unsigned char)t->data[at + (size_t)i];
        at += 8;
        if (len == 0 || len > size - at)
            fatal("requests file %s: request %zu claims %llu bytes, %zu remain", t->requests_path, t->n,
                  (unsigned long long)len, size - at);
        if (t->n == cap) {
            cap = cap ? cap * 2 : 16;
            t->off = xrealloc(t->off, cap * sizeof *t->off);
            t->len = xrealloc(t->len, cap * sizeof *t->len);
        }
        t->off[t->n] = at;
        t->len[t->n++] = (size_t)len;
        at += (size_t)len;
    }
    if (t->n == 0) fatal("requests file %s (target %d) holds no requests", t->requests_path, index);
    /* resolved once: the driver passes an address, and a lookup per connect would cost a lot */
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(t->host, t->port, &hints, &ai);
    if (rc != 0) fatal("cannot resolve target %d host %s: %s", index, t->host, gai_strerror(rc));
    memcpy(&t->addr, ai->ai_addr, ai->ai_addrlen);
    t->addr_len = ai->ai_addrlen;
    t->family = ai->ai_family;
    freeaddrinfo(ai);
}

/* ------------------------------------------------------------------ JSON walker */

static const char *json_err;

static inline const char *js_ws(const char *p, const char *e) {
    while (p < e && (unsigned char)*p <= ' ' && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
    return p;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* p at the opening quote; returns past the closing one, or NULL */
static const char *js_string(const char *p, const char *e) {
    p++;
    while (p < e) {
        unsigned char c = (unsigned char)*p;
        if (c == '"') return p + 1;
        if (c < 0x20) return json_err = "control character in string", NULL;
        if (c == '\\') {
            if (e - p < 2) break;
            char x = p[1];
            if (x == 'u') {
                if (e - p < 6 || hexval(p[2]) < 0 || hexval(p[3]) < 0 || hexval(p[4]) < 0 || hexval(p[5]) < 0)
                    return json_err = "invalid \\u escape", NULL;
                p += 6;
            } else if (x && strchr("\"\\/bfnrt", x)) {
                p += 2;
            } else {
                return json_err = "invalid escape", NULL;
            }
        } else if (c < 0x80) {
            p++;
        } else {
            uint32_t cp;
            size_t n = utf8_len((const unsigned char *)p, (const unsigned char *)e, &cp);
            if (!n) return json_err = "invalid UTF-8", NULL;
            p += n;
        }
    }
    return json_err = "unterminated string", NULL;
}

static bool starts(const char *p, const char *e, const char *word) {
    size_t n = strlen(word);
    return (size_t)(e - p) >= n && !memcmp(p, word, n);
}

static inline bool is_digit(char c) { return (unsigned char)(c - '0') < 10; }

/* The document ends with a NUL (see classify), which stops every loop here without a bounds
 * check per digit: numbers are most of the bytes a model answers with. */
static const char *js_number(const char *p, const char *e) {
    if (*p == '-') {
        p++;
        if (starts(p, e, "Infinity")) return p + 8;
    }
    if (!is_digit(*p)) return json_err = "expecting value", NULL;
    if (*p == '0') p++;
    else while (is_digit(*p)) p++;
    if (*p == '.' && is_digit(p[1])) {
        p += 2;
        while (is_digit(*p)) p++;
    }
    if (*p == 'e' || *p == 'E') {
        const char *q = p + 1;
        if (*q == '+' || *q == '-') q++;
        if (is_digit(*q)) {
            while (is_digit(*q)) q++;
            p = q;
        }
    }
    return p;
}

/* Skip (and check) one value at p (no leading whitespace); returns past it, or NULL. */
static const char *js_value(const char *p, const char *e, int depth) {
    if (p >= e) return json_err = "expecting value", NULL;
    switch (*p) {
    case '"':
        return js_string(p, e);
    case '{':
    case '[': {
        if (depth >= JSON_MAX_DEPTH) return json_err = "nested too deeply", NULL;
        char close = *p == '{' ? '}' : ']';
        p = js_ws(p + 1, e);
        if (p < e && *p == close) return p + 1;
        for (;;) {
            if (close == '}') {
                if (p >= e || *p != '"') return json_err = "expecting property name", NULL;
                if (!(p = js_string(p, e))) return NULL;
                p = js_ws(p, e);
                if (p >= e || *p != ':') return json_err = "expecting ':'", NULL;
                p = js_ws(p + 1, e);
            }
            /* numbers are most of a model's outputs: no call and dispatch for them */
            p = p < e && (is_digit(*p) || *p == '-') ? js_number(p, e) : js_value(p, e, depth + 1);
            if (!p) return NULL;
            p = js_ws(p, e);
            if (p < e && *p == close) return p + 1;
            if (p >= e || *p != ',') return json_err = "expecting ',' delimiter", NULL;
            p = js_ws(p + 1, e);
        }
    }
    case 't':
        return starts(p, e, "true") ? p + 4 : (json_err = "expecting value", NULL);
    case 'f':
        return starts(p, e, "false") ? p + 5 : (json_err = "expecting value", NULL);
    case 'n':
        return starts(p, e, "null") ? p + 4 : (json_err = "expecting value", NULL);
    case 'N':
        return starts(p, e, "NaN") ? p + 3 : (json_err = "expecting value", NULL);
    case 'I':
        return starts(p, e, "Infinity") ? p + 8 : (json_err = "expecting value", NULL);
    default:
        return js_number(p, e);
    }
}

/* Bytes that end a number or literal, or open/close something: what js_skip stops at. */
static bool js_stop[256];

static void js_init(void) {
    for (const char *c = ",]}[{\" \t\r\n"; *c; c++) js_stop[(unsigned char)*c] = true;
}

/*
 * Past the value at p in a document js_value has already checked and the caller has ended with
 * a NUL (checked JSON holds none of its own): only strings and brackets matter then, and
 * strcspn (vectorised in glibc) jumps between them. The outputs of a batch can be hundreds of
 * kilobytes of numbers, and parsing them again to reach or count them cost more than the rest
 * of the request.
 */
static const char *js_skip(const char *p, const char *e) {
    if (*p != '[' && *p != '{' && *p != '"') {
        while (p < e && !js_stop[(unsigned char)*p]) p++;
        return p;
    }
    int depth = 0;
    for (;;) {
        p += strcspn(p, "\"[]{}");
        char c = *p++;
        if (c == '"') {
            for (;;) {
                p += strcspn(p, "\"\\");
                if (*p++ == '"') break;
                p++; /* the escaped character */
            }
            if (depth == 0) return p;
        } else if (c == '[' || c == '{') {
            depth++;
        } else if (--depth == 0) {
            return p;
        }
    }
}

/* Whether the JSON string s..q (between its quotes) decodes to key[0..n). */
static bool js_key_equals(const char *s, const char *q, const char *key, size_t n) {
    if (!memchr(s, '\\', (size_t)(q - s))) return (size_t)(q - s) == n && !memcmp(s, key, n);
    size_t k = 0;
    while (s < q) {
        char tmp[4];
        size_t m = 1;
        if (*s != '\\') {
            tmp[0] = *s++;
        } else if (s[1] != 'u') {
            char x = s[1];
            tmp[0] = x == 'b' ? '\b' : x == 'f' ? '\f' : x == 'n' ? '\n' : x == 'r' ? '\r' : x == 't' ? '\t' : x;
            s += 2;
        } else {
            uint32_t c = (uint32_t)(hexval(s[2]) << 12 | hexval(s[3]) << 8 | hexval(s[4]) << 4 | hexval(s[5]));
            s += 6;
            if (c >= 0xd800 && c < 0xdc00 && q - s >= 6 && s[0] == '\\' && s[1] == 'u') {
                uint32_t lo = (uint32_t)(hexval(s[2]) << 12 | hexval(s[3]) << 8 | hexval(s[4]) << 4 | hexval(s[5]));
                if (lo >= 0xdc00 && lo < 0xe000) {
                    c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
                    s += 6;
                }
            }
            m = utf8_put(tmp, c); /* a lone surrogate gets bytes no UTF-8 key has */
        }
        if (k + m > n || memcmp(tmp, key + k, m)) return false;
        k += m;
    }
    return k == n;
}

/* A list index as predict.py's _at_path takes one: digits, optionally after a minus. */
static bool path_index(const char *seg, size_t n, long *out) {
    size_t i = seg[0] == '-' ? 1 : 0;
    if (i == n || n - i > 18) return false;
    long v = 0;
    for (; i < n; i++) {
        if (!is_digit(seg[i])) return false;
        v = v * 10 + (seg[i] - '0');
    }
    *out = seg[0] == '-' ? -v : v;
    return true;
}

/* Number of elements of the (valid) array at p, and its first element. */
static long js_array_len(const char *p, const char *e, const char **first) {
    long n = 0;
    p = js_ws(p + 1, e);
    *first = p;
    if (*p == ']') return 0;
    for (;;) {
        p = js_ws(js_skip(p, e), e);
        n++;
        if (*p == ']') return n;
        p = js_ws(p + 1, e);
    }
}

/* The value at a dotted path in a valid document, as predict.py's _at_path; NULL if absent. */
static const char *js_at_path(const char *p, const char *e, const char *path) {
    while (*path) {
        const char *dot = strchr(path, '.');
        size_t n = dot ? (size_t)(dot - path) : strlen(path);
        if (*p == '{') {
            const char *found = NULL; /* the last duplicate key wins, as in a Python dict */
            p = js_ws(p + 1, e);
            while (*p == '"') {
                const char *q = js_skip(p, e);
                bool match = js_key_equals(p + 1, q - 1, path, n);
                p = js_ws(js_ws(q, e) + 1, e);
                if (match) found = p;
                p = js_ws(js_skip(p, e), e);
                if (*p == ',') p = js_ws(p + 1, e);
            }
            if (!found) return NULL;
            p = found;
        } else if (*p == '[') {
            long i;
            const char *first;
            if (!path_index(path, n, &i)) return NULL;
            long len = js_array_len(p, e, &first);
            if (i < -len || i >= len) return NULL;
            if (i < 0) i += len;
            p = first;
            for (; i > 0; i--) p = js_ws(js_ws(js_skip(p, e), e) + 1, e);
        } else {
            return NULL;
        }
        path += n + (dot ? 1 : 0);
        if (!dot) break;
    }
    return p;
}

/* Examples' outputs in the value at p, by predict.py's _row_count; -1: another shape. */
static long js_row_count(const char *p, const char *e, long width) {
    bool free_width = width == -1 || width == 1;
    if (*p == '[') {
        const char *first;
        long n = js_array_len(p, e, &first);
        if (n == 0 || *first == '[' || *first == '{' || free_width) return n;
        return n == width ? 1 : -1;
    }
    if ((*p == '-' || is_digit(*p) || *p == 'N' || *p == 'I') && free_width) return 1;
    return -1;
}

/* ------------------------------------------------------------------ connections */

static uint64_t conn_key(int user, int target, uint32_t gen) {
    return ((uint64_t)((uint32_t)(user * cfg.ntargets + target)) << 32) | gen;
}

static void conn_close(struct conn *c) {
    if (c->fd < 0) return;
    close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->events = 0;
    c->gen++;
}

static bool conn_watch(struct conn *c, int user, int target, uint32_t events) {
    if (c->events == events) return true;
    struct epoll_event ev = {.events = events, .data.u64 = conn_key(user, target, c->gen)};
    if (epoll_ctl(run.epfd, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) != 0) return false;
    c->events = events;
    return true;
}

/* ------------------------------------------------------------------ users */

static void start_request(struct user *u, double now);
static void user_free(struct user *u, double now);

/* Room for `want` bytes of response; the buffer is kept for the user's later responses. */
static bool grow(struct user *u, size_t want) {
    if (want <= u->cap) return true;
    if (want > MAX_RESPONSE_BYTES) return false;
    size_t cap = u->cap ? u->cap : FIRST_BUFFER_BYTES;
    while (cap < want) cap *= 2;
    u->buf = xrealloc(u->buf, cap);
    u->cap = cap;
    return true;
}

static int target_now(double t) {
    if (cfg.ntargets == 1) return 0;
    long k = (long)(t / cfg.slice_s);
    return (size_t)k < cfg.npattern ? cfg.pattern[k] : (int)(k % cfg.ntargets);
}

static void user_done(struct user *u) {
    timer_clear(u);
    u->state = S_DONE;
    u->holds_due = false;
    run.active--;
}

/* Record a finished exchange and move the user on. */
static void end_exchange(struct user *u, double now, enum outcome outcome, const char *msg, size_t msg_len) {
    timer_clear(u);
    double service_ms = (now - u->sent) * 1000.0;
    struct row *r = new_row();
    r->outcome = (uint8_t)outcome;
    r->target = u->target;
    if (cfg.open) {
        double delay_s = u->sent > u->due ? u->sent - u->due : 0.0;
        double late_s = u->sent - (u->due > u->free_at ? u->due : u->free_at);
        r->start_s = u->due;
        r->latency_ms = delay_s * 1000.0 + service_ms;
        r->late_ms = late_s > 0 ? late_s * 1000.0 : 0.0;
        r->service_ms = service_ms;
    } else {
        r->start_s = u->sent;
        r->latency_ms = service_ms;
        r->late_ms = 0.0;
        r->service_ms = -1.0;
    }
    if (msg_len) store_message(r, msg, msg_len);
    run.requests++;
    u->holds_due = false;
    if (outcome == OUT_CONNECTION) {
        /* a dead server must not turn the engine into a busy loop of identical failures */
        if (run.stopping && !cfg.open) {
            user_done(u);
        } else {
            u->state = S_BACKOFF;
            timer_set(u, now + CONNECTION_BACKOFF_S);
        }
        return;
    }
    user_free(u, now);
}

static void fail(struct user *u, double now, enum outcome outcome, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void fail(struct user *u, double now, enum outcome outcome, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    conn_close(&u->conns[u->target]);
    end_exchange(u, now, outcome, msg, n < 0 ? 0 : (size_t)n >= sizeof msg ? sizeof msg - 1 : (size_t)n);
}

/* "<prefix><first body bytes>" as a raw message: store_message makes it valid text. */
static size_t body_message(char *msg, size_t cap, size_t prefix_len, const char *body, size_t body_len) {
    if (prefix_len >= cap) prefix_len = cap - 1;
    size_t n = body_len < BODY_TEXT_BYTES ? body_len : BODY_TEXT_BYTES;
    if (n > cap - prefix_len) n = cap - prefix_len;
    memcpy(msg + prefix_len, body, n);
    return prefix_len + n;
}

/* predict.py's _classify for a complete response. */
static void classify(struct user *u, double now) {
    const struct target *t = &cfg.targets[u->target];
    const char *body = u->buf + u->body_start;
    size_t blen = u->body_end - u->body_start;
    double service_ms = (now - u->sent) * 1000.0;
    char msg[1024];
    int p;
    if (u->status && (u->status < 200 || u->status > 299)) { /* "HTTP/1.1 000" is not 2xx either */
        p = snprintf(msg, sizeof msg, "HTTP %d: ", u->status);
        end_exchange(u, now, OUT_HTTP_STATUS, msg, body_message(msg, sizeof msg, (size_t)p, body, blen));
        return;
    }
    if (service_ms > cfg.timeout_s * 1000.0) {
        p = snprintf(msg, sizeof msg, "took %.1f ms (limit %gs)", service_ms, cfg.timeout_s);
        end_exchange(u, now, OUT_TIMEOUT, msg, (size_t)p);
        return;
    }
    if (u->status != 200) {
        p = snprintf(msg, sizeof msg, "HTTP %d is not 200: ", u->status);
        end_exchange(u, now, OUT_BAD_PAYLOAD, msg, body_message(msg, sizeof msg, (size_t)p, body, blen));
        return;
    }
    if (!t->output) {
        end_exchange(u, now, OUT_OK, NULL, 0);
        return;
    }
    if (!grow(u, u->body_end + 1)) {
        end_exchange(u, now, OUT_BAD_PAYLOAD, "response too large to check", 27);
        return;
    }
    body = u->buf + u->body_start; /* grow may have moved it */
    u->buf[u->body_end] = '\0';    /* js_skip's sentinel */
    const char *e = body + blen, *v = body;
    if (blen >= 3 && !memcmp(v, "\xef\xbb\xbf", 3)) v += 3; /* json.loads(bytes) accepts a BOM */
    v = js_ws(v, e);
    const char *end = js_value(v, e, 0);
    if (end && js_ws(end, e) != e) {
        json_err = "extra data";
        end = NULL;
    }
    if (!end) {
        p = snprintf(msg, sizeof msg, "response is not JSON (%s): ", json_err);
        end_exchange(u, now, OUT_BAD_PAYLOAD, msg, body_message(msg, sizeof msg, (size_t)p, body, blen));
        return;
    }
    const char *at = js_at_path(v, e, t->output);
    if (!at) {
        p = snprintf(msg, sizeof msg, "nothing at '%s' in response: ", t->output);
        end_exchange(u, now, OUT_BAD_PAYLOAD, msg, body_message(msg, sizeof msg, (size_t)p, body, blen));
        return;
    }
    long count = js_row_count(at, e, t->width);
    if (count != t->rows) {
        if (count < 0)
            p = snprintf(msg, sizeof msg, "outputs of another shape for %ld examples at '%s'", t->rows, t->output);
        else
            p = snprintf(msg, sizeof msg, "%ld output rows for %ld examples at '%s'", count, t->rows, t->output);
        end_exchange(u, now, OUT_BAD_PAYLOAD, msg, (size_t)p < sizeof msg ? (size_t)p : sizeof msg - 1);
        return;
    }
    end_exchange(u, now, OUT_OK, NULL, 0);
}

/* ------------------------------------------------------------------ HTTP response parsing */

static const char *parse_err;
static char parse_err_buf[160];

static bool header_is(const char *name, size_t n, const char *want) {
    return strlen(want) == n && !strncasecmp(name, want, n);
}

static void trim(const char **s, const char **e) {
    while (*s < *e && (**s == ' ' || **s == '\t')) (*s)++;
    while (*e > *s && ((*e)[-1] == ' ' || (*e)[-1] == '\t')) (*e)--;
}

static bool contains_token(const char *s, const char *e, const char *token) {
    size_t n = strlen(token);
    for (; s + n <= e; s++)
        if (!strncasecmp(s, token, n)) return true;
    return false;
}

/* Status line and headers of a complete head buf[0..end); false with parse_err if not HTTP. */
static bool parse_head(struct user *u, size_t end) {
    const char *h = u->buf, *he = u->buf + end;
    const char *eol = memmem(h, (size_t)(he - h), "\r\n", 2);
    if (!eol) eol = he;
    const char *sp = memchr(h, ' ', (size_t)(eol - h));
    const char *code = sp ? sp + 1 : eol, *code_end = code;
    while (code_end < eol && is_digit(*code_end)) code_end++;
    if ((size_t)(eol - h) < 5 || memcmp(h, "HTTP/", 5) || !sp || code_end == code || code_end - code > 9 ||
        (code_end < eol && *code_end != ' ')) {
        int n = (int)(eol - h < 80 ? eol - h : 80);
        snprintf(parse_err_buf, sizeof parse_err_buf, "not an HTTP response: '%.*s'", n, h);
        parse_err = parse_err_buf;
        return false;
    }
    u->status = atoi(code);
    bool http10 = sp - h == 8 && !memcmp(h, "HTTP/1.0", 8);
    bool close = false, chunked = false, have_length = false;
    size_t length = 0;
    for (const char *line = eol + 2; line < he;) {
        const char *le = memmem(line, (size_t)(he - line), "\r\n", 2);
        if (!le) le = he;
        const char *colon = memchr(line, ':', (size_t)(le - line));
        if (colon) {
            const char *name = line, *name_end = colon, *v = colon + 1, *ve = le;
            trim(&name, &name_end);
            trim(&v, &ve);
            size_t nn = (size_t)(name_end - name);
            if (header_is(name, nn, "content-length")) {
                if (v == ve || ve - v > 15) goto bad_length;
                length = 0;
                for (const char *c = v; c < ve; c++) {
                    if (!is_digit(*c)) goto bad_length;
                    length = length * 10 + (size_t)(*c - '0');
                }
                have_length = true;
            } else if (header_is(name, nn, "transfer-encoding")) {
                chunked = contains_token(v, ve, "chunked");
            } else if (header_is(name, nn, "connection")) {
                close = contains_token(v, ve, "close");
            }
        }
        line = le + 2;
    }
    u->keep = !close && !http10;
    u->body_start = u->body_end = u->pos = end + 4;
    if (chunked) {
        u->ps = PS_CHUNK_SIZE;
    } else if (have_length || u->status == 204 || u->status == 304) {
        u->ps = PS_BODY;
        u->need = have_length ? length : 0;
        if (u->need > MAX_RESPONSE_BYTES) goto bad_length;
        if (!grow(u, u->body_start + u->need)) goto bad_length; /* one realloc, not one per read */
    } else {
        u->ps = PS_UNTIL_CLOSE;
        u->keep = false;
    }
    return true;
bad_length:
    parse_err = "bad Content-Length";
    return false;
}

/* 1: response complete, 0: need more bytes, -1: bad HTTP (parse_err). */
static int parse_response(struct user *u, bool eof) {
    for (;;) {
        switch (u->ps) {
        case PS_HEAD: {
            size_t from = u->scan;
            char *end = u->len - from >= 4 ? memmem(u->buf + from, u->len - from, "\r\n\r\n", 4) : NULL;
            if (!end) {
                if (u->len > MAX_HEAD_BYTES) return parse_err = "response headers too long", -1;
                u->scan = u->len >= 3 ? u->len - 3 : 0;
                return 0;
            }
            if (!parse_head(u, (size_t)(end - u->buf))) return -1;
            if (u->status >= 100 && u->status < 200 && u->status != 101) {
                /* an interim response: the real one follows it */
                size_t rest = u->len - u->body_start;
                memmove(u->buf, u->buf + u->body_start, rest);
                u->len = rest;
                u->scan = 0;
                u->ps = PS_HEAD;
            }
            break;
        }
        case PS_BODY:
            if (u->len - u->body_start < u->need) return 0;
            u->body_end = u->pos = u->body_start + u->need;
            return 1;
        case PS_CHUNK_SIZE: {
            char *eol = memmem(u->buf + u->pos, u->len - u->pos, "\r\n", 2);
            if (!eol) return u->len - u->pos > MAX_CHUNK_LINE_BYTES ? (parse_err = "chunk size line too long", -1) : 0;
            const char *c = u->buf + u->pos;
            while (c < eol && (*c == ' ' || *c == '\t')) c++;
            size_t size = 0;
            int digits = 0;
            for (int h; c < eol && (h = hexval(*c)) >= 0; c++, digits++) {
                size = size * 16 + (size_t)h;
                if (size > MAX_RESPONSE_BYTES) return parse_err = "chunk too large", -1;
            }
            while (c < eol && (*c == ' ' || *c == '\t')) c++;
            if (!digits || (c < eol && *c != ';')) return parse_err = "bad chunk size line", -1; /* ; = extension */
            u->pos = (size_t)(eol - u->buf) + 2;
            u->need = size;
            u->ps = size ? PS_CHUNK_DATA : PS_TRAILER;
            break;
        }
        case PS_CHUNK_DATA:
            if (u->len - u->pos < u->need + 2) {
                if (!grow(u, u->pos + u->need + 2)) return parse_err = "response too large", -1;
                return 0;
            }
            if (u->buf[u->pos + u->need] != '\r' || u->buf[u->pos + u->need + 1] != '\n')
                return parse_err = "chunk not followed by CRLF", -1;
            /* the body is gathered in place, right after the head */
            memmove(u->buf + u->body_end, u->buf + u->pos, u->need);
            u->body_end += u->need;
            u->pos += u->need + 2;
            u->ps = PS_CHUNK_SIZE;
            break;
        case PS_TRAILER: {
            char *eol = memmem(u->buf + u->pos, u->len - u->pos, "\r\n", 2);
            if (!eol) return u->len - u->pos > MAX_HEAD_BYTES ? (parse_err = "trailer too long", -1) : 0;
            bool last = eol == u->buf + u->pos;
            u->pos = (size_t)(eol - u->buf) + 2;
            if (last) return 1;
            break;
        }
        case PS_UNTIL_CLOSE:
            if (!eof) return 0;
            u->body_end = u->pos = u->len;
            return 1;
        }
    }
}

/* ------------------------------------------------------------------ the exchange */

static void send_more(struct user *u, double now) {
    struct conn *c = &u->conns[u->target];
    int uid = (int)(u - users);
    while (u->req_sent < u->req_len) {
        ssize_t n = send(c->fd, u->req + u->req_sent, u->req_len - u->req_sent, MSG_NOSIGNAL);
        if (n > 0) {
            u->req_sent += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!conn_watch(c, uid, u->target, EPOLLIN | EPOLLOUT))
                fail(u, now, OUT_CONNECTION, "epoll_ctl: %s", strerror(errno));
            return;
        } else {
            fail(u, now, OUT_CONNECTION, "send: %s", strerror(errno));
            return;
        }
    }
    u->state = S_RECEIVING;
    if (!conn_watch(c, uid, u->target, EPOLLIN)) fail(u, now, OUT_CONNECTION, "epoll_ctl: %s", strerror(errno));
}

static void start_request(struct user *u, double now) {
    int t = target_now(now);
    struct target *tg = &cfg.targets[t];
    size_t i = tg->cursor;
    tg->cursor = i + 1 == tg->n ? 0 : i + 1;
    u->target = t;
    u->req = tg->data + tg->off[i];
    u->req_len = tg->len[i];
    u->req_sent = 0;
    u->seq++;
    u->sent = now;
    u->len = u->scan = 0;
    u->ps = PS_HEAD;
    timer_set(u, now + cfg.timeout_s);
    struct conn *c = &u->conns[t];
    if (c->fd >= 0) {
        u->state = S_SENDING;
        send_more(u, now);
        return;
    }
    int fd = socket(tg->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fail(u, now, OUT_CONNECTION, "socket: %s", strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->events = 0;
    int rc = connect(fd, (struct sockaddr *)&tg->addr, tg->addr_len);
    if (rc != 0 && errno != EINPROGRESS) {
        fail(u, now, OUT_CONNECTION, "connect: %s", strerror(errno));
        return;
    }
    if (!conn_watch(c, (int)(u - users), t, rc == 0 ? EPOLLIN : EPOLLIN | EPOLLOUT)) {
        fail(u, now, OUT_CONNECTION, "epoll_ctl: %s", strerror(errno));
        return;
    }
    if (rc == 0) {
        u->state = S_SENDING;
        send_more(u, now);
    } else {
        u->state = S_CONNECTING;
    }
}

/* Read what the socket has; classify once the response is complete. */
static void receive(struct user *u) {
    struct conn *c = &u->conns[u->target];
    if (u->len == u->cap && !grow(u, u->cap + 1)) {
        fail(u, now_s(), OUT_CONNECTION, "response over %zu bytes", MAX_RESPONSE_BYTES);
        return;
    }
    ssize_t n;
    do n = recv(c->fd, u->buf + u->len, u->cap - u->len, 0);
    while (n < 0 && errno == EINTR);
    double now = now_s();
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) fail(u, now, OUT_CONNECTION, "recv: %s", strerror(errno));
        return;
    }
    u->len += (size_t)n;
    int r = parse_response(u, n == 0);
    if (r < 0) {
        fail(u, now, OUT_CONNECTION, "bad HTTP response: %s", parse_err);
        return;
    }
    if (r == 0) {
        if (n == 0) fail(u, now, OUT_CONNECTION, "the server closed the connection");
        return;
    }
    /* bytes beyond the response (or a response to a request not fully sent) leave the
     * connection in an unknown state: start afresh */
    if (!u->keep || u->pos != u->len || u->state != S_RECEIVING || n == 0) conn_close(c);
    classify(u, now);
}

static void on_event(uint64_t key, uint32_t events) {
    uint32_t slot = (uint32_t)(key >> 32);
    int uid = (int)(slot / (uint32_t)cfg.ntargets), t = (int)(slot % (uint32_t)cfg.ntargets);
    struct user *u = &users[uid];
    struct conn *c = &u->conns[t];
    if ((uint32_t)key != c->gen || c->fd < 0) return; /* from a socket closed earlier in this batch */
    bool busy = u->target == t && (u->state == S_CONNECTING || u->state == S_SENDING || u->state == S_RECEIVING);
    if (!busy) {
        /* an idle keep-alive connection: the server closed it, or sent what nobody asked for */
        char scratch[512];
        ssize_t n = recv(c->fd, scratch, sizeof scratch, MSG_DONTWAIT);
        if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) conn_close(c);
        return;
    }
    if (u->state == S_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
        if (err) {
            fail(u, now_s(), OUT_CONNECTION, "connect: %s", strerror(err));
            return;
        }
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        u->state = S_SENDING;
        send_more(u, now_s());
        return;
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        uint32_t seq = u->seq;
        receive(u);
        if (u->seq != seq || (uint32_t)key != c->gen) return; /* that exchange has ended */
    }
    if (u->state == S_SENDING && (events & EPOLLOUT)) send_more(u, now_s());
}

/* ------------------------------------------------------------------ the users' loop */

/* Open loop at the due time the user holds: true if it sent; false if it gave up on that due
 * time (waited longer than the timeout for a free slot) and should take the next. */
static bool at_due(struct user *u, double now) {
    if (now - u->due <= cfg.timeout_s) {
        start_request(u, now);
        return true;
    }
    char msg[200];
    double waited_ms = (now - u->due) * 1000.0;
    int n = snprintf(msg, sizeof msg, "not sent: waited %.0f ms for a free in-flight slot (limit %gs)", waited_ms,
                     cfg.timeout_s);
    struct row *r = new_row();
    r->start_s = u->due;
    r->latency_ms = waited_ms;
    r->outcome = OUT_TIMEOUT;
    r->late_ms = 0.0;
    r->service_ms = 0.0;
    r->target = target_now(now);
    store_message(r, msg, (size_t)n);
    u->holds_due = false;
    return false;
}

/* The user has no request in flight: send the next one, or wait for its due time. */
static void user_free(struct user *u, double now) {
    if (!cfg.open) {
        if (run.stopping) user_done(u);
        else start_request(u, now);
        return;
    }
    for (;;) {
        u->free_at = now;
        double due = schedule_next();
        if (due >= run.stop_due) {
            user_done(u);
            return;
        }
        u->due = due;
        u->holds_due = true;
        if (due > now) {
            u->state = S_WAIT_DUE;
            timer_set(u, due);
            return;
        }
        if (at_due(u, now)) return;
        now = now_s();
    }
}

static void on_timer(struct user *u, double now) {
    switch (u->state) {
    case S_UNSTARTED:
        if (++run.started == cfg.users) run.spawned_s = now;
        user_free(u, now);
        break;
    case S_BACKOFF:
        if (run.stopping && !cfg.open) user_done(u);
        else user_free(u, now);
        break;
    case S_WAIT_DUE:
        if (!at_due(u, now)) user_free(u, now);
        break;
    case S_CONNECTING:
    case S_SENDING:
    case S_RECEIVING:
        fail(u, now, OUT_TIMEOUT, "Timeout: no response within %gs (limit %gs)", cfg.timeout_s, cfg.timeout_s);
        break;
    case S_DONE:
        break;
    }
}

/* ------------------------------------------------------------------ stop */

/* true with *due once the driver's stop file is there */
static bool read_stop_file(double now, double *due) {
    int fd = open(cfg.stop_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return false;
    char b[4096];
    ssize_t n = read(fd, b, sizeof b - 1);
    close(fd);
    b[n > 0 ? n : 0] = '\0';
    const char *p = strstr(b, "\"stop_due_s\"");
    if (p) {
        p += 12;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (*p == ':') {
            char *end;
            double v = strtod(p + 1, &end);
            if (end != p + 1 && isfinite(v)) {
                *due = v;
                return true;
            }
        }
    }
    /* the driver writes it atomically, so this is a broken writer: retry briefly, then stop now */
    if (++run.stop_file_failures < STOP_FILE_RETRIES) return false;
    fprintf(stderr, "harness-load: warning: %s holds no stop_due_s; stopping now\n", cfg.stop_path);
    *due = now;
    return true;
}

static void begin_stop(double now, double stop_due) {
    run.stopping = true;
    run.stop_s = now;
    run.stop_due = stop_due;
    run.drain_deadline = now + 2.0 * cfg.timeout_s + 5.0;
    for (int i = 0; i < cfg.users; i++) {
        struct user *u = &users[i];
        switch (u->state) {
        case S_UNSTARTED:
            user_done(u);
            break;
        case S_BACKOFF:
            if (!cfg.open) user_done(u);
            break;
        case S_WAIT_DUE:
            if (u->due >= stop_due) user_done(u);
            break;
        default:
            break; /* in flight: finishes (bounded by its timeout), then stops or drains */
        }
    }
}

static void finish(void) {
    if (run.active > 0 && cfg.open)
        for (int i = 0; i < cfg.users; i++)
            if (users[i].state != S_DONE && users[i].holds_due && users[i].due < run.stop_due) run.undrained++;
    flush_rows();
    if (close(run.samples_fd) != 0) fatal("cannot write %s: %s", cfg.samples_path, strerror(errno));
    char meta[512], spawned[64];
    if (run.spawned_s < 0) snprintf(spawned, sizeof spawned, "null");
    else snprintf(spawned, sizeof spawned, "%.6f", run.spawned_s);
    snprintf(meta, sizeof meta,
             "{\"test_start_epoch_s\": %.6f, \"spawning_complete_s\": %s, \"stop_s\": %.6f, "
             "\"requests\": %lld, \"undrained\": %lld, \"pid\": %d}\n",
             run.epoch0, spawned, run.stop_s, run.requests, run.undrained, (int)getpid());
    write_json_atomic(cfg.meta_path, meta);
}

/* ------------------------------------------------------------------ main loop */

static int wait_events(struct epoll_event *events, double wait_s) {
#ifdef SYS_epoll_pwait2
    /* epoll_pwait2: a nanosecond timeout; epoll_wait's milliseconds would show up in late_ms */
    static bool unavailable = false;
    if (!unavailable) {
        struct { int64_t tv_sec, tv_nsec; } ts;
        ts.tv_sec = (int64_t)wait_s;
        ts.tv_nsec = (int64_t)((wait_s - (double)ts.tv_sec) * 1e9);
        if (ts.tv_nsec > 999999999) ts.tv_nsec = 999999999;
        int n = (int)syscall(SYS_epoll_pwait2, run.epfd, events, MAX_EVENTS, &ts, NULL, 0);
        if (n >= 0 || errno != ENOSYS) return n;
        unavailable = true;
    }
#endif
    return epoll_wait(run.epfd, events, MAX_EVENTS, (int)ceil(wait_s * 1000.0));
}

static void setup(void) {
    signal(SIGPIPE, SIG_IGN);
    /* timer slack (50 us by default) would be added to every due time's wake-up */
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    struct rlimit rl;
    rlim_t want = (rlim_t)cfg.users * (rlim_t)cfg.ntargets + 64;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < want) {
        rl.rlim_cur = rl.rlim_max < want ? rl.rlim_max : want;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    run.epfd = epoll_create1(EPOLL_CLOEXEC);
    if (run.epfd < 0) fatal("epoll_create1: %s", strerror(errno));
    users = xrealloc(NULL, (size_t)cfg.users * sizeof *users);
    heap = xrealloc(NULL, (size_t)cfg.users * sizeof *heap);
    for (int i = 0; i < cfg.users; i++) {
        struct user *u = &users[i];
        memset(u, 0, sizeof *u);
        u->heap_pos = -1;
        u->conns = xrealloc(NULL, (size_t)cfg.ntargets * sizeof *u->conns);
        for (int t = 0; t < cfg.ntargets; t++) u->conns[t] = (struct conn){.fd = -1};
    }
    uint64_t x = cfg.seed;
    for (int i = 0; i < 4; i++) run.rng[i] = splitmix64(&x);
    run.stop_due = INFINITY;
    run.spawned_s = -1.0;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: harness-load CONFIG_PATH\n");
        fatal("expected one argument, the config file");
    }
    js_init();
    load_config(argv[1]);
    for (int i = 0; i < cfg.ntargets; i++) load_requests(&cfg.targets[i], i);
    setup();

    /* the test starts */
    clock_gettime(CLOCK_MONOTONIC, &run.t0);
    struct timespec real;
    clock_gettime(CLOCK_REALTIME, &real);
    run.epoch0 = (double)real.tv_sec + (double)real.tv_nsec * 1e-9;
    run.samples_fd = open(cfg.samples_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (run.samples_fd < 0) fatal("cannot write %s: %s", cfg.samples_path, strerror(errno));
    static const char header[] = "start_s,latency_ms,outcome,late_ms,service_ms,target,message\n";
    write_all(run.samples_fd, header, sizeof header - 1, cfg.samples_path);
    char started[128];
    snprintf(started, sizeof started, "{\"test_start_epoch_s\": %.6f}\n", run.epoch0);
    write_json_atomic(cfg.started_path, started);
    for (int i = 0; i < cfg.users; i++) timer_set(&users[i], cfg.spawn_rate > 0 ? i / cfg.spawn_rate : 0.0);
    run.active = cfg.users;

    struct epoll_event events[MAX_EVENTS];
    double next_control = CONTROL_POLL_S, next_flush = cfg.flush_s;
    for (;;) {
        double now = now_s();
        while (heap_n > 0 && users[heap[0]].deadline <= now) {
            struct user *u = &users[heap[0]];
            timer_clear(u);
            on_timer(u, now);
            now = now_s();
        }
        if (now >= next_control) {
            next_control = now + CONTROL_POLL_S;
            double due;
            if (!run.stopping && now > cfg.max_run_s) begin_stop(now, now); /* the driver is gone */
            else if (!run.stopping && read_stop_file(now, &due)) begin_stop(now, due);
        }
        if (now >= next_flush) {
            flush_rows();
            next_flush += cfg.flush_s;
            if (next_flush <= now) next_flush = now + cfg.flush_s;
        }
        if (run.stopping && (run.active == 0 || now >= run.drain_deadline)) break;
        double wake = next_control < next_flush ? next_control : next_flush;
        if (heap_n > 0 && users[heap[0]].deadline < wake) wake = users[heap[0]].deadline;
        if (run.stopping && run.drain_deadline < wake) wake = run.drain_deadline;
        double wait_s = wake - now_s();
        int n = wait_events(events, wait_s > 0 ? wait_s : 0.0);
        if (n < 0) {
            if (errno == EINTR) continue;
            fatal("epoll_wait: %s", strerror(errno));
        }
        for (int i = 0; i < n; i++) on_event(events[i].data.u64, events[i].events);
    }
    finish();
    return 0;
}
