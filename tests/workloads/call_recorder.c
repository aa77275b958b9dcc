// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A user-space reference for the CUDA probe: preloaded into a workload
 * (LD_PRELOAD, or loaded by cuda_ctypes.py in place of libcudart), it defines
 * the traced functions with the headers' own prototypes, appends one line per
 * call to the file named by XPU_CALL_RECORD and fails the call as a GPU-less
 * machine does. test_workloads.py compares the lines with cuda_expect, so the
 * expectations are checked against what the workloads really pass before any
 * probe is involved. Line: tid symbol stream ptr ptr2 bytes gx gy gz bx by bz
 * kind, with the fields meaning what struct cuda_event's do (xpucore/include/cuda.h).
 *
 * Built three times into one library: the runtime API with legacy names, the
 * same with CUDA_API_PER_THREAD_DEFAULT_STREAM (only the calls the header
 * renames, so no name is defined twice) and, with RECORD_DRIVER, the driver API.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define STR2(x) #x
#define SYMBOL(x) STR2(x)	/* the name after the header's own macros */

struct rec {
	uint64_t stream, ptr, ptr2, bytes;
	unsigned int grid[3], block[3], kind;
};

#define U(x) ((uint64_t)(uintptr_t)(x))

__attribute__((visibility("hidden"))) void record(const char *symbol, const struct rec *r);

#if defined(RECORD_DRIVER)

#include <cuda.h>

#define RET CUDA_ERROR_NOT_INITIALIZED

CUresult CUDAAPI cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
				unsigned int gridDimZ, unsigned int blockDimX,
				unsigned int blockDimY, unsigned int blockDimZ,
				unsigned int sharedMemBytes, CUstream hStream, void **kernelParams,
				void **extra)
{
	struct rec r = { .stream = U(hStream), .ptr = U(f), .bytes = sharedMemBytes,
			 .grid = { gridDimX, gridDimY, gridDimZ },
			 .block = { blockDimX, blockDimY, blockDimZ } };

	record(SYMBOL(cuLaunchKernel), &r);
	return RET;
}

CUresult CUDAAPI cuMemAlloc(CUdeviceptr *dptr, size_t bytesize)
{
	record(SYMBOL(cuMemAlloc), &(struct rec){ .bytes = bytesize });
	return RET;
}

CUresult CUDAAPI cuMemFree(CUdeviceptr dptr)
{
	record(SYMBOL(cuMemFree), &(struct rec){ .ptr = dptr });
	return RET;
}

CUresult CUDAAPI cuMemcpyHtoDAsync(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount,
				   CUstream hStream)
{
	record(SYMBOL(cuMemcpyHtoDAsync), &(struct rec){ .stream = U(hStream), .ptr = dstDevice,
		.ptr2 = U(srcHost), .bytes = ByteCount, .kind = 1 });
	return RET;
}

CUresult CUDAAPI cuMemcpyDtoHAsync(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount,
				   CUstream hStream)
{
	record(SYMBOL(cuMemcpyDtoHAsync), &(struct rec){ .stream = U(hStream), .ptr = U(dstHost),
		.ptr2 = srcDevice, .bytes = ByteCount, .kind = 2 });
	return RET;
}

CUresult CUDAAPI cuStreamSynchronize(CUstream hStream)
{
	record(SYMBOL(cuStreamSynchronize), &(struct rec){ .stream = U(hStream) });
	return RET;
}

CUresult CUDAAPI cuCtxSynchronize(void)
{
	record(SYMBOL(cuCtxSynchronize), &(struct rec){});
	return RET;
}

#else /* the runtime API */

#include <cuda_runtime_api.h>

#define RET cudaErrorInsufficientDriver

/* Renamed under CUDA_API_PER_THREAD_DEFAULT_STREAM: defined in both builds. */

cudaError_t CUDARTAPI cudaLaunchKernel(const void *func, dim3 gridDim, dim3 blockDim,
				       void **args, size_t sharedMem, cudaStream_t stream)
{
	record(SYMBOL(cudaLaunchKernel), &(struct rec){ .stream = U(stream), .ptr = U(func),
		.bytes = sharedMem, .grid = { gridDim.x, gridDim.y, gridDim.z },
		.block = { blockDim.x, blockDim.y, blockDim.z } });
	return RET;
}

cudaError_t CUDARTAPI cudaLaunchKernelExC(const cudaLaunchConfig_t *config, const void *func,
					  void **args)
{
	const cudaLaunchConfig_t *c = config;

	record(SYMBOL(cudaLaunchKernelExC), &(struct rec){ .stream = U(c->stream), .ptr = U(func),
		.bytes = c->dynamicSmemBytes,
		.grid = { c->gridDim.x, c->gridDim.y, c->gridDim.z },
		.block = { c->blockDim.x, c->blockDim.y, c->blockDim.z } });
	return RET;
}

