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

#define FN(sym, lib, required) { #sym, CUDA_FN_##sym, CUDA_LIB_##lib, required },

const struct probe_fn cuda_functions[] = { CUDA_FUNCTIONS(FN) };
_Static_assert(sizeof(cuda_functions) / sizeof(cuda_functions[0]) == CUDA_FUNCTION_COUNT,
	       "cuda_functions[] is CUDA_FUNCTIONS, every entry");

bool cuda_library_match(const char *base)
{
	return (!strncmp(base, "libcudart", 9) || !strncmp(base, "libcuda.so", 10) ||
		!strncmp(base, "libnccl", 7)) && strstr(base, ".so");
}

static bool is_nccl_library(const char *path)
{
	const char *base = strrchr(path, '/');

	return !strncmp(base ? base + 1 : path, "libnccl", 7);
}

int cuda_resolve_library(const char *path, struct elf_sym_query *q, char *err, size_t errlen)
{
	bool has[CUDA_LIB_COUNT] = { false }, nccl = is_nccl_library(path);
	int ret, found = 0;
	size_t i;

	for (i = 0; i < CUDA_FUNCTION_COUNT; i++)
		q[i].name = cuda_functions[i].name;
	ret = elf_resolve_functions(path, q, CUDA_FUNCTION_COUNT, err, errlen);
	if (ret)
		return -ret;
	for (i = 0; i < CUDA_FUNCTION_COUNT; i++) {
		/*
		 * libnccl links the CUDA runtime statically: its .symtab has local
		 * cudaMalloc, cudaLaunchKernel, ... Only its NCCL API is hooked.
		 */
		if (nccl && cuda_functions[i].lib != CUDA_LIB_nccl)
			q[i].offset = -1;
		if (q[i].offset >= 0) {
			has[cuda_functions[i].lib] = true;
			found++;
		}
	}
	if (!found) {
		snprintf(err, errlen, "%s defines none of the CUDA runtime, driver or NCCL "
			 "functions the probe hooks (e.g. cudaLaunchKernel, cuLaunchKernel, "
			 "ncclAllReduce)", path);
		return -AGENT_INVALID_CONFIG;
	}
	for (i = 0; i < CUDA_FUNCTION_COUNT; i++) {
		if (cuda_functions[i].required && q[i].offset < 0 && has[cuda_functions[i].lib]) {
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
	struct elf_sym_query q[CUDA_FUNCTION_COUNT];
	int i, n;

	for (i = 0; i < nlibs; i++) {
		n = cuda_resolve_library(libs[i].path, q, err, errlen);
		if (n < 0)
			return -n;
		for (size_t f = 0; f < CUDA_FUNCTION_COUNT; f++) {
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
