/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The step window's gate (window.h), the same in every probe: the one-entry
 * map "window" (the agent makes every BPF object of a monitor share one, with
 * bpf_map__reuse_fd before load), window_open() that each probe asks before
 * it records, and the transitions the Python call hooks make. A monitor
 * without a window leaves `gated` 0: the verifier drops the check, and the
 * probe costs what it did. Include once per BPF object, after vmlinux.h.
 */
#ifndef XPU_WINDOW_BPF_H
#define XPU_WINDOW_BPF_H

#include "window.h"

const volatile __u8 gated = 0;			/* 1: record only while the window is open */
const volatile __u64 window_skip = 0;		/* calls before the window */
const volatile __u64 window_count = 0;		/* calls in it */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct window_gate);
} window SEC(".maps");

static __always_inline struct window_gate *window_gate(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&window, &zero);
}

/* Whether an event starting now is kept: always, for a monitor with no window. */
static __always_inline bool window_open(void)
{
	struct window_gate *g;

	if (!gated)
		return true;
	g = window_gate();
	return g && g->state == WINDOW_OPEN;
}

/*
 * A call of the window's function starts: its number (1 for the first since
 * the probe's start). The start of call skip+1 opens the window, before
 * anything of that call is recorded.
 */
static __always_inline __u64 window_call_starts(void)
{
	struct window_gate *g = window_gate();
	__u64 n;

	if (!g)
		return 0;
	n = __sync_fetch_and_add(&g->calls, 1) + 1;
	if (n == window_skip + 1 &&
	    __sync_val_compare_and_swap(&g->state, WINDOW_SHUT, WINDOW_OPEN) == WINDOW_SHUT)
		g->opened_ns = bpf_ktime_get_ns();
	return n;
}

/* Call n of the window's function ended (returned, or was left by an exception). */
static __always_inline void window_call_ended(__u64 n)
{
	struct window_gate *g;

	if (n != window_skip + window_count)
		return;
	g = window_gate();
	if (g && g->state != WINDOW_CLOSED) {
		g->state = WINDOW_CLOSED;
		g->closed_ns = bpf_ktime_get_ns();
	}
}

/* Whether call n is one of the window's: its end may close the window. */
static __always_inline bool window_call_inside(__u64 n)
{
	return n > window_skip && n <= window_skip + window_count;
}

#endif /* XPU_WINDOW_BPF_H */
