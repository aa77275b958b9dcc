// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Device attribution, against the four-device stand-in (fake_cudart_devices.c).
 * Thread t chooses device t % 4 before the tracer attaches, so the tracer
 * cannot know it; then each round:
 *   cudaMalloc             round 0: device unknown (0 assumed); later: known
 *   cudaGetDevice          not an event: tells the probe the device
 *   cudaMemcpy             device t % 4
 *   cudaSetDevice((t+1)%4) an event, on the device asked for
 *   cudaLaunchKernel       device (t + 1) % 4
 *   cudaSetDevice(7)       fails (cudaErrorInvalidDevice): the device stays
 *   cudaStreamSynchronize  device (t + 1) % 4
 *   cudaSetDevice(t % 4)   back, for the next round
 * Written out again in test_cuda_devices.py.
 *
 * usage: cuda_device_calls --threads T --iters N
 */
#include "workload_protocol.h"	/* first: it sets _GNU_SOURCE */
#include <cuda_runtime_api.h>

#define CALL(fn, ...) (count_call(SYMBOL(fn)), fn(__VA_ARGS__))

static void choose_device(int t)
{
	cudaSetDevice(t % 4);	/* before the tracer attaches: not counted */
}

static void one_round(int t, long i)
{
	dim3 grid = { 1, 1, 1 }, block = { 32, 1, 1 };
	void *p = NULL;
	int dev = -1;

	CALL(cudaMalloc, &p, 4096 + t);
	cudaGetDevice(&dev);	/* never an event */
	CALL(cudaMemcpy, p, p, 64, cudaMemcpyDeviceToDevice);
	CALL(cudaSetDevice, (t + 1) % 4);
	CALL(cudaLaunchKernel, (const void *)0x1000, grid, block, NULL, 0, NULL);
	CALL(cudaSetDevice, 7);
	CALL(cudaStreamSynchronize, NULL);
	CALL(cudaSetDevice, t % 4);
}

int main(int argc, char **argv)
{
	struct workload w = {};

	before_park = choose_device;
	parse_args(&w, argc, argv);
	return run_workload(&w);
}
