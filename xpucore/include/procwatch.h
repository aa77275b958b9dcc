/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Process discovery: the records bpf/procwatch.bpf.c sends to xputrace-procwatch
 * (agent_c/procwatch.c), which prints each as one JSON line for the manager
 * (manager/jobs/watch.py). Fixed-width fields only (see xpu_abi.h for the rules).
 *
 * A process is named by (machine, pid, start): start_ns is the thread group
 * leader's task->start_boottime, the value /proc/<pid>/stat field 22 gives in
 * clock ticks (fs/proc/array.c: nsec_to_clock_t(start_boottime)), so a pid that
 * is reused never names the same process twice.
 */
#ifndef XPU_PROCWATCH_H
#define XPU_PROCWATCH_H

#ifndef __VMLINUX_H__
#include <linux/types.h>	/* user space; BPF code has vmlinux.h */
#endif

enum procwatch_const {
	PROCWATCH_COMM_LEN = 16,
};

enum procwatch_kind {
	PROCWATCH_FORK = 1,	/* a new process (not a thread): sched_process_fork */
	PROCWATCH_EXEC = 2,	/* the process replaced its image: sched_process_exec */
	PROCWATCH_EXIT = 3,	/* its last thread exited: sched_process_exit */
};

/* Slots of the per-CPU counters (map "counts"). */
enum procwatch_count_slot {
	PROCWATCH_DROPPED = 0,	/* bpf_ringbuf_reserve failed: the record is lost */
	PROCWATCH_SENT = 1,	/* records submitted */
	PROCWATCH_COUNT_SLOTS = 2,
};

struct procwatch_event {
	__u64 time_ns;		/* bpf_ktime_get_boot_ns() when it happened */
	__u64 start_ns;		/* the process's start, boottime ns (leader's start_boottime) */
	__u64 parent_start_ns;	/* the parent's start, same clock */
	__u32 kind;		/* enum procwatch_kind */
	__u32 pid;		/* tgid */
	__u32 tid;		/* the thread that forked, exec'd or exited last */
	__u32 ppid;		/* real_parent's tgid */
	__u32 uid;		/* real uid */
	__s32 exit_code;	/* EXIT: the wait status (code << 8, or the signal | 0x80 core) */
	char comm[16];		/* PROCWATCH_COMM_LEN; after EXEC the new image's */
};

#endif
