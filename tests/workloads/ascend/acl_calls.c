// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * AscendCL, aclnn and HCCL calls from several threads, against the stand-ins
 * (fake_*.c): every function the agent hooks, with arguments that are
 * functions of (t, i), written out again in acl_expect.py. Handles and
 * addresses are made up, so this runs only against the stand-ins; what the
 * stand-ins hand out (device memory, cached and host memory, aclnn executors)
 * is given back or passed on in the same round. Each round also makes two
 * calls that fail (an aclrtSetDevice out of range, an HcclBarrier without a
 * communicator), and aclInit, made once in main before the tracer comes,
 * fails in every round with ACL_ERROR_REPEAT_INITIALIZE.
 *
 * Arguments on the stack (x86-64: the 7th on): aclrtMemcpy2d's kind (7th),
 * aclrtMemcpy2dAsync's kind and stream, aclopExecuteV2's attr and stream (8th,
 * 9th), aclopCompileAndExecute[V2]'s attr to stream (7th to 12th), and in
 * acl_calls_hccl.cc HcclAllReduce's stream (7th).
 *
 * usage: acl_calls --threads T --iters N   (with 45 symbols: MAX_SYMBOLS 64)
 */
#define MAX_SYMBOLS 64
#include "workload_protocol.h"	/* first: it sets _GNU_SOURCE */
#include <stdint.h>
#include <acl/acl.h>
#include <acl/acl_op_compiler.h>
#include "aclnn_ops.h"
#include "acl_calls.h"

#define CALL(fn, ...) (count_call(SYMBOL(fn)), fn(__VA_ARGS__))
#define FAKE(type, base, t, i) ((type)(uintptr_t)((base) + (t) * 0x1000UL + (i)))

static const char *const op_types[3] = { "Add", "MatMul", "Cast" };
static const char *const compiled_op_types[3] = { "Mul", "BatchMatMul", "Transpose" };

