// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Stand-in for the NVIDIA driver library (libcuda.so.1), which cannot be
 * obtained here. Built from the real cuda.h, so every function has exactly the
 * header's prototype (the compiler checks); the header's own macros give the
 * exported names (cuMemAlloc -> cuMemAlloc_v2, ...). Behaves as the driver does
 * without a device: cuInit fails with CUDA_ERROR_NO_DEVICE, everything else with
 * CUDA_ERROR_NOT_INITIALIZED. XPU_FAKE_DRIVER_DELAY_US makes each call but
 * cuInit (which the workload makes before it reports ready) sleep that long;
 * it is read once, at load. Exported, default-visibility functions in a shared
 * library can be interposed, so the compiler neither inlines nor merges them:
 * each has its own address.
 */
#define _GNU_SOURCE
#include <stdlib.h>
#include <unistd.h>
#include <cuda.h>

#ifdef CUDA_API_PER_THREAD_DEFAULT_STREAM
#error "the stand-in exports the legacy-stream names only"
#endif

static useconds_t delay_us;

__attribute__((constructor)) static void read_delay(void)
{
	const char *s = getenv("XPU_FAKE_DRIVER_DELAY_US");

	delay_us = s ? (useconds_t)strtoul(s, NULL, 10) : 0;
}

/* Also what fake_cuda_driver_ptsz.c's functions return. */
__attribute__((visibility("hidden"))) CUresult fake_driver_not_initialized(void)
{
	if (delay_us)
		usleep(delay_us);
	return CUDA_ERROR_NOT_INITIALIZED;
}

CUresult CUDAAPI cuInit(unsigned int flags)
{
	return CUDA_ERROR_NO_DEVICE;
}

CUresult CUDAAPI cuMemAlloc(CUdeviceptr *dptr, size_t bytesize)
{
	return fake_driver_not_initialized();
}

CUresult CUDAAPI cuMemFree(CUdeviceptr dptr)
{
	return fake_driver_not_initialized();
}

/* cuLaunchKernel, the async copies, cuStreamSynchronize: under their legacy-stream names */
#include "fake_cuda_driver_streams.h"

CUresult CUDAAPI cuCtxSynchronize(void)
{
	return fake_driver_not_initialized();
}
