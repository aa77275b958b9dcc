// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Synthetic producer for bench/agent_drain.py: each test run emits per_run
 * CUDA events into a ring buffer laid out exactly like the CUDA probe's (same
 * event struct, same drop counters, same wakeup policy), so the agent's drain
 * path can be measured at rates uprobes cannot reach on two cores.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "cuda.h"
#include "drops.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u64 wakeup_bytes = 0;
__u32 per_run = 1024;
__u64 seq = 0;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 24);
} events SEC(".maps");

static long emit_one(__u32 index, void *ctx)
{
	struct cuda_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	__u64 flags = 0;

	if (!e) {
		count_drop(XPU_DROP_RINGBUF);
		return 0;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->h.ts_ns = bpf_ktime_get_ns();
	e->h.duration_ns = 1000 + index;
	e->h.ret = 35;
	e->h.pid = 1;
	e->h.tid = 1;
	e->h.func = CUDA_FN_cudaMemcpy;
	e->bytes = seq++;
	e->kind = 1;
	/*
	 * Wake the agent only once wakeup_bytes are waiting. The kernel's own
	 * policy wakes only for the first record after the consumer caught up,
	 * so past the threshold the wakeup has to be forced.
	 */
	if (wakeup_bytes)
		flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) < wakeup_bytes ?
			BPF_RB_NO_WAKEUP : BPF_RB_FORCE_WAKEUP;
	bpf_ringbuf_submit(e, flags);
	return 0;
}

SEC("raw_tp")
int fill(void *ctx)
{
	bpf_loop(per_run, emit_one, NULL, 0);
	return 0;
}
