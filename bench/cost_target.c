// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The traced side of bench/probe_cost.py: loads a library, resolves one
 * function taking (void *, const void *, size_t, int) -- cudaMemcpy's shape --
 * and on each stdin line "N" calls it N times and prints
 * {"ns_per_call": x}. Prints {"ready": true, "pid": P} first.
 *
 * usage: xpu-bench-cost-target LIBRARY SYMBOL
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

typedef int (*memcpy_fn)(void *, const void *, size_t, int);

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e9 + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	char line[64], src[64], dst[64];
	void *lib;
	memcpy_fn fn;
	long n, i;
	double t0;

	if (argc != 3) {
		fprintf(stderr, "usage: %s LIBRARY SYMBOL\n", argv[0]);
		return 2;
	}
	lib = dlopen(argv[1], RTLD_NOW);
	fn = lib ? (memcpy_fn)dlsym(lib, argv[2]) : NULL;
	if (!fn) {
		fprintf(stderr, "cannot load %s from %s: %s\n", argv[2], argv[1], dlerror());
		return 2;
	}
	fn(dst, src, sizeof(src), 0);	/* first call initialises the runtime */
	printf("{\"ready\": true, \"pid\": %d}\n", getpid());
	fflush(stdout);
	while (fgets(line, sizeof(line), stdin)) {
		n = atol(line);
		t0 = now();
		for (i = 0; i < n; i++)
			fn(dst, src, sizeof(src), 1);
		printf("{\"ns_per_call\": %.1f}\n", (now() - t0) / (n ? n : 1));
		fflush(stdout);
	}
	return 0;
}
