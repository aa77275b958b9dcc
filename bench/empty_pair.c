// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Attaches bench/empty.bpf.c's do-nothing uprobe+uretprobe pair to one symbol
 * of one library in one process, prints {"ready": true}, and holds them until
 * SIGTERM. The baseline the CUDA probe's cost is measured against.
 *
 * Attaches the way xputrace-agent does: a uprobe_multi link per direction
 * where the kernel has them, else perf links ("perf" as 4th argument forces
 * those, as --attach-mode perf does for the agent).
 *
 * usage: xpu-bench-empty-pair PID LIBRARY SYMBOL [perf]
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "elf_helpers.h"
#include "empty.skel.h"
#include "uprobe_multi_helpers.h"

static volatile sig_atomic_t exiting;

static void sig_handler(int sig)
{
	exiting = 1;
}

int main(int argc, char **argv)
{
	struct bpf_link *entry = NULL, *ret = NULL;
	struct elf_sym_query q = {};
	int fds[2] = { -1, -1 };
	unsigned long offset;
	bool multi;
	struct empty_bpf *skel;
	char err[512];
	int rc = 1;

	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: %s PID LIBRARY SYMBOL [perf]\n", argv[0]);
		return 2;
	}
	q.name = argv[3];
	if (elf_resolve_functions(argv[2], &q, 1, err, sizeof(err)) || q.offset < 0) {
		fprintf(stderr, "cannot resolve %s in %s: %s\n", argv[3], argv[2], err);
		return 2;
	}
	signal(SIGTERM, sig_handler);
	signal(SIGINT, sig_handler);
	multi = argc == 4 && uprobe_multi_supported();
	skel = empty_bpf__open();
	if (!skel)
		return 1;
	if (multi) {
		bpf_program__set_expected_attach_type(skel->progs.empty_entry,
			(enum bpf_attach_type)XPU_BPF_TRACE_UPROBE_MULTI);
		bpf_program__set_expected_attach_type(skel->progs.empty_return,
			(enum bpf_attach_type)XPU_BPF_TRACE_UPROBE_MULTI);
	}
	if (empty_bpf__load(skel)) {
		fprintf(stderr, "failed to load BPF object: %s\n", strerror(errno));
		goto cleanup;
	}
	offset = q.offset;
	if (multi) {
		fds[0] = uprobe_multi_attach(skel->progs.empty_entry, argv[2], atoi(argv[1]),
					     &offset, NULL, 1, false);
		fds[1] = uprobe_multi_attach(skel->progs.empty_return, argv[2], atoi(argv[1]),
					     &offset, NULL, 1, true);
		if (fds[0] < 0 || fds[1] < 0) {
			fprintf(stderr, "failed to attach uprobe_multi links\n");
			goto cleanup;
		}
	} else {
		entry = bpf_program__attach_uprobe(skel->progs.empty_entry, false, atoi(argv[1]),
						   argv[2], q.offset);
		ret = bpf_program__attach_uprobe(skel->progs.empty_return, true, atoi(argv[1]),
						 argv[2], q.offset);
		if (!entry || !ret) {
			fprintf(stderr, "failed to attach uprobes: %s\n", strerror(errno));
			goto cleanup;
		}
	}
	printf("{\"ready\": true, \"attach\": \"%s\"}\n", multi ? "multi" : "perf");
	fflush(stdout);
	while (!exiting)
		pause();
	rc = 0;
cleanup:
	if (fds[0] >= 0)
		close(fds[0]);
	if (fds[1] >= 0)
		close(fds[1]);
	bpf_link__destroy(entry);
	bpf_link__destroy(ret);
	empty_bpf__destroy(skel);
	return rc;
}
