/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* What acl_calls.c and acl_calls_hccl.cc (C++: hccl.h is C++ only) share. */
#ifndef XPU_ACL_CALLS_H
#define XPU_ACL_CALLS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Made-up handles and addresses, functions of (thread t, round i). */
#define ACL_STREAM(t, i) ((void *)(0x5000UL + (t) * 0x100UL + (i) % 3))
#define ACL_EVENT(t, i) ((void *)(0x8000UL + (t) * 0x100UL + (i) % 4))

/* Thread t's HCCL calls of round i; count(symbol) before each. */
void hccl_round(int t, long i, void (*count)(const char *));

#ifdef __cplusplus
}
#endif

#endif
