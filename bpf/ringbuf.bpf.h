/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The ring buffer a probe's events go to, and when to wake the agent.
 * Include once per BPF object, after vmlinux.h.
 */
#ifndef XPU_RINGBUF_BPF_H
#define XPU_RINGBUF_BPF_H

const volatile __u64 wakeup_bytes = 0;		/* wake the agent past this much data */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);		/* resized by the agent */
} events SEC(".maps");

/*
 * The bpf_ringbuf_output() flags that wake the agent only once wakeup_bytes
 * are waiting. The kernel's own policy wakes only for the first record after
 * the consumer caught up, so past the threshold the wakeup has to be forced.
 */
static __always_inline __u64 wakeup_flags(void)
{
	if (!wakeup_bytes)
		return 0;
	return bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) < wakeup_bytes ?
		BPF_RB_NO_WAKEUP : BPF_RB_FORCE_WAKEUP;
}

#endif
