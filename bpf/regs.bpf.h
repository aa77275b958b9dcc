/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Argument access for uprobes on x86-64 user code (System V ABI): rdi, rsi,
 * rdx, rcx, r8, r9, then 8-byte slots on the stack above the return address.
 */
#ifndef XPU_REGS_BPF_H
#define XPU_REGS_BPF_H

#include <bpf/bpf_tracing.h>

/* libbpf before 1.2 (Debian 12 ships 1.1) stops at PT_REGS_PARM5. */
#ifndef PT_REGS_PARM6
#define PT_REGS_PARM6(x) ((x)->r9)
#endif

/* The n-th argument (n >= 7) at function entry, where rsp points at the return address. */
static __always_inline __u64 stack_arg(struct pt_regs *ctx, int n)
{
	__u64 v = 0;

	bpf_probe_read_user(&v, sizeof(v), (void *)(PT_REGS_SP(ctx) + 8 * (n - 6)));
	return v;
}

/* Slots 7.. of a call with stack arguments, read in one go. */
static __always_inline void stack_args(struct pt_regs *ctx, __u64 *v, __u32 size)
{
	if (bpf_probe_read_user(v, size, (void *)(PT_REGS_SP(ctx) + 8)))
		__builtin_memset(v, 0, size);
}

#endif
