/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Python attribution, the agent's half: parses --py-offsets, and at each
 * flush turns the stacks the probe stored (map py_stacks) that were not sent
 * yet into struct xpu_py_frame records, resolved from the target's memory
 * (/proc/<pid>/mem): function, file, line. They go out in XPU_BATCH_STACKS
 * batches that share the event batches' sequence numbers.
 */
#ifndef XPU_PYSTACK_AGENT_H
#define XPU_PYSTACK_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include "pystack.h"
#include "sink_helpers.h"

/* What resolving a code object reads (names as manager/python/offsets.py). */
struct py_code_offsets {
	__u32 code_firstlineno, code_filename, code_qualname, code_linetable;
	__u32 code_firsttraceable, code_adaptive;
	__u32 bytes_size, bytes_data, str_length, str_state, str_ascii_data, str_compact_data;
	__u32 lasti_index;	/* 3.10: frame_instr is f_lasti, an index; its own line table */
};

struct py_resolver {
	int map_fd;			/* py_stacks */
	const char *proc_root;
	int mem_fd;			/* /proc/<mem_pid>/mem */
	pid_t mem_pid;
	struct py_code_offsets o;
	bool generators_complete;	/* skip no frame for being incomplete */
	__u64 *sent;			/* open-addressing set of stack ids sent */
	size_t sent_cap, sent_n;
	struct batcher batch;
	__u64 stacks, frames;		/* sent */
};

/*
 * Parses "name=value,..." (every name of manager/python/offsets.py) into the probe's
 * walk offsets and the resolver's; -1 with the reason in err.
 */
int py_parse_offsets(const char *list, struct py_offsets *walk, struct py_code_offsets *code,
		     char *err, size_t errlen);
int py_resolver_init(struct py_resolver *r, int map_fd, const struct py_code_offsets *o,
		     const char *proc_root, __u16 monitor_type, const char *monitor_id,
		     const char *machine_id);
/* Sends the stacks not sent yet; events' batcher lends its sequence numbers. 0 or -errno. */
int py_resolver_flush(struct py_resolver *r, struct batcher *events, struct sink *sink);
void py_resolver_free(struct py_resolver *r);
/*
 * One JSON line after the stats: stacks and frames sent, and the events naming a stack
 * that py_stacks was too full to keep (BPF's py_unsaved).
 */
void py_resolver_print_stats(const struct py_resolver *r, __u64 unsaved);

#endif
