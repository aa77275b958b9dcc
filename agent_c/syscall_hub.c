// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * The SYSCALL tracer (see syscall_hub.h). Adding a monitor takes a free slot,
 * opens its sink, then sets its syscall bits and, last, its target's entry:
 * from then on its events come. Ending one removes its target's entry first,
 * takes its calls in progress from the per-thread slots, takes what the ring
 * holds (a call in progress that returned meanwhile comes out complete, once),
 * and sends what remains as incomplete with the final batch.
 *
 * A slot is reused by another monitor later: a record still carrying the old
 * monitor's bit (a call that started before it ended) began before the new
 * monitor did, and events are only taken for a monitor from its start on.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "drain_helpers.h"
#include "exit_codes.h"
#include "monitor_loop.h"
#include "monitor_start.h"
#include "proc_helpers.h"
#include "sink_helpers.h"
#include "syscall.skel.h"
#include "syscall_hub.h"
#include "syscall_names.h"

#define PAST_IDS 256		/* ended monitors whose counters a restart continues */
#define PRUNE_NS 5000000000ULL	/* how often dead processes leave the exclusion map */

struct hub_mon {
	struct agent_env env;
	char *line;			/* env's strings point into it */
	int slot;
	__u64 bit;
	__u64 added_ns;
	__u64 last_flush_ns;
	__u64 allow[SYSCALL_ALLOW_WORDS];
	__u8 comm_key[XPU_COMM_LEN];
	struct sink *sink;
	struct batcher batch;
	/* the slot's counters when it started, and what earlier runs of this id counted */
	__u64 base_ring, base_inflight, base_missed;
	__u64 carried_ring, carried_inflight;
	__u64 incomplete;
	/* while ending: its calls that were in progress, not seen returning yet */
	struct syscall_event *pending;
	size_t npending;
	bool closing;
	int code;
	char reason[256];
	__u64 deadline_ns;		/* finishing: give up waiting for acknowledgements */
	struct hub_mon *next;		/* finishing list */
};

struct hub_past {
	char id[XPU_MONITOR_ID_LEN];
	__u64 next_seq, kernel, inflight, send;
};

struct syscall_hub {
	struct syscall_bpf *skel;
	struct ring_buffer *rb;
	struct syscall_inflight *slots;
	size_t slots_len;
	__u32 nslots;
	const char *proc_root;
	long ringbuf_kb;
	pid_t self;
	struct hub_mon *mon[SYSCALL_SLOTS];
	__u64 freed_at[SYSCALL_SLOTS];	/* a slot freed longest ago is taken first */
	__u64 free_clock;
	__u64 live;			/* bits of the monitors events are taken for */
	struct hub_mon *finishing;
	struct syscall_slot_drops *drops;	/* one per possible CPU */
	int ncpu;
	struct hub_past past[PAST_IDS];
	int npast;
	__u64 last_prune_ns;
	hub_report_fn report;
	void *ctx;
};

/* -- counters */

static void slot_totals(struct syscall_hub *h, int slot, __u64 *ring, __u64 *inflight)
{
	__u32 zero = 0;

	*ring = *inflight = 0;
	if (bpf_map_lookup_elem(bpf_map__fd(h->skel->maps.slot_drops), &zero, h->drops))
		return;
	for (int c = 0; c < h->ncpu; c++) {
		*ring += h->drops[c].ringbuf[slot];
		*inflight += h->drops[c].inflight[slot];
	}
}

static __u64 missed(struct syscall_hub *h)
{
	return prog_recursion_misses(h->skel->obj, "sys_enter");
}

/* The monitor's running drop totals, as its batches carry them. */
static void mon_totals(struct syscall_hub *h, struct hub_mon *m, __u64 *kernel, __u64 *inflight)
{
	__u64 ring, infl;

	slot_totals(h, m->slot, &ring, &infl);
	*kernel = m->carried_ring + ring - m->base_ring;
	/* calls the kernel skipped sys_enter for may be anyone's: counted for every monitor */
	*inflight = m->carried_inflight + infl - m->base_inflight + missed(h) - m->base_missed;
}

