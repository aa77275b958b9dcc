/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* The map shapes several probes declare alike. */
#ifndef XPU_MAPS_BPF_H
#define XPU_MAPS_BPF_H

/* One value per CPU (a one-entry per-CPU array): scratch too large for the stack, or counters. */
#define PERCPU_ONE(name, value_type)					\
	struct {							\
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);		\
		__uint(max_entries, 1);					\
		__type(key, __u32);					\
		__type(value, value_type);				\
	} name SEC(".maps")

/* A value per thread (key: tid), the least recently used giving way when full. */
#define TID_LRU(name, entries, value_type)				\
	struct {							\
		__uint(type, BPF_MAP_TYPE_LRU_HASH);			\
		__uint(max_entries, entries);				\
		__type(key, __u32);					\
		__type(value, value_type);				\
	} name SEC(".maps")

#endif
