// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Known numbers of read, write and nanosleep system calls from several
 * threads, made with syscall(2) so the C library cannot turn one into another
 * (glibc's nanosleep() is clock_nanosleep). Thread t makes iters * (t + 1)
 * rounds of: read(/dev/zero, 64 + t bytes), write(/dev/null, 32 + t bytes),
 * nanosleep(100 us). Written out again in tests/agent/test_syscall_capture.py.
 *
 * usage: syscall_calls --threads T --iters N
 */
#include "workload_protocol.h"	/* first: it sets _GNU_SOURCE */
#include <fcntl.h>
#include <sys/syscall.h>
#include <time.h>

static int zero_fd, null_fd;

static void one_round(int t, long i)
{
	char buf[128];
	struct timespec ts = { .tv_nsec = 100000 };

	count_call("read");
	syscall(SYS_read, zero_fd, buf, 64 + t);
	count_call("write");
	syscall(SYS_write, null_fd, buf, 32 + t);
	count_call("nanosleep");
	syscall(SYS_nanosleep, &ts, NULL);
}

int main(int argc, char **argv)
{
	struct workload w = {};

	parse_args(&w, argc, argv);
	zero_fd = open("/dev/zero", O_RDONLY | O_CLOEXEC);
	null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (zero_fd < 0 || null_fd < 0)
		return 1;
	printf("{\"fds\": {\"zero\": %d, \"null\": %d}}\n", zero_fd, null_fd);
	return run_workload(&w);
}