static void mon_fail(struct hub_mon *m, int err)
{
	if (m->code)
		return;
	m->code = AGENT_RUNTIME_ERROR;
	snprintf(m->reason, sizeof(m->reason), "failed to send batch: %s", strerror(-err));
}

static void mon_flush(struct syscall_hub *h, struct hub_mon *m, __u32 flags)
{
	__u64 kernel, inflight;
	int ret;

	mon_totals(h, m, &kernel, &inflight);
	ret = batcher_flush(&m->batch, m->sink, kernel, inflight, flags);
	if (ret)
		mon_fail(m, ret);
	m->last_flush_ns = monotonic_ns();
}

static struct syscall_event *mon_slot(struct syscall_hub *h, struct hub_mon *m)
{
	void *e = batcher_slot(&m->batch);

	if (!e) {
		mon_flush(h, m, 0);
		e = batcher_slot(&m->batch);
	}
	return e;
}

/* -- the ring buffer: each record to each monitor it is for */

static void take_returned(struct hub_mon *m, const struct syscall_event *e)
{
	for (size_t i = 0; i < m->npending; i++) {
		if (m->pending[i].h.tid == e->h.tid && m->pending[i].h.ts_ns == e->h.ts_ns) {
			m->pending[i] = m->pending[--m->npending];
			return;
		}
	}
}

static int on_record(void *ctx, void *data, size_t size)
{
	struct syscall_hub *h = ctx;
	const struct syscall_record *r = data;
	__u64 mask;

	if (size < sizeof(*r))
		return 0;
	for (mask = r->slots & h->live; mask; mask &= mask - 1) {
		struct hub_mon *m = h->mon[__builtin_ctzll(mask)];

		if (r->e.h.ts_ns < m->added_ns)
			continue;	/* a call of the slot's previous monitor */
		if (m->closing)
			take_returned(m, &r->e);
		memcpy(mon_slot(h, m), &r->e, sizeof(r->e));
	}
	return 0;
}

/* -- filters */

static int mask_update(int fd, const void *key, __u64 bit, bool set)
{
	__u64 mask = 0;

	bpf_map_lookup_elem(fd, key, &mask);
	mask = set ? mask | bit : mask & ~bit;
	if (!mask)
		return bpf_map_delete_elem(fd, key) && errno != ENOENT ? -errno : 0;
	return bpf_map_update_elem(fd, key, &mask, BPF_ANY) ? -errno : 0;
}

static int filters_set(struct syscall_hub *h, struct hub_mon *m, bool on)
{
	struct syscall_bpf__bss *bss = h->skel->bss;
	int ret = 0;

	if (on) {	/* syscall bits first, the target last: no event before it is whole */
		for (int nr = 0; nr < SYSCALL_NR_SLOTS; nr++)
			if (m->allow[nr >> 6] & (1ULL << (nr & 63)))
				__atomic_or_fetch(&bss->allow_slots[nr], m->bit, __ATOMIC_RELEASE);
	}
	if (m->env.target_pid) {
		__u32 tgid = m->env.target_pid;

		ret = mask_update(bpf_map__fd(h->skel->maps.tgid_slots), &tgid, m->bit, on);
		if (!ret)
			__atomic_add_fetch(&bss->tgid_targets, on ? 1 : -1, __ATOMIC_RELEASE);
	} else {
		ret = mask_update(bpf_map__fd(h->skel->maps.comm_slots), m->comm_key, m->bit, on);
		if (!ret)
			__atomic_add_fetch(&bss->comm_targets, on ? 1 : -1, __ATOMIC_RELEASE);
	}
	if (!on) {
		for (int nr = 0; nr < SYSCALL_NR_SLOTS; nr++)
			__atomic_and_fetch(&bss->allow_slots[nr], ~m->bit, __ATOMIC_RELEASE);
	}
	return ret;
}

