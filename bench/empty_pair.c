// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Attaches bench/empty.bpf.c's do-nothing uprobe+uretprobe pair to one symbol
 * of one library in one process, prints {"ready": true}, and holds them until
 * SIGTERM. The baseline the CUDA probe's cost is measured against.
 *
 * usage: xpu-bench-empty-pair PID LIBRARY SYMBOL
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

static volatile sig_atomic_t exiting;

static void sig_handler(int sig)
{
	exiting = 1;
}

int main(int argc, char **argv)
{
	struct bpf_link *entry = NULL, *ret = NULL;
	struct elf_sym_query q = {};
	struct empty_bpf *skel;
	char err[512];
	int rc = 1;

	if (argc != 4) {
		fprintf(stderr, "usage: %s PID LIBRARY SYMBOL\n", argv[0]);
		return 2;
	}
	q.name = argv[3];
	if (elf_resolve_functions(argv[2], &q, 1, err, sizeof(err)) || q.offset < 0) {
		fprintf(stderr, "cannot resolve %s in %s: %s\n", argv[3], argv[2], err);
		return 2;
	}
	signal(SIGTERM, sig_handler);
	signal(SIGINT, sig_handler);
	skel = empty_bpf__open_and_load();
	if (!skel) {
		fprintf(stderr, "failed to load BPF object: %s\n", strerror(errno));
		return 1;
	}
	entry = bpf_program__attach_uprobe(skel->progs.empty_entry, false, atoi(argv[1]), argv[2],
					   q.offset);
	ret = bpf_program__attach_uprobe(skel->progs.empty_return, true, atoi(argv[1]), argv[2],
					 q.offset);
	if (!entry || !ret) {
		fprintf(stderr, "failed to attach uprobes: %s\n", strerror(errno));
		goto cleanup;
	}
	printf("{\"ready\": true}\n");
	fflush(stdout);
	while (!exiting)
		pause();
	rc = 0;
cleanup:
	bpf_link__destroy(entry);
	bpf_link__destroy(ret);
	empty_bpf__destroy(skel);
	return rc;
}
