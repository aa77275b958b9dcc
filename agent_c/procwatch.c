// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * xputrace-procwatch: every process start, exec and exit of the machine, as
 * they happen (bpf/procwatch.bpf.c), one JSON line each on stdout for the
 * manager (manager/jobs/watch.py). No polling: the process sleeps in
 * epoll_wait until the ring buffer wakes it or a signal arrives. Wakeups are
 * batched (-w MS, default 50): the BPF side wakes it at most once per batch
 * (or when the ring is half full), and after each wakeup it drains once more
 * two batches later for the records that came without one; then, if nothing
 * came, it sleeps with no timeout again. An event is printed within 2 * MS.
 *
 * Lines:
 *   {"event":"ready","pid":P,"clk_tck":T,"boot_ns":N}          once attached
 *   {"event":"fork"|"exec"|"exit","pid":..,"tid":..,"ppid":..,"uid":..,
 *    "start_ns":..,"start_ticks":..,"parent_start_ticks":..,"time_ns":..,
 *    "comm":"..."[,"exit_code":C|null,"signal":S|null,"core":bool]}
 *   {"event":"drops","dropped":D,"sent":S}                      when records were lost
 *   {"event":"stats","sent":S,"dropped":D,"printed":N,"brief":B} at SIGTERM/SIGINT, last
 * start_ticks is /proc/<pid>/stat field 22 for the same process. comm bytes
 * outside printable ASCII are written as \u00XX (one per byte).
 *
 * usage: xputrace-procwatch [-b RING_KB] [-w BATCH_MS] [-d DEFER_MS] [-v]
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
	unsigned long batch_ms;
	unsigned long defer_ms;
	int verbose;
} env = { .ring_kb = 1024, .batch_ms = 50 };

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

static void print_event(const struct procwatch_event *e)
{
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
}

/*
 * Deferral (-d MS): a fork or exec is held for MS before it is printed; when the process
 * exits meanwhile, and nothing of it was printed before, neither line is printed (counted
 * as "brief"). The manager looks at a process no earlier than 100 ms after its exec anyway,
 * so the shells, compilers and /bin/true of a busy machine never reach it at all.
 */
struct pending {
	struct procwatch_event e;
	unsigned long long due_ns;
	int announced;		/* an earlier line of this process was printed */
};

#define MAX_PENDING 4096
static struct pending pending[MAX_PENDING];
static int npending;
static unsigned long long brief;

static struct pending *find_pending(const struct procwatch_event *e)
{
	int i;

	for (i = 0; i < npending; i++)
		if (pending[i].e.pid == e->pid && pending[i].e.start_ns == e->start_ns)
			return &pending[i];
	return NULL;
}

static void drop_pending(struct pending *p)
{
	*p = pending[--npending];
}

/* Print the held records due by now_ns (all with now_ns == ~0); the next due time or 0. */
static unsigned long long flush_pending(unsigned long long now_ns)
{
	unsigned long long next = 0;
	int i = 0;

	while (i < npending) {
		if (pending[i].due_ns <= now_ns) {
			print_event(&pending[i].e);
			drop_pending(&pending[i]);
			continue;
		}
		if (!next || pending[i].due_ns < next)
			next = pending[i].due_ns;
		i++;
	}
	return next;
}

static int handle_event(void *ctx, void *data, size_t size)
{
	const struct procwatch_event *e = data;
	struct pending *p;

	if (size < sizeof(*e))
		return 0;
	if (!env.defer_ms) {
		print_event(e);
		return 0;
	}
	p = find_pending(e);
	if (e->kind == PROCWATCH_EXIT) {
		if (p && !p->announced) {
			drop_pending(p);	/* came and went unseen */
			brief++;
			return 0;
		}
		if (p)
			drop_pending(p);	/* its exec is moot: the exit says it ended */
		print_event(e);
		return 0;
	}
	if (!p) {
		if (npending == MAX_PENDING) {
			print_event(e);		/* full: no hold, no loss */
			return 0;
		}
		p = &pending[npending++];
		/* No line held for it: a fork is new; an exec is of a process printed before,
		 * or found by the manager's scan. */
		p->announced = e->kind == PROCWATCH_EXEC;
	}
	p->e = *e;
	p->due_ns = e->time_ns + env.defer_ms * 1000000ULL;
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
	int unwoken = 0;	/* records may wait unwoken: drain again at a deadline */
	unsigned long long held = 0, now;	/* the next held record's due time */
	int timeout, held_ms;
	long clk_tck = sysconf(_SC_CLK_TCK);
	int ncpus = libbpf_num_possible_cpus();
	int opt, err, counts_fd, ret = AGENT_OK;

	while ((opt = getopt(argc, argv, "b:d:w:v")) != -1) {
		switch (opt) {
		case 'b':
			env.ring_kb = strtoul(optarg, NULL, 10);
			break;
		case 'd':
			env.defer_ms = strtoul(optarg, NULL, 10);
			break;
		case 'w':
			env.batch_ms = strtoul(optarg, NULL, 10);
			break;
		case 'v':
			env.verbose = 1;
			break;
		default:
			fprintf(stderr, "usage: %s [-b RING_KB] [-w BATCH_MS] [-d DEFER_MS] [-v]\n", argv[0]);
			return AGENT_INVALID_CONFIG;
		}
	}
	/* A power of two of at least one page, as the kernel requires. */
	if (env.ring_kb < 4 || (env.ring_kb & (env.ring_kb - 1)) || env.batch_ms > 10000 || env.defer_ms > 10000 ||
	    clk_tck <= 0 || ncpus <= 0) {
		fprintf(stderr, "xputrace-procwatch: ring size must be a power of two >= 4 KiB, "
			"batch and defer at most 10000 ms\n");
		return AGENT_INVALID_CONFIG;
	}
	ns_per_tick = 1000000000ULL / clk_tck;
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);	/* one write per drained batch */
	libbpf_set_print(libbpf_print_fn);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	skel = procwatch_bpf__open();
	if (!skel) {
		fprintf(stderr, "failed to open procwatch: %s\n", strerror(errno));
		return AGENT_START_FAILED;
	}
	skel->rodata->batch_ns = env.batch_ms * 1000000ULL;
	skel->rodata->ring_bytes = env.ring_kb * 1024;
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
		timeout = unwoken ? (int)(2 * env.batch_ms) : -1;
		if (held) {
			now = boot_ns();
			held_ms = held > now ? (int)((held - now + 999999) / 1000000) : 0;
			if (timeout < 0 || held_ms < timeout)
				timeout = held_ms;
		}
		err = ring_buffer__poll(rb, timeout);
		if (err == -EINTR)
			continue;
		if (err == 0 && unwoken)	/* the deadline: take what came without a wakeup */
			err = ring_buffer__consume(rb);
		if (err >= 0)
			unwoken = err > 0 && env.batch_ms > 0;
		held = flush_pending(boot_ns());
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
	flush_pending(~0ULL);
	sent = read_count(counts_fd, PROCWATCH_SENT, ncpus);
	dropped = read_count(counts_fd, PROCWATCH_DROPPED, ncpus);
	printf("{\"event\":\"stats\",\"sent\":%llu,\"dropped\":%llu,\"printed\":%llu,"
	       "\"brief\":%llu}\n", sent, dropped, printed, brief);
	fflush(stdout);
cleanup:
	ring_buffer__free(rb);
	procwatch_bpf__destroy(skel);
	return ret;
}
