/*
 * The calls the benchmark loop (dmx-loop.c) makes to the kernel. Two
 * backends implement them:
 *   bench-sys-kernel.c  straight to libc: the plain C program run on the
 *                       real kernel (vidtv + vim2m in the VM);
 *   bench-sys-sim.cc    the agent's simulated kernel (native/src/sim/), the
 *                       same SimSys the addon's objects call on the host.
 * So one loop, the same ioctl sequence, runs against both. libc conventions:
 * -1 (or MAP_FAILED) with errno set on failure.
 */
#ifndef DMX_BENCH_SYS_H
#define DMX_BENCH_SYS_H

#include <poll.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What a simulated receiver needs to know; the kernel backend ignores it. */
struct bench_sim_options {
  uint64_t bitrate;        /* the synthetic transport stream, bits/s */
  int processing_delay_ms; /* the simulated vim2m's transaction time */
};

/* 0, or -1 with a message on stderr. */
int bsys_init(const struct bench_sim_options *options);
void bsys_shutdown(void);
const char *bsys_name(void);

int bsys_open(const char *path, int flags);
int bsys_close(int fd);
int bsys_ioctl(int fd, unsigned long request, void *arg);
void *bsys_mmap(size_t length, int prot, int flags, int fd, off_t offset);
int bsys_munmap(void *addr, size_t length);
int bsys_poll(struct pollfd *fds, nfds_t nfds, int timeout_ms);
ssize_t bsys_read(int fd, void *buf, size_t count);
/* /dev/videoN of the V4L2 device called `name` (sysfs), by name, never by number. */
int bsys_find_video(const char *name, char *path, size_t size);

#ifdef __cplusplus
}
#endif

#endif
