// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <stdio.h>
#include <string.h>
#include "cuda.h"
#include "cuda_probe.h"
#include "exit_codes.h"

#define FN(sym, req) { #sym, CUDA_FN_##sym, req }

const struct probe_fn cuda_functions[] = {
	FN(cudaLaunchKernel, true),
	FN(cudaLaunchKernel_ptsz, false),
	FN(cudaLaunchKernelExC, false),
	FN(cudaLaunchKernelExC_ptsz, false),
	FN(cudaMemcpy, true),
	FN(cudaMemcpy_ptds, false),
	FN(cudaMemcpyAsync, true),
	FN(cudaMemcpyAsync_ptsz, false),
	FN(cudaMalloc, true),
	FN(cudaMallocAsync, false),
	FN(cudaMallocAsync_ptsz, false),
	FN(cudaMallocManaged, false),
	FN(cudaFree, true),
	FN(cudaFreeAsync, false),
	FN(cudaFreeAsync_ptsz, false),
	FN(cudaStreamSynchronize, true),
	FN(cudaStreamSynchronize_ptsz, false),
	FN(cudaDeviceSynchronize, true),
	FN(cudaEventRecord, false),
	FN(cudaEventRecord_ptsz, false),
	FN(cudaEventSynchronize, false),
	FN(cudaGraphLaunch, false),
	FN(cudaGraphLaunch_ptsz, false),
	FN(cudaSetDevice, false),
	FN(cudaGetDevice, false),
	FN(cuLaunchKernel, true),
	FN(cuLaunchKernel_ptsz, false),
	FN(cuMemAlloc_v2, true),
	FN(cuMemFree_v2, true),
	FN(cuMemcpyHtoDAsync_v2, false),
	FN(cuMemcpyDtoHAsync_v2, false),
	FN(cuMemcpyHtoDAsync_v2_ptsz, false),
	FN(cuMemcpyDtoHAsync_v2_ptsz, false),
	FN(cuStreamSynchronize, true),
	FN(cuStreamSynchronize_ptsz, false),
	FN(cuCtxSynchronize, true),
};
const size_t cuda_function_count = sizeof(cuda_functions) / sizeof(cuda_functions[0]);

bool cuda_library_match(const char *base)
{
	return (!strncmp(base, "libcudart", 9) || !strncmp(base, "libcuda.so", 10)) &&
	       strstr(base, ".so");
}

static bool is_runtime(const char *name)
{
	return !strncmp(name, "cuda", 4);
}

int cuda_resolve_library(const char *path, struct elf_sym_query *q, char *err, size_t errlen)
{
	bool has[2] = { false, false };
	int ret, found = 0;
	size_t i;

	for (i = 0; i < cuda_function_count; i++)
		q[i].name = cuda_functions[i].name;
	ret = elf_resolve_functions(path, q, cuda_function_count, err, errlen);
	if (ret)
		return -ret;
	for (i = 0; i < cuda_function_count; i++) {
		if (q[i].offset >= 0) {
			has[is_runtime(q[i].name)] = true;
			found++;
		}
	}
	if (!found) {
		snprintf(err, errlen, "%s defines none of the CUDA runtime or driver functions "
			 "the probe hooks (e.g. cudaLaunchKernel, cuLaunchKernel)", path);
		return -AGENT_INVALID_CONFIG;
	}
	for (i = 0; i < cuda_function_count; i++) {
		if (cuda_functions[i].required && q[i].offset < 0 && has[is_runtime(q[i].name)]) {
			snprintf(err, errlen, "%s lacks symbol %s", path, q[i].name);
			return -AGENT_INVALID_CONFIG;
		}
	}
	return found;
}
