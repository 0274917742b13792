/*
 * reference-consumer: a minimal player for the dmx-agent consumer protocol
 * (native/docs/consumer-protocol.md). Read this next to the document.
 *
 *   reference-consumer --socket PATH [--count N] [--hold-ms M]
 *                      [--release-bad] [--no-release] [--json]
 *
 * Connects (PATH may be "@name" for an abstract socket), reads HELLO, then for
 * each BUFFER: takes the dmabuf fd from SCM_RIGHTS, checks its size, mmaps
 * bytesused read-only, checks a 0x47 sync byte every 188 bytes and the TS
 * continuity counter of every PID across buffers, holds the buffer for M ms,
 * then munmaps, closes the fd and sends RELEASE (in that order: the memory is
 * not touched after RELEASE). After N buffers (0: until the agent hangs up)
 * it releases what it holds, sends GOODBYE and prints a one-line summary.
 *
 *   --release-bad  after the first BUFFER, RELEASE an index it does not hold
 *                  (the agent must answer ERROR BAD_RELEASE and hang up)
 *   --no-release   never RELEASE (the agent's hold timeout must hang up)
 *   --json         the summary as one JSON object on stdout
 *
 * Exit: 0 done; 1 usage, connect or protocol failure; 2 an fd leaked or a
 * dmabuf was smaller than announced; 3 rejected (another player is
 * connected). Bad sync bytes and CC gaps are reported, not fatal.
 *
 * Only libc and Linux headers. Single-threaded: one poll() loop.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <linux/dma-buf.h>
#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- Wire format (all integers little-endian) -------------------------- */
#define MAGIC 0x43584D44u /* "DMXC" */
#define VERSION 1
#define HEADER_SIZE 16
#define MAX_MESSAGE 256
enum { T_HELLO = 1, T_BUFFER = 2, T_RELEASE = 3, T_REJECT = 4, T_ERROR = 5, T_GOODBYE = 6 };
static const char *code_name(uint32_t c) {
  static const char *names[] = {"NONE", "BUSY", "BAD_MESSAGE", "BAD_RELEASE", "HOLD_TIMEOUT",
                                "SHUTDOWN"};
  return c < sizeof(names) / sizeof(names[0]) ? names[c] : "UNKNOWN";
}

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const uint8_t *p) { return get32(p) | (uint64_t)get32(p + 4) << 32; }
static void put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void put32(uint8_t *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static void put_header(uint8_t *p, uint16_t type, uint32_t body) {
  put32(p, MAGIC);
  put16(p + 4, VERSION);
  put16(p + 6, type);
  put32(p + 8, body);
  put32(p + 12, 0);
}

/* ---- State -------------------------------------------------------------- */
struct held {
  int used;
  uint32_t index, sequence, epoch;
  int fd;
  void *map;
  size_t map_len;
  uint64_t release_at_ms; /* UINT64_MAX: never (--no-release) */
};
#define MAX_HELD 1024
static struct held held[MAX_HELD];
static int held_now;
static int sock = -1;

static struct {
  uint64_t buffers, bytes, bad_sync, cc_gaps, seq_gaps, size_errors, released, extra;
  int max_held;
  int sync_ok, sync_enotty;
  char stream_id[33];
  uint32_t max_in_flight, hold_timeout_ms, agent_pid, epoch;
  int got_hello;
  const char *agent_error; /* ERROR/GOODBYE code name from the agent */
  char agent_text[97];
  char rejected[97];
  const char *ended_by;
} st;

static int cc_last[8192]; /* per PID; -1 = not seen yet */
static int have_last_seq;
static uint32_t last_seq, last_seq_epoch;

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int count_open_fds(void) {
  int n = 0;
  DIR *d = opendir("/proc/self/fd");
  if (!d) return -1;
  for (struct dirent *e; (e = readdir(d));)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n - 1; /* not the one opendir used */
}

static int send_message(const uint8_t *m, size_t len) {
  ssize_t n = send(sock, m, len, MSG_NOSIGNAL);
  if (n != (ssize_t)len) {
    fprintf(stderr, "reference-consumer: send: %s\n", strerror(errno));
    return -1;
  }
  return 0;
}

static int send_release(uint32_t index, uint32_t sequence, uint32_t epoch) {
  uint8_t m[HEADER_SIZE + 16] = {0};
  put_header(m, T_RELEASE, 16);
  put32(m + 16, index);
  put32(m + 20, sequence);
  put32(m + 24, epoch);
  return send_message(m, sizeof m);
}

/* The fd rule: stop touching the memory (munmap), close our fd, then RELEASE. */
static void finish(struct held *h, int release) {
  if (h->map) munmap(h->map, h->map_len);
  close(h->fd);
  if (release && send_release(h->index, h->sequence, h->epoch) == 0) st.released++;
  h->used = 0;
  held_now--;
}

/* Checks sync bytes and continuity counters of the TS packets in one buffer. */
static void check_ts(const uint8_t *p, size_t len) {
  for (size_t off = 0; off + 188 <= len; off += 188) {
    const uint8_t *pkt = p + off;
    if (pkt[0] != 0x47) {
      st.bad_sync++;
      continue;
    }
    if (pkt[1] & 0x80) continue; /* transport error indicator: header untrustworthy */
    int pid = (pkt[1] & 0x1f) << 8 | pkt[2];
    if (pid == 0x1fff) continue; /* null packets carry no CC */
    int afc = (pkt[3] >> 4) & 3, cc = pkt[3] & 0x0f;
    if ((afc & 2) && pkt[4] > 0 && (pkt[5] & 0x80)) { /* discontinuity_indicator */
      cc_last[pid] = cc;
      continue;
    }
    if (!(afc & 1)) continue; /* no payload: CC does not advance */
    if (cc_last[pid] >= 0 && cc != ((cc_last[pid] + 1) & 0x0f) && cc != cc_last[pid]) st.cc_gaps++;
    cc_last[pid] = cc;
  }
}

static void dmabuf_sync(int fd, uint64_t flags) {
  struct dma_buf_sync s = {.flags = flags | DMA_BUF_SYNC_READ};
  if (ioctl(fd, DMA_BUF_IOCTL_SYNC, &s) == 0) {
    st.sync_ok = 1;
  } else if (errno == ENOTTY) {
    st.sync_enotty = 1; /* memfd-backed simulation buffer: nothing to sync */
  } else {
    fprintf(stderr, "reference-consumer: DMA_BUF_IOCTL_SYNC: %s\n", strerror(errno));
  }
}

static void on_buffer(const uint8_t *b, int fd, uint64_t count, uint32_t hold_ms, int no_release) {
  uint32_t index = get32(b + 32), bytesused = get32(b + 36), sequence = get32(b + 44);
  uint32_t epoch = get32(b + 52);
  uint64_t dmabuf_size = get64(b + 56);

  if (count && st.buffers >= count) { /* past --count: not ours to process */
    close(fd);
    st.extra++;
    if (!no_release) send_release(index, sequence, epoch);
    return;
  }
  st.buffers++;
  st.bytes += bytesused;
  if (have_last_seq && epoch == last_seq_epoch && sequence != last_seq + 1) st.seq_gaps++;
  have_last_seq = 1;
  last_seq = sequence;
  last_seq_epoch = epoch;

  off_t end = lseek(fd, 0, SEEK_END);
  if (end < 0 || (uint64_t)end < bytesused || (uint64_t)end != dmabuf_size) {
    fprintf(stderr, "reference-consumer: buffer %u: dmabuf is %lld bytes, bytesused %u, announced %llu\n",
            index, (long long)end, bytesused, (unsigned long long)dmabuf_size);
    st.size_errors++;
    bytesused = 0; /* do not map what is not there */
  }
  void *map = NULL;
  if (bytesused > 0) {
    map = mmap(NULL, bytesused, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
      fprintf(stderr, "reference-consumer: mmap buffer %u: %s\n", index, strerror(errno));
      map = NULL;
    } else {
      dmabuf_sync(fd, DMA_BUF_SYNC_START);
      check_ts(map, bytesused);
      dmabuf_sync(fd, DMA_BUF_SYNC_END);
    }
  }

  struct held *h = NULL;
  for (int i = 0; i < MAX_HELD && !h; i++)
    if (!held[i].used) h = &held[i];
  if (!h) { /* table full: let go at once */
    if (map) munmap(map, bytesused);
    close(fd);
    if (!no_release && send_release(index, sequence, epoch) == 0) st.released++;
    return;
  }
  *h = (struct held){1, index, sequence, epoch, fd, map, bytesused,
                     no_release ? UINT64_MAX : now_ms() + hold_ms};
  if (++held_now > st.max_held) st.max_held = held_now;
}

static void copy_text(char *dst, const uint8_t *src, size_t n) {
  memcpy(dst, src, n);
  dst[n] = 0;
}

/* Reads one message. Returns 0 when the agent closed the connection, -1 on error. */
static int read_message(uint64_t count, uint32_t hold_ms, int no_release, int release_bad) {
  uint8_t m[MAX_MESSAGE + 1];
  union {
    struct cmsghdr align;
    char space[CMSG_SPACE(4 * sizeof(int))];
  } control;
  struct iovec iov = {m, sizeof m};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control.space,
                       .msg_controllen = sizeof control.space};
  ssize_t n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  if (n < 0) {
    static int resets;
    if (errno == EINTR) return 1;
    /* A peer closing with our messages unread makes recv fail with
       ECONNRESET once, ahead of what is still queued: read on. */
    if (errno == ECONNRESET) return resets++ ? 0 : 1;
    fprintf(stderr, "reference-consumer: recvmsg: %s\n", strerror(errno));
    return -1;
  }
  /* Collect the fds; a BUFFER carries exactly one, nothing else carries any. */
  int fds[4], nfds = 0;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int) && nfds < 4; i++)
      memcpy(&fds[nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
  }
  if (n == 0) return 0;
  uint16_t type = n >= HEADER_SIZE ? get16(m + 6) : 0;
  int bad = n < HEADER_SIZE || (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || get32(m) != MAGIC ||
            get16(m + 4) != VERSION || get32(m + 8) != (uint32_t)n - HEADER_SIZE ||
            nfds != (type == T_BUFFER ? 1 : 0);
  if (bad) {
    for (int i = 0; i < nfds; i++) close(fds[i]);
    fprintf(stderr, "reference-consumer: malformed message (%zd bytes, type %u, %d fds)\n", n, type, nfds);
    return -1;
  }
  const uint8_t *b = m + HEADER_SIZE;
  uint32_t body = (uint32_t)n - HEADER_SIZE;
  switch (type) {
    case T_HELLO:
      if (body < 48) return -1;
      copy_text(st.stream_id, b, 32);
      st.max_in_flight = get32(b + 32);
      st.hold_timeout_ms = get32(b + 36);
      st.agent_pid = get32(b + 40);
      st.epoch = get32(b + 44);
      st.got_hello = 1;
      break;
    case T_BUFFER:
      if (body < 72) {
        close(fds[0]);
        return -1;
      }
      on_buffer(b, fds[0], count, hold_ms, no_release);
      if (release_bad && st.buffers == 1) /* an index we certainly do not hold */
        send_release(get32(b + 32) + 1000, get32(b + 44), get32(b + 52));
      break;
    case T_REJECT:
      copy_text(st.rejected, b + 16, 96);
      break;
    case T_ERROR:
    case T_GOODBYE:
      st.agent_error = code_name(get32(b));
      copy_text(st.agent_text, b + 16, 96);
      break;
    default: /* unknown agent messages are ignored (protocol rule) */
      break;
  }
  return 1;
}

static int connect_to(const char *path) {
  struct sockaddr_un a = {.sun_family = AF_UNIX};
  size_t len = strlen(path);
  if (len == 0 || len >= sizeof a.sun_path + (path[0] == '@')) {
    fprintf(stderr, "reference-consumer: socket path too long\n");
    return -1;
  }
  memcpy(a.sun_path, path, len);
  socklen_t alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
  if (path[0] == '@') { /* abstract name: leading 0, no terminator */
    a.sun_path[0] = 0;
    alen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
  }
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, alen) < 0) {
    fprintf(stderr, "reference-consumer: connect %s: %s\n", path, strerror(errno));
    if (fd >= 0) close(fd);
    return -1;
  }
  return fd;
}

