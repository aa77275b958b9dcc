/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * A library-call probe (CUDA, ACL): what it hooks, where, and its BPF object,
 * as call_monitor.c drives it. Each probe is a struct call_probe (cuda_probe.c,
 * acl_probe.c); the BPF side of each shares calls.bpf.h and target.bpf.h, so
 * every skeleton has the same maps, rodata and slot layout.
 */
#ifndef XPU_CALL_PROBE_H
#define XPU_CALL_PROBE_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>
#include "pystack.h"
#include "proc_helpers.h"

struct bpf_object;
struct bpf_object_skeleton;

/* One function to hook in one file. */
struct call_site {
	const char *prog;	/* its entry program: enter_<symbol>, or one several share */
	const char *name;	/* the symbol, for messages */
	unsigned long offset;	/* file offset */
	__u64 cookie;		/* what the entry program gets from bpf_get_attach_cookie() */
};

/* The functions to hook in one file. */
struct call_lib_plan {
	const struct mapped_lib *lib;
	struct call_site *sites;
	int nsites;
};

/* Everything to hook, in every file; filled by call_probe.plan, freed by call_plan_free(). */
struct call_plan {
	struct call_lib_plan libs[16];
	int nlibs;
	char **names;		/* strings the sites point to that the plan owns */
	int nnames;
	void *data;		/* the probe's own (ACL: the aclnn op names) */
};

/* The skeleton's parts call_monitor.c needs, whichever probe it is. */
struct call_skel {
	void *skel;
	struct bpf_object *obj;
	struct bpf_object_skeleton *skeleton;	/* what monitor_load() loads */
	void (*destroy)(void *skel);
	const char *return_prog;
	volatile __u32 *targ_tgid;
	volatile __u8 *filter_comm;
	volatile char *targ_comm;
	volatile __u64 *wakeup_bytes;
	volatile __u32 *slot_mask;
	volatile __u64 *hold_ns;
	volatile __u64 *py_runtime;
	volatile struct py_offsets *py;
	__u64 *py_unsaved;
	volatile __u8 *gated;
};

/* Fills a struct call_skel from a skeleton of type struct <name>_bpf. */
#define CALL_SKEL_FILL(cs, name, sk) do {						\
	(cs)->skel = (sk);								\
	(cs)->obj = (sk)->obj;								\
	(cs)->skeleton = (sk)->skeleton;						\
	(cs)->destroy = (void (*)(void *))name##_bpf__destroy;				\
	(cs)->return_prog = #name "_return";						\
	(cs)->targ_tgid = &(sk)->rodata->targ_tgid;					\
	(cs)->filter_comm = &(sk)->rodata->filter_comm;					\
	(cs)->targ_comm = (sk)->rodata->targ_comm;					\
	(cs)->wakeup_bytes = &(sk)->rodata->wakeup_bytes;				\
	(cs)->slot_mask = &(sk)->rodata->slot_mask;					\
	(cs)->hold_ns = &(sk)->rodata->hold_ns;						\
	(cs)->py_runtime = &(sk)->rodata->py_runtime;					\
	(cs)->py = &(sk)->rodata->py;							\
	(cs)->py_unsaved = &(sk)->bss->py_unsaved;					\
	(cs)->gated = &(sk)->rodata->gated;						\
} while (0)

/* Defines static int <name>_open(struct call_skel *), a call_probe's open: 0 or -errno. */
#define CALL_PROBE_OPEN(name)								\
static int name##_open(struct call_skel *cs)						\
{											\
	struct name##_bpf *sk = name##_bpf__open();					\
											\
	if (!sk)									\
		return -errno;								\
	CALL_SKEL_FILL(cs, name, sk);							\
	return 0;									\
}

/*
 * Where the probe's per-thread slots keep what (struct <probe>_inflight: state,
 * done, dev_tid, dev, sp[frames], frames[frames], out[outs]; calls.bpf.h).
 */
struct call_slot_layout {
	size_t slot_size;
	size_t event_size;
	size_t frames_at;	/* offsetof(frames) */
	size_t out_at;		/* offsetof(out) */
	__u32 frames;
	__u32 outs;
	/* An event still in flight at stop, as it is emitted; false: never emitted. */
	bool (*incomplete)(void *event);
};

/*
 * The slot layout of a probe's header (struct <name>_inflight of struct
 * <name>_event, <NAME>_INFLIGHT_FRAMES frames, <NAME>_OUT_EVENTS out[]).
 */
#define CALL_SLOT_LAYOUT(name, NAME, incomplete_fn) {					\
	.slot_size = sizeof(struct name##_inflight),					\
	.event_size = sizeof(struct name##_event),					\
	.frames_at = offsetof(struct name##_inflight, frames),				\
	.out_at = offsetof(struct name##_inflight, out),				\
	.frames = NAME##_INFLIGHT_FRAMES,						\
	.outs = NAME##_OUT_EVENTS,							\
	.incomplete = incomplete_fn,							\
}

struct call_probe {
	const char *type;		/* "CUDA", "ACL" */
	__u16 monitor_type;		/* enum xpu_monitor_type */
	const char *libraries;		/* what it looks for, for messages */
	lib_match_fn library_match;	/* which mapped files may hold hooked functions */
	/*
	 * Decides what to hook in the candidate files, checking each before
	 * anything is loaded. Returns 0 or an agent exit code with the reason in err.
	 */
	int (*plan)(const struct mapped_lib *libs, int nlibs, struct call_plan *plan,
		    char *err, size_t errlen);
	/* Opens the skeleton. Returns 0 or -errno. */
	int (*open)(struct call_skel *cs);
	/* Optional: before load (map sizes), and after (map contents). 0 or an exit code. */
	int (*prepare)(struct call_skel *cs, const struct call_plan *plan);
	int (*loaded)(struct call_skel *cs, const struct call_plan *plan, char *err,
		      size_t errlen);
	struct call_slot_layout slots;
};

extern const struct call_probe cuda_probe;
extern const struct call_probe acl_probe;

/* Adds a site to the plan's entry for lib (added if new). Returns 0 or -ENOMEM. */
int call_plan_add(struct call_plan *plan, const struct mapped_lib *lib, const char *prog,
		  const char *name, unsigned long offset, __u64 cookie);
/* call_plan_add() for a function with its own entry program, enter_<name>. */
int call_plan_add_entry(struct call_plan *plan, const struct mapped_lib *lib, const char *name,
			unsigned long offset, __u64 cookie);
/* A copy of s that the plan frees; NULL when out of memory. */
const char *call_plan_keep(struct call_plan *plan, const char *s);
void call_plan_free(struct call_plan *plan);

#endif
