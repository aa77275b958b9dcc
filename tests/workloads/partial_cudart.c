// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* A "libcudart.so.12" that defines cudaMalloc and nothing else: the agent must refuse it. */
#include <cuda_runtime_api.h>

cudaError_t CUDARTAPI cudaMalloc(void **devPtr, size_t size)
{
	return cudaErrorInsufficientDriver;
}
