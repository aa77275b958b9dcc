// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "exit_codes.h"
#include "sink_helpers.h"
#include "zmq_helpers.h"

struct sink {
	FILE *file;
	struct zsink *z;
	__u64 delivered_events;
	__u64 delivered_batches;
};

int sink_open(struct sink **out, const struct sink_opts *o, char *err, size_t errlen)
{
	struct sink *s = calloc(1, sizeof(*s));
	int ret = 0, e;

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return AGENT_START_FAILED;
	}
	if (o->output_path) {
		s->file = fopen(o->output_path, "wbe");
		if (!s->file) {
			e = errno;
			snprintf(err, errlen, "cannot create --output %s: %s", o->output_path,
				 strerror(e));
			ret = e == EACCES ? AGENT_PERMISSION_DENIED : AGENT_INVALID_CONFIG;
		}
	} else {
		ret = zsink_open(&s->z, o, err, errlen);
	}
	if (ret) {
		sink_close(s);
		return ret;
	}
	*out = s;
	return 0;
}

int sink_send(struct sink *s, const void *buf, size_t len, __u64 seq, __u32 events)
{
	if (s->z)
		return zsink_send(s->z, buf, len, seq, events);
	if (fwrite(buf, 1, len, s->file) != len || fflush(s->file))
		return -errno;
	s->delivered_events += events;
	s->delivered_batches++;
	return 0;
}

void sink_service(struct sink *s)
{
	if (s->z)
		zsink_service(s->z);
}

__u64 sink_finish(struct sink *s)
{
	return s->z ? zsink_finish(s->z, -1) : 0;
}

__u64 sink_finish_within(struct sink *s, int linger_ms)
{
	return s->z ? zsink_finish(s->z, linger_ms) : 0;
}

void sink_counts(struct sink *s, struct sink_counts *out)
{
	memset(out, 0, sizeof(*out));
	if (s->z) {
		zsink_counts(s->z, out);
		return;
	}
	out->delivered_events = s->delivered_events;
	out->delivered_batches = s->delivered_batches;
}

void sink_close(struct sink *s)
{
	if (!s)
		return;
	if (s->file)
		fclose(s->file);
	zsink_close(s->z);
	free(s);
}

int batcher_init(struct batcher *b, __u16 monitor_type, __u16 event_size, size_t cap,
		 const char *monitor_id, const char *machine_id)
{
	memset(b, 0, sizeof(*b));
	b->buf = malloc(sizeof(b->hdr) + cap * event_size);
	if (!b->buf)
		return -ENOMEM;
	b->cap = cap;
	b->hdr.magic = XPU_BATCH_MAGIC;
	b->hdr.abi_version = XPU_ABI_VERSION;
	b->hdr.hdr_size = sizeof(b->hdr);
	b->hdr.monitor_type = monitor_type;
	b->hdr.event_size = event_size;
	b->hdr.agent_pid = getpid();
	strncpy(b->hdr.monitor_id, monitor_id, sizeof(b->hdr.monitor_id) - 1);
	strncpy(b->hdr.machine_id, machine_id, sizeof(b->hdr.machine_id) - 1);
	return 0;
}

void *batcher_slot(struct batcher *b)
{
	if (b->count == b->cap)
		return NULL;
	return b->buf + sizeof(b->hdr) + b->count++ * b->hdr.event_size;
}

static __s64 mono_to_real_ns(void)
{
	struct timespec r, m;

	clock_gettime(CLOCK_REALTIME, &r);
	clock_gettime(CLOCK_MONOTONIC, &m);
	return ((__s64)r.tv_sec - m.tv_sec) * 1000000000LL + (r.tv_nsec - m.tv_nsec);
}

int batcher_flush(struct batcher *b, struct sink *s, __u64 kernel_drops, __u64 inflight_drops,
		  __u32 flags)
{
	struct xpu_batch_hdr *h = (struct xpu_batch_hdr *)b->buf;
	int ret;

	if (!b->count && !(flags & XPU_BATCH_FINAL))
		return 0;
	b->hdr.event_count = b->count;
	b->hdr.kernel_drops = kernel_drops;
	b->hdr.inflight_drops = inflight_drops;
	b->hdr.send_drops = b->send_drops;
	b->hdr.mono_to_real_ns = mono_to_real_ns();
	b->hdr.flags = flags;
	memcpy(h, &b->hdr, sizeof(*h));
	ret = sink_send(s, b->buf, sizeof(*h) + b->count * b->hdr.event_size, b->hdr.seq,
			b->not_events ? 0 : b->count);
	if (ret == 1) {
		b->send_drops += b->count;
		ret = 0;
	} else if (ret == 0) {
		b->events_sent += b->count;
		b->batches_sent++;
	}
	b->hdr.seq++;
	b->count = 0;
	return ret;
}

void batcher_free(struct batcher *b)
{
	free(b->buf);
	b->buf = NULL;
}
