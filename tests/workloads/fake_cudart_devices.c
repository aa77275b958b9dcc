// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * A "libcudart.so.12" with four devices, for the device attribution tests:
 * without a GPU the real runtime fails cudaSetDevice and cudaGetDevice, so a
 * successful choice of device can only be seen here. Built from the real
 * cuda_runtime_api.h, so every function has the runtime's prototype. Each
 * thread has its own current device, 0 until it sets one, as in CUDA. The
 * other functions the agent requires succeed and do nothing.
 */
#include <cuda_runtime_api.h>

#define DEVICES 4

static __thread int current;

cudaError_t CUDARTAPI cudaSetDevice(int device)
{
	if (device < 0 || device >= DEVICES)
		return cudaErrorInvalidDevice;
	current = device;
	return cudaSuccess;
}

cudaError_t CUDARTAPI cudaGetDevice(int *device)
{
	if (!device)
		return cudaErrorInvalidValue;
	*device = current;
	return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMalloc(void **devPtr, size_t size)
{
	*devPtr = (void *)(0x700000000000UL + ((unsigned long)current << 36) + size);
	return cudaSuccess;
}

cudaError_t CUDARTAPI cudaFree(void *devPtr)
{
	return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMemcpy(void *dst, const void *src, size_t count,
				 enum cudaMemcpyKind kind)
{
	return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMemcpyAsync(void *dst, const void *src, size_t count,
				      enum cudaMemcpyKind kind, cudaStream_t stream)
{
	return cudaSuccess;
}

cudaError_t CUDARTAPI cudaLaunchKernel(const void *func, dim3 gridDim, dim3 blockDim,
				       void **args, size_t sharedMem, cudaStream_t stream)
{
	return cudaSuccess;
}

cudaError_t CUDARTAPI cudaStreamSynchronize(cudaStream_t stream)
{
	return cudaSuccess;
}

cudaError_t CUDARTAPI cudaDeviceSynchronize(void)
{
	return cudaSuccess;
}
