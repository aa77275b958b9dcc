/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The stdin/stdout protocol of the C test workloads, so tests can attach a
 * tracer before the first call and stop it while the process still lives:
 *   {"ready": true, "pid": P, "tids": [...]}   threads started, parked
 *   <one line on stdin>                        threads make their calls
 *   {"done": true, "calls": {"sym": n, ...}}   every call returned
 *   <one line on stdin, or EOF>                exit 0
 */
#ifndef XPU_WORKLOAD_PROTOCOL_H
#define XPU_WORKLOAD_PROTOCOL_H

#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define STR2(x) #x
/* The symbol a call really goes to, after the header's own macros. */
#define SYMBOL(x) STR2(x)
#define MAX_THREADS 64
#ifndef MAX_SYMBOLS	/* a workload with more symbols defines it first */
#define MAX_SYMBOLS 32
#endif

struct tally {
	const char *name[MAX_SYMBOLS];
	long count[MAX_SYMBOLS];
	pthread_mutex_t lock;
};

static struct tally tally = { .lock = PTHREAD_MUTEX_INITIALIZER };

static void count_call(const char *name)
{
	int i;

	pthread_mutex_lock(&tally.lock);
	for (i = 0; i < MAX_SYMBOLS && tally.name[i] && strcmp(tally.name[i], name); i++)
		;
	if (i < MAX_SYMBOLS) {
		tally.name[i] = name;
		tally.count[i]++;
	}
	pthread_mutex_unlock(&tally.lock);
}

struct workload {
	int threads;
	long iters;
	long burst;
	pid_t tids[MAX_THREADS];
	pthread_barrier_t parked;
	pthread_barrier_t go;
};

struct thread_arg {
	struct workload *w;
	int index;
};

static void parse_args(struct workload *w, int argc, char **argv)
{
	int i;

	w->threads = 1;
	w->iters = 1;
	for (i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--threads"))
			w->threads = atoi(argv[i + 1]);
		else if (!strcmp(argv[i], "--iters"))
			w->iters = atol(argv[i + 1]);
		else if (!strcmp(argv[i], "--burst"))
			w->burst = atol(argv[i + 1]);
	}
	if (w->threads < 1 || w->threads > MAX_THREADS || w->iters < 1 || w->burst < 0) {
		fprintf(stderr, "usage: %s --threads 1..%d --iters N [--burst M]\n", argv[0],
			MAX_THREADS);
		exit(2);
	}
}

/*
 * Each workload defines one round of calls; burst_call is optional (--burst),
 * and so is before_park (thread t's calls before it parks: before any tracer).
 */
static void one_round(int t, long i);
static void (*burst_call)(void);
static void (*before_park)(int t);

/* Thread t: park until "go", then iters * (t + 1) rounds, or --burst calls. */
static void *thread_main(void *p)
{
	struct thread_arg *a = p;
	long i, rounds = a->w->iters * (a->index + 1);

	a->w->tids[a->index] = gettid();
	if (before_park)
		before_park(a->index);
	pthread_barrier_wait(&a->w->parked);
	pthread_barrier_wait(&a->w->go);
	if (a->w->burst && burst_call) {
		for (i = 0; i < a->w->burst; i++)
			burst_call();
		return NULL;
	}
	for (i = 0; i < rounds; i++)
		one_round(a->index, i);
	return NULL;
}

/* Starts the threads, speaks the protocol, joins them. */
static int run_workload(struct workload *w)
{
	struct thread_arg args[MAX_THREADS];
	pthread_t th[MAX_THREADS];
	char line[64];
	int i;

	pthread_barrier_init(&w->parked, NULL, w->threads + 1);
	pthread_barrier_init(&w->go, NULL, w->threads + 1);
	for (i = 0; i < w->threads; i++) {
		args[i].w = w;
		args[i].index = i;
		pthread_create(&th[i], NULL, thread_main, &args[i]);
	}
	pthread_barrier_wait(&w->parked);
	printf("{\"ready\": true, \"pid\": %d, \"tids\": [", getpid());
	for (i = 0; i < w->threads; i++)
		printf("%s%d", i ? ", " : "", w->tids[i]);
	printf("]}\n");
	fflush(stdout);
	if (!fgets(line, sizeof(line), stdin))
		return 1;
	pthread_barrier_wait(&w->go);
	for (i = 0; i < w->threads; i++)
		pthread_join(th[i], NULL);
	printf("{\"done\": true, \"calls\": {");
	for (i = 0; i < MAX_SYMBOLS && tally.name[i]; i++)
		printf("%s\"%s\": %ld", i ? ", " : "", tally.name[i], tally.count[i]);
	printf("}}\n");
	fflush(stdout);
	fgets(line, sizeof(line), stdin);
	return 0;
}

#endif