int hub_exclude(struct syscall_hub *h, pid_t pid)
{
	__u32 tgid = pid;
	__u8 one = 1;

	if (bpf_map_update_elem(bpf_map__fd(h->skel->maps.excluded), &tgid, &one, BPF_ANY))
		return -errno;
	__atomic_store_n(&h->skel->bss->exclude_on, 1, __ATOMIC_RELEASE);
	return 0;
}

/* Processes that exited leave the exclusion map (their pids will be someone else's). */
static void prune_excluded(struct syscall_hub *h)
{
	int fd = bpf_map__fd(h->skel->maps.excluded);
	__u32 key, next, dead[256];
	int n = 0, most = sizeof(dead) / sizeof(dead[0]);
	void *prev = NULL;

	while (n < most && !bpf_map_get_next_key(fd, prev, &next)) {
		key = next;
		prev = &key;
		if (key != (__u32)h->self && !proc_alive(h->proc_root, key))
			dead[n++] = key;
	}
	for (int i = 0; i < n; i++)
		bpf_map_delete_elem(fd, &dead[i]);
}

/* -- monitors */

static struct hub_mon *find(struct syscall_hub *h, const char *id)
{
	for (int i = 0; i < SYSCALL_SLOTS; i++)
		if (h->mon[i] && !strcmp(h->mon[i]->env.monitor_id, id))
			return h->mon[i];
	return NULL;
}

static struct hub_past *past_of(struct syscall_hub *h, const char *id)
{
	for (int i = 0; i < h->npast && i < PAST_IDS; i++)
		if (!strcmp(h->past[i].id, id))
			return &h->past[i];
	return NULL;
}

static void mon_free(struct hub_mon *m)
{
	if (!m)
		return;
	sink_close(m->sink);
	batcher_free(&m->batch);
	free(m->pending);
	free(m->line);
	free(m);
}

int hub_add(struct syscall_hub *h, const struct agent_env *env, char *line, int *nsyscalls,
	    int *slot_out, char *err, size_t errlen)
{
	struct sink_opts so = monitor_sink_opts(env);
	struct hub_mon *m = NULL;
	struct hub_past *past;
	int slot = -1, ret, n;

	if (find(h, env->monitor_id)) {
		snprintf(err, errlen, "monitor %s is already running", env->monitor_id);
		ret = AGENT_INVALID_CONFIG;
		goto fail;
	}
	if (env->ringbuf_kb > h->ringbuf_kb) {
		snprintf(err, errlen, "--ringbuf-kb %ld: the shared SYSCALL tracer's ring buffer "
			 "is %ld KB", env->ringbuf_kb, h->ringbuf_kb);
		ret = AGENT_INVALID_CONFIG;
		goto fail;
	}
	if (env->target_pid && !proc_alive(h->proc_root, env->target_pid)) {
		snprintf(err, errlen, "process %d not found", env->target_pid);
		ret = AGENT_TARGET_NOT_FOUND;
		goto fail;
	}
	for (int i = 0; i < SYSCALL_SLOTS; i++)
		if (!h->mon[i] && (slot < 0 || h->freed_at[i] < h->freed_at[slot]))
			slot = i;
	if (slot < 0) {
		snprintf(err, errlen, "the SYSCALL tracer already serves %d monitors", SYSCALL_SLOTS);
		ret = AGENT_START_FAILED;
		goto fail;
	}
	m = calloc(1, sizeof(*m));
	if (!m) {
		snprintf(err, errlen, "out of memory");
		ret = AGENT_START_FAILED;
		goto fail;
	}
	m->env = *env;
	m->line = line;
	line = NULL;
	m->slot = slot;
	m->bit = 1ULL << slot;
	n = syscall_allow_list(env->syscalls, m->allow, err, errlen);
	if (n < 0) {
		ret = AGENT_INVALID_CONFIG;
		goto fail;
	}
	if (env->target_comm)
		strncpy((char *)m->comm_key, env->target_comm, XPU_COMM_LEN - 1);
	ret = sink_open(&m->sink, &so, err, errlen);
	if (ret)
		goto fail;
	if (batcher_init(&m->batch, XPU_MONITOR_SYSCALL, sizeof(struct syscall_event),
			 env->batch_events, env->monitor_id, env->machine_id)) {
		snprintf(err, errlen, "out of memory");
		ret = AGENT_START_FAILED;
		goto fail;
	}
	past = past_of(h, env->monitor_id);
	if (past) {	/* the backend counts (monitor, pid, seq) once: go on from there */
		m->batch.hdr.seq = past->next_seq;
		m->batch.send_drops = past->send;
		m->carried_ring = past->kernel;
		m->carried_inflight = past->inflight;
	}
	slot_totals(h, slot, &m->base_ring, &m->base_inflight);
	m->base_missed = missed(h);
	m->added_ns = m->last_flush_ns = monotonic_ns();
	h->mon[slot] = m;
	h->live |= m->bit;
	ret = filters_set(h, m, true);
	if (ret) {
		filters_set(h, m, false);
		h->live &= ~m->bit;
		h->mon[slot] = NULL;
		snprintf(err, errlen, "failed to update the filter maps: %s", strerror(-ret));
		ret = AGENT_START_FAILED;
		goto fail;
	}
	*nsyscalls = n;
	*slot_out = slot;
	return 0;
fail:
	free(line);
	mon_free(m);
	return ret;
}

