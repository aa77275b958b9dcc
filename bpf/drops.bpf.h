/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The drop counters every probe keeps: a per-CPU array indexed by enum
 * xpu_drop_slot, summed by the agent into each batch header. Include once per
 * BPF object.
 */
#ifndef XPU_DROPS_BPF_H
#define XPU_DROPS_BPF_H

#include "xpu_abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XPU_DROP_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

static __always_inline void count_drops(__u32 slot, __u64 events)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &slot);

	if (n)
		*n += events;
}

static __always_inline void count_drop(__u32 slot)
{
	count_drops(slot, 1);
}

#endif
