// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <string.h>
#include <stdio.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "drain_helpers.h"

void drain_drop_totals(struct drain *d, __u64 *kernel, __u64 *inflight)
{
	int ncpu = libbpf_num_possible_cpus(), c;
	__u64 vals[ncpu > 0 ? ncpu : 1];
	__u32 slot;

	*kernel = 0;
	*inflight = d->missed_entries;
	for (slot = 0; slot < XPU_DROP_SLOTS; slot++) {
		if (ncpu <= 0 || bpf_map_lookup_elem(d->drops_fd, &slot, vals))
			continue;
		for (c = 0; c < ncpu; c++)
			*(slot == XPU_DROP_RINGBUF ? kernel : inflight) += vals[c];
	}
}

__u64 prog_recursion_misses(struct bpf_object *obj, const char *prefix)
{
	struct bpf_program *prog;
	__u64 misses = 0;

	bpf_object__for_each_program(prog, obj) {
		struct bpf_prog_info info = {};
		__u32 len = sizeof(info);

		if (strncmp(bpf_program__name(prog), prefix, strlen(prefix)) ||
		    bpf_program__fd(prog) < 0 ||
		    bpf_obj_get_info_by_fd(bpf_program__fd(prog), &info, &len))
			continue;
		misses += info.recursion_misses;
	}
	return misses;
}

int drain_flush(struct drain *d, __u32 flags)
{
	__u64 kernel, inflight;
	int ret;

	drain_drop_totals(d, &kernel, &inflight);
	ret = batcher_flush(&d->batch, d->sink, kernel, inflight, flags);
	if (ret && !d->err)
		d->err = ret;
	return ret;
}

void *drain_slot(struct drain *d)
{
	void *slot = batcher_slot(&d->batch);

	if (!slot) {
		drain_flush(d, 0);
		slot = batcher_slot(&d->batch);
	}
	return slot;
}

/* A record holds one or more events (the CUDA probe sends up to CUDA_OUT_EVENTS). */
static int handle_record(void *ctx, void *data, size_t size)
{
	struct drain *d = ctx;
	size_t es = d->batch.hdr.event_size;

	for (size_t off = 0; off + es <= size; off += es)
		memcpy(drain_slot(d), (char *)data + off, es);
	return 0;
}

int drain_init(struct drain *d, int ringbuf_fd, int drops_fd, struct sink *sink,
	       __u16 monitor_type, __u16 event_size, size_t batch_events,
	       const char *monitor_id, const char *machine_id)
{
	memset(d, 0, sizeof(*d));
	d->sink = sink;
	d->drops_fd = drops_fd;
	if (batcher_init(&d->batch, monitor_type, event_size, batch_events, monitor_id,
			 machine_id))
		return -ENOMEM;
	d->rb = ring_buffer__new(ringbuf_fd, handle_record, d, NULL);
	if (!d->rb) {
		batcher_free(&d->batch);
		return -errno;
	}
	return 0;
}

int drain_poll(struct drain *d, int timeout_ms)
{
	int ret = ring_buffer__poll(d->rb, timeout_ms);

	if (ret < 0 && ret != -EINTR)
		return ret;
	/* The probe wakes us only past a threshold: take what came in quietly. */
	return ring_buffer__consume(d->rb);
}

int drain_consume(struct drain *d)
{
	return ring_buffer__consume(d->rb);
}

void drain_free(struct drain *d)
{
	ring_buffer__free(d->rb);
	d->rb = NULL;
	batcher_free(&d->batch);
}

void drain_print_stats(struct drain *d, struct sink *sink, __u64 unacknowledged,
		       __u64 incomplete, __u64 taken)
{
	struct batcher *b = &d->batch;
	__u64 kernel, inflight, send_drops = b->send_drops + unacknowledged;
	struct sink_counts c;

	drain_drop_totals(d, &kernel, &inflight);
	sink_counts(sink, &c);
	printf("{\"stats\": {\"events\": %llu, \"batches\": %llu, \"sent\": %llu, "
	       "\"kernel_drops\": %llu, \"inflight_drops\": %llu, \"send_drops\": %llu, "
	       "\"resent_batches\": %llu, \"incomplete\": %llu, \"taken_from_threads\": %llu}}\n",
	       c.delivered_events, c.delivered_batches, b->events_sent, kernel, inflight,
	       send_drops, c.resent_batches, incomplete, taken);
	fflush(stdout);
	fprintf(stderr, "xputrace-agent: stopped: %llu events delivered in %llu batches, drops: "
		"%llu ring buffer, %llu in-flight map, %llu send; %llu incomplete\n",
		c.delivered_events, c.delivered_batches, kernel, inflight, send_drops, incomplete);
}
