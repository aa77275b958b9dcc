// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The HCCL part of acl_calls: C++ because the real hccl.h is. Thread t is rank
 * t % 8 of eight; its communicator and buffers are made up, functions of
 * (t, i), written out again in acl_expect.py. HcclAllReduce's stream is its
 * 7th argument, HcclAlltoAll's communicator and stream its 7th and 8th,
 * HcclAlltoAllV's 7th to 10th (rdispls, recvType, comm, stream): on the stack.
 */
#include <hccl/hccl.h>
#include "acl_calls.h"

#define RANKS 8
#define CALL(fn, ...) (count(#fn), fn(__VA_ARGS__))

static const HcclDataType types[4] = {
	HCCL_DATA_TYPE_FP32, HCCL_DATA_TYPE_FP16, HCCL_DATA_TYPE_BFP16, HCCL_DATA_TYPE_INT32,
};

void hccl_round(int t, long i, void (*count)(const char *))
{
	static thread_local HcclRootInfo root;	/* zeroes: never read */
	static thread_local uint64_t send_counts[RANKS], sdispls[RANKS];
	static thread_local uint64_t recv_counts[RANKS], rdispls[RANKS];
	aclrtStream stream = ACL_STREAM(t, i);
	HcclComm comm = (HcclComm)(0xc0000UL + t * 0x100UL), out;
	char *send = (char *)(0xd0000000UL + t * 0x100000UL + i * 0x100UL), *recv = send + 0x80;
	uint64_t n = 1024 * (t + 1) + i;
	HcclDataType type = types[i % 4];
	HcclReduceOp op = (HcclReduceOp)(i % 4);
	uint32_t next = (t + 1) % RANKS, prev = (t + RANKS - 1) % RANKS;
	HcclSendRecvItem items[2] = {
		{ HCCL_SEND, send, n + 7, type, next },
		{ HCCL_RECV, recv, n + 8, type, prev },
	};
	int r;

	for (r = 0; r < RANKS; r++) {
		send_counts[r] = n + r;
		sdispls[r] = r ? sdispls[r - 1] + send_counts[r - 1] : 0;
		recv_counts[r] = n + 2 * r;
		rdispls[r] = r ? rdispls[r - 1] + recv_counts[r - 1] : 0;
	}
	CALL(HcclCommInitRootInfo, RANKS, &root, t % RANKS, &out);
	CALL(HcclAllReduce, send, recv, n, type, op, comm, stream);
	CALL(HcclAllGather, send, recv, n + 1, type, comm, stream);
	CALL(HcclReduceScatter, send, recv, n + 2, type, op, comm, stream);
	CALL(HcclBroadcast, send, n + 3, type, (uint32_t)(i % RANKS), comm, stream);
	CALL(HcclAlltoAll, send, n + 4, type, recv, n + 4, type, comm, stream);
	CALL(HcclAlltoAllV, send, send_counts, sdispls, type, recv, recv_counts, rdispls, type,
	     comm, stream);
	CALL(HcclSend, send, n + 5, type, next, comm, stream);
	CALL(HcclRecv, recv, n + 6, type, prev, comm, stream);
	CALL(HcclBatchSendRecv, items, 2, comm, stream);
	CALL(HcclBarrier, comm, stream);
	CALL(HcclBarrier, nullptr, stream);	/* fails: HCCL_E_PARA */
}
