/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The driver stand-in's stream-ordered calls, included by fake_cuda_driver.c
 * (legacy-stream names) and fake_cuda_driver_ptsz.c (compiled under
 * CUDA_API_PER_THREAD_DEFAULT_STREAM, where cuda.h renames them to _ptsz).
 * Needs <cuda.h> and fake_driver_not_initialized() declared first.
 */
CUresult CUDAAPI cuLaunchKernel(CUfunction f, unsigned int gridDimX, unsigned int gridDimY,
				unsigned int gridDimZ, unsigned int blockDimX,
				unsigned int blockDimY, unsigned int blockDimZ,
				unsigned int sharedMemBytes, CUstream hStream, void **kernelParams,
				void **extra)
{
	return fake_driver_not_initialized();
}

CUresult CUDAAPI cuMemcpyHtoDAsync(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount,
				   CUstream hStream)
{
	return fake_driver_not_initialized();
}

CUresult CUDAAPI cuMemcpyDtoHAsync(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount,
				   CUstream hStream)
{
	return fake_driver_not_initialized();
}

CUresult CUDAAPI cuStreamSynchronize(CUstream hStream)
{
	return fake_driver_not_initialized();
}
