/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * For the workloads that pass made-up handles to the real CUDA libraries: they
 * run only where no CUDA driver is installed, so that every call fails before
 * it touches a handle.
 */
#ifndef XPU_NO_DRIVER_H
#define XPU_NO_DRIVER_H

#include <dlfcn.h>
#include <stdio.h>

/* Nonzero, with the reason on stderr, where libcuda.so.1 can be loaded. */
static int refuse_if_driver_installed(const char *prog)
{
	void *h = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);

	if (!h)
		return 0;
	dlclose(h);
	fprintf(stderr, "%s: a CUDA driver (libcuda.so.1) is installed; this workload "
		"passes made-up handles and runs only where every call fails\n", prog);
	return 1;
}

#endif
