#include "rundir.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

int tcd_rundir_socket(char *out, size_t cap)
{
    const char *xdg = getenv("XDG_RUNTIME_DIR");
    char dir[256];
    struct stat st;
    int n;
    if (xdg && xdg[0] == '/')
        n = snprintf(dir, sizeof(dir), "%s/tiercached", xdg);
    else if (geteuid() == 0)
        n = snprintf(dir, sizeof(dir), "/run/tiercached");
    else
        n = snprintf(dir, sizeof(dir), "/tmp/tiercached-%lu",
                     (unsigned long)geteuid());
    if (n < 0 || (size_t)n >= sizeof(dir)) {
        tcd_error("runtime directory path too long; give --socket");
        return -1;
    }
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        tcd_error("cannot create %s: %s; give --socket", dir, strerror(errno));
        return -1;
    }
    if (lstat(dir, &st) != 0) {
        tcd_error("%s: %s; give --socket", dir, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(st.st_mode) || st.st_uid != geteuid() ||
        (st.st_mode & 022) != 0) {
        tcd_error("refusing %s for the socket: it must be a directory owned "
                  "by uid %lu and not writable by group or others (it is %s, "
                  "uid %lu, mode %04o); fix it or give --socket", dir,
                  (unsigned long)geteuid(),
                  S_ISDIR(st.st_mode) ? "a directory"
                  : S_ISLNK(st.st_mode) ? "a symlink" : "not a directory",
                  (unsigned long)st.st_uid, (unsigned)(st.st_mode & 07777));
        return -1;
    }
    n = snprintf(out, cap, "%s/tiercached.sock", dir);
    if (n < 0 || (size_t)n >= cap) {
        tcd_error("%s/tiercached.sock is too long for a socket path; give "
                  "--socket", dir);
        return -1;
    }
    return 0;
}
