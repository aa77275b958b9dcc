// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * SYSCALL probe: the raw syscall tracepoints (tp_btf sys_enter/sys_exit), so
 * every syscall of the target is seen with its number, first three arguments,
 * duration and return value, without kprobes. Filters run first: the target
 * process (or task name), then the allowed syscall numbers (a bitmap in
 * read-only data, set by the agent from --syscalls before load).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "syscall.h"
#include "drops.bpf.h"
#include "target.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u64 allow[SYSCALL_ALLOW_WORDS] = {};	/* bit n: trace syscall n (set by the agent) */

/* See struct syscall_inflight in syscall.h. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);	/* the agent reads calls in progress at stop */
	__uint(max_entries, 4096);		/* resized by the agent, a power of two */
	__type(key, __u32);
	__type(value, struct syscall_inflight);
} inflight SEC(".maps");

static __always_inline bool allowed(long id)
{
	if (id < 0 || id >= SYSCALL_ALLOW_WORDS * 64)
		return false;
	return allow[id >> 6] & (1ULL << (id & 63));
}

/* exit and exit_group: an event at once, of no duration (the thread is gone after). */
static __always_inline int emit_exit(struct task_struct *task, __u32 tgid, __u32 tid, long id,
				     struct pt_regs *regs)
{
	struct syscall_event e = {};

	e.h.ts_ns = bpf_ktime_get_ns();
	e.h.pid = tgid;
	e.h.tid = tid;
	e.h.func = id;
	e.h.cpu = bpf_get_smp_processor_id();
	__builtin_memcpy(e.h.comm, task->comm, sizeof(e.h.comm));
	e.arg0 = regs->di;
	if (bpf_ringbuf_output(&events, &e, sizeof(e), 0))
		count_drop(XPU_DROP_RINGBUF);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter, struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tgid = task->tgid, tid = task->pid, key = tid & slot_mask;
	struct syscall_inflight *s;
	struct syscall_event *e;

	if (targ_tgid && tgid != targ_tgid)
		return 0;
	if (filter_comm && !comm_matches(task))
		return 0;
	if (!allowed(id))
		return 0;
	s = bpf_map_lookup_elem(&inflight, &key);
	if (!s)
		return 0;
	if (id == SYSCALL_FN_exit || id == SYSCALL_FN_exit_group)
		return emit_exit(task, tgid, tid, id, regs);	/* never returns: no slot */
	if (s->busy) {
		/*
		 * Another thread's call holds the slot, or ours is one whose exit
		 * the kernel skipped this program for: a call lost either way.
		 */
		count_drop(XPU_DROP_INFLIGHT);
		if (s->busy != (__u64)tid + 1)
			return 0;
	}
	e = &s->e;
	e->h.duration_ns = 0;
	e->h.ret = 0;
	e->h.pid = tgid;
	e->h.tid = tid;
	e->h.func = id;
	e->h.flags = 0;
	e->h.cpu = 0;
	__builtin_memcpy(e->h.comm, task->comm, sizeof(e->h.comm));
	e->arg0 = regs->di;
	e->arg1 = regs->si;
	e->arg2 = regs->dx;
	e->h.ts_ns = bpf_ktime_get_ns();
	s->busy = (__u64)tid + 1;
	return 0;
}

SEC("tp_btf/sys_exit")
int BPF_PROG(sys_exit, struct pt_regs *regs, long ret)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), key = tid & slot_mask;
	struct syscall_inflight *s;

	s = bpf_map_lookup_elem(&inflight, &key);
	if (!s || s->busy != (__u64)tid + 1)
		return 0;	/* not traced at entry (filtered, or before the agent) */
	s->e.h.duration_ns = now - s->e.h.ts_ns;
	s->e.h.ret = ret;
	s->e.h.cpu = bpf_get_smp_processor_id();
	if (bpf_ringbuf_output(&events, &s->e, sizeof(s->e), wakeup_flags()))
		count_drop(XPU_DROP_RINGBUF);
	s->busy = 0;
	return 0;
}