/* The monitor's calls in progress now (only those it took: from its start on). */
static void take_in_progress(struct syscall_hub *h, struct hub_mon *m)
{
	size_t cap = 0;

	for (__u32 k = 0; k < h->nslots; k++) {
		struct syscall_inflight *s = &h->slots[k];
		struct syscall_event *grown;

		if (!__atomic_load_n(&s->busy, __ATOMIC_ACQUIRE) || !(s->r.slots & m->bit) ||
		    s->r.e.h.ts_ns < m->added_ns)
			continue;
		if (m->npending == cap) {
			cap = cap ? cap * 2 : 16;
			grown = realloc(m->pending, cap * sizeof(*grown));
			if (!grown)
				break;
			m->pending = grown;
		}
		m->pending[m->npending++] = s->r.e;
	}
}

static void tick_finishing(struct syscall_hub *h, bool force);

static void end_monitor(struct syscall_hub *h, struct hub_mon *m, int code, const char *reason)
{
	__u64 now;

	if (!m->code) {
		m->code = code;
		snprintf(m->reason, sizeof(m->reason), "%s", reason);
	}
	filters_set(h, m, false);
	take_in_progress(h, m);
	m->closing = true;
	ring_buffer__consume(h->rb);
	now = monotonic_ns();
	for (size_t i = 0; i < m->npending; i++) {
		struct syscall_event *e = mon_slot(h, m);

		*e = m->pending[i];
		e->h.flags |= XPU_EV_INCOMPLETE;
		e->h.duration_ns = now > e->h.ts_ns ? now - e->h.ts_ns : 0;
		e->h.ret = 0;
		m->incomplete++;
	}
	m->npending = 0;
	h->live &= ~m->bit;
	h->mon[m->slot] = NULL;
	h->freed_at[m->slot] = ++h->free_clock;
	mon_flush(h, m, XPU_BATCH_FINAL);
	m->deadline_ns = monotonic_ns() + (__u64)m->env.linger_ms * 1000000;
	m->next = h->finishing;
	h->finishing = m;
}

int hub_remove(struct syscall_hub *h, const char *monitor_id, const char *reason)
{
	struct hub_mon *m = find(h, monitor_id);

	if (!m)
		return -ENOENT;
	end_monitor(h, m, AGENT_OK, reason);
	tick_finishing(h, false);	/* a file is written: report at once */
	return 0;
}

