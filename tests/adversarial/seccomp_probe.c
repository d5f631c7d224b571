/* The seccomp tests' probe, built static by the test and run inside the
 * container: it makes raw system calls with the arguments it is given and
 * prints what came back, one line each, so that a test can tell which rule of
 * the filter matched (the profile's errnoRet) from what the kernel said.
 *
 *   probe lseek V...   lseek(-1, V, SEEK_SET) for each V: "V errno"
 *                      (EBADF when no rule matched: fd -1 is never open)
 *   probe clone F...   the raw clone(F | SIGCHLD) for each F, as fork does it:
 *                      "F ok" once the child exited 0, or "F errno"
 *
 * Values are read with strtoull in any base (0x... for hex). No stdio buffer
 * is left for exit to flush, and nothing else runs between the calls: a
 * filter's rule may match calls the probe did not mean to make.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void say(const char *line)
{
	size_t n = strlen(line);
	while (n > 0) {
		ssize_t w = write(1, line, n);
		if (w <= 0)
			_exit(2);
		line += w;
		n -= (size_t)w;
	}
}

static unsigned long long value(const char *s)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno != 0 || *end != '\0' || end == s) {
		say("bad value\n");
		_exit(2);
	}
	return v;
}

int main(int argc, char **argv)
{
	char line[128];
	if (argc < 3)
		return 2;
	for (int i = 2; i < argc; i++) {
		unsigned long long v = value(argv[i]);
		if (strcmp(argv[1], "lseek") == 0) {
			long r = syscall(SYS_lseek, -1L, v, (long)SEEK_SET);
			snprintf(line, sizeof line, "%s %d\n", argv[i], r < 0 ? errno : 0);
		} else if (strcmp(argv[1], "clone") == 0) {
			/* No stack: the child runs on a copy of this one, as after fork. */
			long pid = syscall(SYS_clone, v | SIGCHLD, 0L, 0L, 0L, 0L);
			if (pid == 0)
				_exit(0);
			int status = -1;
			if (pid > 0 && waitpid((pid_t)pid, &status, 0) == pid && status == 0)
				snprintf(line, sizeof line, "%s ok\n", argv[i]);
			else if (pid > 0)
				snprintf(line, sizeof line, "%s child-status-%d\n", argv[i], status);
			else
				snprintf(line, sizeof line, "%s %d\n", argv[i], errno);
		} else {
			return 2;
		}
		say(line);
	}
	return 0;
}
