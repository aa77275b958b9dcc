// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * CUDA probe: one entry and one return program for every hooked runtime and
 * driver function. The agent attaches both to each symbol with the function id
 * as the BPF cookie; the id's argument class says which registers and stack
 * slots hold what (System V x86-64 ABI: rdi rsi rdx rcx r8 r9, then the stack
 * above the return address; a dim3 by value is 12 bytes, so two registers).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "cuda.h"
#include "regs.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Set by the agent before load. */
const volatile __u32 targ_tgid = 0;		/* 0: any process */
const volatile __u8 filter_comm = 0;		/* 1: only tasks named targ_comm */
const volatile char targ_comm[XPU_COMM_LEN] = {};
const volatile __u64 wakeup_bytes = 0;		/* wake the agent past this much data */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);		/* resized by the agent */
} events SEC(".maps");

/*
 * Calls that have entered and not yet returned, as a small stack per thread in
 * task-local storage: no hashing or locking on the hot path, and nesting (a
 * runtime call that calls the driver) pairs up last-in first-out.
 */
#define MAX_DEPTH 8

struct inflight {
	__u32 depth;		/* frames in use */
	__u32 overflow;		/* calls entered while full, not yet returned */
	struct cuda_event frames[MAX_DEPTH];
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct inflight);
} inflight SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, XPU_DROP_SLOTS);
	__type(key, __u32);
	__type(value, __u64);
} drops SEC(".maps");

static __always_inline void count_drop(__u32 slot)
{
	__u64 *n = bpf_map_lookup_elem(&drops, &slot);

	if (n)
		*n += 1;
}

static __always_inline bool comm_matches(void)
{
	char comm[XPU_COMM_LEN];

	bpf_get_current_comm(comm, sizeof(comm));
	for (int i = 0; i < XPU_COMM_LEN; i++) {
		if (comm[i] != targ_comm[i])
			return false;
		if (!comm[i])
			break;
	}
	return true;
}

/* cudaLaunchConfig_t's leading members (driver_types.h). */
struct launch_config {
	__u32 grid[3];
	__u32 block[3];
	__u64 dynamic_smem_bytes;
	__u64 stream;
};

static __always_inline void read_args(struct pt_regs *ctx, __u64 func, struct cuda_event *e)
{
	__u64 a1 = PT_REGS_PARM1(ctx), a2 = PT_REGS_PARM2(ctx), a3 = PT_REGS_PARM3(ctx);
	__u64 a4 = PT_REGS_PARM4(ctx), a5 = PT_REGS_PARM5(ctx), a6 = PT_REGS_PARM6(ctx);
	struct launch_config cfg;

	switch (func >> 8) {
	case CUDA_ARGS_LAUNCH:
		e->ptr = a1;
		e->grid_x = (__u32)a2;
		e->grid_y = a2 >> 32;
		e->grid_z = (__u32)a3;
		e->block_x = (__u32)a4;
		e->block_y = a4 >> 32;
		e->block_z = (__u32)a5;
		/* a6 is void **args; sharedMem and stream are the 7th and 8th */
		e->bytes = stack_arg(ctx, 7);
		e->stream = stack_arg(ctx, 8);
		break;
	case CUDA_ARGS_LAUNCH_EX:
		e->ptr = a2;
		if (bpf_probe_read_user(&cfg, sizeof(cfg), (void *)a1) == 0) {
			e->grid_x = cfg.grid[0];
			e->grid_y = cfg.grid[1];
			e->grid_z = cfg.grid[2];
			e->block_x = cfg.block[0];
			e->block_y = cfg.block[1];
			e->block_z = cfg.block[2];
			e->bytes = cfg.dynamic_smem_bytes;
			e->stream = cfg.stream;
		}
		break;
	case CUDA_ARGS_CU_LAUNCH:
		e->ptr = a1;
		e->grid_x = (__u32)a2;
		e->grid_y = (__u32)a3;
		e->grid_z = (__u32)a4;
		e->block_x = (__u32)a5;
		e->block_y = (__u32)a6;
		e->block_z = (__u32)stack_arg(ctx, 7);
		e->bytes = (__u32)stack_arg(ctx, 8);
		e->stream = stack_arg(ctx, 9);
		break;
	case CUDA_ARGS_MEMCPY_ASYNC:
		e->stream = a5;
		/* fall through */
	case CUDA_ARGS_MEMCPY:
		e->ptr = a1;
		e->ptr2 = a2;
		e->bytes = a3;
		e->kind = (__u32)a4;
		break;
	case CUDA_ARGS_CU_MEMCPY_ASYNC:
		e->ptr = a1;
		e->ptr2 = a2;
		e->bytes = a3;
		e->stream = a4;
		e->kind = (func & 0xff) + 1;
		break;
	case CUDA_ARGS_ALLOC_ASYNC:
		e->stream = a3;
		/* fall through */
	case CUDA_ARGS_ALLOC:
		e->ptr2 = a1;	/* where the pointer goes; read back at return */
		e->bytes = a2;
		break;
	case CUDA_ARGS_ALLOC_MANAGED:
		e->ptr2 = a1;
		e->bytes = a2;
		e->kind = (__u32)a3;
		break;
	case CUDA_ARGS_FREE_ASYNC:
	case CUDA_ARGS_EVENT_RECORD:
	case CUDA_ARGS_GRAPH_LAUNCH:
		e->stream = a2;
		/* fall through */
	case CUDA_ARGS_FREE:
	case CUDA_ARGS_EVENT:
		e->ptr = a1;
		break;
	case CUDA_ARGS_STREAM:
		e->stream = a1;
		break;
	}
}

