/*
 * The baseline of benchmark rows 1 and 2 (test/bench/data-path.mjs and
 * zero-copy.mjs): one stream from the demux into a V4L2 memory-to-memory
 * decoder, written the way a C programmer would, libdvbv5-style, with
 * nothing between the ioctls.
 *
 *   --mode mmap  the agent's data path: DMX_REQBUFS, mmap and DMX_EXPBUF
 *                once, then poll, DMX_DQBUF, VIDIOC_QBUF on the decoder's
 *                OUTPUT queue with V4L2_MEMORY_DMABUF, VIDIOC_DQBUF, DMX_QBUF.
 *   --mode read  what tvheadend and GStreamer's dvbsrc do: read() from the
 *                DVR into a buffer of our own, memcpy into the decoder's
 *                MMAP OUTPUT buffers, VIDIOC_QBUF, VIDIOC_DQBUF.
 *
 * In both the CAPTURE queue cycles (VIDIOC_DQBUF, VIDIOC_QBUF) as the
 * agent's pump does, since vim2m processes nothing without it. The same
 * source is built against the kernel (bench-sys-kernel.c) and against the
 * agent's simulated kernel (bench-sys-sim.cc); native/bench/build.sh.
 *
 * After --warmup-ms it measures --measure-ms: the loop thread's CPU time
 * (CLOCK_THREAD_CPUTIME_ID, user + system), the buffer cycles completed (a
 * buffer back from the decoder and ready again), the bytes taken from the
 * DVR and the bytes this program copied. It prints one JSON line, with the
 * whole run's buffer cycles and bytes as totalBuffers and totalBytes. The loop, warm-up and
 * window alike, is dmx_bench_loop(), so that callgrind can count the loop's
 * instructions and nothing else (--toggle-collect=dmx_bench_loop), as it
 * counts the pump thread's (dmx::PumpCore::Run).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/dvb/dmx.h>
#include <linux/dvb/frontend.h>
#include <linux/videodev2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "bench-sys.h"

#define MAX_BUFFERS 32
#define IDLE_TICK_MS 200
#define QUIET_NS (20 * 1000000ull)

enum mode { MODE_MMAP, MODE_READ };

struct options {
  enum mode mode;
  int pool_on_dvr; /* mmap: the pool on dvr0 (TS tap) or on demux0 (TS-demux tap) */
  unsigned pid;
  unsigned count, size, capture;
  unsigned width, height;
  unsigned frequency;
  unsigned warmup_ms, measure_ms;
  struct bench_sim_options sim;
};

struct counters {
  uint64_t buffers, bytes, copied, polls, overflows;
};

struct loop {
  struct options o;
  int frontend, demux, dvr, decoder;
  int pool_fd; /* the node whose buffers cycle: dvr, demux (mmap) or dvr (read) */
  /* mmap: the demux pool, and how many of its buffers the demux holds */
  unsigned pool_count, pool_queued;
  int export_fd[MAX_BUFFERS];
  uint32_t dmabuf_size[MAX_BUFFERS];
  void *pool_map[MAX_BUFFERS];
  uint32_t pool_length;
  /* read: the decoder's OUTPUT buffers and the one being filled */
  unsigned out_count;
  void *out_map[MAX_BUFFERS];
  uint32_t out_length[MAX_BUFFERS];
  unsigned free_out[MAX_BUFFERS];
  unsigned free_count;
  int filling;
  uint32_t filled;
  unsigned char *stage;
  uint64_t decoder_quiet_until;
  struct counters c;
};

static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "dmx-loop: ");
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  exit(1);
}

static void xioctl(int fd, unsigned long request, void *arg, const char *name) {
  if (bsys_ioctl(fd, request, arg) < 0) die("%s: %s", name, strerror(errno));
}

