// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * PYTHON probe: on each tick of a per-CPU clock, the Python stack of the
 * target's thread that was running there (see python.h).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>
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

struct gc_start {
	__u64 ts_ns;
	__u32 generation;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);			/* tid */
	__type(value, struct gc_start);
} gc_started SEC(".maps");

static __always_inline struct python_event *event(struct task_struct *task, __u16 func)
{
	struct python_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count_drop(XPU_DROP_RINGBUF);
		return NULL;
	}
	e->h.ret = 0;
	e->h.pid = task->tgid;
	e->h.tid = task->pid;
	e->h.func = func;
	e->h.flags = 0;
	e->h.cpu = bpf_get_smp_processor_id();
	__builtin_memcpy(e->h.comm, task->comm, sizeof(e->h.comm));
	e->py_stack = py_capture(task->tgid, task->pid);
	e->generation = 0;
	e->reserved = 0;
	e->collected = 0;
	return e;
}

SEC("perf_event")
int sample(struct bpf_perf_event_data *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct python_event *e;

	if (task->tgid != targ_tgid)
		return 0;
	e = event(task, PYTHON_FN_sample);
	if (!e)
		return 0;
	e->h.ts_ns = bpf_ktime_get_ns();
	e->h.duration_ns = period_ns;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("usdt")
int BPF_USDT(gc_start, int generation)
{
	struct gc_start st = { .ts_ns = bpf_ktime_get_ns(), .generation = generation };
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	bpf_map_update_elem(&gc_started, &tid, &st, BPF_ANY);
	return 0;
}

SEC("usdt")
int BPF_USDT(gc_done, long collected)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tid = task->pid;
	struct gc_start *st = bpf_map_lookup_elem(&gc_started, &tid);
	struct python_event *e;

	if (!st)
		return 0;	/* began before the probe */
	e = event(task, PYTHON_FN_gc);
	if (e) {
		e->h.ts_ns = st->ts_ns;
		e->h.duration_ns = bpf_ktime_get_ns() - st->ts_ns;
		e->h.ret = collected;
		e->generation = st->generation;
		e->collected = collected < 0 ? 0 : collected;
		bpf_ringbuf_submit(e, 0);
	}
	bpf_map_delete_elem(&gc_started, &tid);
	return 0;
}
