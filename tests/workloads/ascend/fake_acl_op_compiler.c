// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Stand-in for libacl_op_compiler.so: compile-and-run of single ops, built from
 * the real acl_op_compiler.h of the torch-npu wheel, so both functions have
 * exactly the header's prototype (twelve arguments: the 7th to 12th, attr to
 * stream, are passed on the stack). Nothing is compiled or run; bad arguments
 * (NULL or empty op type, a negative count, a NULL array with a non-zero count,
 * an engine or compile flag out of range) give ACL_ERROR_INVALID_PARAM.
 */
#include "fake_acl_common.h"
#include <acl/acl_op_compiler.h>

static int bad_modes(aclopEngineType engineType, aclopCompileType compileFlag)
{
	return engineType < ACL_ENGINE_SYS || engineType > ACL_ENGINE_VECTOR ||
	       compileFlag < ACL_COMPILE_SYS || compileFlag > ACL_COMPILE_UNREGISTERED;
}

aclError aclopCompileAndExecute(const char *opType, int numInputs,
				const aclTensorDesc *const inputDesc[],
				const aclDataBuffer *const inputs[], int numOutputs,
				const aclTensorDesc *const outputDesc[],
				aclDataBuffer *const outputs[], const aclopAttr *attr,
				aclopEngineType engineType, aclopCompileType compileFlag,
				const char *opPath, aclrtStream stream)
{
	fake_work(0);
	if (fake_bad_op(opType, numInputs, inputDesc, inputs, numOutputs, outputDesc, outputs) ||
	    bad_modes(engineType, compileFlag))
		return ACL_ERROR_INVALID_PARAM;
	return ACL_SUCCESS;
}

aclError aclopCompileAndExecuteV2(const char *opType, int numInputs, aclTensorDesc *inputDesc[],
				  aclDataBuffer *inputs[], int numOutputs,
				  aclTensorDesc *outputDesc[], aclDataBuffer *outputs[],
				  aclopAttr *attr, aclopEngineType engineType,
				  aclopCompileType compileFlag, const char *opPath,
				  aclrtStream stream)
{
	fake_work(0);
	if (fake_bad_op(opType, numInputs, inputDesc, inputs, numOutputs, outputDesc, outputs) ||
	    bad_modes(engineType, compileFlag))
		return ACL_ERROR_INVALID_PARAM;
	return ACL_SUCCESS;
}
