// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * xputrace-procwatch: every process start, exec and exit of the machine, as
 * they happen (bpf/procwatch.bpf.c), one JSON line each on stdout for the
 * manager (manager/jobs/watch.py). No polling: the process sleeps in
 * epoll_wait until the ring buffer has records or a signal arrives.
 *
 * Lines:
 *   {"event":"ready","pid":P,"clk_tck":T,"boot_ns":N}          once attached
 *   {"event":"fork"|"exec"|"exit","pid":..,"tid":..,"ppid":..,"uid":..,
 *    "start_ns":..,"start_ticks":..,"parent_start_ticks":..,"time_ns":..,
 *    "comm":"..."[,"exit_code":C|null,"signal":S|null,"core":bool]}
 *   {"event":"drops","dropped":D,"sent":S}                      when records were lost
 *   {"event":"stats","sent":S,"dropped":D,"printed":N}          at SIGTERM/SIGINT, last
 * start_ticks is /proc/<pid>/stat field 22 for the same process. comm bytes
 * outside printable ASCII are written as \u00XX (one per byte).
 *
 * usage: xputrace-procwatch [-b RING_KB] [-v]
 */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "exit_codes.h"
#include "procwatch.h"
#include "procwatch.skel.h"

static struct env {
	unsigned long ring_kb;
	int verbose;
} env = { .ring_kb = 1024 };

static volatile sig_atomic_t exiting;
static unsigned long long printed, last_dropped;
static unsigned long long ns_per_tick;

static int libbpf_print_fn(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG && !env.verbose)
		return 0;
	return vfprintf(stderr, fmt, args);
}

static void on_signal(int sig)
{
	exiting = 1;
}

static unsigned long long boot_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_BOOTTIME, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

