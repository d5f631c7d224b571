// The kernel's floor for each step of an `exprun run` of /bin/true: only the
// syscalls a container start cannot do without, in exprun's order, each step
// timed with CLOCK_MONOTONIC. scripts/bench-steps.sh builds and runs it beside
// exprun --debug and prints both per step.
//
// Usage: probe LOWERDIR STATEDIR CGROUP_NAME
//   LOWERDIR    the image's root filesystem (overlay lower layer), read only
//   STATEDIR    an empty directory for the record file and the run's mounts
//   CGROUP_NAME the cgroup made (and removed) in each v1 hierarchy, or in the
//               v2 hierarchy's root
// Prints one line per step: "step NAME MICROSECONDS".
// Exits 0 when /bin/true ran and everything it made is gone again.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dirent.h>

#define MAX_CG 8

static const char *V1[] = {"cpu", "cpuacct", "devices", "memory", "pids"};
static char cg_dirs[MAX_CG][512];
static int n_cg;

// Timestamps the child writes for the parent (a shared page: no pipe reads on
// the measured path).
struct marks {
    uint64_t in_cgroup, setup, rootfs, privileges;
};
static struct marks *marks;
static const char *lower, *state;

static uint64_t now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "probe: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, ": %s\n", strerror(errno));
    va_end(ap);
    _exit(125);
}

static void write_file(const char *path, const char *s) {
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, s, strlen(s)) < 0) die("writing %s", path);
    close(fd);
}

static void cgroups_make(const char *name) {
    struct stat st;
    if (stat("/sys/fs/cgroup/cgroup.controllers", &st) == 0 && stat("/sys/fs/cgroup/memory", &st) != 0) {
        snprintf(cg_dirs[n_cg++], 512, "/sys/fs/cgroup/%s", name);
    } else {
        for (size_t i = 0; i < sizeof V1 / sizeof *V1; i++)
            snprintf(cg_dirs[n_cg++], 512, "/sys/fs/cgroup/%s/%s", V1[i], name);
    }
    for (int i = 0; i < n_cg; i++)
        if (mkdir(cg_dirs[i], 0755) < 0) die("mkdir %s", cg_dirs[i]);
    // The device rules a default run writes (v1): deny all, allow the usual nodes.
    for (int i = 0; i < n_cg; i++) {
        if (!strstr(cg_dirs[i], "/devices/")) continue;
        char p[4200];
        snprintf(p, sizeof p, "%s/devices.deny", cg_dirs[i]);
        write_file(p, "a");
        static const char *allow[] = {"c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
                                      "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm"};
        snprintf(p, sizeof p, "%s/devices.allow", cg_dirs[i]);
        for (size_t j = 0; j < sizeof allow / sizeof *allow; j++) write_file(p, allow[j]);
    }
}

static void cgroups_remove(void) {
    for (int i = 0; i < n_cg; i++)
        if (rmdir(cg_dirs[i]) < 0) die("rmdir %s", cg_dirs[i]);
}

static void mnt(const char *src, const char *dst, const char *type, unsigned long flags, const char *data) {
    if (mount(src, dst, type, flags, data) < 0) die("mount %s", dst);
}

