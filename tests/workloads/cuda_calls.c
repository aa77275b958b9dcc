// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Makes a known set of CUDA runtime calls from several threads (the real
 * libcudart; without a GPU every call fails with 35 before it touches its
 * arguments, so handles are made-up non-zero values). Thread t makes
 * iters * (t + 1) rounds; every argument is a function of (t, i), written out
 * again in cuda_expect.py. Built twice: as is, and with
 * CUDA_API_PER_THREAD_DEFAULT_STREAM, where the header sends the calls to the
 * _ptsz/_ptds entry points. Where a driver is installed the made-up handles
 * would be dereferenced, so it refuses to start there.
 *
 * usage: cuda_calls --threads T --iters N [--burst M]
 */
#include "workload_protocol.h"
#include "no_driver.h"	/* first: it sets _GNU_SOURCE */
#include <dlfcn.h>
#include <cuda_runtime_api.h>

#define H(x) ((void *)(unsigned long)(x))
#define CALL(fn, ...) (count_call(SYMBOL(fn)), fn(__VA_ARGS__))

static void one_round(int t, long i)
{
	cudaStream_t stream = (cudaStream_t)H(0x7000 + t * 0x100 + i % 5);
	void *dst = H(0xd000000 + t * 0x10000 + i * 0x100);
	void *src = H(0x5000000 + t * 0x10000 + i * 0x100);
	size_t count = 64 * (t + 1) + i;
	void *func = H(0x10000 + t * 0x100 + i % 3);
	dim3 grid = { t + 2, i % 4 + 1, 3 }, block = { 32 * (t + 1), 2, 1 + i % 2 };
	cudaLaunchConfig_t cfg = {
		.gridDim = { i + 1, t + 1, 2 },
		.blockDim = { 64, t + 1, 1 },
		.dynamicSmemBytes = 256 + i,
		.stream = stream,
	};
	void *p = NULL;

	CALL(cudaMalloc, &p, 4096 * (t + 1) + i);
	CALL(cudaMallocAsync, &p, 8192 * (t + 1) + i, stream);
	CALL(cudaMallocManaged, &p, 100 * (t + 1) + i, 1 + i % 2);
	CALL(cudaMemcpy, dst, src, count, (enum cudaMemcpyKind)(i % 5));
	CALL(cudaMemcpy, src, dst, count + 1, (enum cudaMemcpyKind)((i + 1) % 5));
	CALL(cudaMemcpyAsync, dst, src, count + 2, (enum cudaMemcpyKind)((i + 2) % 5), stream);
	CALL(cudaLaunchKernel, func, grid, block, NULL, 128 * (t + 1) + i, stream);
	CALL(cudaLaunchKernelExC, &cfg, func, NULL);
	CALL(cudaFree, H(0xf000000 + t * 0x1000 + i));
	CALL(cudaFreeAsync, H(0xf800000 + t * 0x1000 + i), stream);
	CALL(cudaStreamSynchronize, stream);
	CALL(cudaDeviceSynchronize);
	CALL(cudaEventRecord, (cudaEvent_t)H(0xe0000 + t * 0x100 + i), stream);
	CALL(cudaEventSynchronize, (cudaEvent_t)H(0xe0000 + t * 0x100 + i));
	CALL(cudaGraphLaunch, (cudaGraphExec_t)H(0x90000 + t * 0x100 + i), stream);
}

/* --burst: the same copy over and over (values in cuda_expect.BURST_*). */
static void burst_memcpy(void)
{
	CALL(cudaMemcpy, H(0xbb000000), H(0xbc000000), 4096, cudaMemcpyHostToDevice);
}

int main(int argc, char **argv)
{
	struct workload w = {};

	parse_args(&w, argc, argv);
	if (refuse_if_driver_installed(argv[0]))
		return 3;
	burst_call = burst_memcpy;
	return run_workload(&w);
}
