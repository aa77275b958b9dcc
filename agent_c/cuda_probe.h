/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* What the CUDA probe hooks, and how to tell a CUDA library when we see one. */
#ifndef XPU_CUDA_PROBE_H
#define XPU_CUDA_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>
#include "cuda.h"
#include "elf_helpers.h"

/* The APIs (libraries) of cuda.fns: CUDA_LIB_cudart, CUDA_LIB_cuda, CUDA_LIB_nccl. */
enum cuda_lib {
#define CUDA_LIB(lib) CUDA_LIB_##lib,
	CUDA_LIBRARIES(CUDA_LIB)
#undef CUDA_LIB
	CUDA_LIB_COUNT
};

struct probe_fn {
	const char *name;	/* exported symbol */
	__u64 id;		/* enum cuda_fn, passed to the BPF programs as the cookie */
	enum cuda_lib lib;	/* its API */
	bool required;		/* a library of its API that lacks it is refused */
};

/* cuda.fns, in its order (CUDA_FUNCTIONS). */
extern const struct probe_fn cuda_functions[CUDA_FUNCTION_COUNT];

/* libcudart*.so* (including pip's hashed names), libcuda.so* and libnccl.so*. */
bool cuda_library_match(const char *basename);

/*
 * Resolves every hooked function in the library at path into q (sized
 * CUDA_FUNCTION_COUNT). A library that defines some of an API's functions must
 * define all the required ones of that API. Returns how many were found, or
 * minus an agent exit code with the reason in err.
 */
int cuda_resolve_library(const char *path, struct elf_sym_query *q, char *err, size_t errlen);

#endif
