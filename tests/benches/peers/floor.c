/* The floor of the peer bench: the least a supervisor can do. Starts N copies of a command
 * (fork + exec, no shell), reaps and respawns each one at once when it exits, and on SIGTERM
 * stops them all (SIGTERM, then waits) and exits. With --cg NAME each child gets fresh memory,
 * pids and cpuacct cgroups (<mount>/<ctrl>/NAME/c<slot>-<gen>), joined between fork and exec as
 * robokud does, and removed once the child is reaped. With --log FILE every child's stdout and
 * stderr are FILE opened O_APPEND (a plain write to a file: the floor of log capture).
 *
 * Usage: floor [--cg NAME] [--log FILE] N CMD [ARG...]
 * Sleeps in sigwaitinfo: no timers, no polling, so idle costs nothing. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *CTRL[] = {"memory", "pids", "cpuacct"};
#define NCTRL 3

static char *cg_name;
static int log_fd = -1;
static char **argv_cmd;
static pid_t *pids;
static unsigned *gens;
static long n;

static void cg_path(char *out, size_t len, int c, long slot, unsigned gen, const char *file) {
    snprintf(out, len, "/sys/fs/cgroup/%s/%s/c%ld-%u%s%s", CTRL[c], cg_name, slot, gen,
             file ? "/" : "", file ? file : "");
}

static void spawn(long slot) {
    int fds[NCTRL];
    char p[512];
    if (cg_name) {
        for (int c = 0; c < NCTRL; c++) {
            cg_path(p, sizeof p, c, slot, gens[slot], NULL);
            if (mkdir(p, 0755) < 0 && errno != EEXIST) {
                fprintf(stderr, "floor: mkdir %s: %s\n", p, strerror(errno));
                exit(1);
            }
            cg_path(p, sizeof p, c, slot, gens[slot], "cgroup.procs");
            fds[c] = open(p, O_WRONLY | O_CLOEXEC);
            if (fds[c] < 0) {
                fprintf(stderr, "floor: open %s: %s\n", p, strerror(errno));
                exit(1);
            }
        }
    }
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "floor: fork: %s\n", strerror(errno));
        exit(1);
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        setsid();
        if (log_fd >= 0 && (dup2(log_fd, 1) < 0 || dup2(log_fd, 2) < 0))
            _exit(126);
        if (cg_name)
            for (int c = 0; c < NCTRL; c++)
                if (write(fds[c], "0", 1) < 0)
                    _exit(126);
        execvp(argv_cmd[0], argv_cmd);
        _exit(127);
    }
    if (cg_name)
        for (int c = 0; c < NCTRL; c++)
            close(fds[c]);
    pids[slot] = pid;
}

static long slot_of(pid_t pid) {
    for (long i = 0; i < n; i++)
        if (pids[i] == pid)
            return i;
    return -1;
}

/* Reaps what has exited; returns how many of ours were reaped (respawned unless stopping). */
static long reap(int respawn) {
    long reaped = 0;
    pid_t pid;
    while ((pid = waitpid(-1, NULL, WNOHANG)) > 0) {
        long s = slot_of(pid);
        if (s < 0)
            continue;
        reaped++;
        pids[s] = 0;
        if (cg_name) {
            char p[512];
            for (int c = 0; c < NCTRL; c++) {
                cg_path(p, sizeof p, c, s, gens[s], NULL);
                rmdir(p);
            }
        }
        gens[s]++;
        if (respawn)
            spawn(s);
    }
    return reaped;
}

int main(int argc, char **argv) {
    int a = 1;
    if (a + 1 < argc && strcmp(argv[a], "--cg") == 0) {
        cg_name = argv[a + 1];
        a += 2;
    }
    if (a + 1 < argc && strcmp(argv[a], "--log") == 0) {
        log_fd = open(argv[a + 1], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd < 0) {
            fprintf(stderr, "floor: open %s: %s\n", argv[a + 1], strerror(errno));
            return 1;
        }
        a += 2;
    }
    if (a + 1 >= argc) {
        fprintf(stderr, "usage: floor [--cg NAME] [--log FILE] N CMD [ARG...]\n");
        return 2;
    }
    n = strtol(argv[a], NULL, 10);
    argv_cmd = &argv[a + 1];
    pids = calloc(n, sizeof *pids);
    gens = calloc(n, sizeof *gens);
    if (!pids || !gens)
        return 1;
    if (cg_name)
        for (int c = 0; c < NCTRL; c++) {
            char p[512];
            snprintf(p, sizeof p, "/sys/fs/cgroup/%s/%s", CTRL[c], cg_name);
            if (mkdir(p, 0755) < 0 && errno != EEXIST) {
                fprintf(stderr, "floor: mkdir %s: %s\n", p, strerror(errno));
                return 1;
            }
        }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigprocmask(SIG_BLOCK, &set, NULL);
    for (long i = 0; i < n; i++)
        spawn(i);
    for (;;) {
        siginfo_t si;
        int sig = sigwaitinfo(&set, &si);
        if (sig == SIGCHLD) {
            reap(1);
            continue;
        }
        if (sig == SIGTERM || sig == SIGINT)
            break;
    }
    long live = 0;
    for (long i = 0; i < n; i++)
        if (pids[i] > 0) {
            kill(pids[i], SIGTERM);
            live++;
        }
    while (live > 0) {
        siginfo_t si;
        if (sigwaitinfo(&set, &si) == SIGCHLD)
            live -= reap(0);
    }
    if (cg_name)
        for (int c = 0; c < NCTRL; c++) {
            char p[512];
            snprintf(p, sizeof p, "/sys/fs/cgroup/%s/%s", CTRL[c], cg_name);
            rmdir(p);
        }
    return 0;
}
