// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Stand-in for the AscendCL runtime (aclrt*), which cannot be had without an
 * Ascend install. Built from the real acl_rt.h of the torch-npu wheel (see
 * fetch-cann-headers), so each function has exactly the header's prototype.
 * One source in two layouts: libacl_rt.so alone (current CANN: the runtime in
 * its own library, beside libascendcl.so), or linked into libascendcl.so with
 * fake_ascendcl.c (the older layout: all of AscendCL in one library).
 *
 * Eight devices; each thread has its own current device, none until
 * aclrtSetDevice. Calls that need a device fail without one with
 * ACL_ERROR_RT_CONTEXT_NULL; bad arguments (NULL where a pointer is needed,
 * a device out of range, count > destMax, ...) give ACL_ERROR_INVALID_PARAM.
 * Nothing is copied or run: pointers and handles are made up and never read.
 * Allocations return distinct fake addresses, 2 MiB apart:
 *   device memory  0x100000000000 + (device << 36) + n * 2 MiB   (aclrtMalloc)
 *   cached         0x180000000000 + (device << 36) + n * 2 MiB   (aclrtMallocCached)
 *   host           0x7e0000000000 + n * 2 MiB                   (aclrtMallocHost)
 * n counts allocations of that kind, in the whole process (mod 2^15).
 * Streams from aclrtCreateStream are 0x5a0000000000 + (device << 36) + n * 0x100.
 */
#include "fake_acl_common.h"
#include <stdint.h>
#include <acl/acl_rt.h>

#define DEVICES 8

static __thread int32_t current_device = -1;
static unsigned long n_dev, n_cached, n_host, n_stream;

static int valid_kind(aclrtMemcpyKind kind)
{
	return kind >= ACL_MEMCPY_HOST_TO_HOST && kind <= ACL_MEMCPY_INTER_DEVICE_TO_DEVICE;
}

static void *fake_address(unsigned long base, int device, unsigned long *counter)
{
	unsigned long n = __atomic_fetch_add(counter, 1, __ATOMIC_RELAXED) % (1UL << 15);

	return (void *)(base + ((unsigned long)device << 36) + (n << 21));
}

aclError aclrtSetDevice(int32_t deviceId)
{
	fake_work(0);
	if (deviceId < 0 || deviceId >= DEVICES)
		return ACL_ERROR_INVALID_PARAM;
	current_device = deviceId;
	return ACL_SUCCESS;
}

/* Not hooked: lets the workload check its current device. */
aclError aclrtGetDevice(int32_t *deviceId)
{
	if (!deviceId)
		return ACL_ERROR_INVALID_PARAM;
	if (current_device < 0)
		return ACL_ERROR_RT_CONTEXT_NULL;
	*deviceId = current_device;
	return ACL_SUCCESS;
}

aclError aclrtCreateStream(aclrtStream *stream)
{
	unsigned long n;

	fake_work(0);
	if (!stream)
		return ACL_ERROR_INVALID_PARAM;
	if (current_device < 0)
		return ACL_ERROR_RT_CONTEXT_NULL;
	n = __atomic_fetch_add(&n_stream, 1, __ATOMIC_RELAXED) % (1UL << 28);
	*stream = (aclrtStream)(0x5a0000000000UL + ((unsigned long)current_device << 36) + (n << 8));
	return ACL_SUCCESS;
}

static aclError fake_malloc(void **ptr, size_t size, unsigned long base, unsigned long *counter)
{
	fake_work(0);
	if (!ptr || !size)
		return ACL_ERROR_INVALID_PARAM;
	if (current_device < 0)
		return ACL_ERROR_RT_CONTEXT_NULL;
	*ptr = fake_address(base, current_device, counter);
	return ACL_SUCCESS;
}

aclError aclrtMalloc(void **devPtr, size_t size, aclrtMemMallocPolicy policy)
{
	return fake_malloc(devPtr, size, 0x100000000000UL, &n_dev);
}

aclError aclrtMallocCached(void **devPtr, size_t size, aclrtMemMallocPolicy policy)
{
	return fake_malloc(devPtr, size, 0x180000000000UL, &n_cached);
}

aclError aclrtMallocHost(void **hostPtr, size_t size)
{
	fake_work(0);
	if (!hostPtr || !size)
		return ACL_ERROR_INVALID_PARAM;
	*hostPtr = fake_address(0x7e0000000000UL, 0, &n_host);
	return ACL_SUCCESS;
}

aclError aclrtFree(void *devPtr)
{
	fake_work(0);
	return devPtr ? ACL_SUCCESS : ACL_ERROR_INVALID_PARAM;
}

aclError aclrtFreeHost(void *hostPtr)
{
	fake_work(0);
	return hostPtr ? ACL_SUCCESS : ACL_ERROR_INVALID_PARAM;
}

static aclError check_copy(void *dst, size_t destMax, const void *src, size_t count,
			   aclrtMemcpyKind kind)
{
	fake_work(0);
	if (!dst || !src || count > destMax || !valid_kind(kind))
		return ACL_ERROR_INVALID_PARAM;
	return current_device < 0 ? ACL_ERROR_RT_CONTEXT_NULL : ACL_SUCCESS;
}

aclError aclrtMemcpy(void *dst, size_t destMax, const void *src, size_t count,
		     aclrtMemcpyKind kind)
{
	return check_copy(dst, destMax, src, count, kind);
}