static void one_round(int t, long i)
{
	aclrtStream stream = ACL_STREAM(t, i), created;
	aclrtEvent event = ACL_EVENT(t, i);
	char *dev = (char *)(0xa0000000UL + t * 0x100000UL + i * 0x1000UL);
	char *host = (char *)(0x40000000UL + t * 0x100000UL + i * 0x1000UL);
	size_t n = 256 * (t + 1) + i;
	void *mem, *cached, *pinned;
	aclrtFuncHandle func = FAKE(aclrtFuncHandle, 0x3000UL + t * 0x10UL + i % 2, 0, 0);
	uint32_t blocks = t + 2 + i % 5;
	aclrtLaunchKernelCfg cfg = { NULL, 0 };
	const char *op = op_types[i % 3], *compiled_op = compiled_op_types[i % 3];
	int inputs = i % 3 == 2 ? 1 : 2;
	aclTensorDesc *in_desc[2] = { FAKE(aclTensorDesc *, 0x7100000UL, t, 16 * i),
				      FAKE(aclTensorDesc *, 0x7100000UL, t, 16 * i + 1) };
	aclDataBuffer *in_buf[2] = { FAKE(aclDataBuffer *, 0x7200000UL, t, 16 * i),
				     FAKE(aclDataBuffer *, 0x7200000UL, t, 16 * i + 1) };
	aclTensorDesc *out_desc[1] = { FAKE(aclTensorDesc *, 0x7100000UL, t, 16 * i + 8) };
	aclDataBuffer *out_buf[1] = { FAKE(aclDataBuffer *, 0x7200000UL, t, 16 * i + 8) };
	aclopAttr *attr = FAKE(aclopAttr *, 0x7300000UL, t, i);
	char model_path[64];
	uint32_t model_id, model = 100 + t * 10 + i % 3;
	const aclTensor *self = FAKE(const aclTensor *, 0x7700000UL, t, 16 * i);
	const aclTensor *other = FAKE(const aclTensor *, 0x7700000UL, t, 16 * i + 1);
	aclTensor *result = FAKE(aclTensor *, 0x7700000UL, t, 16 * i + 2);
	uint64_t workspace_size;
	aclOpExecutor *executor;

	CALL(aclInit, NULL);				/* fails: ACL_ERROR_REPEAT_INITIALIZE */
	CALL(aclrtSetDevice, 64 + t);			/* fails: ACL_ERROR_INVALID_PARAM */
	CALL(aclrtSetDevice, (t + i) % 4);
	CALL(aclrtCreateStream, &created);

	CALL(aclrtMalloc, &mem, 4096 * (t + 1) + i, (aclrtMemMallocPolicy)(i % 3));
	CALL(aclrtMallocCached, &cached, 8192 + 64 * t + i, ACL_MEM_MALLOC_NORMAL_ONLY);
	CALL(aclrtMallocHost, &pinned, 1024 * (t + 1) + i);
	CALL(aclrtMemcpy, dev, n + 64, host, n, ACL_MEMCPY_HOST_TO_DEVICE);
	CALL(aclrtMemcpyAsync, host, n + 65, dev, n + 1, ACL_MEMCPY_DEVICE_TO_HOST, stream);
	/* seven arguments: the kind is the 7th, on the stack */
	CALL(aclrtMemcpy2d, dev, 512 + t, dev + 0x800, 640 + i % 5, 256 + t, 8 + i % 4,
	     ACL_MEMCPY_DEVICE_TO_DEVICE);
	CALL(aclrtMemcpy2dAsync, dev, 1024 + t, host, 768 + i % 5, 512 + t, 4 + i % 4,
	     ACL_MEMCPY_HOST_TO_DEVICE, stream);
	CALL(aclrtMemset, dev, n + 32, (t * 16 + i) % 256, n);
	CALL(aclrtMemsetAsync, dev, n + 32, (t * 16 + i + 1) % 256, n + 2, stream);

	CALL(aclrtLaunchKernel, func, blocks, FAKE(void *, 0x7400000UL, t, i), 64 + 8 * t, stream);
	CALL(aclrtLaunchKernelV2, func, blocks + 1, FAKE(void *, 0x7400000UL, t, i), 72 + 8 * t,
	     &cfg, stream);
	CALL(aclrtLaunchKernelWithConfig, func, blocks + 2, stream, &cfg,
	     FAKE(aclrtArgsHandle, 0x7500000UL, t, i), NULL);
	/* nine arguments: attr and stream on the stack */
	CALL(aclopExecuteV2, op, inputs, in_desc, in_buf, 1, out_desc, out_buf, attr, stream);
	CALL(aclopExecWithHandle, FAKE(aclopHandle *, 0x7600000UL, t, i), inputs,
	     (const aclDataBuffer *const *)in_buf, 1, out_buf, stream);
	/* twelve arguments: attr to stream on the stack */
	CALL(aclopCompileAndExecute, op, inputs, (const aclTensorDesc *const *)in_desc,
	     (const aclDataBuffer *const *)in_buf, 1, (const aclTensorDesc *const *)out_desc,
	     out_buf, attr, (aclopEngineType)(i % 3), ACL_COMPILE_SYS, NULL, stream);
	CALL(aclopCompileAndExecuteV2, compiled_op, inputs, in_desc, in_buf, 1, out_desc, out_buf,
	     attr, (aclopEngineType)((i + 1) % 3), ACL_COMPILE_UNREGISTERED, NULL, stream);

	snprintf(model_path, sizeof(model_path), "/opt/xpu-models/net%d.om", t);
	CALL(aclmdlLoadFromFile, model_path, &model_id);
	CALL(aclmdlExecute, model, FAKE(const aclmdlDataset *, 0x7800000UL, t, i),
	     FAKE(aclmdlDataset *, 0x7900000UL, t, i));
	CALL(aclmdlExecuteAsync, model, FAKE(const aclmdlDataset *, 0x7800000UL, t, i),
	     FAKE(aclmdlDataset *, 0x7900000UL, t, i), stream);

	CALL(aclrtRecordEvent, event, stream);
	CALL(aclrtStreamWaitEvent, stream, event);
	CALL(aclrtSynchronizeEvent, event);
	CALL(aclrtSynchronizeStream, stream);
	CALL(aclrtSynchronizeStreamWithTimeout, stream, 1000 + t);

	/* aclnn: each launch gets its GetWorkspaceSize's workspace size and executor */
	CALL(aclnnAddGetWorkspaceSize, self, other, FAKE(const aclScalar *, 0x7a00000UL, t, i),
	     result, &workspace_size, &executor);
	CALL(aclnnAdd, NULL, workspace_size, executor, stream);
	CALL(aclnnMatmulGetWorkspaceSize, self, other, result, (int8_t)(i % 4), &workspace_size,
	     &executor);
	CALL(aclnnMatmul, (void *)(0xb0000000UL + t * 0x100000UL), workspace_size, executor,
	     stream);

	hccl_round(t, i, count_call);

	CALL(aclrtSynchronizeDevice);
	CALL(aclrtFree, mem);
	CALL(aclrtFree, cached);
	CALL(aclrtFreeHost, pinned);
}

int main(int argc, char **argv)
{
	struct workload w = {};

	parse_args(&w, argc, argv);
	if (aclInit(NULL) != ACL_SUCCESS)	/* not counted: before the tracer */
		return 1;
	return run_workload(&w);
}
