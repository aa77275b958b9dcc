// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * CUDA probe: an entry program per hooked runtime and driver function, and one
 * return program for all of them. Each entry program has its function id as a
 * constant (bpf_get_attach_cookie() costs ~30 ns a call here, a tenth of the
 * probe), and the id's argument class says which registers and stack slots
 * hold what (System V x86-64 ABI: rdi rsi rdx rcx r8 r9, then the stack above
 * the return address; a dim3 by value is 12 bytes, so two registers). The
 * return program pairs by stack pointer and needs no id.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "cuda.h"
#include "drops.bpf.h"
#include "target.bpf.h"
#include "regs.bpf.h"
#include "pystack.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u64 hold_ns = 100000000;	/* longest a completed call waits in out[] */

/* See struct cuda_inflight in cuda.h. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);	/* the agent takes out[] of idle threads */
	__uint(max_entries, 4096);		/* resized by the agent, a power of two */
	__type(key, __u32);
	__type(value, struct cuda_inflight);
} inflight SEC(".maps");

/* cudaLaunchConfig_t's leading members (driver_types.h). */
struct launch_config {
	__u32 grid[3];
	__u32 block[3];
	__u64 dynamic_smem_bytes;
	__u64 stream;
};

static __always_inline void read_args(struct pt_regs *ctx, const __u32 func, struct cuda_event *e)
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
		e->kind = (func & 1) + 1;	/* HtoD 1, DtoH 2 */
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
	case CUDA_ARGS_SET_DEVICE:
		e->device = (__u32)a1;
		e->h.flags = 0;
		break;
	case CUDA_ARGS_GET_DEVICE:
		e->ptr2 = a1;	/* where the ordinal goes; read at return */
		break;
	}
}

static __always_inline int cuda_enter(struct pt_regs *ctx, const __u32 func)
{
	/* One helper call gives pid, tid and comm; each call costs ~15-25 ns. */
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tgid = task->tgid, tid = task->pid, key = tid & slot_mask, depth;
	struct cuda_inflight *s;
	struct cuda_event *e;
	__u64 st, next;

	if (targ_tgid && tgid != targ_tgid)
		return 0;
	if (filter_comm && !comm_matches(task))
		return 0;
	s = bpf_map_lookup_elem(&inflight, &key);
	if (!s)
		return 0;
	st = s->state;
	depth = (__u32)st;
	if ((st >> 32) != tid && depth) {
		/* another thread with the same slot is inside a call */
		count_drop(XPU_DROP_INFLIGHT);
		return 0;
	}
	if ((st >> 32) != tid)
		depth = 0;
	next = ((__u64)tid << 32) | (depth + 1);
	if (__sync_val_compare_and_swap(&s->state, st, next) != st) {
		count_drop(XPU_DROP_INFLIGHT);
		return 0;
	}
	if (depth >= CUDA_INFLIGHT_FRAMES) {
		count_drop(XPU_DROP_INFLIGHT);	/* nested too deep to keep */
		return 0;
	}
	s->sp[depth] = PT_REGS_SP(ctx);
	e = &s->frames[depth];
	/* duration, ret and cpu are set at return; everything else here */
	__builtin_memset(&e->stream, 0, sizeof(*e) - offsetof(struct cuda_event, stream));
	if (s->dev_tid == tid) {
		e->device = s->dev;
		e->h.flags = 0;
	} else {
		e->h.flags = XPU_EV_DEVICE_ASSUMED;
	}
	e->h.func = func;
	e->h.pid = tgid;
	e->h.tid = tid;
	/* Two loads; bpf_get_current_comm() costs about 100 ns more per call. */
	__builtin_memcpy(e->h.comm, task->comm, sizeof(e->h.comm));
	read_args(ctx, func, e);
	e->py_stack = py_capture(tgid, tid);
	e->h.ts_ns = bpf_ktime_get_ns();
	return 0;
}

