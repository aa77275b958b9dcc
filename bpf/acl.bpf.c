// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Ascend probe (AscendCL runtime, aclop, aclmdl, aclnn, HCCL): an entry
 * program per hooked function with its function id as a constant, whose
 * argument class says which registers and stack slots hold what (System V
 * x86-64 ABI: rdi rsi rdx rcx r8 r9, then the stack above the return address;
 * prototypes as the CANN headers declare them), and one return program for
 * all, pairing by stack pointer (calls.bpf.h). The aclnn operators, hundreds
 * of symbols with one prototype, share one entry program; the BPF cookie of
 * each attachment says which op it is.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "acl.h"
#include "drops.bpf.h"
#include "target.bpf.h"
#include "regs.bpf.h"
#include "pystack.bpf.h"

#define CALL_EVENT struct acl_event
#define CALL_SLOT struct acl_inflight
#define CALL_FIRST stream
#include "calls.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The aclnn ops' names (without "aclnn"), by the cookie of their attachment; set by the agent. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4096);		/* resized by the agent */
	__type(key, __u32);
	__type(value, char[sizeof(((struct acl_event *)0)->op_type)]);
} nn_ops SEC(".maps");

static __always_inline void read_args(struct pt_regs *ctx, const __u32 func, struct acl_event *e)
{
	__u64 a1 = PT_REGS_PARM1(ctx), a2 = PT_REGS_PARM2(ctx), a3 = PT_REGS_PARM3(ctx);
	__u64 a4 = PT_REGS_PARM4(ctx), a5 = PT_REGS_PARM5(ctx), a6 = PT_REGS_PARM6(ctx);
	__u64 st[6];	/* arguments 7 to 12 */

	switch (func >> 8) {
	case ACL_ARGS_INIT:
		e->ptr = a1;
		if (a1)
			bpf_probe_read_user_str(e->op_type, sizeof(e->op_type), (void *)a1);
		break;
	case ACL_ARGS_SET_DEVICE:
		e->device = (__u32)a1;
		e->h.flags = 0;
		break;
	case ACL_ARGS_MALLOC_HOST:
		e->bytes = a2;
		/* fall through */
	case ACL_ARGS_GET_DEVICE:
	case ACL_ARGS_CREATE_STREAM:
		e->ptr2 = a1;	/* where the result goes; read at return */
		break;
	case ACL_ARGS_MALLOC:
		e->ptr2 = a1;
		e->bytes = a2;
		e->kind = (__u32)a3;
		break;
	case ACL_ARGS_FREE:
	case ACL_ARGS_EVENT:
		e->ptr = a1;
		break;
	case ACL_ARGS_MEMCPY_ASYNC:
		e->stream = a6;
		/* fall through */
	case ACL_ARGS_MEMCPY:
		e->ptr = a1;
		e->bytes2 = a2;
		e->ptr2 = a3;
		e->bytes = a4;
		e->kind = (__u32)a5;
		break;
	case ACL_ARGS_MEMCPY_2D:
	case ACL_ARGS_MEMCPY_2D_ASYNC:
		e->ptr = a1;
		e->bytes2 = a2;
		e->ptr2 = a3;
		e->handle = a4;	/* spitch */
		e->bytes = a5;
		e->num = (__u32)a6;	/* height: size_t, kept to 32 bits */
		if (func >> 8 == ACL_ARGS_MEMCPY_2D_ASYNC) {
			stack_args(ctx, st, 16);
			e->kind = (__u32)st[0];
			e->stream = st[1];
		} else {
			e->kind = (__u32)stack_arg(ctx, 7);
		}
		break;
	case ACL_ARGS_MEMSET_ASYNC:
		e->stream = a5;
		/* fall through */
	case ACL_ARGS_MEMSET:
		e->ptr = a1;
		e->bytes2 = a2;
		e->kind = (__u32)a3;
		e->bytes = a4;
		break;
	case ACL_ARGS_LAUNCH_V2:
		e->handle = a5;	/* cfg */
		e->stream = a6;
		/* fall through */
	case ACL_ARGS_LAUNCH:
		e->ptr = a1;
		e->num = (__u32)a2;
		e->ptr2 = a3;
		e->bytes = a4;
		if (func >> 8 == ACL_ARGS_LAUNCH)
			e->stream = a5;
		break;
	case ACL_ARGS_LAUNCH_CONFIG:
		e->ptr = a1;
		e->num = (__u32)a2;
		e->stream = a3;
		e->handle = a4;	/* cfg */
		e->ptr2 = a5;
		break;
	case ACL_ARGS_OP_EXECUTE:
		e->num = (__u32)a2;
		e->num2 = (__u32)a5;
		stack_args(ctx, st, 24);	/* outputs, attr, stream */
		e->ptr = st[1];
		e->stream = st[2];
		if (a1)
			bpf_probe_read_user_str(e->op_type, sizeof(e->op_type), (void *)a1);
		break;
	case ACL_ARGS_OP_EXEC_HANDLE:
		e->ptr = a1;
		e->num = (__u32)a2;
		e->num2 = (__u32)a4;
		e->stream = a6;
		break;
	case ACL_ARGS_OP_COMPILE_EXECUTE:
		e->num = (__u32)a2;
		e->num2 = (__u32)a5;
		stack_args(ctx, st, 48);	/* outputs, attr, engine, flag, opPath, stream */
		e->ptr = st[1];
		e->kind = (__u32)st[2];
		e->op = (__u32)st[3];
		e->ptr2 = st[4];
		e->stream = st[5];
		if (a1)
			bpf_probe_read_user_str(e->op_type, sizeof(e->op_type), (void *)a1);
		break;
	case ACL_ARGS_MDL_LOAD_FILE:
		e->ptr2 = a2;	/* where the model id goes; read at return */
		if (a1)
			bpf_probe_read_user_str(e->op_type, sizeof(e->op_type), (void *)a1);
		break;
	case ACL_ARGS_MDL_EXECUTE_ASYNC:
		e->stream = a4;
		/* fall through */
	case ACL_ARGS_MDL_EXECUTE:
		e->num = (__u32)a1;
		e->ptr = a2;
		e->ptr2 = a3;
		break;
	case ACL_ARGS_EVENT_RECORD:
		e->ptr = a1;
		e->stream = a2;
		break;
	case ACL_ARGS_STREAM_WAIT_EVENT:
		e->stream = a1;
		e->ptr = a2;
		break;
	case ACL_ARGS_STREAM_TIMEOUT:
		e->num = (__u32)a2;
		/* fall through */
	case ACL_ARGS_STREAM:
		e->stream = a1;
		break;
	case ACL_ARGS_NN_LAUNCH:
		/* the op's name is the agent's, in nn_ops: see enter_aclnn */
		e->ptr = a1;
		e->bytes = a2;
		e->handle = a3;
		e->stream = a4;
		break;
	case ACL_ARGS_HCCL_INIT_ROOT:
		e->num = (__u32)a1;
		e->ptr2 = a2;
		e->rank = (__u32)a3;
		e->handle = a4;	/* where the communicator goes; read at return */
		break;
	case ACL_ARGS_HCCL_REDUCE:
		e->ptr = a1;
		e->ptr2 = a2;
		e->bytes = a3;
		e->data_type = (__u32)a4;
		e->op = (__u32)a5;
		e->handle = a6;
		e->stream = stack_arg(ctx, 7);
		break;
	case ACL_ARGS_HCCL_GATHER:
		e->ptr = a1;
		e->ptr2 = a2;
		e->bytes = a3;
		e->data_type = (__u32)a4;
		e->handle = a5;
		e->stream = a6;
		break;
	case ACL_ARGS_HCCL_BROADCAST:
	case ACL_ARGS_HCCL_P2P:
		e->ptr = a1;
		e->bytes = a2;
		e->data_type = (__u32)a3;
		e->rank = (__u32)a4;
		e->handle = a5;
		e->stream = a6;
		break;
	case ACL_ARGS_HCCL_ALLTOALL:
		e->ptr = a1;
		e->bytes = a2;
		e->data_type = (__u32)a3;
		e->ptr2 = a4;
		e->bytes2 = a5;
		e->data_type2 = (__u32)a6;
		stack_args(ctx, st, 16);
		e->handle = st[0];
		e->stream = st[1];
		break;
	case ACL_ARGS_HCCL_ALLTOALLV:
		e->ptr = a1;
		e->bytes = a2;	/* sendCounts */
		e->data_type = (__u32)a4;
		e->ptr2 = a5;
		e->bytes2 = a6;	/* recvCounts */
		stack_args(ctx, st, 32);	/* rdispls, recvType, comm, stream */
		e->data_type2 = (__u32)st[1];
		e->handle = st[2];
		e->stream = st[3];
		break;
	case ACL_ARGS_HCCL_BATCH:
		e->ptr = a1;
		e->num = (__u32)a2;
		e->handle = a3;
		e->stream = a4;
		break;
	case ACL_ARGS_HCCL_BARRIER:
		e->handle = a1;
		e->stream = a2;
		break;
	}
}

