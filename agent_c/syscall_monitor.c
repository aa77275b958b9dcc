// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The SYSCALL monitor: the raw syscall tracepoints (syscall.bpf.c) filtered to
 * the target process (or task name) and the syscalls asked for, drained into
 * batches like the CUDA probe's. At stop, calls still in progress (a blocking
 * read, a sleep) are read from the per-thread slots and sent as incomplete.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "drain_helpers.h"
#include "exit_codes.h"
#include "proc_helpers.h"
#include "sink_helpers.h"
#include "syscall.skel.h"
#include "monitor_loop.h"
#include "syscall_monitor.h"

/* Calls in progress when the probe stopped, as incomplete events. */
static __u64 take_in_progress(struct syscall_inflight *slots, __u32 count, struct drain *d)
{
	__u64 now = monotonic_ns(), n = 0;

	for (__u32 k = 0; k < count; k++) {
		struct syscall_event *e;

		if (!__atomic_load_n(&slots[k].busy, __ATOMIC_ACQUIRE))
			continue;
		e = drain_slot(d);
		memcpy(e, &slots[k].e, sizeof(*e));
		e->h.flags |= XPU_EV_INCOMPLETE;
		e->h.duration_ns = now > e->h.ts_ns ? now - e->h.ts_ns : 0;
		e->h.ret = 0;
		n++;
	}
	return n;
}

static int load_error(int ret)
{
	/* As root, EACCES is the verifier refusing the program, not a permission. */
	if (ret == -EPERM || (ret == -EACCES && geteuid() != 0))
		return agent_fail(AGENT_PERMISSION_DENIED, "failed to load BPF object: %s "
				  "(needs root, or CAP_BPF and CAP_PERFMON)", strerror(-ret));
	return agent_fail(AGENT_START_FAILED, "failed to load BPF object: %s%s", strerror(-ret),
			  ret == -EACCES ? " (verifier)" : "");
}

int syscall_main(const struct agent_env *env, volatile sig_atomic_t *exiting)
{
	struct sink_opts so = {
		.output_path = env->output, .endpoint = env->endpoint,
		.curve_keyfile = env->curve_keyfile, .send_hwm = env->send_hwm,
		.linger_ms = env->linger_ms, .resend_ms = env->resend_ms,
	};
	__u64 ring_bytes = (__u64)env->ringbuf_kb * 1024;
	size_t page = sysconf(_SC_PAGESIZE), slots_len = 0;
	struct syscall_inflight *slots = MAP_FAILED;
	struct syscall_bpf *skel;
	struct sink *sink = NULL;
	struct drain drain = {};
	struct monitor_loop loop = {
		.env = env, .exiting = exiting, .drain = &drain, .entry_prefix = "sys_enter",
	};
	char err[512];
	int ret, n;

	if (env->target_pid && !proc_alive(env->proc_root, env->target_pid))
		return agent_fail(AGENT_TARGET_NOT_FOUND, "process %d not found", env->target_pid);
	skel = syscall_bpf__open();
	if (!skel)
		return agent_fail(AGENT_START_FAILED, "failed to open BPF skeleton: %s",
				  strerror(errno));
	n = syscall_allow_list(env->syscalls, (__u64 *)skel->rodata->allow, err, sizeof(err));
	if (n < 0) {
		ret = agent_fail(AGENT_INVALID_CONFIG, "invalid --syscalls: %s", err);
		goto cleanup;
	}
	skel->rodata->targ_tgid = env->target_pid;
	skel->rodata->wakeup_bytes = env->wakeup_kb < 0 ? ring_bytes / 8
							 : (__u64)env->wakeup_kb * 1024;
	if (env->target_comm) {
		skel->rodata->filter_comm = 1;
		strncpy((char *)skel->rodata->targ_comm, env->target_comm, XPU_COMM_LEN - 1);
	}
	skel->rodata->slot_mask = env->max_threads - 1;
	bpf_map__set_max_entries(skel->maps.events, ring_bytes);
	bpf_map__set_max_entries(skel->maps.inflight, env->max_threads);
	ret = syscall_bpf__load(skel);
	if (ret) {
		ret = load_error(ret);
		goto cleanup;
	}
	slots_len = (env->max_threads * sizeof(*slots) + page - 1) / page * page;
	slots = mmap(NULL, slots_len, PROT_READ, MAP_SHARED, bpf_map__fd(skel->maps.inflight), 0);
	if (slots == MAP_FAILED) {
		ret = agent_fail(AGENT_START_FAILED, "failed to map per-thread slots: %s",
				 strerror(errno));
		goto cleanup;
	}
	ret = sink_open(&sink, &so, err, sizeof(err));
	loop.sink = sink;
	loop.obj = skel->obj;
	if (ret) {
		ret = agent_fail(ret, "%s", err);
		goto cleanup;
	}
	ret = drain_init(&drain, bpf_map__fd(skel->maps.events), bpf_map__fd(skel->maps.drops),
			 sink, XPU_MONITOR_SYSCALL, sizeof(struct syscall_event),
			 env->batch_events, env->monitor_id, env->machine_id);
	if (ret) {
		ret = agent_fail(AGENT_START_FAILED, "failed to create ring buffer: %s",
				 strerror(-ret));
		goto cleanup;
	}
	ret = syscall_bpf__attach(skel);
	if (ret) {
		ret = agent_fail(AGENT_START_FAILED, "failed to attach the syscall tracepoints: %s",
				 strerror(-ret));
		goto cleanup;
	}
	printf("{\"ready\": true, \"pid\": %d, \"probes\": 2, \"syscalls\": %d, "
	       "\"libraries\": []}\n", getpid(), n);
	fflush(stdout);

	ret = monitor_loop_run(&loop);
	/* Stop new events, take what the kernel holds, then the calls in progress. */
	syscall_bpf__detach(skel);
	drain_consume(&drain);
	ret = monitor_loop_finish(&loop, ret, take_in_progress(slots, env->max_threads, &drain));

cleanup:
	if (slots != MAP_FAILED)
		munmap(slots, slots_len);
	drain_free(&drain);
	sink_close(sink);
	syscall_bpf__destroy(skel);
	return ret;
}
