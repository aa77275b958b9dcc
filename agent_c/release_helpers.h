/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Detaching a uprobe link waits for an RCU grace period (~45 ms for a
 * uprobe_multi link here, ~110 ms for a perf link), one after another when
 * closed in a loop. Closed from threads at once, the waits share grace
 * periods: a stop with 26 links takes one wait instead of 26.
 */
#ifndef XPU_RELEASE_HELPERS_H
#define XPU_RELEASE_HELPERS_H

/*
 * Calls release(items[i]) for each of the n items, from up to
 * RELEASE_THREADS threads at once, and returns when all are done. Falls back
 * to the calling thread for whatever it cannot start a thread for.
 */
void release_parallel(void **items, int n, void (*release)(void *));

#define RELEASE_THREADS 64

#endif
