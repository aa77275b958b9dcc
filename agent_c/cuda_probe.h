/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* What the CUDA probe hooks, and how to tell a CUDA library when we see one. */
#ifndef XPU_CUDA_PROBE_H
#define XPU_CUDA_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>
#include "elf_helpers.h"

struct probe_fn {
	const char *name;	/* exported symbol */
	__u64 id;		/* enum cuda_fn, passed to the BPF programs as the cookie */
	bool required;		/* a library of its API that lacks it is refused */
};

extern const struct probe_fn cuda_functions[];
extern const size_t cuda_function_count;

/* libcudart*.so* (including pip's hashed names), libcuda.so* and libnccl.so*. */
bool cuda_library_match(const char *basename);

/*
 * Resolves every hooked function in the library at path into q (sized
 * cuda_function_count). A library that defines some of an API's functions must
 * define all the required ones of that API. Returns how many were found, or
 * minus an agent exit code with the reason in err.
 */
int cuda_resolve_library(const char *path, struct elf_sym_query *q, char *err, size_t errlen);

#endif
