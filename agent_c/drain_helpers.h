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
	/*
	 * Calls the kernel skipped the entry program for (another BPF program was
	 * running on that CPU: bpf_prog_info.recursion_misses), set by the probe's
	 * agent before each flush; counted with the in-flight drops.
	 */
	__u64 missed_entries;
};

/* Returns 0 or -errno. The sink stays owned by the caller. */
int drain_init(struct drain *d, int ringbuf_fd, int drops_fd, struct sink *sink,
	       __u16 monitor_type, __u16 event_size, size_t batch_events,
	       const char *monitor_id, const char *machine_id);
struct bpf_object;
/* The recursion misses of obj's programs whose names start with prefix. */
__u64 prog_recursion_misses(struct bpf_object *obj, const char *prefix);
/* Waits up to timeout_ms for a wakeup, then takes everything buffered. */
int drain_poll(struct drain *d, int timeout_ms);
/* Takes everything buffered without waiting. */
int drain_consume(struct drain *d);
/* Room for one event built in user space (flushes first when the batch is full). */
void *drain_slot(struct drain *d);
int drain_flush(struct drain *d, __u32 flags);
void drain_drop_totals(struct drain *d, __u64 *kernel, __u64 *inflight);
/* The final statistics: one JSON line on stdout, one summary line on stderr. */
void drain_print_stats(struct drain *d, struct sink *sink, __u64 unacknowledged,
		       __u64 incomplete, __u64 taken);
void drain_free(struct drain *d);

#endif
