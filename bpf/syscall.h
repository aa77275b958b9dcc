/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * SYSCALL probe: event layout, shared by syscall.bpf.c, the agent and the
 * Python decoder (through cffi, see xpu_abi.h for the rules). A SYSCALL
 * event's function id is the x86-64 syscall number (enum syscall_fn, generated
 * into syscall_nr.h); every syscall has the one argument class ANY.
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
};

/* One completed (or, at stop, incomplete) syscall; h.ret is its return value. */
struct syscall_event {
	struct xpu_event_hdr h;
	__u64 arg0;
	__u64 arg1;
	__u64 arg2;
};

/*
 * Per-thread state, one slot per thread (tid & slot mask) in an mmapable
 * array: a syscall in progress is e.h.tid == tid with e.h.func its number. A
 * thread makes one syscall at a time, so one frame suffices; a thread whose
 * slot another thread holds loses its call, counted as an in-flight drop. The
 * agent reads the slots at stop to report calls still in progress (a blocking
 * read, a sleep) as incomplete.
 */
struct syscall_inflight {
	__u64 busy;		/* tid + 1 while a call is in progress, else 0 */
	struct syscall_event e;
};

#endif /* XPU_SYSCALL_H */
