/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Attaching one program to many offsets of one file with a single
 * BPF_TRACE_UPROBE_MULTI link (Linux 6.6+). Detaching a per-probe perf link
 * waits for an RCU grace period each, serialised: 46 of them took 5 s here;
 * a multi link waits once. libbpf 1.1 (Debian 12) predates this link type, so
 * the syscall is made here; uprobe_multi_supported() tells callers when to
 * fall back to bpf_program__attach_uprobe_opts().
 */
#ifndef XPU_UPROBE_MULTI_HELPERS_H
#define XPU_UPROBE_MULTI_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <linux/types.h>

/* enum bpf_attach_type value in Linux 6.6+ uapi (absent from older headers). */
#define XPU_BPF_TRACE_UPROBE_MULTI 48

struct bpf_program;

/* Loads a trivial multi-uprobe program once to see whether the kernel has the link type. */
bool uprobe_multi_supported(void);

/*
 * Attaches prog (loaded with expected attach type XPU_BPF_TRACE_UPROBE_MULTI)
 * to cnt offsets of path, with a cookie each; pid 0 means every process.
 * Returns the link fd (close it to detach) or -errno.
 */
int uprobe_multi_attach(const struct bpf_program *prog, const char *path, pid_t pid,
			const unsigned long *offsets, const __u64 *cookies, size_t cnt,
			bool retprobe);

#endif
