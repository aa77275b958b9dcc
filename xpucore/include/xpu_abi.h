/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Event ABI shared by every probe, the agent and the Python decoder.
 *
 * Everything here is fixed-size and little-endian: fixed-width integers, fixed
 * arrays, no pointers, no bool. The Python side reads this file and the probe
 * headers through cffi (xpucore/abi.py), so keep them to declarations cffi
 * parses: structs, enums, and preprocessor lines only for include guards,
 * includes and macros for C alone (the reader skips every preprocessor line,
 * continuations included, as the generated <probe>_fns.h need).
 */
#ifndef XPU_ABI_H
#define XPU_ABI_H

#ifndef __VMLINUX_H__
#include <linux/types.h>	/* user space; BPF code has vmlinux.h */
#endif

enum xpu_abi_const {
	XPU_BATCH_MAGIC = 0x42555058, /* "XPUB" read as a little-endian u32 */
	XPU_ABI_VERSION = 1,
	XPU_COMM_LEN = 16,
	XPU_MONITOR_ID_LEN = 40,
	XPU_MACHINE_ID_LEN = 72,
	XPU_ACK_MAGIC = 0x4b435058,	/* "XPCK" read as a little-endian u32 */
};

/* Monitor types, as named by the REST API and the control channel. */
enum xpu_monitor_type {
	XPU_MONITOR_CUDA = 1,
	XPU_MONITOR_ACL = 2,
	XPU_MONITOR_PYTHON = 3,
	XPU_MONITOR_SYSCALL = 4,
	XPU_MONITOR_OLLAMA = 5,
};

/* xpu_event_hdr.flags */
enum xpu_event_flags {
	/* The call had not returned when the agent stopped; duration_ns runs to the stop. */
	XPU_EV_INCOMPLETE = 1,
	/*
	 * The thread's device was not seen chosen (cudaSetDevice, aclrtSetDevice)
	 * or queried (cudaGetDevice, aclrtGetDevice) since tracing began: the
	 * device given is the default.
	 */
	XPU_EV_DEVICE_ASSUMED = 2,
};

/* xpu_batch_hdr.flags */
enum xpu_batch_flags {
	/* Last batch of the agent: written after the ring buffer was drained. */
	XPU_BATCH_FINAL = 1,
	/*
	 * Not events but struct xpu_py_frame records: the Python stacks that the
	 * monitor's events name (py_stack), each sent once, before or after the
	 * events that name it. Same sequence numbers as the event batches.
	 */
	XPU_BATCH_STACKS = 2,
};

/* xpu_py_frame.flags */
enum xpu_py_frame_flags {
	XPU_PY_TRUNCATED = 1,	/* function or file cut to fit */
	XPU_PY_UNREADABLE = 2,	/* the code object could not be read (the process exited) */
};

/* One frame of a Python stack, innermost (depth 0) first; a batch of XPU_BATCH_STACKS. */
struct xpu_py_frame {
	__u64 stack_id;		/* the events' py_stack */
	__u32 pid;
	__u16 depth;
	__u16 nframes;
	__s32 line;		/* -1: none */
	__u32 flags;		/* enum xpu_py_frame_flags */
	char function[96];	/* co_qualname, UTF-8 */
	char file[160];		/* co_filename, UTF-8 */
};

/* Slots of the per-CPU drop counters every probe keeps (map "drops"). */
enum xpu_drop_slot {
	/*
	 * The ring buffer was full: CUDA and ACL count each call of a batch of
	 * out[] that bpf_ringbuf_output() could not write (calls.bpf.h), PYTHON
	 * each event whose bpf_ringbuf_reserve() failed.
	 */
	XPU_DROP_RINGBUF = 0,
	/*
	 * A call lost before it was written: another thread had its slot, it was
	 * nested deeper than the frames kept, out[] stayed full, or its return
	 * was never seen.
	 */
	XPU_DROP_INFLIGHT = 1,
	XPU_DROP_SLOTS = 2,
};

/* First member of every event struct. */
struct xpu_event_hdr {
	__u64 ts_ns;		/* CLOCK_MONOTONIC at entry (bpf_ktime_get_ns) */
	__u64 duration_ns;	/* return minus entry */
	__s64 ret;		/* return value, sign-extended */
	__u32 pid;		/* tgid */
	__u32 tid;
	__u16 func;		/* probe-specific function id */
	__u16 flags;		/* enum xpu_event_flags */
	__u32 cpu;		/* CPU the call returned on */
	char comm[XPU_COMM_LEN];
};

/*
 * A batch on the wire or in a capture file: this header, then event_count
 * events of event_size bytes each. Drop counters are running totals since the
 * agent started, so the newest batch always carries the full count.
 */
struct xpu_batch_hdr {
	__u32 magic;		/* XPU_BATCH_MAGIC */
	__u16 abi_version;	/* XPU_ABI_VERSION */
	__u16 hdr_size;		/* sizeof(struct xpu_batch_hdr) */
	__u16 monitor_type;	/* enum xpu_monitor_type */
	__u16 event_size;	/* sizeof one event */
	__u32 event_count;
	__u64 seq;		/* batch number, from 0, per agent run */
	__u64 kernel_drops;	/* ring buffer full (XPU_DROP_RINGBUF) */
	__u64 inflight_drops;	/* lost before they were written (XPU_DROP_INFLIGHT) */
	__u64 send_drops;	/* events the agent could not hand to its output */
	__s64 mono_to_real_ns;	/* add to ts_ns for nanoseconds since the Unix epoch */
	__u32 agent_pid;
	__u32 flags;		/* enum xpu_batch_flags */
	char monitor_id[XPU_MONITOR_ID_LEN];
	char machine_id[XPU_MACHINE_ID_LEN];
};

/*
 * The backend's answer to a batch it has stored (or will never store): the
 * agent keeps each batch until this comes back, and sends it again when it
 * does not come in time, so a backend restart loses nothing; the backend
 * stores a batch once, by (monitor_id, agent_pid, seq).
 */
struct xpu_batch_ack {
	__u32 magic;		/* XPU_ACK_MAGIC */
	__u32 agent_pid;
	__u64 seq;
};

#endif /* XPU_ABI_H */
