/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * What the library-call probes (CUDA, ACL) share: the per-thread slots of
 * calls in flight, paired by stack pointer, and the out[] batches completed
 * calls wait in (see struct cuda_inflight in cuda.h for the scheme).
 *
 * Include once per BPF object, after vmlinux.h, the probe's header,
 * drops.bpf.h, target.bpf.h and pystack.bpf.h, with these defined:
 *   CALL_EVENT   the event type: struct xpu_event_hdr h first, then the
 *                argument fields, among them __u32 device and __u64 py_stack
 *   CALL_SLOT    the slot type: state, done, dev_tid, dev, sp[], frames[],
 *                out[] of CALL_EVENT, as struct cuda_inflight
 *   CALL_FIRST   the first field after h (cleared from there at entry)
 * and read_args(), which reads a call's arguments into its event, and
 * read_results(), which reads what it returned through pointers, defined
 * after the include. CALL_ENTRY(sym, id) makes the entry program of a
 * function (call_entry(): call_enter(), read_args(), call_started()); the
 * return program, one for all, CALL_RETURN(probe), is call_exit():
 * call_return(), read_results(), then call_emit() (or call_pop() for a call
 * never emitted).
 */
#ifndef XPU_CALLS_BPF_H
#define XPU_CALLS_BPF_H

#define CALL_FRAMES (sizeof(((CALL_SLOT *)0)->sp) / sizeof(__u64))
#define CALL_OUT (sizeof(((CALL_SLOT *)0)->out) / sizeof(CALL_EVENT))

const volatile __u64 hold_ns = 100000000;	/* longest a completed call waits in out[] */

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);	/* the agent takes out[] of idle threads */
	__uint(max_entries, CALL_SLOTS);	/* resized by the agent, a power of two */
	__type(key, __u32);
	__type(value, CALL_SLOT);
} inflight SEC(".maps");

/*
 * Takes the calling thread's slot and pushes a frame, or returns NULL (not
 * the target, or counted as a drop). The frame's header is filled in, its
 * arguments cleared, its device set from the slot.
 */
static __always_inline CALL_EVENT *call_enter(struct pt_regs *ctx, const __u32 func)
{
	/* One helper call gives pid, tid and comm; each call costs ~15-25 ns. */
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tgid = task->tgid, tid = task->pid, key = tid & slot_mask, depth;
	CALL_SLOT *s;
	CALL_EVENT *e;
	__u64 st, next;

	if (targ_tgid && tgid != targ_tgid)
		return NULL;
	if (filter_comm && !comm_matches(task))
		return NULL;
	if (!window_open())
		return NULL;	/* not wanted: no drop */
	s = bpf_map_lookup_elem(&inflight, &key);
	if (!s)
		return NULL;
	st = s->state;
	depth = (__u32)st;
	if ((st >> 32) != tid && depth) {
		/* another thread with the same slot is inside a call */
		count_drop(XPU_DROP_INFLIGHT);
		return NULL;
	}
	if ((st >> 32) != tid)
		depth = 0;
	next = ((__u64)tid << 32) | (depth + 1);
	if (__sync_val_compare_and_swap(&s->state, st, next) != st) {
		count_drop(XPU_DROP_INFLIGHT);
		return NULL;
	}
	if (depth >= CALL_FRAMES) {
		count_drop(XPU_DROP_INFLIGHT);	/* nested too deep to keep */
		return NULL;
	}
	s->sp[depth] = PT_REGS_SP(ctx);
	e = &s->frames[depth];
	/* duration, ret and cpu are set at return; everything else here */
	__builtin_memset(&e->CALL_FIRST, 0, sizeof(*e) - offsetof(CALL_EVENT, CALL_FIRST));
	if (s->dev_tid == tid) {
		e->device = s->dev;
		e->h.flags = 0;
	} else {
		e->h.flags = XPU_EV_DEVICE_ASSUMED;
	}
	e->h.func = func;
	e->h.pid = tgid;
	e->h.tid = tid;
	/* Two loads; bpf_get_current_comm() costs about 100 ns more per call. */
	__builtin_memcpy(e->h.comm, task->comm, sizeof(e->h.comm));
	return e;
}

/* The arguments are read: the call starts now. */
static __always_inline void call_started(CALL_EVENT *e)
{
	e->py_stack = py_capture(e->h.pid, e->h.tid);
	e->h.ts_ns = bpf_ktime_get_ns();
}

/*
 * The frame of the call returning now, or NULL (its entry was not recorded,
 * or it was lost: counted either way). *slot and *frame are for call_emit()
 * and call_pop(). Sets duration, return value and CPU.
 */
static __always_inline CALL_EVENT *call_return(struct pt_regs *ctx, __u64 now, CALL_SLOT **slot,
					       __u32 *frame)
{
	__u64 sp = PT_REGS_SP(ctx) - 8, st;
	__u32 tid = (__u32)bpf_get_current_pid_tgid(), key = tid & slot_mask, depth, i, d = 0;
	CALL_EVENT *in = NULL;
	CALL_SLOT *s;

	s = bpf_map_lookup_elem(&inflight, &key);
	if (!s)
		return NULL;
	st = s->state;
	depth = (__u32)st;
	if ((st >> 32) != tid || !depth)
		return NULL;	/* its entry was not recorded, and counted then */
	/* Only the owner changes state while depth > 0: plain stores suffice. */
	if (depth > CALL_FRAMES) {
		s->state = st - 1;
		return NULL;
	}
	d = depth - 1;
	asm volatile("" : "+r"(d));	/* bounds-check the index the load uses */
	if (d < CALL_FRAMES && s->sp[d] == sp) {
		in = &s->frames[d];
	} else {
		/* Frames above ours belong to calls whose return we never saw. */
		for (i = 0; i < CALL_FRAMES; i++) {
			if (i >= depth)
				break;
			d = depth - 1 - i;
			asm volatile("" : "+r"(d));
			if (d >= CALL_FRAMES)
				break;
			in = &s->frames[d];
			if (s->sp[d] == sp)
				break;
			count_drop(XPU_DROP_INFLIGHT);
			in = NULL;
		}
		if (!in) {
			s->state = (__u64)tid << 32;
			return NULL;
		}
	}
	in->h.duration_ns = now - in->h.ts_ns;
	in->h.ret = (__s32)PT_REGS_RC(ctx);	/* every hooked function returns an int status */
	in->h.cpu = bpf_get_smp_processor_id();
	*slot = s;
	*frame = d;
	return in;
}

