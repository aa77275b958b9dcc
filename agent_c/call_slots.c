// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "call_slots.h"
#include "xpu_abi.h"

/* The leading members every slot type has (calls.bpf.h). */
struct slot_head {
	__u64 state;
	__u64 done;
};

int call_slots_map(struct call_slots *s, const struct call_slot_layout *layout, int map_fd,
		   __u32 count)
{
	size_t page = sysconf(_SC_PAGESIZE);
	void *mem;

	s->layout = layout;
	s->len = ((size_t)count * layout->slot_size + page - 1) / page * page;
	mem = mmap(NULL, s->len, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
	if (mem == MAP_FAILED) {
		s->mem = NULL;
		return -errno;
	}
	s->mem = mem;
	s->count = count;
	return 0;
}

static struct xpu_event_hdr *event_at(char *slot, size_t at, size_t size, __u32 i)
{
	return (struct xpu_event_hdr *)(slot + at + i * size);
}

/* The owning thread appends while we copy: see struct cuda_inflight in cuda.h. */
static __u64 take_done(const struct call_slot_layout *l, char *slot, struct drain *d,
		       __u64 older_than_ns)
{
	struct slot_head *head = (struct slot_head *)slot;
	__u64 done = __atomic_load_n(&head->done, __ATOMIC_ACQUIRE);
	__u32 n = (__u32)done;
	char out[l->outs * l->event_size];

	if (!n || n > l->outs)
		return 0;
	memcpy(out, slot + l->out_at, n * l->event_size);
	if (((struct xpu_event_hdr *)out)->ts_ns >= older_than_ns)
		return 0;	/* its thread is active and will send it */
	/* Only if nothing was appended or flushed while we copied. */
	if (!__atomic_compare_exchange_n(&head->done, &done, ((done >> 32) + 1) << 32, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return 0;
	for (__u32 i = 0; i < n; i++)
		memcpy(drain_slot(d), out + i * l->event_size, l->event_size);
	return n;
}

__u64 call_slots_take_done(struct call_slots *s, struct drain *d, __u64 older_than_ns)
{
	const struct call_slot_layout *l = s->layout;
	__u64 taken = 0;

	for (__u32 k = 0; k < s->count; k++)
		taken += take_done(l, s->mem + k * l->slot_size, d, older_than_ns);
	return taken;
}

__u64 call_slots_take_incomplete(struct call_slots *s, struct drain *d, __u64 now_ns)
{
	const struct call_slot_layout *l = s->layout;
	__u64 emitted = 0;

	for (__u32 k = 0; k < s->count; k++) {
		char *slot = s->mem + k * l->slot_size;
		__u32 depth = (__u32)((struct slot_head *)slot)->state;

		for (__u32 f = 0; f < depth && f < l->frames; f++) {
			char buf[l->event_size];
			struct xpu_event_hdr *e = (struct xpu_event_hdr *)buf;

			memcpy(buf, event_at(slot, l->frames_at, l->event_size, f), l->event_size);
			if (!l->incomplete(e))
				continue;
			e->flags |= XPU_EV_INCOMPLETE;
			e->duration_ns = now_ns > e->ts_ns ? now_ns - e->ts_ns : 0;
			e->ret = 0;
			memcpy(drain_slot(d), buf, l->event_size);
			emitted++;
		}
	}
	return emitted;
}

void call_slots_unmap(struct call_slots *s)
{
	if (s->mem)
		munmap(s->mem, s->len);
	s->mem = NULL;
}