static void child_rootfs(void) {
    char run[512], upper[600], work[600], root[600], opts[2048], p[700];
    snprintf(run, sizeof run, "%s/run", state);
    // The writable layer on a tmpfs private to this mount namespace, as exprun has it.
    mnt(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL);
    mnt("tmpfs", run, "tmpfs", MS_NOSUID | MS_NODEV, "mode=700");
    snprintf(upper, sizeof upper, "%s/upper", run);
    snprintf(work, sizeof work, "%s/work", run);
    snprintf(root, sizeof root, "%s/root", run);
    if (mkdir(upper, 0755) || mkdir(work, 0700) || mkdir(root, 0755)) die("mkdir in %s", run);
    snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work);
    mnt("overlay", root, "overlay", MS_NODEV, opts);
    snprintf(p, sizeof p, "%s/proc", root);
    mnt("proc", p, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    snprintf(p, sizeof p, "%s/dev", root);
    mnt("tmpfs", p, "tmpfs", MS_NOSUID | MS_NOEXEC, "mode=755,size=65536k");
    static const char *nodes[] = {"null", "zero", "full", "random", "urandom", "tty"};
    for (size_t i = 0; i < sizeof nodes / sizeof *nodes; i++) {
        char host[64], in[700];
        snprintf(host, sizeof host, "/dev/%s", nodes[i]);
        snprintf(in, sizeof in, "%s/dev/%s", root, nodes[i]);
        int fd = open(in, O_CREAT | O_WRONLY | O_CLOEXEC, 0666);
        if (fd < 0) die("creating %s", in);
        close(fd);
        mnt(host, in, NULL, MS_BIND, NULL);
    }
    snprintf(p, sizeof p, "%s/dev/pts", root);
    mkdir(p, 0755);
    mnt("devpts", p, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620");
    snprintf(p, sizeof p, "%s/dev/shm", root);
    mkdir(p, 01777);
    mnt("shm", p, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=65536k");
    snprintf(p, sizeof p, "%s/sys", root);
    mnt("sysfs", p, "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, NULL);
    if (chdir(root) < 0) die("chdir %s", root);
    if (syscall(SYS_pivot_root, ".", ".") < 0) die("pivot_root");
    if (umount2(".", MNT_DETACH) < 0) die("umount old root");
    if (chdir("/") < 0) die("chdir /");
}

static int child(void *arg) {
    (void)arg;
    // Into the cgroup from inside, as exprun's init does (no parent write). On
    // v1 through `tasks`: moving one thread does not wait for the threadgroup
    // lock a whole-process move takes (the same for a one-thread init).
    for (int i = 0; i < n_cg; i++) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", cg_dirs[i], n_cg > 1 ? "tasks" : "cgroup.procs");
        write_file(p, "0");
    }
    marks->in_cgroup = now_us();
    if (setsid() < 0) die("setsid");
    if (sethostname("exprun", 6) < 0) die("sethostname");
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    strcpy(ifr.ifr_name, "lo");
    if (s < 0 || ioctl(s, SIOCGIFFLAGS, &ifr) < 0) die("lo flags");
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) die("lo up");
    close(s);
    marks->setup = now_us();
    child_rootfs();
    marks->rootfs = now_us();
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) die("no_new_privs");
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2] = {{0}};
    // Keep the default container set's first word (chown..kill, setgid, setuid, ...).
    d[0].effective = d[0].permitted = d[0].inheritable = 0xa80425fb;
    if (syscall(SYS_capset, &h, d) < 0) die("capset");
    marks->privileges = now_us();
    char *argv[] = {"/bin/true", NULL};
    char *envp[] = {"PATH=/bin", NULL};
    execve("/bin/true", argv, envp);
    die("execve /bin/true");
    return 0;
}

static void record(void) {
    char tmp[600], dst[600], buf[4096];
    memset(buf, ' ', sizeof buf);
    snprintf(tmp, sizeof tmp, "%s/.record.tmp", state);
    snprintf(dst, sizeof dst, "%s/record.json", state);
    int fd = open(tmp, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
    if (fd < 0 || write(fd, buf, sizeof buf) != sizeof buf || fsync(fd) < 0) die("writing %s", tmp);
    close(fd);
    if (rename(tmp, dst) < 0) die("rename %s", dst);
    int dir = open(state, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir < 0 || fsync(dir) < 0) die("fsync %s", state);
    close(dir);
    if (unlink(dst) < 0) die("unlink %s", dst);
}

int main(int argc, char **argv) {
    uint64_t t0 = now_us();
    if (argc != 4) {
        fprintf(stderr, "usage: probe LOWERDIR STATEDIR CGROUP_NAME\n");
        return 2;
    }
    lower = argv[1];
    state = argv[2];
    marks = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (marks == MAP_FAILED) die("mmap");
    char run[512];
    snprintf(run, sizeof run, "%s/run", state);
    mkdir(run, 0700);
    // Stale-run check: one directory read.
    DIR *d = opendir(state);
    if (!d) die("opendir %s", state);
    while (readdir(d)) {}
    closedir(d);
    uint64_t t_stale = now_us();
    cgroups_make(argv[3]);
    uint64_t t_cgroup = now_us();
    static char stack[1 << 16];
    int flags = CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNS | CLONE_NEWCGROUP;
    pid_t pid = clone(child, stack + sizeof stack, flags | SIGCHLD, NULL);
    if (pid < 0) die("clone");
    int status;
    if (waitpid(pid, &status, 0) < 0) die("wait");
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "probe: the container's init failed (status %d)\n", status);
        cgroups_remove();
        return 1;
    }
    cgroups_remove();
    uint64_t t_cg_removed = now_us();
    record();
    uint64_t t_record = now_us();
    rmdir(run);
    printf("step stale-check %lu\n", t_stale - t0);
    printf("step cgroup-made %lu\n", t_cgroup - t_stale);
    printf("step clone-to-cgroup %lu\n", marks->in_cgroup - t_cgroup);
    printf("step session-hostname-loopback %lu\n", marks->setup - marks->in_cgroup);
    printf("step rootfs-pivot %lu\n", marks->rootfs - marks->setup);
    printf("step privileges %lu\n", marks->privileges - marks->rootfs);
    // exprun's "command ended" mark comes after its cgroup is removed: the same here.
    printf("step exec-and-wait %lu\n", t_cg_removed - marks->privileges);
    printf("step record-written %lu\n", t_record - t_cg_removed);
    printf("step total %lu\n", t_record - t0);
    return 0;
}
