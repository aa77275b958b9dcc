// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * NCCL calls from several threads against the real libnccl.so.2 of the
 * nvidia-nccl-cu12 wheel: ncclCommInitRank, ncclGroupStart/End, the five
 * collectives, ncclSend/ncclRecv and ncclCommDestroy, with arguments that are
 * functions of (t, i), written out again in nccl_expect.py. Without a GPU
 * (no libcuda.so.1) every call fails or does nothing, quickly and the same
 * way each time:
 *   ncclCommInitRank   ncclUnhandledCudaError (1): its CUDA set-up fails first
 *   collectives, p2p   ncclInvalidArgument (4): the communicator check fails
 *   ncclGroupEnd       4 after a group whose calls failed, 0 after an empty one
 *   ncclCommDestroy(NULL), ncclGroupStart   ncclSuccess (0)
 *
 * Communicators are made up, but not garbage: NCCL reads the struct ncclComm
 * a handle points at (its magic at offset 0 and ~1.14 MiB further on), so
 * they point into one zero-filled, read-only mapping at COMM_BASE, where the
 * magic check fails cleanly. ncclCommDestroy follows pointers inside the
 * communicator without checking the magic (and a "destroyed" one, rank -1,
 * returns with the thread's group depth raised), so it is only called with
 * NULL. Each round also makes one collective with a NULL communicator.
 *
 * Arguments on the stack (x86-64): ncclAllReduce's, ncclReduceScatter's and
 * ncclBroadcast's stream (7th), and ncclCommInitRank's 128-byte commId, which
 * goes whole onto the stack, so its rank (4th) is the third register, rdx.
 *
 * Each call's return value is checked against the one above (and in
 * nccl_expect.py); a difference is reported on stderr and the exit code is 4.
 * With a CUDA driver installed the made-up handles would reach it (and
 * ncclCommInitRank would try to bootstrap), so it refuses to start there.
 *
 * usage: nccl_calls --threads T --iters N [--burst M]
 */
#include "workload_protocol.h"
#include "no_driver.h"	/* first: it sets _GNU_SOURCE */
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>
#include <nccl.h>

#define H(x) ((void *)(uintptr_t)(x))
/* Calls fn, counts it, and checks that it returned want. */
#define CALL(want, fn, ...) check(SYMBOL(fn), t, i, want, (count_call(SYMBOL(fn)), fn(__VA_ARGS__)))

#define RANKS 8
#define COMM_BASE 0x100000000000UL	/* 16 TiB: below the default mmap base */
#define COMM_SPAN 0x600000UL		/* 64 threads * 64 KiB, plus sizeof(struct ncclComm) */
#define COMM(t, i) ((ncclComm_t)H(COMM_BASE + (t) * 0x10000UL + ((i) % 8) * 0x100UL))
#define ID_HEAD(t, i) (0x1d0000000000UL + (t) * 0x1000UL + (i))

static const ncclDataType_t types[4] = { ncclFloat32, ncclFloat16, ncclBfloat16, ncclInt32 };
static int mismatches;

static void check(const char *fn, int t, long i, ncclResult_t want, ncclResult_t got)
{
	if (got == want)
		return;
	fprintf(stderr, "thread %d round %ld: %s returned %d, not %d\n", t, i, fn, got, want);
	__atomic_add_fetch(&mismatches, 1, __ATOMIC_RELAXED);
}

/* commId: its first 8 bytes ID_HEAD(t, i), then bytes 8..127 = (t + i + k) & 0xff. */
static ncclUniqueId unique_id(int t, long i)
{
	uint64_t head = ID_HEAD(t, i);
	ncclUniqueId id;
	int k;

	memcpy(id.internal, &head, sizeof(head));
	for (k = sizeof(head); k < NCCL_UNIQUE_ID_BYTES; k++)
		id.internal[k] = (char)((t + i + k) & 0xff);
	return id;
}

static void one_round(int t, long i)
{
	cudaStream_t stream = (cudaStream_t)H(0x7000 + t * 0x100 + i % 5);
	void *send = H(0xd000000 + t * 0x10000 + i * 0x100);
	void *recv = H(0x5000000 + t * 0x10000 + i * 0x100);
	size_t n = 1024 * (t + 1) + i;
	ncclDataType_t type = types[i % 4];
	ncclRedOp_t op = (ncclRedOp_t)(i % 5);	/* sum, prod, max, min, avg */
	ncclComm_t comm = COMM(t, i), created = NULL;
	int next = (t + 1) % RANKS, prev = (t + RANKS - 1) % RANKS;

	CALL(ncclUnhandledCudaError, ncclCommInitRank, &created, RANKS, unique_id(t, i),
	     (t + i) % RANKS);
	if (created) {
		fprintf(stderr, "thread %d round %ld: ncclCommInitRank set *comm\n", t, i);
		__atomic_add_fetch(&mismatches, 1, __ATOMIC_RELAXED);
	}
	CALL(ncclSuccess, ncclGroupStart);
	CALL(ncclInvalidArgument, ncclAllReduce, send, recv, n, type, op, comm, stream);
	CALL(ncclInvalidArgument, ncclReduceScatter, send, recv, n + 1, type, op, comm, stream);
	CALL(ncclInvalidArgument, ncclAllGather, send, recv, n + 2, type, comm, stream);
	CALL(ncclInvalidArgument, ncclBroadcast, send, recv, n + 3, type, (int)(i % RANKS), comm,
	     stream);
	CALL(ncclInvalidArgument, ncclAlltoAll, send, recv, n + 4, type, comm, stream);
	CALL(ncclInvalidArgument, ncclSend, send, n + 5, type, next, comm, stream);
	CALL(ncclInvalidArgument, ncclRecv, recv, n + 6, type, prev, comm, stream);
	CALL(ncclInvalidArgument, ncclGroupEnd);
	/* outside a group, and with no communicator at all */
	CALL(ncclInvalidArgument, ncclAllReduce, send, recv, n + 7, type, op, NULL, stream);
	CALL(ncclSuccess, ncclGroupStart);
	CALL(ncclSuccess, ncclGroupEnd);
	CALL(ncclSuccess, ncclCommDestroy, NULL);
}

/* --burst: the same all-reduce over and over (values in nccl_expect.BURST_*). */
static void burst_all_reduce(void)
{
	const int t = 0;
	const long i = 0;

	CALL(ncclInvalidArgument, ncclAllReduce, H(0xbb000000), H(0xbc000000), 4096, ncclFloat32,
	     ncclSum, COMM(0, 0), (cudaStream_t)H(0x7f00));
}

int main(int argc, char **argv)
{
	struct workload w = {};
	void *comms;
	int ret;

	parse_args(&w, argc, argv);
	if (refuse_if_driver_installed(argv[0]))
		return 3;
	comms = mmap(H(COMM_BASE), COMM_SPAN, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS |
		     MAP_FIXED_NOREPLACE, -1, 0);
	if (comms != H(COMM_BASE)) {
		fprintf(stderr, "%s: cannot map the made-up communicators at %#lx: %s\n", argv[0],
			COMM_BASE, strerror(errno));
		return 1;
	}
	burst_call = burst_all_reduce;
	ret = run_workload(&w);
	return ret ? ret : mismatches ? 4 : 0;
}
