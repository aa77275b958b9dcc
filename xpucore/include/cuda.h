/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * CUDA probe: event layout and function ids, shared by cuda.bpf.c, the agent
 * and the Python decoder (through cffi, see xpu_abi.h for the rules).
 *
 * A function id is (argument class << 8) | index. The class tells the BPF
 * program which registers and stack slots to read, and tells the decoder what
 * the generic fields of struct cuda_event mean for that call. The symbol a
 * function id stands for is its enum name without the CUDA_FN_ prefix. The
 * functions are listed once, in cuda.fns: scripts/gen-probe-tables makes
 * cuda_fns.h of it (enum cuda_fn, and the CUDA_FUNCTIONS list the BPF entry
 * programs and the agent's table expand).
 */
#ifndef XPU_CUDA_H
#define XPU_CUDA_H

#include "xpu_abi.h"
#include "cuda_fns.h"	/* enum cuda_fn, from cuda.fns */

enum cuda_arg_class {
	CUDA_ARGS_NONE = 0,		/* f(void) */
	CUDA_ARGS_LAUNCH = 1,		/* cudaLaunchKernel(func, dim3 grid, dim3 block, args, size_t shmem, stream) */
	CUDA_ARGS_LAUNCH_EX = 2,	/* cudaLaunchKernelExC(const cudaLaunchConfig_t *cfg, func, args) */
	CUDA_ARGS_CU_LAUNCH = 3,	/* cuLaunchKernel(f, gx, gy, gz, bx, by, bz, shmem, stream, ...) */
	CUDA_ARGS_MEMCPY = 4,		/* (dst, src, size_t count, kind) */
	CUDA_ARGS_MEMCPY_ASYNC = 5,	/* (dst, src, size_t count, kind, stream) */
	CUDA_ARGS_CU_MEMCPY_ASYNC = 6,	/* (dst, src, size_t count, stream); even index HtoD (kind 1), odd DtoH (2) */
	CUDA_ARGS_ALLOC = 7,		/* (void **ptr, size_t size) */
	CUDA_ARGS_ALLOC_ASYNC = 8,	/* (void **ptr, size_t size, stream) */
	CUDA_ARGS_ALLOC_MANAGED = 9,	/* (void **ptr, size_t size, unsigned flags) */
	CUDA_ARGS_FREE = 10,		/* (ptr) */
	CUDA_ARGS_FREE_ASYNC = 11,	/* (ptr, stream) */
	CUDA_ARGS_STREAM = 12,		/* (stream) */
	CUDA_ARGS_EVENT_RECORD = 13,	/* (event, stream) */
	CUDA_ARGS_EVENT = 14,		/* (event) */
	CUDA_ARGS_GRAPH_LAUNCH = 15,	/* (graphExec, stream) */
	CUDA_ARGS_SET_DEVICE = 16,	/* cudaSetDevice(int device) */
	CUDA_ARGS_GET_DEVICE = 17,	/* cudaGetDevice(int *device): never an event, see below */
	/* NCCL (libnccl.so.2); ncclGroupStart/End take no arguments (CUDA_ARGS_NONE) */
	CUDA_ARGS_NCCL_REDUCE = 18,	/* (sendbuff, recvbuff, count, datatype, op, comm, stream) */
	CUDA_ARGS_NCCL_GATHER = 19,	/* (sendbuff, recvbuff, count, datatype, comm, stream) */
	CUDA_ARGS_NCCL_BCAST = 20,	/* (sendbuff, recvbuff, count, datatype, int root, comm, stream) */
	CUDA_ARGS_NCCL_SEND = 21,	/* (sendbuff, count, datatype, int peer, comm, stream) */
	CUDA_ARGS_NCCL_RECV = 22,	/* (recvbuff, count, datatype, int peer, comm, stream) */
	CUDA_ARGS_NCCL_INIT = 23,	/* (ncclComm_t *comm, int nranks, ncclUniqueId commId, int rank) */
	CUDA_ARGS_NCCL_COMM = 24,	/* (comm) */
};


/*
 * One completed (or, at stop, incomplete) call. Which generic field holds
 * which argument depends on the argument class:
 *   ptr    launch: kernel function; memcpy: dst; alloc: the pointer returned
 *          (0 unless the call succeeded); free: the pointer; event: the event;
 *          graph launch: the executable graph
 *   ptr2   memcpy: src (allocations use it for the out-pointer until the call
 *          returns; it is 0 in the event)
 *   bytes  memcpy: count; alloc: size; launch: dynamic shared memory
 *   kind   memcpy: cudaMemcpyKind; managed alloc: flags
 *   stream every call that takes a stream (launches, async copies, async
 *          alloc/free, event record, graph launch, stream sync)
 *   py_stack  with Python attribution on (--py-runtime): the key of the calling
 *          thread's Python stack in the py_stacks map (pystack.bpf.h); 0 without
 * NCCL calls (classes CUDA_ARGS_NCCL_*):
 *   ptr    sendbuff (none for ncclRecv)
 *   ptr2   recvbuff (none for ncclSend); ncclCommInitRank: the first 8 bytes
 *          of commId (little-endian), the same on every rank of a communicator
 *   bytes  count (ncclReduceScatter's recvcount, ncclAllGather's sendcount)
 *   kind   ncclDataType_t
 *   grid_x ncclRedOp_t (all-reduce, reduce-scatter)
 *   grid_y root (broadcast), peer (send, receive)
 *   grid_z ncclCommInitRank: nranks
 *   block_z ncclCommInitRank: rank
 *   handle the communicator (ncclComm_t); ncclCommInitRank: the one it
 *          created (read through its out-pointer at return; 0 unless the call
 *          succeeded)
 *   stream the cudaStream_t
 *   device every call: the calling thread's current device (the ordinal last
 *          set by a successful cudaSetDevice or returned by cudaGetDevice on
 *          that thread; 0, CUDA's default, with XPU_EV_DEVICE_ASSUMED when
 *          neither was seen); cudaSetDevice: the device asked for
 */
struct cuda_event {
	struct xpu_event_hdr h;
	__u64 stream;
	__u64 ptr;
	__u64 ptr2;
	__u64 bytes;
	__u64 handle;		/* NCCL: the communicator */
	__u32 grid_x;
	__u32 grid_y;
	__u32 grid_z;
	__u32 block_x;
	__u32 block_y;
	__u32 block_z;
	__u32 kind;
	__u32 device;
	__u64 py_stack;		/* the calling thread's Python stack (py_stacks key), 0: none */
};

/*
 * Per-thread probe state. One slot per thread, chosen by tid & (slots - 1) in
 * an array map: a lookup the verifier inlines, where task storage or a hash
 * map costs tens of nanoseconds per call.
 *
 * Calls in flight: state is (tid << 32) | depth and changes hands only by
 * compare-and-swap while depth is 0; depth counts calls beyond the frames too,
 * so pairs stay last-in first-out when nesting runs deeper than the frames
 * kept. sp[d] is the stack pointer at frame d's entry: the return that pops
 * that return address (sp + 8) is the frame's, so pairing needs no cookie at
 * return and survives recursion and longjmp.
 *
 * Completed calls wait in out[] and go to the ring buffer CUDA_OUT_EVENTS at
 * a time, or sooner once the oldest is hold_ns old: one ring buffer record
 * (and wakeup check) per batch instead of per call, a fifth of the probe's
 * cost. done is (generation << 32) | count. The owning thread appends with a
 * compare-and-swap; whoever empties out[] (the owner when it flushes, the
 * agent when it takes what an idle thread left, through the map's mmap)
 * swaps in the next generation with count 0 first, so nothing is emitted
 * twice. The agent reads the frames at stop to report calls still in flight.
 *
 * dev is the current device of thread dev_tid, learnt from cudaSetDevice and
 * cudaGetDevice (which PyTorch calls all the time, so a process traced from
 * the middle of its run is known within a call or two; cudaGetDevice itself
 * is not emitted). A thread that shares the slot and sets or queries its own
 * device takes the field over; the other is then "assumed" until it does so
 * again.
 */
enum cuda_inflight_const {
	CUDA_INFLIGHT_FRAMES = 4,
	CUDA_OUT_EVENTS = 8,
};

struct cuda_inflight {
	__u64 state;
	__u64 done;
	__u32 dev_tid;
	__u32 dev;
	__u64 sp[CUDA_INFLIGHT_FRAMES];
	struct cuda_event frames[CUDA_INFLIGHT_FRAMES];
	struct cuda_event out[CUDA_OUT_EVENTS];
};

#endif /* XPU_CUDA_H */
