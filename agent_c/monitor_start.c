// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "exit_codes.h"
#include "monitor_start.h"

int monitor_open_failed(int err)
{
	return agent_fail(AGENT_START_FAILED, "failed to open BPF skeleton: %s", strerror(err));
}

int monitor_load(struct bpf_object_skeleton *s, const struct agent_env *env)
{
	struct bpf_map *events = bpf_object__find_map_by_name(*s->obj, "events");
	int ret;

	if (!events)
		return agent_fail(AGENT_START_FAILED, "the BPF object has no ring buffer 'events'");
	bpf_map__set_max_entries(events, (__u64)env->ringbuf_kb * 1024);
	ret = bpf_object__load_skeleton(s);
	if (!ret)
		return AGENT_OK;
	/* As root, EACCES is the verifier refusing the program, not a permission. */
	if (ret == -EPERM || (ret == -EACCES && geteuid() != 0))
		return agent_fail(AGENT_PERMISSION_DENIED, "failed to load BPF object: %s "
				  "(needs root, or CAP_BPF and CAP_PERFMON)", strerror(-ret));
	return agent_fail(AGENT_START_FAILED, "failed to load BPF object: %s%s", strerror(-ret),
			  ret == -EACCES ? " (verifier)" : "");
}

__u64 monitor_wakeup_bytes(const struct agent_env *env)
{
	return env->wakeup_kb < 0 ? (__u64)env->ringbuf_kb * 1024 / 8 : (__u64)env->wakeup_kb * 1024;
}

struct sink_opts monitor_sink_opts(const struct agent_env *env)
{
	return (struct sink_opts){
		.output_path = env->output, .endpoint = env->endpoint,
		.curve_keyfile = env->curve_keyfile, .send_hwm = env->send_hwm,
		.linger_ms = env->linger_ms, .resend_ms = env->resend_ms,
	};
}