/* The thread's device is now dev, if the call setting it succeeded. */
static __always_inline void call_set_device(CALL_SLOT *s, CALL_EVENT *in, __u32 dev)
{
	if (in->h.ret != 0)
		return;
	s->dev = dev;
	s->dev_tid = in->h.tid;
}

/* The thread's device is the one a query that succeeded wrote at where. */
static __always_inline void call_got_device(CALL_SLOT *s, CALL_EVENT *in, __u64 where)
{
	__u32 dev;

	if (in->h.ret == 0 && !bpf_probe_read_user(&dev, sizeof(dev), (void *)where))
		call_set_device(s, in, dev);
}

/* Reads back what a call returned through a pointer argument; 0 unless it succeeded. */
static __always_inline void call_read_out(CALL_EVENT *in, void *dst, __u32 size, __u64 where)
{
	if (in->h.ret != 0 || bpf_probe_read_user(dst, size, (void *)where))
		__builtin_memset(dst, 0, size);
}

/* The probe's: a call's arguments, by its function id's argument class. */
static __always_inline void read_args(struct pt_regs *ctx, const __u32 func, CALL_EVENT *e);

static __always_inline int call_entry(struct pt_regs *ctx, const __u32 func)
{
	CALL_EVENT *e = call_enter(ctx, func);

	if (e) {
		read_args(ctx, func, e);
		call_started(e);
	}
	return 0;
}

/*
 * The entry program of function sym, named enter_<sym> (the agent finds each
 * symbol's program by that name), with its function id as a constant:
 * bpf_get_attach_cookie() costs ~30 ns a call here, a tenth of the probe.
 */
#define CALL_ENTRY(sym, id)						\
	SEC("uprobe")							\
	int enter_##sym(struct pt_regs *ctx)				\
	{								\
		return call_entry(ctx, id);				\
	}

/* Pops the frame without emitting it. Only now may another thread take the slot. */
static __always_inline void call_pop(CALL_SLOT *s, CALL_EVENT *in, __u32 frame)
{
	s->state = ((__u64)in->h.tid << 32) | frame;
}

/* Sends out[0..count) as one ring buffer record, unless the agent took it first. */
static __always_inline void call_flush_out(CALL_SLOT *s, __u64 done)
{
	__u64 size = (__u64)(__u32)done * sizeof(CALL_EVENT);

	if (__sync_val_compare_and_swap(&s->done, done, ((done >> 32) + 1) << 32) != done)
		return;
	asm volatile("" : "+r"(size));
	if (size == 0 || size > sizeof(s->out))
		return;
	if (bpf_ringbuf_output(&events, s->out, size, wakeup_flags()))
		count_drops(XPU_DROP_RINGBUF, size / sizeof(CALL_EVENT));
}

/* Appends a completed call to out[], flushes out[] when full or old, and pops the frame. */
static __always_inline void call_emit(CALL_SLOT *s, CALL_EVENT *ev, __u32 frame, __u64 now)
{
	__u64 done;
	__u32 n;

	for (int try = 0; try < 2; try++) {
		done = s->done;
		n = (__u32)done;
		asm volatile("" : "+r"(n));
		if (n >= CALL_OUT)
			break;	/* never left full: the owner flushes at the last one */
		__builtin_memcpy(&s->out[n], ev, sizeof(*ev));
		/* Fails only when the agent took out[] meanwhile: go again, at 0. */
		if (__sync_val_compare_and_swap(&s->done, done, done + 1) != done)
			continue;
		if (n + 1 == CALL_OUT || now - s->out[0].h.ts_ns >= hold_ns)
			call_flush_out(s, done + 1);
		call_pop(s, ev, frame);
		return;
	}
	count_drop(XPU_DROP_INFLIGHT);
	call_pop(s, ev, frame);
}

/*
 * The probe's: what a call returned through pointer arguments (and the device
 * it set), by its function id's argument class; false for a call that is
 * never an event.
 */
static __always_inline bool read_results(CALL_SLOT *s, CALL_EVENT *in);

/* The return program's body, the same for every function: pairs by stack pointer. */
static __always_inline int call_exit(struct pt_regs *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	CALL_EVENT *in;
	CALL_SLOT *s;
	__u32 d;

	in = call_return(ctx, now, &s, &d);
	if (!in)
		return 0;
	if (read_results(s, in))
		call_emit(s, in, d, now);
	else
		call_pop(s, in, d);
	return 0;
}

/*
 * The probe's one return program, named <probe>_return (the agent finds it by
 * that name). It takes the pt_regs itself rather than through a BPF_*PROBE
 * wrapper: libbpf 1.1 (Debian 12's) has no BPF_URETPROBE (1.2 added it as an
 * alias of BPF_KRETPROBE), and call_exit reads the return value with
 * PT_REGS_RC either way.
 */
#define CALL_RETURN(name)						\
	SEC("uretprobe")						\
	int name##_return(struct pt_regs *ctx)				\
	{								\
		return call_exit(ctx);					\
	}

#endif
