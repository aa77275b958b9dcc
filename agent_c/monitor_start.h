/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Starting a monitor, the same for every probe (CUDA, ACL, SYSCALL, PYTHON):
 * its BPF object opened, its ring buffer sized and the object loaded, its
 * sink's options taken from the command line. Every failure is reported once
 * on stderr ("xputrace-agent: <NAME>: <message>") and mapped to the same exit
 * code whichever monitor meets it.
 */
#ifndef XPU_MONITOR_START_H
#define XPU_MONITOR_START_H

#include <linux/types.h>
#include "agent_env.h"
#include "sink_helpers.h"

struct bpf_object_skeleton;

/* Reports a skeleton that failed to open (err: its errno); AGENT_START_FAILED. */
int monitor_open_failed(int err);
/*
 * Loads a probe's opened and configured BPF object, its ring buffer ("events")
 * sized from --ringbuf-kb first. Returns AGENT_OK or the exit code, reported:
 * PERMISSION_DENIED for EPERM, and for EACCES unless root (as root, EACCES is
 * the verifier refusing the program); AGENT_START_FAILED otherwise.
 */
int monitor_load(struct bpf_object_skeleton *s, const struct agent_env *env);
/* How much a probe buffers before it wakes the agent: --wakeup-kb, or an eighth of the ring. */
__u64 monitor_wakeup_bytes(const struct agent_env *env);
/* Where a monitor's batches go: --output, or --backend-zmq-endpoint and its options. */
struct sink_opts monitor_sink_opts(const struct agent_env *env);

#endif
