/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Ascend probe (AscendCL runtime, aclop, aclmdl, aclnn, HCCL): event layout and
 * function ids, shared by acl.bpf.c, the agent and the Python decoder (through
 * cffi, see xpu_abi.h for the rules). Modelled on cuda.h.
 *
 * A function id is (argument class << 8) | index. The class tells the BPF
 * program which registers and stack slots to read (x86-64 System V: rdi rsi
 * rdx rcx r8 r9, then 8-byte stack slots), and tells the decoder what the
 * generic fields of struct acl_event mean for that call. The symbol a function
 * id stands for is its enum name without the ACL_FN_ prefix. Prototypes are
 * those of the CANN headers (acl/acl_rt.h, acl/acl_op.h, acl/acl_op_compiler.h,
 * acl/acl_mdl.h, hccl/hccl.h) and of aclnn's generated op headers. The
 * functions are listed once, in acl.fns: scripts/gen-probe-tables makes
 * acl_fns.h of it (enum acl_fn, and the ACL_FUNCTIONS list the BPF entry
 * programs and the agent's table expand).
 */
#ifndef XPU_ACL_H
#define XPU_ACL_H

#include "xpu_abi.h"
#include "acl_fns.h"	/* enum acl_fn, from acl.fns */

enum acl_arg_class {
	ACL_ARGS_NONE = 0,		/* f(void) */
	ACL_ARGS_INIT = 1,		/* aclInit(const char *configPath) */
	ACL_ARGS_SET_DEVICE = 2,	/* aclrtSetDevice(int32_t deviceId) */
	ACL_ARGS_GET_DEVICE = 3,	/* aclrtGetDevice(int32_t *deviceId): never an event */
	ACL_ARGS_CREATE_STREAM = 4,	/* (aclrtStream *stream) */
	ACL_ARGS_MALLOC = 5,		/* (void **devPtr, size_t size, aclrtMemMallocPolicy policy) */
	ACL_ARGS_MALLOC_HOST = 6,	/* (void **hostPtr, size_t size) */
	ACL_ARGS_FREE = 7,		/* (void *ptr) */
	ACL_ARGS_MEMCPY = 8,		/* (dst, size_t destMax, src, size_t count, kind) */
	ACL_ARGS_MEMCPY_ASYNC = 9,	/* (dst, destMax, src, count, kind, stream) */
	ACL_ARGS_MEMCPY_2D = 10,	/* (dst, dpitch, src, spitch, width, height, kind[7]) */
	ACL_ARGS_MEMCPY_2D_ASYNC = 11,	/* (dst, dpitch, src, spitch, width, height, kind[7], stream[8]) */
	ACL_ARGS_MEMSET = 12,		/* (devPtr, size_t maxCount, int32_t value, size_t count) */
	ACL_ARGS_MEMSET_ASYNC = 13,	/* (devPtr, maxCount, value, count, stream) */
	ACL_ARGS_LAUNCH = 14,		/* (funcHandle, u32 numBlocks, argsData, size_t argsSize, stream) */
	ACL_ARGS_LAUNCH_V2 = 15,	/* (funcHandle, numBlocks, argsData, argsSize, cfg, stream) */
	ACL_ARGS_LAUNCH_CONFIG = 16,	/* (funcHandle, numBlocks, stream, cfg, argsHandle, reserve) */
	ACL_ARGS_OP_EXECUTE = 17,	/* (opType, nIn, inDesc, in, nOut, outDesc, out[7], attr[8], stream[9]) */
	ACL_ARGS_OP_EXEC_HANDLE = 18,	/* (handle, nIn, in, nOut, out, stream) */
	ACL_ARGS_OP_COMPILE_EXECUTE = 19, /* (opType, nIn, inDesc, in, nOut, outDesc, out[7], attr[8],
					   * engineType[9], compileFlag[10], opPath[11], stream[12]) */
	ACL_ARGS_MDL_LOAD_FILE = 20,	/* (const char *modelPath, uint32_t *modelId) */
	ACL_ARGS_MDL_EXECUTE = 21,	/* (uint32_t modelId, input, output) */
	ACL_ARGS_MDL_EXECUTE_ASYNC = 22, /* (modelId, input, output, stream) */
	ACL_ARGS_EVENT_RECORD = 23,	/* (event, stream) */
	ACL_ARGS_STREAM_WAIT_EVENT = 24, /* (stream, event) */
	ACL_ARGS_EVENT = 25,		/* (event) */
	ACL_ARGS_STREAM = 26,		/* (stream) */
	ACL_ARGS_STREAM_TIMEOUT = 27,	/* (stream, int32_t timeout) */
	ACL_ARGS_NN_LAUNCH = 28,	/* aclnn<Op>(void *workspace, u64 workspaceSize, aclOpExecutor *, stream):
					 * every op's launch; the op (symbol without "aclnn") in op_type */
	ACL_ARGS_HCCL_INIT_ROOT = 29,	/* (u32 nRanks, const HcclRootInfo *rootInfo, u32 rank, HcclComm *comm) */
	ACL_ARGS_HCCL_REDUCE = 30,	/* (send, recv, u64 count, dataType, op, comm, stream[7]) */
	ACL_ARGS_HCCL_GATHER = 31,	/* (send, recv, u64 count, dataType, comm, stream) */
	ACL_ARGS_HCCL_BROADCAST = 32,	/* (buf, u64 count, dataType, u32 root, comm, stream) */
	ACL_ARGS_HCCL_P2P = 33,		/* (buf, u64 count, dataType, u32 destRank | srcRank, comm, stream) */
	ACL_ARGS_HCCL_ALLTOALL = 34,	/* (send, u64 sendCount, sendType, recv, recvCount, recvType, comm[7], stream[8]) */
	ACL_ARGS_HCCL_ALLTOALLV = 35,	/* (send, sendCounts, sdispls, sendType, recv, recvCounts, rdispls,
					 * recvType[8], comm[9], stream[10]) */
	ACL_ARGS_HCCL_BATCH = 36,	/* (HcclSendRecvItem *items, u32 itemNum, comm, stream) */
	ACL_ARGS_HCCL_BARRIER = 37,	/* (comm, stream) */
};


/*
 * One completed (or, at stop, incomplete) call. Which generic field holds
 * which argument depends on the argument class (xpucore/probes/acl.py names them,
 * FIELD and ARGS):
 *   stream  every call that takes a stream; aclrtCreateStream: the stream
 *           created (0 unless the call succeeded)
 *   ptr     alloc: the pointer returned (0 unless the call succeeded); free:
 *           the pointer; memcpy/memset: dst; launch: funcHandle; aclop:
 *           attr; aclopExecWithHandle: handle; aclmdl execute: input; event
 *           calls: the event; aclnn: workspace; HCCL: sendBuf (buf for
 *           broadcast, send and receive; the items of HcclBatchSendRecv)
 *   ptr2    memcpy: src; launch: argsData (WithConfig: argsHandle); aclmdl
 *           execute: output; HCCL: recvBuf; HcclCommInitRootInfo: rootInfo;
 *           aclop compile: opPath. (Out-pointers live here during the call;
 *           0 in the event.)
 *   bytes   memcpy/memset: count; alloc: size; 2d copy: width; launch:
 *           argsSize; aclnn: workspaceSize; HCCL: count (elements; sendCount
 *           for all-to-all); HcclAlltoAllV: sendCounts (the array's address)
 *   bytes2  memcpy: destMax; memset: maxCount; 2d copy: dpitch;
 *           HcclAlltoAll: recvCount; HcclAlltoAllV: recvCounts (its address)
 *   handle  aclnn: the aclOpExecutor; HCCL: the communicator (returned, for
 *           HcclCommInitRootInfo); launch V2/WithConfig: cfg; 2d copy: spitch
 *   py_stack  the calling thread's Python stack (py_stacks key), 0: none
 *   kind    memcpy: aclrtMemcpyKind; alloc: aclrtMemMallocPolicy; memset:
 *           value; aclop compile: aclopEngineType
 *   device  every call: the calling thread's current device (last successful
 *           aclrtSetDevice, or aclrtGetDevice, on the thread; 0 with
 *           XPU_EV_DEVICE_ASSUMED when neither was seen); aclrtSetDevice: the
 *           device asked for
 *   data_type   HCCL: HcclDataType (sendType for all-to-all)
 *   data_type2  HCCL all-to-all: recvType
 *   op      HCCL reduce: HcclReduceOp; aclop compile: aclopCompileType
 *   rank    HcclCommInitRootInfo: rank; broadcast: root; send: destRank;
 *           recv: srcRank
 *   num     aclop: numInputs; launch: numBlocks; 2d copy: height; aclmdl:
 *           modelId (returned, for aclmdlLoadFromFile); HcclCommInitRootInfo:
 *           nRanks; HcclBatchSendRecv: itemNum; sync with timeout: timeout
 *   num2    aclop: numOutputs
 *   op_type aclop: opType; aclnn: the op (aclnnAdd: "Add");
 *           aclmdlLoadFromFile: modelPath; aclInit: configPath
 *           (NUL-terminated, cut to 39 bytes)
 */
struct acl_event {
	struct xpu_event_hdr h;
	__u64 stream;
	__u64 ptr;
	__u64 ptr2;
	__u64 bytes;
	__u64 bytes2;
	__u64 handle;
	__u64 py_stack;
	__u32 kind;
	__u32 device;
	__u32 data_type;
	__u32 data_type2;
	__u32 op;
	__u32 rank;
	__u32 num;
	__u32 num2;
	char op_type[40];
};

/*
 * Per-thread probe state: the same scheme as struct cuda_inflight (see
 * cuda.h): calls in flight paired by stack pointer, completed calls batched in
 * out[], the thread's current device.
 */
enum acl_inflight_const {
	ACL_INFLIGHT_FRAMES = 4,
	ACL_OUT_EVENTS = 8,
};

struct acl_inflight {
	__u64 state;
	__u64 done;
	__u32 dev_tid;
	__u32 dev;
	__u64 sp[ACL_INFLIGHT_FRAMES];
	struct acl_event frames[ACL_INFLIGHT_FRAMES];
	struct acl_event out[ACL_OUT_EVENTS];
};

#endif /* XPU_ACL_H */