static void remember(struct syscall_hub *h, struct hub_mon *m, __u64 kernel, __u64 inflight,
		     __u64 send)
{
	struct hub_past *p = past_of(h, m->env.monitor_id);

	if (!p)
		p = &h->past[h->npast++ % PAST_IDS];
	snprintf(p->id, sizeof(p->id), "%s", m->env.monitor_id);
	p->next_seq = m->batch.hdr.seq;
	p->kernel = kernel;
	p->inflight = inflight;
	p->send = send;
}

/* A finishing monitor whose batches are all acknowledged (or whose time is up): its report. */
static bool finish(struct syscall_hub *h, struct hub_mon *m, bool force)
{
	struct sink_counts c;
	struct hub_end end;
	__u64 kernel, inflight, lost;

	sink_service(m->sink);
	sink_counts(m->sink, &c);
	if (c.pending_batches && !force && monotonic_ns() < m->deadline_ns)
		return false;
	lost = sink_finish_within(m->sink, 0);
	sink_counts(m->sink, &c);
	mon_totals(h, m, &kernel, &inflight);
	end = (struct hub_end){
		.monitor_id = m->env.monitor_id, .code = m->code, .reason = m->reason,
		.events = c.delivered_events, .batches = c.delivered_batches,
		.sent = m->batch.events_sent, .kernel_drops = kernel, .inflight_drops = inflight,
		.send_drops = m->batch.send_drops + lost, .resent_batches = c.resent_batches,
		.incomplete = m->incomplete,
	};
	remember(h, m, kernel, inflight, m->batch.send_drops + lost);
	h->report(h->ctx, &end);
	return true;
}

static void tick_finishing(struct syscall_hub *h, bool force)
{
	struct hub_mon **pp = &h->finishing, *m;

	while ((m = *pp)) {
		if (finish(h, m, force)) {
			*pp = m->next;
			mon_free(m);
		} else {
			pp = &m->next;
		}
	}
}

int hub_poll(struct syscall_hub *h, int timeout_ms, int fd)
{
	struct pollfd pfd[2] = {
		{ .fd = ring_buffer__epoll_fd(h->rb), .events = POLLIN },
		{ .fd = fd, .events = POLLIN },
	};
	int n, ret = 0;
	__u64 now;

	if (h->finishing && timeout_ms > 20)
		timeout_ms = 20;	/* acknowledgements awaited: they come on sockets not polled here */
	n = poll(pfd, 2, timeout_ms);
	if (n < 0 && errno != EINTR)
		return -errno;
	/* The probe wakes us only past a threshold: take what came in quietly too. */
	n = ring_buffer__consume(h->rb);
	if (n < 0 && n != -EINTR)
		return n;
	if (fd >= 0 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)))
		ret = 1;
	now = monotonic_ns();
	for (int i = 0; i < SYSCALL_SLOTS; i++) {
		struct hub_mon *m = h->mon[i];
		char why[64];

		if (!m)
			continue;
		sink_service(m->sink);
		if (m->code) {	/* its sink failed */
			fprintf(stderr, "xputrace-agent: monitor %s: %s\n", m->env.monitor_id,
				m->reason);
			end_monitor(h, m, m->code, m->reason);
			continue;
		}
		if (now - m->last_flush_ns < (__u64)m->env.flush_ms * 1000000)
			continue;
		mon_flush(h, m, 0);
		if (m->env.target_pid && !proc_alive(h->proc_root, m->env.target_pid)) {
			snprintf(why, sizeof(why), "target %d exited", m->env.target_pid);
			fprintf(stderr, "xputrace-agent: %s\n", why);
			end_monitor(h, m, AGENT_OK, why);
		}
	}
	tick_finishing(h, false);
	if (now - h->last_prune_ns > PRUNE_NS) {
		prune_excluded(h);
		h->last_prune_ns = now;
	}
	return ret;
}

int hub_monitors(struct syscall_hub *h, int *finishing)
{
	int n = 0;

	*finishing = 0;
	for (struct hub_mon *m = h->finishing; m; m = m->next)
		(*finishing)++;
	for (int i = 0; i < SYSCALL_SLOTS; i++)
		n += !!h->mon[i];
	return n;
}

