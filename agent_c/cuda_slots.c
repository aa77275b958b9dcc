// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include "cuda_slots.h"

int cuda_slots_map(struct cuda_slots *s, int map_fd, __u32 count)
{
	size_t page = sysconf(_SC_PAGESIZE);
	void *mem;

	s->len = ((size_t)count * sizeof(struct cuda_inflight) + page - 1) / page * page;
	mem = mmap(NULL, s->len, PROT_READ | PROT_WRITE, MAP_SHARED, map_fd, 0);
	if (mem == MAP_FAILED) {
		s->slot = NULL;
		return -errno;
	}
	s->slot = mem;
	s->count = count;
	return 0;
}

/* The owning thread appends while we copy: see struct cuda_inflight. */
static __u64 take_done(struct cuda_inflight *slot, struct drain *d, __u64 older_than_ns)
{
	struct cuda_event out[CUDA_OUT_EVENTS];
	__u64 done = __atomic_load_n(&slot->done, __ATOMIC_ACQUIRE);
	__u32 n = (__u32)done;

	if (!n || n > CUDA_OUT_EVENTS)
		return 0;
	memcpy(out, slot->out, n * sizeof(out[0]));
	if (out[0].h.ts_ns >= older_than_ns)
		return 0;	/* its thread is active and will send it */
	/* Only if nothing was appended or flushed while we copied. */
	if (!__atomic_compare_exchange_n(&slot->done, &done, ((done >> 32) + 1) << 32, false,
					 __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return 0;
	for (__u32 i = 0; i < n; i++)
		memcpy(drain_slot(d), &out[i], sizeof(out[i]));
	return n;
}

__u64 cuda_slots_take_done(struct cuda_slots *s, struct drain *d, __u64 older_than_ns)
{
	__u64 taken = 0;

	for (__u32 k = 0; k < s->count; k++)
		taken += take_done(&s->slot[k], d, older_than_ns);
	return taken;
}

__u64 cuda_slots_take_incomplete(struct cuda_slots *s, struct drain *d, __u64 now_ns)
{
	__u64 emitted = 0;

	for (__u32 k = 0; k < s->count; k++) {
		struct cuda_inflight *slot = &s->slot[k];
		__u32 depth = (__u32)slot->state;

		for (__u32 f = 0; f < depth && f < CUDA_INFLIGHT_FRAMES; f++) {
			struct cuda_event *e;

			if (slot->frames[f].h.func >> 8 == CUDA_ARGS_GET_DEVICE)
				continue;	/* never an event */
			e = drain_slot(d);
			memcpy(e, &slot->frames[f], sizeof(*e));
			e->h.flags |= XPU_EV_INCOMPLETE;
			e->h.duration_ns = now_ns > e->h.ts_ns ? now_ns - e->h.ts_ns : 0;
			e->h.ret = 0;
			switch (e->h.func >> 8) {
			case CUDA_ARGS_ALLOC:
			case CUDA_ARGS_ALLOC_ASYNC:
			case CUDA_ARGS_ALLOC_MANAGED:
				e->ptr2 = 0;	/* an out-pointer, not an argument */
			}
			emitted++;
		}
	}
	return emitted;
}

void cuda_slots_unmap(struct cuda_slots *s)
{
	if (s->slot)
		munmap(s->slot, s->len);
	s->slot = NULL;
}
