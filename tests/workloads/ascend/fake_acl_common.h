/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the Ascend stand-ins share, each library its own copy (static): the
 * time a call takes, read from the environment once, at load.
 *   XPU_FAKE_ACL_DELAY_US  every hooked call of every stand-in (but aclInit)
 *   XPU_FAKE_ACL_SYNC_US   added to aclrtSynchronizeStream[WithTimeout],
 *                          aclrtSynchronizeDevice, aclrtSynchronizeEvent
 *   XPU_FAKE_HCCL_US       added to each HCCL collective, send, receive, barrier
 */
#ifndef XPU_FAKE_ACL_COMMON_H
#define XPU_FAKE_ACL_COMMON_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdlib.h>
#include <unistd.h>

static useconds_t fake_delay_us, fake_sync_us, fake_hccl_us;

static useconds_t fake_env_us(const char *name)
{
	const char *s = getenv(name);

	return s ? (useconds_t)strtoul(s, NULL, 10) : 0;
}

__attribute__((constructor)) static void fake_read_delays(void)
{
	fake_delay_us = fake_env_us("XPU_FAKE_ACL_DELAY_US");
	fake_sync_us = fake_env_us("XPU_FAKE_ACL_SYNC_US");
	fake_hccl_us = fake_env_us("XPU_FAKE_HCCL_US");
}

/* The time every call takes, plus extra_us. */
static inline void fake_work(useconds_t extra_us)
{
	if (fake_delay_us + extra_us)
		usleep(fake_delay_us + extra_us);
}

/* The aclop functions' common checks: is this a bad call? */
static inline int fake_bad_op(const char *opType, int numInputs, const void *inputDesc,
			      const void *inputs, int numOutputs, const void *outputDesc,
			      const void *outputs)
{
	return !opType || !*opType || numInputs < 0 || numOutputs < 0 ||
	       (numInputs && (!inputDesc || !inputs)) ||
	       (numOutputs && (!outputDesc || !outputs));
}

#endif
