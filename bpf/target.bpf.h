/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the library-call probes (CUDA, ACL) share besides calls.bpf.h: the
 * target filter and the slot mask the agent sets before load, and, through
 * ringbuf.bpf.h (which the SYSCALL probe includes on its own), the ring
 * buffer events go to and when to wake the agent, and through window.bpf.h
 * the step window's gate. Include once per BPF
 * object, after vmlinux.h and xpu_abi.h (the probe's header includes it).
 */
#ifndef XPU_TARGET_BPF_H
#define XPU_TARGET_BPF_H

#include "ringbuf.bpf.h"
#include "window.bpf.h"

/* Slots of the inflight map (calls.bpf.h) until the agent sets --max-threads. */
#define CALL_SLOTS 4096

/* Set by the agent before load. */
const volatile __u32 targ_tgid = 0;		/* 0: any process */
const volatile __u8 filter_comm = 0;		/* 1: only tasks named targ_comm */
const volatile char targ_comm[XPU_COMM_LEN] = {};
const volatile __u32 slot_mask = CALL_SLOTS - 1;	/* inflight's max_entries - 1 */

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

#endif
