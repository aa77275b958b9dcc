// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Stand-in for libopapi.so, CANN's aclnn operators (the name torch_npu opens
 * them by), with two of them: aclnnAdd and aclnnMatmul, each with its
 * GetWorkspaceSize companion (aclnn_ops.h). Nothing is computed and tensors
 * are never read.
 *
 * GetWorkspaceSize asks a fixed workspace (Add: 0 bytes, Matmul: 2 MiB) and
 * hands out a made-up executor, distinct for each call:
 *   0xe70000000000 + (op << 32) + (n << 8)   (op: Add 1, Matmul 2; n counts calls, mod 2^24)
 * Bad arguments give ACLNN_ERR_PARAM_NULLPTR (a NULL tensor or out pointer,
 * a NULL workspace with a non-zero size, a NULL executor) or
 * ACLNN_ERR_PARAM_INVALID (cubeMathType out of 0..3).
 */
#include "fake_acl_common.h"
#include "aclnn_ops.h"

#define ADD_WORKSPACE 0UL
#define MATMUL_WORKSPACE (2UL << 20)

static unsigned long n_executors;

static aclOpExecutor *new_executor(unsigned long op)
{
	unsigned long n = __atomic_fetch_add(&n_executors, 1, __ATOMIC_RELAXED) % (1UL << 24);

	return (aclOpExecutor *)(0xe70000000000UL + (op << 32) + (n << 8));
}

static aclnnStatus launch(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor)
{
	fake_work(0);
	if (!executor || (workspaceSize && !workspace))
		return ACLNN_ERR_PARAM_NULLPTR;
	return ACLNN_SUCCESS;
}

aclnnStatus aclnnAddGetWorkspaceSize(const aclTensor *self, const aclTensor *other,
				     const aclScalar *alpha, aclTensor *out,
				     uint64_t *workspaceSize, aclOpExecutor **executor)
{
	fake_work(0);
	if (!self || !other || !alpha || !out || !workspaceSize || !executor)
		return ACLNN_ERR_PARAM_NULLPTR;
	*workspaceSize = ADD_WORKSPACE;
	*executor = new_executor(1);
	return ACLNN_SUCCESS;
}

aclnnStatus aclnnAdd(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
		     aclrtStream stream)
{
	return launch(workspace, workspaceSize, executor);
}

aclnnStatus aclnnMatmulGetWorkspaceSize(const aclTensor *self, const aclTensor *mat2,
					aclTensor *out, int8_t cubeMathType,
					uint64_t *workspaceSize, aclOpExecutor **executor)
{
	fake_work(0);
	if (!self || !mat2 || !out || !workspaceSize || !executor)
		return ACLNN_ERR_PARAM_NULLPTR;
	if (cubeMathType < 0 || cubeMathType > 3)
		return ACLNN_ERR_PARAM_INVALID;
	*workspaceSize = MATMUL_WORKSPACE;
	*executor = new_executor(2);
	return ACLNN_SUCCESS;
}

aclnnStatus aclnnMatmul(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
			aclrtStream stream)
{
	return launch(workspace, workspaceSize, executor);
}
