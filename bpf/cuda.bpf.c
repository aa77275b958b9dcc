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

#define CALL_EVENT struct cuda_event
#define CALL_SLOT struct cuda_inflight
#define CALL_FIRST stream
#include "calls.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

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
	case CUDA_ARGS_NCCL_REDUCE:
		e->grid_x = (__u32)a5;	/* op */
		e->handle = a6;
		e->stream = stack_arg(ctx, 7);
		goto buffers;
	case CUDA_ARGS_NCCL_BCAST:
		e->grid_y = (__u32)a5;	/* root */
		e->handle = a6;
		e->stream = stack_arg(ctx, 7);
		goto buffers;
	case CUDA_ARGS_NCCL_GATHER:
		e->handle = a5;
		e->stream = a6;
buffers:
		e->ptr = a1;
		e->ptr2 = a2;
		e->bytes = a3;
		e->kind = (__u32)a4;	/* datatype */
		break;
	case CUDA_ARGS_NCCL_RECV:
		e->ptr2 = a1;	/* recvbuff */
		goto p2p;
	case CUDA_ARGS_NCCL_SEND:
		e->ptr = a1;	/* sendbuff */
p2p:
		e->bytes = a2;
		e->kind = (__u32)a3;
		e->grid_y = (__u32)a4;	/* peer */
		e->handle = a5;
		e->stream = a6;
		break;
	case CUDA_ARGS_NCCL_INIT:
		/*
		 * The 128-byte ncclUniqueId goes whole onto the stack (a struct
		 * over 16 bytes is passed in memory and takes no register), so
		 * rank is the third register and commId starts at slot 7.
		 */
		e->handle = a1;	/* where the communicator goes; read at return */
		e->grid_z = (__u32)a2;
		e->ptr2 = stack_arg(ctx, 7);
		e->block_z = (__u32)a3;
		break;
	case CUDA_ARGS_NCCL_COMM:
		e->handle = a1;
		break;
	}
}

/* enter_<sym> for every function of cuda.fns (cuda_fns.h). */
#define CUDA_ENTRY(sym, lib, required) CALL_ENTRY(sym, CUDA_FN_##sym)
CUDA_FUNCTIONS(CUDA_ENTRY)

CALL_RETURN(cuda)

static __always_inline bool read_results(struct cuda_inflight *s, struct cuda_event *in)
{
	__u64 where;

	switch (in->h.func >> 8) {
	case CUDA_ARGS_ALLOC:
	case CUDA_ARGS_ALLOC_ASYNC:
	case CUDA_ARGS_ALLOC_MANAGED:
		where = in->ptr2;
		in->ptr2 = 0;
		call_read_out(in, &in->ptr, sizeof(in->ptr), where);
		break;
	case CUDA_ARGS_NCCL_INIT:
		call_read_out(in, &in->handle, sizeof(in->handle), in->handle);
		break;
	case CUDA_ARGS_SET_DEVICE:
		call_set_device(s, in, in->device);
		break;
	case CUDA_ARGS_GET_DEVICE:
		call_got_device(s, in, in->ptr2);
		return false;
	}
	return true;
}