SEC("uprobe")
int BPF_KPROBE(cuda_entry)
{
	__u64 pid_tgid = bpf_get_current_pid_tgid();
	struct task_struct *task;
	struct inflight *s;
	struct cuda_event *e;
	__u32 d;

	if (targ_tgid && (pid_tgid >> 32) != targ_tgid)
		return 0;
	if (filter_comm && !comm_matches())
		return 0;
	task = bpf_get_current_task_btf();
	s = bpf_task_storage_get(&inflight, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!s) {
		count_drop(XPU_DROP_INFLIGHT);
		return 0;
	}
	d = s->depth;
	if (d >= MAX_DEPTH) {
		s->overflow++;
		count_drop(XPU_DROP_INFLIGHT);
		return 0;
	}
	e = &s->frames[d];
	/* duration, ret and cpu are set at return; everything else here */
	__builtin_memset(&e->stream, 0, sizeof(*e) - offsetof(struct cuda_event, stream));
	e->h.flags = 0;
	e->h.func = bpf_get_attach_cookie(ctx);
	e->h.pid = pid_tgid >> 32;
	e->h.tid = (__u32)pid_tgid;
	/* Two loads; bpf_get_current_comm() costs about 100 ns more per call. */
	__builtin_memcpy(e->h.comm, task->comm, sizeof(e->h.comm));
	read_args(ctx, e->h.func, e);
	s->depth = d + 1;
	e->h.ts_ns = bpf_ktime_get_ns();
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(cuda_return)
{
	__u64 now = bpf_ktime_get_ns(), func = bpf_get_attach_cookie(ctx), flags = 0, where;
	struct cuda_event *in = NULL;
	struct inflight *s;
	__u32 depth, i, d = 0;

	s = bpf_task_storage_get(&inflight, bpf_get_current_task_btf(), 0, 0);
	if (!s)
		return 0;
	if (s->overflow) {	/* the innermost call was never recorded */
		s->overflow--;
		return 0;
	}
	depth = s->depth;
	d = depth - 1;
	asm volatile("" : "+r"(d));	/* bounds-check the index the load uses */
	if (d < MAX_DEPTH && s->frames[d].h.func == func) {
		in = &s->frames[d];
	} else {
		/* Frames above ours belong to calls whose return we never saw. */
		for (i = 0; i < MAX_DEPTH; i++) {
			if (i >= depth)
				break;
			d = depth - 1 - i;
			asm volatile("" : "+r"(d));
			if (d >= MAX_DEPTH)
				break;
			in = &s->frames[d];
			if (in->h.func == func)
				break;
			count_drop(XPU_DROP_INFLIGHT);
			in = NULL;
		}
		if (!in) {
			s->depth = 0;
			return 0;
		}
	}
	s->depth = d;
	in->h.duration_ns = now - in->h.ts_ns;
	in->h.ret = (__s32)PT_REGS_RC(ctx);	/* cudaError_t and CUresult are ints */
	in->h.cpu = bpf_get_smp_processor_id();
	switch (func >> 8) {
	case CUDA_ARGS_ALLOC:
	case CUDA_ARGS_ALLOC_ASYNC:
	case CUDA_ARGS_ALLOC_MANAGED:
		where = in->ptr2;
		in->ptr2 = 0;
		if (in->h.ret != 0 ||
		    bpf_probe_read_user(&in->ptr, sizeof(in->ptr), (void *)where))
			in->ptr = 0;
	}
	/*
	 * Wake the agent only once wakeup_bytes are waiting. The kernel's own
	 * policy wakes only for the first record after the consumer caught up,
	 * so past the threshold the wakeup has to be forced.
	 */
	if (wakeup_bytes)
		flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) < wakeup_bytes ?
			BPF_RB_NO_WAKEUP : BPF_RB_FORCE_WAKEUP;
	/* One copy, done by the kernel; the frame is free again once we return. */
	if (bpf_ringbuf_output(&events, in, sizeof(*in), flags))
		count_drop(XPU_DROP_RINGBUF);
	return 0;
}

/* At stop, after detaching: every call still in flight, one cuda_event each. */
SEC("iter/task")
int dump_inflight(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct inflight *s;
	__u32 d;

	if (!task)
		return 0;
	s = bpf_task_storage_get(&inflight, task, 0, 0);
	if (!s)
		return 0;
	for (d = 0; d < MAX_DEPTH && d < s->depth; d++)
		bpf_seq_write(ctx->meta->seq, &s->frames[d], sizeof(s->frames[d]));
	return 0;
}
