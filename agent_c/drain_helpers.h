/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The agent's hot path: ring buffer -> batches -> sink, with the kernel-side
 * drop counters (a per-CPU array indexed by enum xpu_drop_slot) read at every
 * flush so each batch carries the running totals.
 */
#ifndef XPU_DRAIN_HELPERS_H
#define XPU_DRAIN_HELPERS_H

#include <linux/types.h>
#include "sink_helpers.h"

struct ring_buffer;

struct drain {
	struct ring_buffer *rb;
	struct sink *sink;
	struct batcher batch;
	int drops_fd;
	int err;		/* first sink error, -errno */
};

/* Returns 0 or -errno. The sink stays owned by the caller. */
int drain_init(struct drain *d, int ringbuf_fd, int drops_fd, struct sink *sink,
	       __u16 monitor_type, __u16 event_size, size_t batch_events,
	       const char *monitor_id, const char *machine_id);
/* Waits up to timeout_ms for a wakeup, then takes everything buffered. */
int drain_poll(struct drain *d, int timeout_ms);
/* Takes everything buffered without waiting. */
int drain_consume(struct drain *d);
/* Room for one event built in user space (flushes first when the batch is full). */
void *drain_slot(struct drain *d);
int drain_flush(struct drain *d, __u32 flags);
void drain_drop_totals(struct drain *d, __u64 *kernel, __u64 *inflight);
void drain_free(struct drain *d);

#endif