static void put_comm(const char *comm)
{
	int i;

	putchar('"');
	for (i = 0; i < PROCWATCH_COMM_LEN && comm[i]; i++) {
		unsigned char c = comm[i];

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static const char *kind_name(__u32 kind)
{
	switch (kind) {
	case PROCWATCH_FORK: return "fork";
	case PROCWATCH_EXEC: return "exec";
	default: return "exit";
	}
}

static int handle_event(void *ctx, void *data, size_t size)
{
	const struct procwatch_event *e = data;

	if (size < sizeof(*e))
		return 0;
	printf("{\"event\":\"%s\",\"pid\":%u,\"tid\":%u,\"ppid\":%u,\"uid\":%u,"
	       "\"start_ns\":%llu,\"start_ticks\":%llu,\"parent_start_ticks\":%llu,"
	       "\"time_ns\":%llu,\"comm\":",
	       kind_name(e->kind), e->pid, e->tid, e->ppid, e->uid,
	       (unsigned long long)e->start_ns, (unsigned long long)e->start_ns / ns_per_tick,
	       (unsigned long long)e->parent_start_ns / ns_per_tick,
	       (unsigned long long)e->time_ns);
	put_comm(e->comm);
	if (e->kind == PROCWATCH_EXIT) {
		int status = e->exit_code;

		if (status & 0x7f)
			printf(",\"exit_code\":null,\"signal\":%d,\"core\":%s", status & 0x7f,
			       status & 0x80 ? "true" : "false");
		else
			printf(",\"exit_code\":%d,\"signal\":null,\"core\":false", (status >> 8) & 0xff);
	}
	fputs("}\n", stdout);
	printed++;
	return 0;
}

/* Sum of the per-CPU counter slot; 0 when it cannot be read. */
static unsigned long long read_count(int map_fd, __u32 slot, int ncpus)
{
	unsigned long long sum = 0;
	__u64 *values = calloc(ncpus, sizeof(*values));
	int i;

	if (!values)
		return 0;
	if (!bpf_map_lookup_elem(map_fd, &slot, values))
		for (i = 0; i < ncpus; i++)
			sum += values[i];
	free(values);
	return sum;
}

int main(int argc, char **argv)
{
	struct procwatch_bpf *skel = NULL;
	struct ring_buffer *rb = NULL;
	struct sigaction sa = { .sa_handler = on_signal };	/* no SA_RESTART: epoll_wait returns */
	unsigned long long sent, dropped, last_check = 0;
	long clk_tck = sysconf(_SC_CLK_TCK);
	int ncpus = libbpf_num_possible_cpus();
	int opt, err, counts_fd, ret = AGENT_OK;

	while ((opt = getopt(argc, argv, "b:v")) != -1) {
		switch (opt) {
		case 'b':
			env.ring_kb = strtoul(optarg, NULL, 10);
			break;
		case 'v':
			env.verbose = 1;
			break;
		default:
			fprintf(stderr, "usage: %s [-b RING_KB] [-v]\n", argv[0]);
			return AGENT_INVALID_CONFIG;
		}
	}
	/* A power of two of at least one page, as the kernel requires. */
	if (env.ring_kb < 4 || (env.ring_kb & (env.ring_kb - 1)) || clk_tck <= 0 || ncpus <= 0) {
		fprintf(stderr, "xputrace-procwatch: ring size must be a power of two >= 4 KiB\n");
		return AGENT_INVALID_CONFIG;
	}
	ns_per_tick = 1000000000ULL / clk_tck;
	libbpf_set_print(libbpf_print_fn);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	skel = procwatch_bpf__open();
	if (!skel) {
		fprintf(stderr, "failed to open procwatch: %s\n", strerror(errno));
		return AGENT_START_FAILED;
	}
	err = bpf_map__set_max_entries(skel->maps.events, env.ring_kb * 1024);
	if (err) {
		fprintf(stderr, "failed to size ring buffer: %s\n", strerror(-err));
		ret = AGENT_INVALID_CONFIG;
		goto cleanup;
	}
	err = procwatch_bpf__load(skel);
	if (err) {
		fprintf(stderr, "failed to load procwatch: %s\n", strerror(-err));
		ret = err == -EPERM ? AGENT_PERMISSION_DENIED : AGENT_START_FAILED;
		goto cleanup;
	}
	err = procwatch_bpf__attach(skel);
	if (err) {
		fprintf(stderr, "failed to attach procwatch: %s\n", strerror(-err));
		ret = err == -EPERM ? AGENT_PERMISSION_DENIED : AGENT_START_FAILED;
		goto cleanup;
	}
	rb = ring_buffer__new(bpf_map__fd(skel->maps.events), handle_event, NULL, NULL);
	if (!rb) {
		fprintf(stderr, "failed to create ring buffer: %s\n", strerror(errno));
		ret = AGENT_START_FAILED;
		goto cleanup;
	}
	counts_fd = bpf_map__fd(skel->maps.counts);
	printf("{\"event\":\"ready\",\"pid\":%d,\"clk_tck\":%ld,\"boot_ns\":%llu}\n", getpid(),
	       clk_tck, boot_ns());
	fflush(stdout);

	while (!exiting) {
		err = ring_buffer__poll(rb, -1);
		if (err == -EINTR)
			continue;
		if (err < 0) {
			fprintf(stderr, "failed to poll ring buffer: %s\n", strerror(-err));
			ret = AGENT_RUNTIME_ERROR;
			break;
		}
		/* Records can only be lost while records flow, so checking here, at most once a
		 * second, reports every loss without a timer. */
		if (boot_ns() - last_check >= 1000000000ULL) {
			last_check = boot_ns();
			dropped = read_count(counts_fd, PROCWATCH_DROPPED, ncpus);
			if (dropped != last_dropped) {
				last_dropped = dropped;
				printf("{\"event\":\"drops\",\"dropped\":%llu,\"sent\":%llu}\n", dropped,
				       read_count(counts_fd, PROCWATCH_SENT, ncpus));
			}
		}
		if (fflush(stdout) == EOF && errno == EPIPE)
			break;	/* the reader is gone */
	}
	ring_buffer__consume(rb);
	sent = read_count(counts_fd, PROCWATCH_SENT, ncpus);
	dropped = read_count(counts_fd, PROCWATCH_DROPPED, ncpus);
	printf("{\"event\":\"stats\",\"sent\":%llu,\"dropped\":%llu,\"printed\":%llu}\n", sent, dropped,
	       printed);
	fflush(stdout);
cleanup:
	ring_buffer__free(rb);
	procwatch_bpf__destroy(skel);
	return ret;
}