aclError aclrtMemcpyAsync(void *dst, size_t destMax, const void *src, size_t count,
			  aclrtMemcpyKind kind, aclrtStream stream)
{
	return check_copy(dst, destMax, src, count, kind);
}

static aclError check_copy2d(void *dst, size_t dpitch, const void *src, size_t spitch,
			     size_t width, size_t height, aclrtMemcpyKind kind)
{
	fake_work(0);
	if (!dst || !src || width > dpitch || width > spitch || !height || !valid_kind(kind))
		return ACL_ERROR_INVALID_PARAM;
	return current_device < 0 ? ACL_ERROR_RT_CONTEXT_NULL : ACL_SUCCESS;
}

aclError aclrtMemcpy2d(void *dst, size_t dpitch, const void *src, size_t spitch,
		       size_t width, size_t height, aclrtMemcpyKind kind)
{
	return check_copy2d(dst, dpitch, src, spitch, width, height, kind);
}

aclError aclrtMemcpy2dAsync(void *dst, size_t dpitch, const void *src, size_t spitch,
			    size_t width, size_t height, aclrtMemcpyKind kind,
			    aclrtStream stream)
{
	return check_copy2d(dst, dpitch, src, spitch, width, height, kind);
}

static aclError check_set(void *devPtr, size_t maxCount, size_t count)
{
	fake_work(0);
	if (!devPtr || count > maxCount)
		return ACL_ERROR_INVALID_PARAM;
	return current_device < 0 ? ACL_ERROR_RT_CONTEXT_NULL : ACL_SUCCESS;
}

aclError aclrtMemset(void *devPtr, size_t maxCount, int32_t value, size_t count)
{
	return check_set(devPtr, maxCount, count);
}

aclError aclrtMemsetAsync(void *devPtr, size_t maxCount, int32_t value, size_t count,
			  aclrtStream stream)
{
	return check_set(devPtr, maxCount, count);
}

static aclError check_launch(aclrtFuncHandle funcHandle, uint32_t numBlocks)
{
	fake_work(0);
	if (!funcHandle || !numBlocks)
		return ACL_ERROR_INVALID_PARAM;
	return current_device < 0 ? ACL_ERROR_RT_CONTEXT_NULL : ACL_SUCCESS;
}

aclError aclrtLaunchKernel(aclrtFuncHandle funcHandle, uint32_t numBlocks, const void *argsData,
			   size_t argsSize, aclrtStream stream)
{
	return check_launch(funcHandle, numBlocks);
}

aclError aclrtLaunchKernelV2(aclrtFuncHandle funcHandle, uint32_t numBlocks, const void *argsData,
			     size_t argsSize, aclrtLaunchKernelCfg *cfg, aclrtStream stream)
{
	return check_launch(funcHandle, numBlocks);
}

aclError aclrtLaunchKernelWithConfig(aclrtFuncHandle funcHandle, uint32_t numBlocks,
				     aclrtStream stream, aclrtLaunchKernelCfg *cfg,
				     aclrtArgsHandle argsHandle, void *reserve)
{
	if (!argsHandle) {
		fake_work(0);
		return ACL_ERROR_INVALID_PARAM;
	}
	return check_launch(funcHandle, numBlocks);
}

aclError aclrtSynchronizeStream(aclrtStream stream)
{
	fake_work(fake_sync_us);
	return current_device < 0 ? ACL_ERROR_RT_CONTEXT_NULL : ACL_SUCCESS;
}

/* timeout in ms, -1 for none: a wait longer than it fails, as the runtime does */
aclError aclrtSynchronizeStreamWithTimeout(aclrtStream stream, int32_t timeout)
{
	if (timeout < -1 || !timeout) {
		fake_work(0);
		return ACL_ERROR_INVALID_PARAM;
	}
	if (timeout > 0 && fake_sync_us > (useconds_t)timeout * 1000) {
		fake_work((useconds_t)timeout * 1000);
		return ACL_ERROR_RT_STREAM_SYNC_TIMEOUT;
	}
	fake_work(fake_sync_us);
	return current_device < 0 ? ACL_ERROR_RT_CONTEXT_NULL : ACL_SUCCESS;
}

aclError aclrtSynchronizeDevice(void)
{
	fake_work(fake_sync_us);
	return current_device < 0 ? ACL_ERROR_RT_CONTEXT_NULL : ACL_SUCCESS;
}

aclError aclrtSynchronizeEvent(aclrtEvent event)
{
	if (!event) {
		fake_work(0);
		return ACL_ERROR_INVALID_PARAM;
	}
	fake_work(fake_sync_us);
	return ACL_SUCCESS;
}

aclError aclrtRecordEvent(aclrtEvent event, aclrtStream stream)
{
	fake_work(0);
	if (!event)
		return ACL_ERROR_INVALID_PARAM;
	return current_device < 0 ? ACL_ERROR_RT_CONTEXT_NULL : ACL_SUCCESS;
}

aclError aclrtStreamWaitEvent(aclrtStream stream, aclrtEvent event)
{
	fake_work(0);
	if (!event)
		return ACL_ERROR_INVALID_PARAM;
	return current_device < 0 ? ACL_ERROR_RT_CONTEXT_NULL : ACL_SUCCESS;
}