void hub_shutdown(struct syscall_hub *h, const char *reason)
{
	int finishing;

	/* Stop new events; each monitor then takes what the ring holds and its calls in progress. */
	syscall_bpf__detach(h->skel);
	for (int i = 0; i < SYSCALL_SLOTS; i++)
		if (h->mon[i])
			end_monitor(h, h->mon[i], AGENT_OK, reason);
	while (hub_monitors(h, &finishing), finishing) {
		tick_finishing(h, false);
		if (h->finishing)
			poll(NULL, 0, 20);
	}
}

/* -- open, free */

int hub_open(struct syscall_hub **out, const struct agent_env *env, hub_report_fn report,
	     void *ctx)
{
	size_t page = sysconf(_SC_PAGESIZE);
	struct syscall_hub *h = calloc(1, sizeof(*h));
	int ret;

	if (!h)
		return agent_fail(AGENT_START_FAILED, "out of memory");
	h->report = report;
	h->ctx = ctx;
	h->proc_root = env->proc_root;
	h->ringbuf_kb = env->ringbuf_kb;
	h->nslots = env->max_threads;
	h->self = getpid();
	h->slots = MAP_FAILED;
	h->ncpu = libbpf_num_possible_cpus();
	h->drops = h->ncpu > 0 ? calloc(h->ncpu, sizeof(*h->drops)) : NULL;
	if (!h->drops) {
		ret = agent_fail(AGENT_START_FAILED, "cannot count the possible CPUs");
		goto fail;
	}
	h->skel = syscall_bpf__open();
	if (!h->skel) {
		ret = monitor_open_failed(errno);
		goto fail;
	}
	h->skel->rodata->wakeup_bytes = monitor_wakeup_bytes(env);
	h->skel->rodata->slot_mask = env->max_threads - 1;
	bpf_map__set_max_entries(h->skel->maps.inflight, env->max_threads);
	ret = monitor_load(h->skel->skeleton, env);
	if (ret)
		goto fail;
	h->slots_len = (env->max_threads * sizeof(*h->slots) + page - 1) / page * page;
	h->slots = mmap(NULL, h->slots_len, PROT_READ, MAP_SHARED,
			bpf_map__fd(h->skel->maps.inflight), 0);
	if (h->slots == MAP_FAILED) {
		ret = agent_fail(AGENT_START_FAILED, "failed to map per-thread slots: %s",
				 strerror(errno));
		goto fail;
	}
	h->rb = ring_buffer__new(bpf_map__fd(h->skel->maps.events), on_record, h, NULL);
	if (!h->rb) {
		ret = agent_fail(AGENT_START_FAILED, "failed to create ring buffer: %s",
				 strerror(errno));
		goto fail;
	}
	ret = hub_exclude(h, h->self);	/* never trace ourselves by task name */
	if (ret) {
		ret = agent_fail(AGENT_START_FAILED, "failed to update the exclusion map: %s",
				 strerror(-ret));
		goto fail;
	}
	ret = syscall_bpf__attach(h->skel);
	if (ret) {
		ret = agent_fail(AGENT_START_FAILED, "failed to attach the syscall tracepoints: %s",
				 strerror(-ret));
		goto fail;
	}
	h->last_prune_ns = monotonic_ns();
	*out = h;
	return 0;
fail:
	hub_free(h);
	return ret;
}

void hub_free(struct syscall_hub *h)
{
	if (!h)
		return;
	for (int i = 0; i < SYSCALL_SLOTS; i++)
		mon_free(h->mon[i]);
	while (h->finishing) {
		struct hub_mon *m = h->finishing;

		h->finishing = m->next;
		mon_free(m);
	}
	ring_buffer__free(h->rb);
	if (h->slots != MAP_FAILED)
		munmap(h->slots, h->slots_len);
	syscall_bpf__destroy(h->skel);
	free(h->drops);
	free(h);
}
