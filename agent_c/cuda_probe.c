// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include "cuda.h"
#include "pystack.h"	/* before the skeleton: its rodata holds struct py_offsets */
#include "cuda.skel.h"
#include "call_probe.h"
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
	FN(ncclGroupStart, false),
	FN(ncclGroupEnd, false),
	FN(ncclAllReduce, false),
	FN(ncclReduceScatter, false),
	FN(ncclAllGather, false),
	FN(ncclAlltoAll, false),
	FN(ncclBroadcast, false),
	FN(ncclSend, false),
	FN(ncclRecv, false),
	FN(ncclCommInitRank, false),
	FN(ncclCommDestroy, false),
};
const size_t cuda_function_count = sizeof(cuda_functions) / sizeof(cuda_functions[0]);

bool cuda_library_match(const char *base)
{
	return (!strncmp(base, "libcudart", 9) || !strncmp(base, "libcuda.so", 10) ||
		!strncmp(base, "libnccl", 7)) && strstr(base, ".so");
}

enum cuda_api { API_DRIVER, API_RUNTIME, API_NCCL };

static enum cuda_api api_of(const char *name)
{
	if (!strncmp(name, "nccl", 4))
		return API_NCCL;
	return !strncmp(name, "cuda", 4) ? API_RUNTIME : API_DRIVER;
}

static bool is_nccl_library(const char *path)
{
	const char *base = strrchr(path, '/');

	return !strncmp(base ? base + 1 : path, "libnccl", 7);
}

int cuda_resolve_library(const char *path, struct elf_sym_query *q, char *err, size_t errlen)
{
	bool has[3] = { false, false, false }, nccl = is_nccl_library(path);
	int ret, found = 0;
	size_t i;

	for (i = 0; i < cuda_function_count; i++)
		q[i].name = cuda_functions[i].name;
	ret = elf_resolve_functions(path, q, cuda_function_count, err, errlen);
	if (ret)
		return -ret;
	for (i = 0; i < cuda_function_count; i++) {
		/*
		 * libnccl links the CUDA runtime statically: its .symtab has local
		 * cudaMalloc, cudaLaunchKernel, ... Only its NCCL API is hooked.
		 */
		if (nccl && api_of(q[i].name) != API_NCCL)
			q[i].offset = -1;
		if (q[i].offset >= 0) {
			has[api_of(q[i].name)] = true;
			found++;
		}
	}
	if (!found) {
		snprintf(err, errlen, "%s defines none of the CUDA runtime, driver or NCCL "
			 "functions the probe hooks (e.g. cudaLaunchKernel, cuLaunchKernel, "
			 "ncclAllReduce)", path);
		return -AGENT_INVALID_CONFIG;
	}
	for (i = 0; i < cuda_function_count; i++) {
		if (cuda_functions[i].required && q[i].offset < 0 && has[api_of(q[i].name)]) {
			snprintf(err, errlen, "%s lacks symbol %s", path, q[i].name);
			return -AGENT_INVALID_CONFIG;
		}
	}
	return found;
}

/* Each library on its own: hooked where it defines the functions, all of its API's required ones. */
static int cuda_plan(const struct mapped_lib *libs, int nlibs, struct call_plan *plan, char *err,
		     size_t errlen)
{
	struct elf_sym_query q[cuda_function_count];
	int i, n;

	for (i = 0; i < nlibs; i++) {
		n = cuda_resolve_library(libs[i].path, q, err, errlen);
		if (n < 0)
			return -n;
		for (size_t f = 0; f < cuda_function_count; f++) {
			if (q[f].offset >= 0 &&
			    call_plan_add_entry(plan, &libs[i], cuda_functions[f].name, q[f].offset,
						cuda_functions[f].id)) {
				snprintf(err, errlen, "out of memory");
				return AGENT_START_FAILED;
			}
		}
	}
	return 0;
}

CALL_PROBE_OPEN(cuda)

static bool cuda_incomplete(void *event)
{
	struct cuda_event *e = event;

	switch (e->h.func >> 8) {
	case CUDA_ARGS_GET_DEVICE:
		return false;	/* never an event */
	case CUDA_ARGS_ALLOC:
	case CUDA_ARGS_ALLOC_ASYNC:
	case CUDA_ARGS_ALLOC_MANAGED:
		e->ptr2 = 0;	/* an out-pointer, not an argument */
		break;
	case CUDA_ARGS_NCCL_INIT:
		e->handle = 0;	/* likewise */
		break;
	}
	return true;
}

const struct call_probe cuda_probe = {
	.type = "CUDA",
	.monitor_type = XPU_MONITOR_CUDA,
	.libraries = "CUDA runtime or driver",
	.library_match = cuda_library_match,
	.plan = cuda_plan,
	.open = cuda_open,
	.slots = CALL_SLOT_LAYOUT(cuda, CUDA, cuda_incomplete),
};