static void json_string(const char *s) {
  if (!s) {
    fputs("null", stdout);
    return;
  }
  putchar('"');
  for (; *s; s++) {
    if (*s == '"' || *s == '\\') printf("\\%c", *s);
    else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
    else putchar(*s);
  }
  putchar('"');
}

static void usage(void) {
  fprintf(stderr,
          "usage: reference-consumer --socket PATH [--count N] [--hold-ms M] [--release-bad] "
          "[--no-release] [--json]\n");
  exit(1);
}

int main(int argc, char **argv) {
  const char *path = NULL;
  uint64_t count = 0;
  uint32_t hold_ms = 0;
  int release_bad = 0, no_release = 0, json = 0;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--socket") && i + 1 < argc) path = argv[++i];
    else if (!strcmp(argv[i], "--count") && i + 1 < argc) count = strtoull(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--hold-ms") && i + 1 < argc) hold_ms = (uint32_t)strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--release-bad")) release_bad = 1;
    else if (!strcmp(argv[i], "--no-release")) no_release = 1;
    else if (!strcmp(argv[i], "--json")) json = 1;
    else usage();
  }
  if (!path) usage();
  memset(cc_last, -1, sizeof cc_last);

  int fd_start = count_open_fds();
  sock = connect_to(path);
  if (sock < 0) return 1;

  int failed = 0;
  for (;;) {
    /* Release what is due; find the next deadline. */
    uint64_t now = now_ms(), next = UINT64_MAX;
    for (int i = 0; i < MAX_HELD; i++) {
      if (!held[i].used) continue;
      if (held[i].release_at_ms <= now) finish(&held[i], 1);
      else if (held[i].release_at_ms < next) next = held[i].release_at_ms;
    }
    if (st.rejected[0]) {
      st.ended_by = "rejected";
      break;
    }
    if (count && st.buffers >= count && held_now == 0) {
      uint8_t bye[HEADER_SIZE + 112] = {0}; /* GOODBYE, code NONE */
      put_header(bye, T_GOODBYE, 112);
      send_message(bye, sizeof bye);
      st.ended_by = "count";
      break;
    }
    int timeout = next == UINT64_MAX ? -1 : (int)(next - now);
    struct pollfd p = {sock, POLLIN, 0};
    if (poll(&p, 1, timeout) < 0 && errno != EINTR) {
      perror("reference-consumer: poll");
      failed = 1;
      break;
    }
    if (!(p.revents & (POLLIN | POLLHUP | POLLERR))) continue;
    int r = read_message(count, hold_ms, no_release, release_bad);
    if (r == 0) {
      st.ended_by = "agent-closed";
      break;
    }
    if (r < 0) {
      st.ended_by = "error";
      failed = 1;
      break;
    }
  }

  /* Whatever is still held: unmap and close (the connection is going away). */
  int held_at_end = held_now;
  for (int i = 0; i < MAX_HELD; i++)
    if (held[i].used) finish(&held[i], 0);
  close(sock);
  int fd_end = count_open_fds();

  if (json) {
    printf("{\"buffers\":%llu,\"bytes\":%llu,\"badSync\":%llu,\"ccGaps\":%llu,\"seqGaps\":%llu,"
           "\"sizeErrors\":%llu,\"released\":%llu,\"extra\":%llu,\"heldAtEnd\":%d,\"maxHeld\":%d,",
           (unsigned long long)st.buffers, (unsigned long long)st.bytes,
           (unsigned long long)st.bad_sync, (unsigned long long)st.cc_gaps,
           (unsigned long long)st.seq_gaps, (unsigned long long)st.size_errors,
           (unsigned long long)st.released, (unsigned long long)st.extra, held_at_end, st.max_held);
    printf("\"sync\":\"%s\",\"hello\":", st.sync_ok ? "dmabuf" : st.sync_enotty ? "enotty" : "none");
    if (st.got_hello) {
      printf("{\"streamId\":");
      json_string(st.stream_id);
      printf(",\"maxInFlight\":%u,\"holdTimeoutMs\":%u,\"agentPid\":%u,\"epoch\":%u}",
             st.max_in_flight, st.hold_timeout_ms, st.agent_pid, st.epoch);
    } else {
      printf("null");
    }
    printf(",\"agentError\":");
    json_string(st.agent_error);
    printf(",\"agentText\":");
    json_string(st.agent_error ? st.agent_text : NULL);
    printf(",\"rejected\":");
    json_string(st.rejected[0] ? st.rejected : NULL);
    printf(",\"endedBy\":");
    json_string(st.ended_by);
    printf(",\"fdStart\":%d,\"fdEnd\":%d,\"fdLeak\":%d}\n", fd_start, fd_end, fd_end - fd_start);
  } else {
    printf("%llu buffers, %llu bytes, %llu bad sync, %llu CC gaps, %llu released, ended by %s%s%s%s, "
           "fds %d -> %d\n",
           (unsigned long long)st.buffers, (unsigned long long)st.bytes,
           (unsigned long long)st.bad_sync, (unsigned long long)st.cc_gaps,
           (unsigned long long)st.released, st.ended_by ? st.ended_by : "?",
           st.agent_error ? " (agent: " : "", st.agent_error ? st.agent_text : "",
           st.agent_error ? ")" : "", fd_start, fd_end);
  }
  if (failed) return 1;
  if (st.rejected[0]) return 3;
  if (fd_end != fd_start || st.size_errors) return 2;
  return 0;
}
