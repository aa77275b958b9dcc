// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Driver API calls from several threads, against the stand-in libcuda.so.1
 * (fake_cuda_driver.c). cuLaunchKernel has eleven arguments: its 7th to 11th
 * (blockDimZ, sharedMemBytes, hStream, kernelParams, extra) are passed on the
 * stack, which is what the probe must get right. Arguments are functions of
 * (t, i), written out again in cuda_expect.py; handles and pointers are made
 * up, so this runs only against the stand-in.
 *
 * usage: cuda_driver_calls --threads T --iters N
 */
#include "workload_protocol.h"	/* first: it sets _GNU_SOURCE */
#include <cuda.h>

#define CALL(fn, ...) (count_call(SYMBOL(fn)), fn(__VA_ARGS__))

static void one_round(int t, long i)
{
	CUstream stream = (CUstream)(unsigned long)(0x6000 + t * 0x100 + i % 3);
	CUdeviceptr dev = 0xa0000 + t * 0x1000 + i * 0x10, out;
	void *host = (void *)(unsigned long)(0x4000000 + t * 0x1000 + i * 0x10);
	size_t nbytes = 512 * (t + 1) + i;

	CALL(cuMemAlloc, &out, nbytes);
	CALL(cuMemcpyHtoDAsync, dev, host, nbytes, stream);
	CALL(cuMemcpyDtoHAsync, host, dev, nbytes + 1, stream);
	/* eleven arguments, pairwise different in every call, so a misread slot shows */
	CALL(cuLaunchKernel, (CUfunction)(unsigned long)(0x3000 + t * 0x10 + i % 2),
	     t + 2, 100 + i % 7, 200 + t,		/* grid, in registers */
	     1024 + 32 * t, 400 + i % 4,		/* block x, y: registers */
	     500 + t,					/* block z: 7th, on the stack */
	     0x10000 + 64 * i + t, stream,		/* 8th, 9th: stack */
	     (void **)(unsigned long)(0x7100000 + t * 0x1000 + i),	/* never read */
	     (void **)(unsigned long)(0x7200000 + t * 0x1000 + i));
	CALL(cuStreamSynchronize, stream);
	CALL(cuCtxSynchronize);
	CALL(cuMemFree, 0xb0000 + t * 0x1000 + i);
}

int main(int argc, char **argv)
{
	struct workload w = {};

	parse_args(&w, argc, argv);
	cuInit(0);	/* not hooked; fails with CUDA_ERROR_NO_DEVICE as without a GPU */
	return run_workload(&w);
}
