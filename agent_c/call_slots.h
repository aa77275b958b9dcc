/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The agent's side of a call probe's per-thread slots (calls.bpf.h; struct
 * cuda_inflight in xpucore/include/cuda.h describes the scheme), read through the map's
 * mmap: completed calls an idle thread left in out[], and at stop the calls
 * still in flight.
 */
#ifndef XPU_CALL_SLOTS_H
#define XPU_CALL_SLOTS_H

#include <linux/types.h>
#include "call_probe.h"
#include "drain_helpers.h"

struct call_slots {
	char *mem;
	__u32 count;
	size_t len;
	const struct call_slot_layout *layout;
};

/* Maps the inflight array (count slots). Returns 0 or -errno. */
int call_slots_map(struct call_slots *s, const struct call_slot_layout *layout, int map_fd,
		   __u32 count);
/*
 * Moves completed calls waiting in out[] into the drain's batch, for slots
 * whose oldest call started before older_than_ns (CLOCK_MONOTONIC; ~0 for
 * all). Safe while the probe runs. Returns the number of events taken.
 */
__u64 call_slots_take_done(struct call_slots *s, struct drain *d, __u64 older_than_ns);
/*
 * Emits every call still in flight as XPU_EV_INCOMPLETE, its duration up to
 * now_ns. Only after the probes are detached. Returns the number emitted.
 */
__u64 call_slots_take_incomplete(struct call_slots *s, struct drain *d, __u64 now_ns);
void call_slots_unmap(struct call_slots *s);

#endif
