/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The agent's side of the CUDA probe's per-thread slots (struct cuda_inflight
 * in bpf/cuda.h), read through the map's mmap: completed calls an idle thread
 * left in out[], and at stop the calls still in flight.
 */
#ifndef XPU_CUDA_SLOTS_H
#define XPU_CUDA_SLOTS_H

#include <linux/types.h>
#include "cuda.h"
#include "drain_helpers.h"

struct cuda_slots {
	struct cuda_inflight *slot;
	__u32 count;
	size_t len;
};

/* Maps the inflight array (count slots). Returns 0 or -errno. */
int cuda_slots_map(struct cuda_slots *s, int map_fd, __u32 count);
/*
 * Moves completed calls waiting in out[] into the drain's batch, for slots
 * whose oldest call started before older_than_ns (CLOCK_MONOTONIC; ~0 for
 * all). Safe while the probe runs. Returns the number of events taken.
 */
__u64 cuda_slots_take_done(struct cuda_slots *s, struct drain *d, __u64 older_than_ns);
/*
 * Emits every call still in flight as XPU_EV_INCOMPLETE, its duration up to
 * now_ns. Only after the probes are detached. Returns the number emitted.
 */
__u64 cuda_slots_take_incomplete(struct cuda_slots *s, struct drain *d, __u64 now_ns);
void cuda_slots_unmap(struct cuda_slots *s);

#endif
