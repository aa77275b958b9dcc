// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * PYTHON probe: on each tick of a per-CPU clock, the Python stack of the
 * target's thread that was running there (see python.h).
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>
#include "python.h"
#include "drops.bpf.h"
#include "ringbuf.bpf.h"
#include "pystack.bpf.h"
#include "window.bpf.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

const volatile __u32 targ_tgid = 0;
const volatile __u64 period_ns = 10101010;	/* 1 s / --sample-hz */

struct gc_start {
	__u64 ts_ns;
	__u32 generation;
};

TID_LRU(gc_started, 4096, struct gc_start);

/* A reserved event of task's with its header and Python stack; NULL: the ring buffer is full. */
static __always_inline struct python_event *event(struct task_struct *task, __u16 func,
						  __u64 py_stack)
{
	struct python_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count_drop(XPU_DROP_RINGBUF);
		return NULL;
	}
	e->h.ret = 0;
	e->h.pid = task->tgid;
	e->h.tid = task->pid;
	e->h.func = func;
	e->h.flags = 0;
	e->h.cpu = bpf_get_smp_processor_id();
	__builtin_memcpy(e->h.comm, task->comm, sizeof(e->h.comm));
	e->py_stack = py_stack;
	e->generation = 0;
	e->reserved = 0;
	e->collected = 0;
	return e;
}

SEC("perf_event")
int sample(struct bpf_perf_event_data *ctx)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct python_event *e;

	if (task->tgid != targ_tgid || !window_open())
		return 0;
	e = event(task, PYTHON_FN_sample, py_capture(task->tgid, task->pid));
	if (!e)
		return 0;
	e->h.ts_ns = bpf_ktime_get_ns();
	e->h.duration_ns = period_ns;
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("usdt")
int BPF_USDT(gc_start, int generation)
{
	struct gc_start st = { .ts_ns = bpf_ktime_get_ns(), .generation = generation };
	__u32 tid = (__u32)bpf_get_current_pid_tgid();

	if (!window_open())
		return 0;	/* a collection is kept when it starts in the window */
	bpf_map_update_elem(&gc_started, &tid, &st, BPF_ANY);
	return 0;
}

SEC("usdt")
int BPF_USDT(gc_done, long collected)
{
	struct task_struct *task = bpf_get_current_task_btf();
	__u32 tid = task->pid;
	struct gc_start *st = bpf_map_lookup_elem(&gc_started, &tid);
	struct python_event *e;

	if (!st)
		return 0;	/* began before the probe */
	e = event(task, PYTHON_FN_gc, py_capture(task->tgid, task->pid));
	if (e) {
		e->h.ts_ns = st->ts_ns;
		e->h.duration_ns = bpf_ktime_get_ns() - st->ts_ns;
		e->h.ret = collected;
		e->generation = st->generation;
		e->collected = collected < 0 ? 0 : collected;
		bpf_ringbuf_submit(e, 0);
	}
	bpf_map_delete_elem(&gc_started, &tid);
	return 0;
}

/* --- exact calls of the functions named (--py-functions), see python.h --- */

const volatile __u32 py_nfuncs = 0;
const volatile char py_funcs[PY_MAX_FUNCS][PY_FUNC_NAME_LEN] = {};
const volatile __u8 py_eval_frame = 0;	/* 3.10: hooks on _PyEval_EvalFrameDefault */
const volatile char window_func[PY_FUNC_NAME_LEN] = {};	/* with gated: the window's function */
__u64 py_calls_seen = 0;	/* Python calls that trapped into the probe: the cost */
__u64 py_calls_named = 0;	/* of those, calls of the functions named */
__u64 py_calls_lost = 0;	/* named calls not kept: more than PY_MAX_OPEN open */

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);			/* PyCodeObject * */
	__type(value, __u8);			/* enum py_verdict */
} py_named SEC(".maps");

/* What a code object is to the probe (bits); cached in py_named, never 0 there. */
enum py_verdict {
	PY_NAMED = 1,		/* one of the functions named: its calls are events */
	PY_WINDOW = 2,		/* the step window's function: its calls are counted */
	PY_NEITHER = 4,
};

TID_LRU(py_open, 4096, struct py_open_calls);
PERCPU_ONE(py_open_zero, struct py_open_calls);

/*
 * Whether code is one of the functions named or the window's (enum py_verdict
 * bits, 0: neither): its qualified name, read once per code object.
 */
