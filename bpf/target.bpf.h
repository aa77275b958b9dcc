/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the per-call probes (CUDA, SYSCALL) share: the target filter the agent
 * sets before load, the ring buffer events go to, and when to wake the agent.
 * Include once per BPF object, after vmlinux.h and xpu_abi.h.
 */
#ifndef XPU_TARGET_BPF_H
#define XPU_TARGET_BPF_H

/* Set by the agent before load. */
const volatile __u32 targ_tgid = 0;		/* 0: any process */
const volatile __u8 filter_comm = 0;		/* 1: only tasks named targ_comm */
const volatile char targ_comm[XPU_COMM_LEN] = {};
const volatile __u64 wakeup_bytes = 0;		/* wake the agent past this much data */
const volatile __u32 slot_mask = 4095;		/* inflight's max_entries - 1 */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);		/* resized by the agent */
} events SEC(".maps");

static __always_inline bool comm_matches(struct task_struct *task)
{
	for (int i = 0; i < XPU_COMM_LEN; i++) {
		char c = task->comm[i];

		if (c != targ_comm[i])
			return false;
		if (!c)
			break;
	}
	return true;
}

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
