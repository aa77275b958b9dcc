// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Stand-in for the rest of AscendCL in libascendcl.so: aclInit, single-op
 * execution (aclopExecuteV2, aclopExecWithHandle) and offline models
 * (aclmdlLoadFromFile, aclmdlExecute[Async]). Built from the real acl.h of the
 * torch-npu wheel, so each function has exactly the header's prototype. Nothing
 * is executed; descriptors, buffers and handles are never read.
 *
 * aclInit succeeds once per process and then fails with
 * ACL_ERROR_REPEAT_INITIALIZE, as AscendCL does. Bad arguments (NULL op type
 * or path, a negative count, a NULL array with a non-zero count, model id 0)
 * give ACL_ERROR_INVALID_PARAM. aclmdlLoadFromFile does not read the file: it
 * hands out model ids 1, 2, 3, ... in the order of the calls.
 */
#include "fake_acl_common.h"
#include <acl/acl.h>

static int initialized;
static uint32_t last_model_id;

aclError aclInit(const char *configPath)
{
	return __atomic_exchange_n(&initialized, 1, __ATOMIC_RELAXED) ?
	       ACL_ERROR_REPEAT_INITIALIZE : ACL_SUCCESS;
}

aclError aclopExecuteV2(const char *opType, int numInputs, aclTensorDesc *inputDesc[],
			aclDataBuffer *inputs[], int numOutputs, aclTensorDesc *outputDesc[],
			aclDataBuffer *outputs[], aclopAttr *attr, aclrtStream stream)
{
	fake_work(0);
	if (fake_bad_op(opType, numInputs, inputDesc, inputs, numOutputs, outputDesc, outputs))
		return ACL_ERROR_INVALID_PARAM;
	return ACL_SUCCESS;
}

aclError aclopExecWithHandle(aclopHandle *handle, int numInputs,
			     const aclDataBuffer *const inputs[], int numOutputs,
			     aclDataBuffer *const outputs[], aclrtStream stream)
{
	fake_work(0);
	if (!handle || numInputs < 0 || numOutputs < 0 || (numInputs && !inputs) ||
	    (numOutputs && !outputs))
		return ACL_ERROR_INVALID_PARAM;
	return ACL_SUCCESS;
}

aclError aclmdlLoadFromFile(const char *modelPath, uint32_t *modelId)
{
	fake_work(0);
	if (!modelPath || !*modelPath || !modelId)
		return ACL_ERROR_INVALID_PARAM;
	*modelId = __atomic_add_fetch(&last_model_id, 1, __ATOMIC_RELAXED);
	return ACL_SUCCESS;
}

aclError aclmdlExecute(uint32_t modelId, const aclmdlDataset *input, aclmdlDataset *output)
{
	fake_work(0);
	return modelId && input && output ? ACL_SUCCESS : ACL_ERROR_INVALID_PARAM;
}

aclError aclmdlExecuteAsync(uint32_t modelId, const aclmdlDataset *input, aclmdlDataset *output,
			    aclrtStream stream)
{
	fake_work(0);
	return modelId && input && output ? ACL_SUCCESS : ACL_ERROR_INVALID_PARAM;
}