/* Named enter_<symbol>: the agent finds each symbol's program by that name. */
#define CUDA_ENTRY(sym)							\
	SEC("uprobe")							\
	int enter_##sym(struct pt_regs *ctx)				\
	{								\
		return cuda_enter(ctx, CUDA_FN_##sym);			\
	}

CUDA_ENTRY(cudaLaunchKernel)
CUDA_ENTRY(cudaLaunchKernel_ptsz)
CUDA_ENTRY(cudaLaunchKernelExC)
CUDA_ENTRY(cudaLaunchKernelExC_ptsz)
CUDA_ENTRY(cudaMemcpy)
CUDA_ENTRY(cudaMemcpy_ptds)
CUDA_ENTRY(cudaMemcpyAsync)
CUDA_ENTRY(cudaMemcpyAsync_ptsz)
CUDA_ENTRY(cudaMalloc)
CUDA_ENTRY(cudaMallocAsync)
CUDA_ENTRY(cudaMallocAsync_ptsz)
CUDA_ENTRY(cudaMallocManaged)
CUDA_ENTRY(cudaFree)
CUDA_ENTRY(cudaFreeAsync)
CUDA_ENTRY(cudaFreeAsync_ptsz)
CUDA_ENTRY(cudaStreamSynchronize)
CUDA_ENTRY(cudaStreamSynchronize_ptsz)
CUDA_ENTRY(cudaDeviceSynchronize)
CUDA_ENTRY(cudaEventRecord)
CUDA_ENTRY(cudaEventRecord_ptsz)
CUDA_ENTRY(cudaEventSynchronize)
CUDA_ENTRY(cudaGraphLaunch)
CUDA_ENTRY(cudaGraphLaunch_ptsz)
CUDA_ENTRY(cudaSetDevice)
CUDA_ENTRY(cudaGetDevice)
CUDA_ENTRY(cuLaunchKernel)
CUDA_ENTRY(cuLaunchKernel_ptsz)
CUDA_ENTRY(cuMemAlloc_v2)
CUDA_ENTRY(cuMemFree_v2)
CUDA_ENTRY(cuMemcpyHtoDAsync_v2)
CUDA_ENTRY(cuMemcpyDtoHAsync_v2)
CUDA_ENTRY(cuMemcpyHtoDAsync_v2_ptsz)
CUDA_ENTRY(cuMemcpyDtoHAsync_v2_ptsz)
CUDA_ENTRY(cuStreamSynchronize)
CUDA_ENTRY(cuStreamSynchronize_ptsz)
CUDA_ENTRY(cuCtxSynchronize)

/* Sends out[0..count) as one ring buffer record, unless the agent took it first. */
static __always_inline void flush_out(struct cuda_inflight *s, __u64 done)
{
	__u64 size = (__u64)(__u32)done * sizeof(struct cuda_event);

	if (__sync_val_compare_and_swap(&s->done, done, ((done >> 32) + 1) << 32) != done)
		return;
	asm volatile("" : "+r"(size));
	if (size == 0 || size > sizeof(s->out))
		return;
	if (bpf_ringbuf_output(&events, s->out, size, wakeup_flags()))
		count_drops(XPU_DROP_RINGBUF, size / sizeof(struct cuda_event));
}

/* Appends a completed call to out[], and flushes out[] when full or old. */
static __always_inline void emit(struct cuda_inflight *s, struct cuda_event *ev, __u64 now)
{
	__u64 done;
	__u32 n;

	for (int try = 0; try < 2; try++) {
		done = s->done;
		n = (__u32)done;
		asm volatile("" : "+r"(n));
		if (n >= CUDA_OUT_EVENTS)
			break;	/* never left full: the owner flushes at the last one */
		__builtin_memcpy(&s->out[n], ev, sizeof(*ev));
		/* Fails only when the agent took out[] meanwhile: go again, at 0. */
		if (__sync_val_compare_and_swap(&s->done, done, done + 1) != done)
			continue;
		if (n + 1 == CUDA_OUT_EVENTS || now - s->out[0].h.ts_ns >= hold_ns)
			flush_out(s, done + 1);
		return;
	}
	count_drop(XPU_DROP_INFLIGHT);
}

SEC("uretprobe")
int BPF_KRETPROBE(cuda_return)
{
	__u64 now = bpf_ktime_get_ns(), sp = PT_REGS_SP(ctx) - 8, st, where;
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), key = tid & slot_mask, depth, i, d = 0;
	struct cuda_event *in = NULL;
	struct cuda_inflight *s;
	__u32 dev;

	s = bpf_map_lookup_elem(&inflight, &key);
	if (!s)
		return 0;
	st = s->state;
	depth = (__u32)st;
	if ((st >> 32) != tid || !depth)
		return 0;	/* its entry was not recorded, and counted then */
	/* Only the owner changes state while depth > 0: plain stores suffice. */
	if (depth > CUDA_INFLIGHT_FRAMES) {
		s->state = st - 1;
		return 0;
	}
	d = depth - 1;
	asm volatile("" : "+r"(d));	/* bounds-check the index the load uses */
	if (d < CUDA_INFLIGHT_FRAMES && s->sp[d] == sp) {
		in = &s->frames[d];
	} else {
		/* Frames above ours belong to calls whose return we never saw. */
		for (i = 0; i < CUDA_INFLIGHT_FRAMES; i++) {
			if (i >= depth)
				break;
			d = depth - 1 - i;
			asm volatile("" : "+r"(d));
			if (d >= CUDA_INFLIGHT_FRAMES)
				break;
			in = &s->frames[d];
			if (s->sp[d] == sp)
				break;
			count_drop(XPU_DROP_INFLIGHT);
			in = NULL;
		}
		if (!in) {
			s->state = (__u64)tid << 32;
			return 0;
		}
	}
	in->h.duration_ns = now - in->h.ts_ns;
	in->h.ret = (__s32)PT_REGS_RC(ctx);	/* cudaError_t and CUresult are ints */
	in->h.cpu = bpf_get_smp_processor_id();
	switch (in->h.func >> 8) {
	case CUDA_ARGS_ALLOC:
	case CUDA_ARGS_ALLOC_ASYNC:
	case CUDA_ARGS_ALLOC_MANAGED:
		where = in->ptr2;
		in->ptr2 = 0;
		if (in->h.ret != 0 ||
		    bpf_probe_read_user(&in->ptr, sizeof(in->ptr), (void *)where))
			in->ptr = 0;
		break;
	case CUDA_ARGS_SET_DEVICE:
		if (in->h.ret == 0) {
			s->dev = in->device;
			s->dev_tid = tid;
		}
		break;
	case CUDA_ARGS_GET_DEVICE:
		if (in->h.ret == 0 && !bpf_probe_read_user(&dev, sizeof(dev), (void *)in->ptr2)) {
			s->dev = dev;
			s->dev_tid = tid;
		}
		s->state = ((__u64)tid << 32) | d;
		return 0;
	}
	emit(s, in, now);
	/* Only now may another thread take the slot and reuse the frame. */
	s->state = ((__u64)tid << 32) | d;
	return 0;
}