static __always_inline __u8 py_is_named(__u64 code)
{
	__u8 *known = bpf_map_lookup_elem(&py_named, &code), verdict = 0;
	char name[PY_FUNC_NAME_LEN];
	__u64 str;
	__u32 state = 0;

	if (known)
		return *known & (PY_NAMED | PY_WINDOW);
	str = py_read(code + py.code_qualname);
	/* compact ASCII only (PyASCIIObject.state: compact bit 5, ascii bit 6) */
	if (str && !bpf_probe_read_user(&state, sizeof(state), (void *)(str + py.str_state)) &&
	    (state >> 5 & 3) == 3 &&
	    bpf_probe_read_user_str(name, sizeof(name), (void *)(str + py.str_ascii_data)) > 0) {
		for (int i = 0; i < PY_MAX_FUNCS; i++) {
			if (i < py_nfuncs && !bpf_strncmp(name, sizeof(name), (char *)py_funcs[i])) {
				verdict = PY_NAMED;
				break;
			}
		}
		if (gated && !bpf_strncmp(name, sizeof(name), (char *)window_func))
			verdict |= PY_WINDOW;
	}
	if (!verdict)
		verdict = PY_NEITHER;
	bpf_map_update_elem(&py_named, &code, &verdict, BPF_ANY);
	return verdict & (PY_NAMED | PY_WINDOW);
}

static __always_inline void py_call_event(struct task_struct *task, struct py_open_call *c,
					  __u64 now, __u16 flags)
{
	struct python_event *e = event(task, PYTHON_FN_call, c->py_stack);

	if (!e)
		return;
	e->h.ts_ns = c->ts_ns;
	e->h.duration_ns = now - c->ts_ns;
	e->h.flags = flags;
	bpf_ringbuf_submit(e, 0);
}

/*
 * An open call ends: its event, if it is one; the window closes after its last
 * call. A subprogram: inlined, its branches multiply the states the verifier
 * walks through py_call_end's loop past its limit.
 */
static __noinline int py_call_done(struct task_struct *task, struct py_open_call *c, __u64 now,
				   __u16 flags)
{
	if (c->emit)
		py_call_event(task, c, now, flags);
	if (c->window_call)
		window_call_ended(c->window_call);
	return 0;
}

/* 3.11+: open calls whose frames the new one's has replaced were left by exceptions. */
static __always_inline void py_unwind_to(struct task_struct *task, struct py_open_calls *open,
					 __u64 frame)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 d;

	for (int i = 0; i < PY_MAX_OPEN; i++) {
		d = open->depth - 1;
		if (!open->depth || d >= PY_MAX_OPEN || !open->call[d].key ||
		    open->call[d].key < frame)
			break;
		py_call_done(task, &open->call[d], now, XPU_EV_INCOMPLETE);
		open->depth = d;
	}
}

/*
 * The frame runs again, not from its start: a generator or coroutine resuming
 * after a yield or await. 3.10: f_lasti is -1 until the frame first runs.
 * 3.11+: the handler has made the frame's instruction pointer its RESUME (the
 * probe sits past that store), whose oparg location is then not 0.
 */
static __always_inline bool py_resumed(__u64 frame)
{
	__s32 lasti = -1;
	__u8 unit[2];
	__u64 instr;

	if (py_eval_frame) {
		bpf_probe_read_user(&lasti, sizeof(lasti), (void *)(frame + py.frame_instr));
		return lasti >= 0;
	}
	instr = py_read(frame + py.frame_instr);
	return instr && !bpf_probe_read_user(unit, sizeof(unit), (void *)instr) && unit[1] & 3;
}

