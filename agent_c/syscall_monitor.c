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
#include "syscall_monitor.h"

static __u64 monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

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
	__u64 ring_bytes = (__u64)env->ringbuf_kb * 1024, last_flush, now, unacked, incomplete = 0;
	size_t page = sysconf(_SC_PAGESIZE), slots_len = 0;
	struct syscall_inflight *slots = MAP_FAILED;
	struct syscall_bpf *skel;
	struct sink *sink = NULL;
	struct drain drain = {};
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

	last_flush = monotonic_ns();
	ret = AGENT_OK;
	while (!*exiting && !drain.err) {
		n = drain_poll(&drain, env->poll_ms);
		if (n < 0) {
			fprintf(stderr, "xputrace-agent: failed to poll ring buffer: %s\n",
				strerror(-n));
			ret = AGENT_RUNTIME_ERROR;
			break;
		}
		sink_service(sink);
		now = monotonic_ns();
		if (now - last_flush >= (__u64)env->flush_ms * 1000000) {
			drain.missed_entries = prog_recursion_misses(skel->obj, "sys_enter");
			drain_flush(&drain, 0);
			last_flush = monotonic_ns();
			if (env->target_pid && !proc_alive(env->proc_root, env->target_pid)) {
				fprintf(stderr, "xputrace-agent: target %d exited\n", env->target_pid);
				break;
			}
		}
	}
	if (drain.err) {
		fprintf(stderr, "xputrace-agent: failed to send batch: %s\n", strerror(-drain.err));
		ret = AGENT_RUNTIME_ERROR;
	}
	/* Stop new events, take what the kernel holds, then the calls in progress. */
	syscall_bpf__detach(skel);
	drain_consume(&drain);
	incomplete = take_in_progress(slots, env->max_threads, &drain);
	drain.missed_entries = prog_recursion_misses(skel->obj, "sys_enter");
	if (drain_flush(&drain, XPU_BATCH_FINAL) && ret == AGENT_OK)
		ret = AGENT_RUNTIME_ERROR;
	unacked = sink_finish(sink);
	drain_print_stats(&drain, sink, unacked, incomplete, 0);

cleanup:
	if (slots != MAP_FAILED)
		munmap(slots, slots_len);
	drain_free(&drain);
	sink_close(sink);
	syscall_bpf__destroy(skel);
	return ret;
}