cudaError_t CUDARTAPI cudaMemcpy(void *dst, const void *src, size_t count,
				 enum cudaMemcpyKind kind)
{
	record(SYMBOL(cudaMemcpy), &(struct rec){ .ptr = U(dst), .ptr2 = U(src), .bytes = count,
		.kind = kind });
	return RET;
}

cudaError_t CUDARTAPI cudaMemcpyAsync(void *dst, const void *src, size_t count,
				      enum cudaMemcpyKind kind, cudaStream_t stream)
{
	record(SYMBOL(cudaMemcpyAsync), &(struct rec){ .stream = U(stream), .ptr = U(dst),
		.ptr2 = U(src), .bytes = count, .kind = kind });
	return RET;
}

cudaError_t CUDARTAPI cudaMallocAsync(void **devPtr, size_t size, cudaStream_t hStream)
{
	record(SYMBOL(cudaMallocAsync), &(struct rec){ .stream = U(hStream), .bytes = size });
	return RET;
}

cudaError_t CUDARTAPI cudaFreeAsync(void *devPtr, cudaStream_t hStream)
{
	record(SYMBOL(cudaFreeAsync), &(struct rec){ .stream = U(hStream), .ptr = U(devPtr) });
	return RET;
}

cudaError_t CUDARTAPI cudaStreamSynchronize(cudaStream_t stream)
{
	record(SYMBOL(cudaStreamSynchronize), &(struct rec){ .stream = U(stream) });
	return RET;
}

cudaError_t CUDARTAPI cudaEventRecord(cudaEvent_t event, cudaStream_t stream)
{
	record(SYMBOL(cudaEventRecord), &(struct rec){ .stream = U(stream), .ptr = U(event) });
	return RET;
}

cudaError_t CUDARTAPI cudaGraphLaunch(cudaGraphExec_t graphExec, cudaStream_t stream)
{
	record(SYMBOL(cudaGraphLaunch), &(struct rec){ .stream = U(stream), .ptr = U(graphExec) });
	return RET;
}

#if !defined(CUDA_API_PER_THREAD_DEFAULT_STREAM)
/* Not renamed: defined once, in the legacy build. */

cudaError_t CUDARTAPI cudaMalloc(void **devPtr, size_t size)
{
	record(SYMBOL(cudaMalloc), &(struct rec){ .bytes = size });
	return RET;
}

cudaError_t CUDARTAPI cudaMallocManaged(void **devPtr, size_t size, unsigned int flags)
{
	record(SYMBOL(cudaMallocManaged), &(struct rec){ .bytes = size, .kind = flags });
	return RET;
}

cudaError_t CUDARTAPI cudaFree(void *devPtr)
{
	record(SYMBOL(cudaFree), &(struct rec){ .ptr = U(devPtr) });
	return RET;
}

cudaError_t CUDARTAPI cudaDeviceSynchronize(void)
{
	record(SYMBOL(cudaDeviceSynchronize), &(struct rec){});
	return RET;
}

cudaError_t CUDARTAPI cudaEventSynchronize(cudaEvent_t event)
{
	record(SYMBOL(cudaEventSynchronize), &(struct rec){ .ptr = U(event) });
	return RET;
}

/* The one definition of the writer, with the legacy runtime part. */

static int record_fd = -1;

__attribute__((constructor)) static void open_record(void)
{
	const char *path = getenv("XPU_CALL_RECORD");

	if (path)
		record_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (record_fd < 0) {
		fprintf(stderr, "call_recorder: set XPU_CALL_RECORD to a writable file\n");
		abort();
	}
}

/* One write(2) per line on an O_APPEND file: lines from threads never mix. */
void record(const char *symbol, const struct rec *r)
{
	char line[256];
	int n = snprintf(line, sizeof(line), "%d %s %lu %lu %lu %lu %u %u %u %u %u %u %u\n",
			 gettid(), symbol, (unsigned long)r->stream, (unsigned long)r->ptr,
			 (unsigned long)r->ptr2, (unsigned long)r->bytes, r->grid[0],
			 r->grid[1], r->grid[2], r->block[0], r->block[1], r->block[2],
			 r->kind);

	if (write(record_fd, line, n) != n)
		abort();
}

#endif /* !CUDA_API_PER_THREAD_DEFAULT_STREAM */
#endif /* RECORD_DRIVER */
