// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * SYSCALL probe: the raw syscall tracepoints (tp_btf sys_enter/sys_exit), so
 * every syscall of a target is seen with its number, first three arguments,
 * duration and return value, without kprobes.
 *
 * One pair of programs, attached once, serves every SYSCALL monitor of the
 * machine (up to SYSCALL_SLOTS): each monitor is a bit, and maps filled by the
 * agent while it runs say which monitors want a task (by tgid, or by task
 * name) and a syscall number. So a syscall of a task nobody traces costs one
 * tgid lookup and one name lookup, however many monitors there are, and a
 * traced one is recorded once with the mask of the monitors it is for; the
 * agent hands it to each of them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "syscall.h"
#include "ringbuf.bpf.h"
#include "maps.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define INFLIGHT_SLOTS 4096	/* inflight's entries until the agent sets --max-threads */

const volatile __u32 slot_mask = INFLIGHT_SLOTS - 1;	/* inflight's max_entries - 1 */

/* Written by the agent while the programs run (the mmapped .bss). */
__u64 allow_slots[SYSCALL_NR_SLOTS];	/* [nr] bit n: monitor n records syscall nr */
__u32 tgid_targets;			/* monitors of a tgid: 0 skips the lookup */
__u32 comm_targets;			/* monitors of a task name: 0 skips the lookup */
__u32 exclude_on;			/* excluded holds entries */

/* tgid -> the monitors tracing that process. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u64);
} tgid_slots SEC(".maps");

/* Task name (zero-padded, as bpf_get_current_comm gives it) -> the monitors tracing it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, char[XPU_COMM_LEN]);
	__type(value, __u64);
} comm_slots SEC(".maps");

/*
 * Processes of the platform itself (the agent, the manager, what they start):
 * never traced by task name. A process forked by one is one too.
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u8);
} excluded SEC(".maps");

/* See struct syscall_inflight in syscall.h. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);	/* the agent reads calls in progress at stop */
	__uint(max_entries, INFLIGHT_SLOTS);	/* resized by the agent, a power of two */
	__type(key, __u32);
	__type(value, struct syscall_inflight);
} inflight SEC(".maps");

PERCPU_ONE(slot_drops, struct syscall_slot_drops);

/* One lost call (or a record the ring had no room for), counted for each monitor of slots. */
static __always_inline void count_drop(__u64 slots, bool ringbuf)
{
	__u32 zero = 0;
	struct syscall_slot_drops *d = bpf_map_lookup_elem(&slot_drops, &zero);

	if (!d)
		return;
	for (int i = 0; i < SYSCALL_SLOTS; i++) {
		if (!(slots & (1ULL << i)))
			continue;
		if (ringbuf)
			d->ringbuf[i]++;
		else
			d->inflight[i]++;
	}
}

/* The monitors that record syscall id of the current task. */
static __always_inline __u64 wanted(__u32 tgid, long id)
{
	char comm[XPU_COMM_LEN];
	__u64 slots = 0, *m;

	if (tgid_targets) {
		m = bpf_map_lookup_elem(&tgid_slots, &tgid);
		if (m)
			slots = *m;
	}
	if (comm_targets) {
		bpf_get_current_comm(comm, sizeof(comm));	/* zero-padded */
		m = bpf_map_lookup_elem(&comm_slots, comm);
		if (m && !(exclude_on && bpf_map_lookup_elem(&excluded, &tgid)))
			slots |= *m;
	}
	if (!slots || id < 0 || id >= SYSCALL_NR_SLOTS)
		return 0;
	return slots & allow_slots[id];
}

/* exit and exit_group: an event at once, of no duration (the thread is gone after). */
static __always_inline int emit_exit(struct task_struct *task, __u32 tgid, __u32 tid, long id,
				     struct pt_regs *regs, __u64 slots)
{
	struct syscall_record r = {};

	r.slots = slots;
	r.e.h.ts_ns = bpf_ktime_get_ns();
	r.e.h.pid = tgid;
	r.e.h.tid = tid;
	r.e.h.func = id;
	r.e.h.cpu = bpf_get_smp_processor_id();
	__builtin_memcpy(r.e.h.comm, task->comm, sizeof(r.e.h.comm));
	r.e.arg0 = regs->di;
	if (bpf_ringbuf_output(&events, &r, sizeof(r), 0))
		count_drop(slots, true);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(sys_enter, struct pt_regs *regs, long id)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tgid = task->tgid, tid = task->pid, key = tid & slot_mask;
	struct syscall_inflight *s;
	struct syscall_event *e;
	__u64 slots = wanted(tgid, id);

	if (!slots)
		return 0;
	s = bpf_map_lookup_elem(&inflight, &key);
	if (!s)
		return 0;
	if (id == SYSCALL_FN_exit || id == SYSCALL_FN_exit_group)
		return emit_exit(task, tgid, tid, id, regs, slots);	/* never returns: no slot */
	if (s->busy) {
		/* Another thread's call holds the slot: this call is lost. */
		if (s->busy != (__u64)tid + 1) {
			count_drop(slots, false);
			return 0;
		}
		/* Ours, one whose exit the kernel skipped this program for: that one is lost. */
		count_drop(s->r.slots, false);
	}
	e = &s->r.e;
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
	s->r.slots = slots;
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
	s->r.e.h.duration_ns = now - s->r.e.h.ts_ns;
	s->r.e.h.ret = ret;
	s->r.e.h.cpu = bpf_get_smp_processor_id();
	if (bpf_ringbuf_output(&events, &s->r, sizeof(s->r), wakeup_flags()))
		count_drop(s->r.slots, true);
	s->busy = 0;
	return 0;
}

/* A process the platform starts (fork) is the platform's too. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(platform_fork, struct task_struct *parent, struct task_struct *child)
{
	__u32 ptgid = parent->tgid, ctgid = child->tgid;
	__u8 one = 1;

	if (!exclude_on || child->pid != ctgid)	/* a new thread is no new process */
		return 0;
	if (bpf_map_lookup_elem(&excluded, &ptgid))
		bpf_map_update_elem(&excluded, &ctgid, &one, BPF_ANY);
	return 0;
}
