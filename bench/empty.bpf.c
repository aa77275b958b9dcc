// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Baseline for bench/probe_cost.py: an entry and a return program that do nothing. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("uprobe")
int empty_entry(void *ctx)
{
	return 0;
}

SEC("uretprobe")
int empty_return(void *ctx)
{
	return 0;
}
