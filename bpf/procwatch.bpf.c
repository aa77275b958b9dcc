// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Process discovery: one record per new process, exec and process exit, from
 * the scheduler's BTF tracepoints, into a ring buffer read by
 * xputrace-procwatch. Threads are left out: a fork that shares the thread
 * group is not a new process, and an exit is the process's only when its last
 * thread leaves (signal->live reached zero before the tracepoint fires:
 * kernel/exit.c do_exit). A record that finds the ring full is counted, never
 * lost silently.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "procwatch.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);		/* resized by xputrace-procwatch */
} events SEC(".maps");

/*
 * Wakeups are batched: a record wakes xputrace-procwatch only when batch_ns have passed
 * since the last wakeup, or the ring is half full; records in between wait for the next
 * wakeup or for the reader's own deadline (it drains once more batch_ns * 2 after each
 * wakeup). An idle machine causes no wakeups at all, a storm batch_ns-spaced ones.
 */
const volatile __u64 batch_ns = 0;		/* 0: wake for every record */
const volatile __u64 ring_bytes = 1 << 20;
__u64 last_wake_ns = 0;

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, PROCWATCH_COUNT_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

static __always_inline void count(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&counts, &slot);

	if (n)
		*n += 1;
}

static __always_inline __u64 wakeup_flags(__u64 now)
{
	if (!batch_ns)
		return 0;
	if (now - last_wake_ns >= batch_ns ||
	    bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= ring_bytes / 2) {
		last_wake_ns = now;	/* racing CPUs at worst wake the reader twice */
		return BPF_RB_FORCE_WAKEUP;
	}
	return BPF_RB_NO_WAKEUP;
}

static __always_inline int emit(__u32 kind, struct task_struct *task, __s32 exit_code)
{
	struct task_struct *leader = BPF_CORE_READ(task, group_leader);
	struct task_struct *parent = BPF_CORE_READ(task, real_parent);
	__u64 now = bpf_ktime_get_boot_ns();
	struct procwatch_event *e;

	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count(PROCWATCH_DROPPED);
		return 0;
	}
	e->time_ns = now;
	e->start_ns = BPF_CORE_READ(leader, start_boottime);
	e->parent_start_ns = BPF_CORE_READ(parent, group_leader, start_boottime);
	e->kind = kind;
	e->pid = BPF_CORE_READ(task, tgid);
	e->tid = BPF_CORE_READ(task, pid);
	e->ppid = BPF_CORE_READ(parent, tgid);
	e->uid = BPF_CORE_READ(task, real_cred, uid.val);
	e->exit_code = exit_code;
	BPF_CORE_READ_STR_INTO(&e->comm, task, comm);
	bpf_ringbuf_submit(e, wakeup_flags(now));
	count(PROCWATCH_SENT);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int BPF_PROG(procwatch_fork, struct task_struct *parent, struct task_struct *child)
{
	if (BPF_CORE_READ(child, pid) != BPF_CORE_READ(child, tgid))
		return 0;	/* a thread */
	return emit(PROCWATCH_FORK, child, 0);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(procwatch_exec, struct task_struct *task, pid_t old_pid, struct linux_binprm *bprm)
{
	return emit(PROCWATCH_EXEC, task, 0);
}

SEC("tp_btf/sched_process_exit")
int BPF_PROG(procwatch_exit, struct task_struct *task)
{
	if (BPF_CORE_READ(task, signal, live.counter) != 0)
		return 0;	/* other threads of the process live on */
	return emit(PROCWATCH_EXIT, task, BPF_CORE_READ(task, exit_code));
}
