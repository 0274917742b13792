/* bench-sys.h on the real kernel: every call straight to libc. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "bench-sys.h"

int bsys_init(const struct bench_sim_options *options) {
  (void)options;
  return 0;
}

void bsys_shutdown(void) {}

const char *bsys_name(void) { return "kernel"; }

int bsys_open(const char *path, int flags) { return open(path, flags); }

int bsys_close(int fd) { return close(fd); }

int bsys_ioctl(int fd, unsigned long request, void *arg) {
  int r;
  do {
    r = ioctl(fd, request, arg);
  } while (r < 0 && errno == EINTR);
  return r;
}

void *bsys_mmap(size_t length, int prot, int flags, int fd, off_t offset) {
  return mmap(NULL, length, prot, flags, fd, offset);
}

int bsys_munmap(void *addr, size_t length) { return munmap(addr, length); }

int bsys_poll(struct pollfd *fds, nfds_t nfds, int timeout_ms) { return poll(fds, nfds, timeout_ms); }

ssize_t bsys_read(int fd, void *buf, size_t count) { return read(fd, buf, count); }

int bsys_find_video(const char *name, char *path, size_t size) {
  DIR *dir = opendir("/sys/class/video4linux");
  if (!dir) return -1;
  struct dirent *e;
  int found = -1;
  while (found < 0 && (e = readdir(dir)) != NULL) {
    if (strncmp(e->d_name, "video", 5) != 0) continue;
    char file[512], text[64] = {0};
    snprintf(file, sizeof file, "/sys/class/video4linux/%s/name", e->d_name);
    FILE *f = fopen(file, "r");
    if (!f) continue;
    if (fgets(text, sizeof text, f)) {
      text[strcspn(text, "\n")] = 0;
      if (strcmp(text, name) == 0) {
        snprintf(path, size, "/dev/%s", e->d_name);
        found = 0;
      }
    }
    fclose(f);
  }
  closedir(dir);
  if (found < 0) errno = ENOENT;
  return found;
}
