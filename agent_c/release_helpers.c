// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <pthread.h>
#include "release_helpers.h"

struct release_job {
	void **items;
	int n, stride, first;
	void (*release)(void *);
};

static void *release_some(void *arg)
{
	struct release_job *j = arg;

	for (int i = j->first; i < j->n; i += j->stride)
		j->release(j->items[i]);
	return NULL;
}

void release_parallel(void **items, int n, void (*release)(void *))
{
	struct release_job jobs[RELEASE_THREADS];
	pthread_t tids[RELEASE_THREADS];
	int nthreads = n < RELEASE_THREADS ? n : RELEASE_THREADS, t;
	int started[RELEASE_THREADS] = { 0 };

	for (t = 0; t < nthreads; t++) {
		jobs[t] = (struct release_job){ items, n, nthreads, t, release };
		started[t] = pthread_create(&tids[t], NULL, release_some, &jobs[t]) == 0;
		if (!started[t])
			release_some(&jobs[t]);
	}
	for (t = 0; t < nthreads; t++)
		if (started[t])
			pthread_join(tids[t], NULL);
}