/* A named function starts: frame is its frame, sp the stack pointer (3.10's pairing). */
static __always_inline void py_call_start(struct task_struct *task, __u64 frame, __u64 sp)
{
	__u8 owner = 0, verdict;
	__u32 tid = task->pid, zero = 0, d;
	__u64 code = frame ? py_frame_code(frame) : 0, n = 0;
	struct py_open_calls *open;
	bool emit;

	__sync_fetch_and_add(&py_calls_seen, 1);
	verdict = code ? py_is_named(code) : 0;
	if (!verdict || py_resumed(frame))
		return;
	if (verdict & PY_WINDOW)
		n = window_call_starts();	/* the window opens before this call is kept */
	if (verdict & PY_NAMED)
		__sync_fetch_and_add(&py_calls_named, 1);
	emit = (verdict & PY_NAMED) && window_open();
	if (!window_call_inside(n))
		n = 0;
	if (!emit && !n)
		return;
	open = bpf_map_lookup_elem(&py_open, &tid);
	if (!open) {
		struct py_open_calls *z = bpf_map_lookup_elem(&py_open_zero, &zero);

		if (!z)
			return;
		bpf_map_update_elem(&py_open, &tid, z, BPF_NOEXIST);
		open = bpf_map_lookup_elem(&py_open, &tid);
		if (!open)
			return;
	}
	if (!py_eval_frame) {
		bpf_probe_read_user(&owner, 1, (void *)(frame + py.frame_owner));
		if (owner == 0)	/* FRAME_OWNED_BY_THREAD: on the thread's data stack */
			py_unwind_to(task, open, frame);
	}
	d = open->depth;
	if (d >= PY_MAX_OPEN) {
		__sync_fetch_and_add(&py_calls_lost, 1);
		return;
	}
	open->call[d].code = code;
	open->call[d].key = py_eval_frame ? sp : owner == 0 ? frame : 0;
	open->call[d].py_stack = emit ? py_capture_from(task->tgid, frame) : 0;
	open->call[d].window_call = n;
	open->call[d].emit = emit;
	open->call[d].ts_ns = bpf_ktime_get_ns();
	open->depth = d + 1;
}


/*
 * A frame returns: code is its code object (3.11+), or sp the stack pointer at
 * the entry of the _PyEval_EvalFrameDefault returning (3.10). The open call it
 * ends is emitted; the ones above it were left by an exception: incomplete.
 */
static __always_inline void py_call_end(struct task_struct *task, __u64 code, __u64 sp,
				       __u16 flags)
{
	__u64 now = bpf_ktime_get_ns();
	__u32 tid = task->pid, depth, d;
	struct py_open_calls *open = bpf_map_lookup_elem(&py_open, &tid);
	int found = -1;

	if (!open)
		return;
	depth = open->depth;
	for (int i = 0; i < PY_MAX_OPEN; i++) {
		d = depth - 1 - i;
		if (i >= depth || d >= PY_MAX_OPEN)
			break;
		if (code ? open->call[d].code == code : open->call[d].key == sp) {
			found = d;
			break;
		}
	}
	if (found < 0)
		return;	/* not a named call, or one that began before the probe */
	for (int i = 0; i < PY_MAX_OPEN; i++) {
		d = depth - 1 - i;
		if (i >= depth || d >= PY_MAX_OPEN || (int)d < found)
			break;
		py_call_done(task, &open->call[d], now, (int)d == found ? flags : XPU_EV_INCOMPLETE);
	}
	open->depth = found;
}

static __always_inline struct task_struct *py_target_task(void)
{
	struct task_struct *task = bpf_get_current_task_btf();

	return task->tgid == targ_tgid ? task : NULL;
}

/* 3.11+: a RESUME handler of the eval loop (the frame is the thread's current one); 3.10:
 * _PyEval_EvalFrameDefault(tstate, frame, throwflag). */
SEC("uprobe")
int py_enter(struct pt_regs *ctx)
{
	struct task_struct *task = py_target_task();

	if (task)
		py_call_start(task, py_eval_frame ? PT_REGS_PARM2(ctx) : py_current_frame(task->pid),
			      PT_REGS_SP(ctx));
	return 0;
}

/* 3.11+: a RETURN_VALUE or RETURN_CONST handler: the returning frame is still current. */
SEC("uprobe")
int py_return(struct pt_regs *ctx)
{
	struct task_struct *task = py_target_task();
	__u64 frame, code;

	if (!task)
		return 0;
	frame = py_current_frame(task->pid);
	code = frame ? py_frame_code(frame) : 0;
	if (code && py_is_named(code))
		py_call_end(task, code, 0, 0);
	return 0;
}

/*
 * 3.10: _PyEval_EvalFrameDefault returns (its entry's return address was at
 * sp); NULL when an exception leaves the frame: incomplete, as in 3.11+.
 */
SEC("uretprobe")
int py_eval_return(struct pt_regs *ctx)
{
	struct task_struct *task = py_target_task();

	if (task)
		py_call_end(task, 0, PT_REGS_SP(ctx) - 8, PT_REGS_RC(ctx) ? 0 : XPU_EV_INCOMPLETE);
	return 0;
}
