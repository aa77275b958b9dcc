/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * SYSCALL probe: event layout, shared by syscall.bpf.c, the agent and the
 * Python decoder (through cffi, see xpu_abi.h for the rules). A SYSCALL
 * event's function id is the x86-64 syscall number (enum syscall_fn, generated
 * into syscall_nr.h); every syscall has the one argument class ANY.
 *
 * One pair of programs serves every SYSCALL monitor of the machine (the
 * agent's hub mode, agent_c/syscall_hub.c): each monitor owns a slot, a bit
 * of a 64-bit mask. The filters map a target (tgid or task name) and a syscall
 * number to the slots that want it; a record carries the slots its event is
 * for, and the agent hands the event to each of those monitors' batches.
 */
#ifndef XPU_SYSCALL_H
#define XPU_SYSCALL_H

#include "xpu_abi.h"
#include "syscall_nr.h"

enum syscall_arg_class {
	SYSCALL_ARGS_ANY = 0,	/* arg0..arg2: the first three arguments, raw */
};

enum syscall_const {
	SYSCALL_ALLOW_WORDS = 8,	/* the allow bitmap: syscall numbers 0..511 */
	SYSCALL_NR_SLOTS = 512,		/* syscall numbers with a slot mask each */
	SYSCALL_SLOTS = 64,		/* monitors one tracer serves: bits of a __u64 */
};

/* One completed (or, at stop, incomplete) syscall; h.ret is its return value. */
struct syscall_event {
	struct xpu_event_hdr h;
	__u64 arg0;
	__u64 arg1;
	__u64 arg2;
};

/* A ring buffer record: the event and the monitors (bit n: slot n) it is for. */
struct syscall_record {
	__u64 slots;
	struct syscall_event e;
};

/*
 * Per-thread state, one slot per thread (tid & slot mask) in an mmapable
 * array: a syscall in progress is busy == tid + 1, r.e.h.func its number and
 * r.slots the monitors that want it. A thread makes one syscall at a time, so
 * one frame suffices; a thread whose slot another thread holds loses its
 * call, counted as an in-flight drop of each monitor that wanted it. The
 * agent reads the slots when a monitor stops to report its calls still in
 * progress (a blocking read, a sleep) as incomplete.
 */
struct syscall_inflight {
	__u64 busy;		/* tid + 1 while a call is in progress, else 0 */
	struct syscall_record r;
};

/* Drops per monitor slot (map "slot_drops", per CPU, one entry). */
struct syscall_slot_drops {
	__u64 ringbuf[SYSCALL_SLOTS];	/* ring buffer full */
	__u64 inflight[SYSCALL_SLOTS];	/* lost before its return */
};

#endif /* XPU_SYSCALL_H */
