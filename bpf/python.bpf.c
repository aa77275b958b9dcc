// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * PYTHON probe: on each tick of a per-CPU clock, the Python stack of the
 * target's thread that was running there (see python.h).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "python.h"
#include "drops.bpf.h"
#include "pystack.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u32 targ_tgid = 0;
const volatile __u64 period_ns = 10101010;	/* 1 s / --sample-hz */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);		/* resized by the agent */
} events SEC(".maps");

SEC("perf_event")
int sample(struct bpf_perf_event_data *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tgid = task->tgid, tid = task->pid;
	struct python_event *e;

	if (tgid != targ_tgid)
		return 0;
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_drop(XPU_DROP_RINGBUF);
		return 0;
	}
	e->h.ts_ns = bpf_ktime_get_ns();
	e->h.duration_ns = period_ns;
	e->h.ret = 0;
	e->h.pid = tgid;
	e->h.tid = tid;
	e->h.func = PYTHON_FN_sample;
	e->h.flags = 0;
	e->h.cpu = bpf_get_smp_processor_id();
	__builtin_memcpy(e->h.comm, task->comm, sizeof(e->h.comm));
	e->py_stack = py_capture(tgid, tid);
	bpf_ringbuf_submit(e, 0);
	return 0;
}
