// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Stand-in for libhccl.so, the collective communication library. C++ only
 * because the real hccl.h of the torch-npu wheel is C++ (const array sizes,
 * nullptr); its extern "C" gives the exported names, and each function has
 * exactly the header's prototype. No standard C++ library is used.
 *
 * Nothing is sent: buffers, counts arrays and streams are never read (the
 * items of HcclBatchSendRecv are, to be checked). Bad arguments (a NULL
 * buffer, communicator or item list, a data type or reduce op out of range,
 * rank >= nRanks, zero items) give HCCL_E_PARA.
 * HcclCommInitRootInfo hands out distinct made-up communicators,
 *   0x4c0000000000 + (n << 20) + (rank << 8)   (n counts the calls, mod 2^20).
 */
#include "fake_acl_common.h"
#include <hccl/hccl.h>

static unsigned long n_comms;

static bool bad_type(HcclDataType t)
{
	return t < HCCL_DATA_TYPE_INT8 || t > HCCL_DATA_TYPE_FP8E8M0 || t == 13;
}

static bool bad_op(HcclReduceOp op)
{
	return op < HCCL_REDUCE_SUM || op > HCCL_REDUCE_MIN;
}

/* Every communication call: the time it takes, then its result. */
static HcclResult comm_result(bool bad)
{
	fake_work(fake_hccl_us);
	return bad ? HCCL_E_PARA : HCCL_SUCCESS;
}

HcclResult HcclCommInitRootInfo(uint32_t nRanks, const HcclRootInfo *rootInfo, uint32_t rank,
				HcclComm *comm)
{
	unsigned long n;

	fake_work(0);
	if (!rootInfo || !comm || !nRanks || rank >= nRanks)
		return HCCL_E_PARA;
	n = __atomic_fetch_add(&n_comms, 1, __ATOMIC_RELAXED) % (1UL << 20);
	*comm = (HcclComm)(0x4c0000000000UL + (n << 20) + ((unsigned long)rank << 8));
	return HCCL_SUCCESS;
}

HcclResult HcclAllReduce(void *sendBuf, void *recvBuf, uint64_t count, HcclDataType dataType,
			 HcclReduceOp op, HcclComm comm, aclrtStream stream)
{
	return comm_result(!sendBuf || !recvBuf || !comm || bad_type(dataType) || bad_op(op));
}

HcclResult HcclAllGather(void *sendBuf, void *recvBuf, uint64_t sendCount, HcclDataType dataType,
			 HcclComm comm, aclrtStream stream)
{
	return comm_result(!sendBuf || !recvBuf || !comm || bad_type(dataType));
}

HcclResult HcclReduceScatter(void *sendBuf, void *recvBuf, uint64_t recvCount,
			     HcclDataType dataType, HcclReduceOp op, HcclComm comm,
			     aclrtStream stream)
{
	return comm_result(!sendBuf || !recvBuf || !comm || bad_type(dataType) || bad_op(op));
}

HcclResult HcclBroadcast(void *buf, uint64_t count, HcclDataType dataType, uint32_t root,
			 HcclComm comm, aclrtStream stream)
{
	return comm_result(!buf || !comm || bad_type(dataType));
}

HcclResult HcclAlltoAll(const void *sendBuf, uint64_t sendCount, HcclDataType sendType,
			const void *recvBuf, uint64_t recvCount, HcclDataType recvType,
			HcclComm comm, aclrtStream stream)
{
	return comm_result(!sendBuf || !recvBuf || !comm || bad_type(sendType) ||
			   bad_type(recvType));
}

HcclResult HcclAlltoAllV(const void *sendBuf, const void *sendCounts, const void *sdispls,
			 HcclDataType sendType, const void *recvBuf, const void *recvCounts,
			 const void *rdispls, HcclDataType recvType, HcclComm comm,
			 aclrtStream stream)
{
	return comm_result(!sendBuf || !sendCounts || !sdispls || !recvBuf || !recvCounts ||
			   !rdispls || !comm || bad_type(sendType) || bad_type(recvType));
}

HcclResult HcclSend(void *sendBuf, uint64_t count, HcclDataType dataType, uint32_t destRank,
		    HcclComm comm, aclrtStream stream)
{
	return comm_result(!sendBuf || !comm || bad_type(dataType));
}

HcclResult HcclRecv(void *recvBuf, uint64_t count, HcclDataType dataType, uint32_t srcRank,
		    HcclComm comm, aclrtStream stream)
{
	return comm_result(!recvBuf || !comm || bad_type(dataType));
}

HcclResult HcclBatchSendRecv(HcclSendRecvItem *sendRecvInfo, uint32_t itemNum, HcclComm comm,
			     aclrtStream stream)
{
	uint32_t i;
	bool bad = !sendRecvInfo || !itemNum || !comm;

	for (i = 0; !bad && i < itemNum; i++)
		bad = sendRecvInfo[i].sendRecvType > HCCL_RECV || !sendRecvInfo[i].buf ||
		      bad_type(sendRecvInfo[i].dataType);
	return comm_result(bad);
}

HcclResult HcclBarrier(HcclComm comm, aclrtStream stream)
{
	return comm_result(!comm);
}