/* enter_<sym> for every function of acl.fns hooked by its symbol (acl_fns.h); aclnn's below. */
#define ACL_ENTRY(sym, lib, required) CALL_ENTRY(sym, ACL_FN_##sym)
ACL_FUNCTIONS(ACL_ENTRY)

/* Every aclnn<Op> launch; the cookie is the op's index in nn_ops (~30 ns, these calls only). */
SEC("uprobe")
int enter_aclnn(struct pt_regs *ctx)
{
	struct acl_event *e = call_enter(ctx, ACL_FN_aclnn);
	__u32 op = (__u32)bpf_get_attach_cookie(ctx);
	char *name;

	if (!e)
		return 0;
	read_args(ctx, ACL_FN_aclnn, e);
	name = bpf_map_lookup_elem(&nn_ops, &op);
	if (name)
		__builtin_memcpy(e->op_type, name, sizeof(e->op_type));
	call_started(e);
	return 0;
}

CALL_RETURN(acl)

static __always_inline bool read_results(struct acl_inflight *s, struct acl_event *in)
{
	__u64 where = in->ptr2;

	switch (in->h.func >> 8) {
	case ACL_ARGS_MALLOC:
	case ACL_ARGS_MALLOC_HOST:
		in->ptr2 = 0;
		call_read_out(in, &in->ptr, sizeof(in->ptr), where);
		break;
	case ACL_ARGS_CREATE_STREAM:
		in->ptr2 = 0;
		call_read_out(in, &in->stream, sizeof(in->stream), where);
		break;
	case ACL_ARGS_MDL_LOAD_FILE:
		in->ptr2 = 0;
		call_read_out(in, &in->num, sizeof(in->num), where);
		break;
	case ACL_ARGS_HCCL_INIT_ROOT:
		call_read_out(in, &in->handle, sizeof(in->handle), in->handle);
		break;
	case ACL_ARGS_SET_DEVICE:
		call_set_device(s, in, in->device);
		break;
	case ACL_ARGS_GET_DEVICE:
		call_got_device(s, in, where);
		return false;
	}
	return true;
}