static uint64_t now_ns(clockid_t clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void tune(struct loop *l) {
  l->frontend = bsys_open("/dev/dvb/adapter0/frontend0", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (l->frontend < 0) die("open frontend0: %s", strerror(errno));
  struct dtv_property p[4];
  memset(p, 0, sizeof p);
  p[0].cmd = DTV_CLEAR;
  p[1].cmd = DTV_DELIVERY_SYSTEM;
  p[1].u.data = SYS_DVBT;
  p[2].cmd = DTV_FREQUENCY;
  p[2].u.data = l->o.frequency;
  p[3].cmd = DTV_TUNE;
  struct dtv_properties props = {.num = 4, .props = p};
  xioctl(l->frontend, FE_SET_PROPERTY, &props, "FE_SET_PROPERTY");
  for (int i = 0; i < 1000; i++) {
    fe_status_t status = 0;
    xioctl(l->frontend, FE_READ_STATUS, &status, "FE_READ_STATUS");
    if (status & FE_HAS_LOCK) return;
    usleep(10000);
  }
  die("no frontend lock in 10 s");
}

static void set_filter(struct loop *l, dmx_output_t output) {
  l->demux = bsys_open("/dev/dvb/adapter0/demux0", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (l->demux < 0) die("open demux0: %s", strerror(errno));
  struct dmx_pes_filter_params f;
  memset(&f, 0, sizeof f);
  f.pid = (uint16_t)l->o.pid;
  f.input = DMX_IN_FRONTEND;
  f.output = output;
  f.pes_type = DMX_PES_OTHER;
  f.flags = DMX_IMMEDIATE_START;
  xioctl(l->demux, DMX_SET_PES_FILTER, &f, "DMX_SET_PES_FILTER");
}

/* The demux pool: REQBUFS, QUERYBUF + mmap, EXPBUF, in libdvbv5's order. */
static void setup_pool(struct loop *l) {
  if (l->o.pool_on_dvr) {
    set_filter(l, DMX_OUT_TS_TAP);
    /* O_RDWR: the DVR allows mmap only then. */
    l->dvr = bsys_open("/dev/dvb/adapter0/dvr0", O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (l->dvr < 0) die("open dvr0: %s", strerror(errno));
    l->pool_fd = l->dvr;
  } else {
    set_filter(l, DMX_OUT_TSDEMUX_TAP);
    l->pool_fd = l->demux;
  }
  struct dmx_requestbuffers r = {.count = l->o.count, .size = l->o.size};
  xioctl(l->pool_fd, DMX_REQBUFS, &r, "DMX_REQBUFS");
  if (r.count < 2 || r.count > MAX_BUFFERS) die("DMX_REQBUFS granted %u buffers", r.count);
  l->pool_count = r.count;
  l->pool_length = r.size;
  for (unsigned i = 0; i < l->pool_count; i++) {
    struct dmx_buffer b;
    memset(&b, 0, sizeof b);
    b.index = i;
    xioctl(l->pool_fd, DMX_QUERYBUF, &b, "DMX_QUERYBUF");
    l->pool_map[i] = bsys_mmap(b.length, PROT_READ, MAP_SHARED, l->pool_fd, b.offset);
    if (l->pool_map[i] == MAP_FAILED) die("mmap pool buffer %u: %s", i, strerror(errno));
    struct dmx_exportbuffer e;
    memset(&e, 0, sizeof e);
    e.index = i;
    e.flags = O_CLOEXEC | O_RDWR;
    xioctl(l->pool_fd, DMX_EXPBUF, &e, "DMX_EXPBUF");
    l->export_fd[i] = e.fd;
    off_t end = lseek(e.fd, 0, SEEK_END);
    if (end < 0) die("lseek dmabuf: %s", strerror(errno));
    l->dmabuf_size[i] = (uint32_t)end;
  }
}

static void set_format(struct loop *l, uint32_t type) {
  struct v4l2_format f;
  memset(&f, 0, sizeof f);
  f.type = type;
  f.fmt.pix.pixelformat = V4L2_PIX_FMT_RGB24;
  f.fmt.pix.width = l->o.width;
  f.fmt.pix.height = l->o.height;
  f.fmt.pix.field = V4L2_FIELD_NONE;
  xioctl(l->decoder, VIDIOC_S_FMT, &f, "VIDIOC_S_FMT");
}

static void queue_capture(struct loop *l, unsigned index) {
  struct v4l2_buffer b;
  memset(&b, 0, sizeof b);
  b.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
  b.memory = V4L2_MEMORY_MMAP;
  b.index = index;
  xioctl(l->decoder, VIDIOC_QBUF, &b, "VIDIOC_QBUF (CAPTURE)");
}

static void setup_decoder(struct loop *l) {
  char path[64];
  if (bsys_find_video("vim2m", path, sizeof path) < 0) die("no V4L2 device named vim2m");
  l->decoder = bsys_open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (l->decoder < 0) die("open %s: %s", path, strerror(errno));
  struct v4l2_capability cap;
  memset(&cap, 0, sizeof cap);
  xioctl(l->decoder, VIDIOC_QUERYCAP, &cap, "VIDIOC_QUERYCAP");
  uint32_t caps = (cap.capabilities & V4L2_CAP_DEVICE_CAPS) ? cap.device_caps : cap.capabilities;
  if (!(caps & V4L2_CAP_VIDEO_M2M)) die("%s is not a single-planar memory-to-memory device", path);
  set_format(l, V4L2_BUF_TYPE_VIDEO_OUTPUT);
  set_format(l, V4L2_BUF_TYPE_VIDEO_CAPTURE);

  struct v4l2_requestbuffers r;
  memset(&r, 0, sizeof r);
  r.type = V4L2_BUF_TYPE_VIDEO_OUTPUT;
  if (l->o.mode == MODE_MMAP) {
    r.count = l->pool_count;
    r.memory = V4L2_MEMORY_DMABUF;
  } else {
    r.count = l->o.count;
    r.memory = V4L2_MEMORY_MMAP;
  }
  xioctl(l->decoder, VIDIOC_REQBUFS, &r, "VIDIOC_REQBUFS (OUTPUT)");
  if (r.count == 0 || r.count > MAX_BUFFERS) die("VIDIOC_REQBUFS (OUTPUT) granted %u buffers", r.count);
  if (l->o.mode == MODE_MMAP && r.count < l->pool_count) die("the decoder granted fewer OUTPUT slots than the pool");
  l->out_count = r.count;
  if (l->o.mode == MODE_READ) {
    for (unsigned i = 0; i < l->out_count; i++) {
      struct v4l2_buffer b;
      memset(&b, 0, sizeof b);
      b.type = V4L2_BUF_TYPE_VIDEO_OUTPUT;
      b.memory = V4L2_MEMORY_MMAP;
      b.index = i;
      xioctl(l->decoder, VIDIOC_QUERYBUF, &b, "VIDIOC_QUERYBUF");
      l->out_length[i] = b.length;
      l->out_map[i] = bsys_mmap(b.length, PROT_READ | PROT_WRITE, MAP_SHARED, l->decoder, b.m.offset);
      if (l->out_map[i] == MAP_FAILED) die("mmap OUTPUT buffer %u: %s", i, strerror(errno));
      if (b.length < l->o.size) die("OUTPUT buffers hold %u bytes, less than --size %u", b.length, l->o.size);
      l->free_out[l->free_count++] = i;
    }
  }

  memset(&r, 0, sizeof r);
  r.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
  r.memory = V4L2_MEMORY_MMAP;
  r.count = l->o.capture;
  xioctl(l->decoder, VIDIOC_REQBUFS, &r, "VIDIOC_REQBUFS (CAPTURE)");
  for (unsigned i = 0; i < r.count; i++) queue_capture(l, i);
  int type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
  xioctl(l->decoder, VIDIOC_STREAMON, &type, "VIDIOC_STREAMON (CAPTURE)");
  type = V4L2_BUF_TYPE_VIDEO_OUTPUT;
  xioctl(l->decoder, VIDIOC_STREAMON, &type, "VIDIOC_STREAMON (OUTPUT)");
}

static void setup_read(struct loop *l) {
  set_filter(l, DMX_OUT_TS_TAP);
  /* O_RDONLY, as the read() users open it. */
  l->dvr = bsys_open("/dev/dvb/adapter0/dvr0", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (l->dvr < 0) die("open dvr0: %s", strerror(errno));
  l->pool_fd = l->dvr;
  l->stage = malloc(l->o.size);
  if (!l->stage) die("out of memory");
  l->filling = -1;
}

static void demux_qbuf(struct loop *l, unsigned index) {
  struct dmx_buffer b;
  memset(&b, 0, sizeof b);
  b.index = index;
  xioctl(l->pool_fd, DMX_QBUF, &b, "DMX_QBUF");
  l->pool_queued++;
}

/* mmap: every filled demux buffer goes to the decoder as a DMABUF. */
static void drain_demux(struct loop *l) {
  for (unsigned n = 0; n < l->pool_count; n++) {
    struct dmx_buffer b;
    memset(&b, 0, sizeof b);
    if (bsys_ioctl(l->pool_fd, DMX_DQBUF, &b) < 0) {
      if (errno == EAGAIN) return;
      die("DMX_DQBUF: %s", strerror(errno));
    }
    l->pool_queued--;
    struct v4l2_buffer v;
    memset(&v, 0, sizeof v);
    v.type = V4L2_BUF_TYPE_VIDEO_OUTPUT;
    v.memory = V4L2_MEMORY_DMABUF;
    v.index = b.index; /* the slot of the buffer's own index: vb2 re-imports it cheaply */
    v.field = V4L2_FIELD_NONE;
    v.m.fd = l->export_fd[b.index];
    v.bytesused = b.bytesused;
    v.length = l->dmabuf_size[b.index];
    l->c.bytes += b.bytesused;
    xioctl(l->decoder, VIDIOC_QBUF, &v, "VIDIOC_QBUF (OUTPUT, DMABUF)");
  }
}

/* read: read() what the DVR has into our buffer, memcpy it into OUTPUT buffers. */
static void drain_dvr(struct loop *l) {
  for (;;) {
    if (l->filling < 0) {
      if (l->free_count == 0) return;
      l->filling = (int)l->free_out[--l->free_count];
      l->filled = 0;
    }
    ssize_t n = bsys_read(l->dvr, l->stage, l->o.size - l->filled);
    if (n < 0) {
      if (errno == EAGAIN) return;
      if (errno == EOVERFLOW) { /* the DVR ring overflowed: data lost, reading goes on */
        l->c.overflows++;
        continue;
      }
      die("read dvr0: %s", strerror(errno));
    }
    if (n == 0) return;
    l->c.bytes += (uint64_t)n;
    memcpy((unsigned char *)l->out_map[l->filling] + l->filled, l->stage, (size_t)n);
    l->c.copied += (uint64_t)n;
    l->filled += (uint32_t)n;
    if (l->filled == l->o.size) {
      struct v4l2_buffer v;
      memset(&v, 0, sizeof v);
      v.type = V4L2_BUF_TYPE_VIDEO_OUTPUT;
      v.memory = V4L2_MEMORY_MMAP;
      v.index = (uint32_t)l->filling;
      v.field = V4L2_FIELD_NONE;
      v.bytesused = l->filled;
      xioctl(l->decoder, VIDIOC_QBUF, &v, "VIDIOC_QBUF (OUTPUT, MMAP)");
      l->filling = -1;
    }
  }
}

/* Returns how many buffers it dequeued from either queue. */
static unsigned drain_decoder(struct loop *l, short revents) {
  unsigned got = 0;
  if (revents & (POLLOUT | POLLERR)) {
    for (;;) {
      struct v4l2_buffer v;
      memset(&v, 0, sizeof v);
      v.type = V4L2_BUF_TYPE_VIDEO_OUTPUT;
      v.memory = l->o.mode == MODE_MMAP ? V4L2_MEMORY_DMABUF : V4L2_MEMORY_MMAP;
      if (bsys_ioctl(l->decoder, VIDIOC_DQBUF, &v) < 0) {
        if (errno == EAGAIN || errno == EINVAL || errno == EPIPE) break;
        die("VIDIOC_DQBUF (OUTPUT): %s", strerror(errno));
      }
      got++;
      l->c.buffers++;
      if (l->o.mode == MODE_MMAP)
        demux_qbuf(l, v.index);
      else
        l->free_out[l->free_count++] = v.index;
    }
  }
  if (revents & (POLLIN | POLLERR)) {
    for (;;) {
      struct v4l2_buffer v;
      memset(&v, 0, sizeof v);
      v.type = V4L2_BUF_TYPE_VIDEO_CAPTURE;
      v.memory = V4L2_MEMORY_MMAP;
      if (bsys_ioctl(l->decoder, VIDIOC_DQBUF, &v) < 0) {
        if (errno == EAGAIN || errno == EINVAL || errno == EPIPE) break;
        die("VIDIOC_DQBUF (CAPTURE): %s", strerror(errno));
      }
      got++;
      queue_capture(l, v.index); /* headless: nobody reads the frame */
    }
  }
  return got;
}

/* Not static, not inlined: the symbol callgrind's --toggle-collect names. */
__attribute__((noinline)) void dmx_bench_loop(struct loop *l, uint64_t deadline) {
  for (;;) {
    uint64_t now = now_ns(CLOCK_MONOTONIC);
    if (now >= deadline) return;
    struct pollfd fds[2];
    nfds_t n = 0;
    int source_at = -1, decoder_at = -1;
    /* The source only while it can deliver: vb2 polls POLLERR with nothing queued. */
    if (l->o.mode == MODE_MMAP ? l->pool_queued > 0 : (l->filling >= 0 || l->free_count > 0)) {
      source_at = (int)n;
      fds[n++] = (struct pollfd){.fd = l->pool_fd, .events = POLLIN | POLLPRI};
    }
    if (now >= l->decoder_quiet_until) {
      decoder_at = (int)n;
      fds[n++] = (struct pollfd){.fd = l->decoder, .events = POLLIN | POLLOUT | POLLPRI};
    }
    uint64_t left_ms = (deadline - now) / 1000000 + 1;
    int timeout = left_ms < IDLE_TICK_MS ? (int)left_ms : IDLE_TICK_MS;
    if (decoder_at < 0 && timeout > 20) timeout = 20;
    int r = bsys_poll(fds, n, timeout);
    l->c.polls++;
    if (r < 0) {
      if (errno == EINTR) continue;
      die("poll: %s", strerror(errno));
    }
    if (source_at >= 0 && fds[source_at].revents) {
      if (l->o.mode == MODE_MMAP)
        drain_demux(l);
      else
        drain_dvr(l);
    }
    if (decoder_at >= 0 && fds[decoder_at].revents) {
      short re = fds[decoder_at].revents;
      /* v4l2_m2m_poll says POLLERR while neither queue has anything queued: don't spin on it. */
      if (drain_decoder(l, re) == 0 && (re & POLLERR)) l->decoder_quiet_until = now_ns(CLOCK_MONOTONIC) + QUIET_NS;
    }
  }
}

static unsigned parse_uint(const char *name, const char *value) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(value, &end, 0);
  if (errno || *end || v > 0xffffffffu) die("%s: not a number: %s", name, value);
  return (unsigned)v;
}

static void usage(void) {
  fprintf(stderr,
          "usage: dmx-loop [--mode mmap|read] [--pool dvr|demux] [--pid N] [--count N] [--size BYTES]\n"
          "                [--capture N] [--width N] [--height N] [--frequency HZ]\n"
          "                [--warmup-ms N] [--measure-ms N] [--bitrate BPS] [--delay-ms N]\n"
          "--bitrate and --delay-ms configure the simulated receiver (the sim build only).\n");
  exit(2);
}

int main(int argc, char **argv) {
  struct loop l;
  memset(&l, 0, sizeof l);
  l.frontend = l.demux = l.dvr = l.decoder = -1;
  l.o = (struct options){
      .mode = MODE_MMAP,
      .pool_on_dvr = 1,
      .pid = 0x2000,
      .count = 26,
      .size = 49068,
      .capture = 4,
      .width = 128,
      .height = 128,
      .frequency = 474000000,
      .warmup_ms = 1000,
      .measure_ms = 5000,
      .sim = {.bitrate = 20000000, .processing_delay_ms = 2},
  };
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (i + 1 >= argc) usage();
    const char *v = argv[++i];
    if (!strcmp(a, "--mode")) {
      if (!strcmp(v, "mmap"))
        l.o.mode = MODE_MMAP;
      else if (!strcmp(v, "read"))
        l.o.mode = MODE_READ;
      else
        usage();
    } else if (!strcmp(a, "--pool")) {
      if (!strcmp(v, "dvr"))
        l.o.pool_on_dvr = 1;
      else if (!strcmp(v, "demux"))
        l.o.pool_on_dvr = 0;
      else
        usage();
    } else if (!strcmp(a, "--pid"))
      l.o.pid = parse_uint(a, v);
    else if (!strcmp(a, "--count"))
      l.o.count = parse_uint(a, v);
    else if (!strcmp(a, "--size"))
      l.o.size = parse_uint(a, v);
    else if (!strcmp(a, "--capture"))
      l.o.capture = parse_uint(a, v);
    else if (!strcmp(a, "--width"))
      l.o.width = parse_uint(a, v);
    else if (!strcmp(a, "--height"))
      l.o.height = parse_uint(a, v);
    else if (!strcmp(a, "--frequency"))
      l.o.frequency = parse_uint(a, v);
    else if (!strcmp(a, "--warmup-ms"))
      l.o.warmup_ms = parse_uint(a, v);
    else if (!strcmp(a, "--measure-ms"))
      l.o.measure_ms = parse_uint(a, v);
    else if (!strcmp(a, "--bitrate"))
      l.o.sim.bitrate = parse_uint(a, v);
    else if (!strcmp(a, "--delay-ms"))
      l.o.sim.processing_delay_ms = (int)parse_uint(a, v);
    else
      usage();
  }
  if (l.o.mode == MODE_READ && !l.o.pool_on_dvr) die("--mode read reads the DVR: --pool demux does not apply");
  if (l.o.count < 2 || l.o.count > MAX_BUFFERS) die("--count must be 2 to %d", MAX_BUFFERS);
  if (l.o.size == 0 || l.o.size % 188) die("--size must be a positive multiple of 188");
  if (bsys_init(&l.o.sim) < 0) return 1;

  tune(&l);
  if (l.o.mode == MODE_MMAP)
    setup_pool(&l);
  else
    setup_read(&l);
  setup_decoder(&l);
  /* mmap: the first DMX_QBUF starts streaming (dmxdev.c). */
  if (l.o.mode == MODE_MMAP)
    for (unsigned i = 0; i < l.pool_count; i++) demux_qbuf(&l, i);

  uint64_t start = now_ns(CLOCK_MONOTONIC);
  dmx_bench_loop(&l, start + (uint64_t)l.o.warmup_ms * 1000000ull);
  struct counters before = l.c;
  uint64_t cpu0 = now_ns(CLOCK_THREAD_CPUTIME_ID), wall0 = now_ns(CLOCK_MONOTONIC);
  dmx_bench_loop(&l, wall0 + (uint64_t)l.o.measure_ms * 1000000ull);
  uint64_t cpu1 = now_ns(CLOCK_THREAD_CPUTIME_ID), wall1 = now_ns(CLOCK_MONOTONIC);

  printf("{\"backend\":\"%s\",\"mode\":\"%s\",\"buffers\":%" PRIu64 ",\"bytes\":%" PRIu64 ",\"copiedBytes\":%" PRIu64
         ",\"cpuNs\":%" PRIu64 ",\"wallNs\":%" PRIu64 ",\"polls\":%" PRIu64 ",\"overflows\":%" PRIu64
         ",\"totalBuffers\":%" PRIu64 ",\"totalBytes\":%" PRIu64 "}\n",
         bsys_name(), l.o.mode == MODE_MMAP ? "mmap" : "read", l.c.buffers - before.buffers, l.c.bytes - before.bytes,
         l.c.copied - before.copied, cpu1 - cpu0, wall1 - wall0, l.c.polls - before.polls,
         l.c.overflows - before.overflows, l.c.buffers, l.c.bytes);
  fflush(stdout);

  /* Closing the nodes frees both queues and the pool (there is no DMX STREAMOFF). */
  if (l.o.mode == MODE_MMAP)
    for (unsigned i = 0; i < l.pool_count; i++) bsys_close(l.export_fd[i]);
  bsys_close(l.decoder);
  if (l.dvr >= 0) bsys_close(l.dvr);
  bsys_close(l.demux);
  bsys_close(l.frontend);
  bsys_shutdown();
  free(l.stage);
  return 0;
}
