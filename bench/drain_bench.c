// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Drain benchmark: a filler thread on CPU 0 runs bench/ringfill.bpf.c (each
 * run emits per_run CUDA events); the agent's drain path (agent_c/
 * drain_helpers.c, the same code xputrace-agent runs) consumes on CPU 1 and
 * sends batches to a ZeroMQ PUSH endpoint. Prints one JSON line of results.
 *
 * usage: xpu-bench-drain ENDPOINT EVENTS [RINGBUF_KB] [PER_RUN] [BATCH_EVENTS]
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "cuda.h"
#include "drain_helpers.h"
#include "ringfill.skel.h"

static struct ringfill_bpf *skel;
static long long total, per_run;
static volatile int filler_done;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void pin(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu, &set);
	pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
}

static void *filler(void *arg)
{
	LIBBPF_OPTS(bpf_test_run_opts, topts, .flags = BPF_F_TEST_RUN_ON_CPU, .cpu = 0);
	int fd = bpf_program__fd(skel->progs.fill);
	long long done;

	pin(0);
	for (done = 0; done < total; done += per_run) {
		if (bpf_prog_test_run_opts(fd, &topts)) {
			fprintf(stderr, "failed to run filler: %s\n", strerror(errno));
			break;
		}
	}
	filler_done = 1;
	return NULL;
}

static double thread_cpu_s(void)
{
	struct rusage ru;

	getrusage(RUSAGE_THREAD, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
	       (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

int main(int argc, char **argv)
{
	struct sink_opts so = { .send_hwm = 1000, .linger_ms = 30000, .resend_ms = 5000 };
	struct sink_counts c;
	__u64 lost;
	long ring_kb = argc > 3 ? atol(argv[3]) : 65536;
	long batch = argc > 5 ? atol(argv[5]) : 8192;
	struct sink *sink = NULL;
	struct drain d;
	__u64 kdrops = 0, idrops = 0, got;
	double t0, t1, cpu0;
	pthread_t th;
	char err[512];

	if (argc < 3) {
		fprintf(stderr, "usage: %s ENDPOINT EVENTS [RINGBUF_KB] [PER_RUN] [BATCH_EVENTS]\n",
			argv[0]);
		return 2;
	}
	total = atoll(argv[2]);
	per_run = argc > 4 ? atol(argv[4]) : 4096;
	if (total <= 0 || per_run <= 0 || ring_kb < 4 || batch <= 0) {
		fprintf(stderr, "EVENTS, PER_RUN, RINGBUF_KB and BATCH_EVENTS must be positive\n");
		return 2;
	}
	total = (total + per_run - 1) / per_run * per_run;	/* whole runs */
	skel = ringfill_bpf__open();
	if (!skel)
		return 1;
	skel->rodata->wakeup_bytes = (__u64)ring_kb * 1024 / 8;
	bpf_map__set_max_entries(skel->maps.events, (__u64)ring_kb * 1024);
	if (ringfill_bpf__load(skel)) {
		fprintf(stderr, "failed to load BPF object: %s\n", strerror(errno));
		return 1;
	}
	skel->data->per_run = per_run;
	so.endpoint = argv[1];
	if (sink_open(&sink, &so, err, sizeof(err))) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	if (drain_init(&d, bpf_map__fd(skel->maps.events), bpf_map__fd(skel->maps.drops), sink,
		       XPU_MONITOR_CUDA, sizeof(struct cuda_event), batch, "bench", "bench"))
		return 1;

	pin(1);
	cpu0 = thread_cpu_s();
	t0 = now();
	pthread_create(&th, NULL, filler, NULL);
	for (;;) {
		drain_poll(&d, 10);
		sink_service(sink);
		drain_drop_totals(&d, &kdrops, &idrops);
		got = d.batch.events_sent + d.batch.send_drops + d.batch.count;
		if (filler_done && got + kdrops >= (__u64)total)
			break;
	}
	drain_flush(&d, XPU_BATCH_FINAL);
	lost = sink_finish(sink);	/* every batch acknowledged by the sink */
	t1 = now();
	sink_counts(sink, &c);
	pthread_join(th, NULL);
	printf("{\"events\": %lld, \"drained\": %llu, \"acknowledged\": %llu, "
	       "\"kernel_drops\": %llu, \"send_drops\": %llu, \"unacknowledged\": %llu, "
	       "\"batches\": %llu, \"seconds\": %.4f, \"events_per_s\": %.0f, "
	       "\"drain_cpu_s\": %.4f}\n",
	       total, d.batch.events_sent, c.delivered_events, kdrops, d.batch.send_drops, lost,
	       d.batch.batches_sent, t1 - t0, c.delivered_events / (t1 - t0),
	       thread_cpu_s() - cpu0);
	fflush(stdout);
	drain_free(&d);
	sink_close(sink);
	ringfill_bpf__destroy(skel);
	return 0;
}
