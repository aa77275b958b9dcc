// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The driver stand-in's per-thread-default-stream entry points. Under
 * CUDA_API_PER_THREAD_DEFAULT_STREAM the real cuda.h maps the stream-ordered
 * calls to _ptsz names (cuLaunchKernel -> cuLaunchKernel_ptsz,
 * cuMemcpyHtoDAsync -> cuMemcpyHtoDAsync_v2_ptsz, ...); these definitions,
 * compiled that way, export exactly those names with the header's prototypes.
 * Built into the same libcuda.so.1 as fake_cuda_driver.c.
 */
#define CUDA_API_PER_THREAD_DEFAULT_STREAM 1
#include <cuda.h>

CUresult fake_driver_not_initialized(void);

#include "fake_cuda_driver_streams.h"
