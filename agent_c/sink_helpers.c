// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include "exit_codes.h"
#include "sink_helpers.h"

struct sink {
	int linger_ms;
	FILE *file;
	void *zctx;
	void *zsock;
};

static int read_keyfile(const char *path, char server[41], char pub[41], char sec[41],
			char *err, size_t errlen)
{
	char line[256], *v;
	FILE *f = fopen(path, "re");
	int e;

	if (!f) {
		e = errno;
		snprintf(err, errlen, "cannot open curve keyfile %s: %s", path, strerror(e));
		return agent_exit_for_errno(e) == AGENT_TARGET_NOT_FOUND ? AGENT_INVALID_CONFIG
									  : agent_exit_for_errno(e);
	}
	server[0] = pub[0] = sec[0] = '\0';
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\r\n")] = '\0';
		v = strchr(line, '=');
		if (!v || strlen(v + 1) != 40)
			continue;
		*v++ = '\0';
		if (!strcmp(line, "server_public_key"))
			memcpy(server, v, 41);
		else if (!strcmp(line, "public_key"))
			memcpy(pub, v, 41);
		else if (!strcmp(line, "secret_key"))
			memcpy(sec, v, 41);
	}
	fclose(f);
	if (!server[0] || !pub[0] || !sec[0]) {
		snprintf(err, errlen, "curve keyfile %s needs server_public_key, public_key and "
			 "secret_key, each 40 Z85 characters", path);
		return AGENT_INVALID_CONFIG;
	}
	return 0;
}

static int open_zmq(struct sink *s, const struct sink_opts *o, char *err, size_t errlen)
{
	char server[41], pub[41], sec[41];
	int ret;

	s->zctx = zmq_ctx_new();
	s->zsock = s->zctx ? zmq_socket(s->zctx, ZMQ_PUSH) : NULL;
	if (!s->zsock) {
		snprintf(err, errlen, "failed to create ZeroMQ socket: %s", zmq_strerror(errno));
		return AGENT_START_FAILED;
	}
	zmq_setsockopt(s->zsock, ZMQ_SNDHWM, &o->send_hwm, sizeof(o->send_hwm));
	zmq_setsockopt(s->zsock, ZMQ_LINGER, &o->linger_ms, sizeof(o->linger_ms));
	if (o->curve_keyfile) {
		if (!zmq_has("curve")) {
			snprintf(err, errlen, "libzmq was built without CURVE");
			return AGENT_START_FAILED;
		}
		ret = read_keyfile(o->curve_keyfile, server, pub, sec, err, errlen);
		if (ret)
			return ret;
		if (zmq_setsockopt(s->zsock, ZMQ_CURVE_SERVERKEY, server, 40) ||
		    zmq_setsockopt(s->zsock, ZMQ_CURVE_PUBLICKEY, pub, 40) ||
		    zmq_setsockopt(s->zsock, ZMQ_CURVE_SECRETKEY, sec, 40)) {
			snprintf(err, errlen, "invalid CURVE key in %s: %s", o->curve_keyfile,
				 zmq_strerror(errno));
			return AGENT_INVALID_CONFIG;
		}
		explicit_bzero(sec, sizeof(sec));
	}
	if (zmq_connect(s->zsock, o->endpoint)) {
		snprintf(err, errlen, "invalid --backend-zmq-endpoint %s: %s", o->endpoint,
			 zmq_strerror(errno));
		return AGENT_INVALID_CONFIG;
	}
	return 0;
}

int sink_open(struct sink **out, const struct sink_opts *o, char *err, size_t errlen)
{
	struct sink *s = calloc(1, sizeof(*s));
	int ret = 0, e;

	if (!s) {
		snprintf(err, errlen, "out of memory");
		return AGENT_START_FAILED;
	}
	s->linger_ms = o->linger_ms;
	if (o->output_path) {
		s->file = fopen(o->output_path, "wbe");
		if (!s->file) {
			e = errno;
			snprintf(err, errlen, "cannot create --output %s: %s", o->output_path,
				 strerror(e));
			ret = e == EACCES ? AGENT_PERMISSION_DENIED : AGENT_INVALID_CONFIG;
		}
	} else {
		ret = open_zmq(s, o, err, errlen);
	}
	if (ret) {
		sink_close(s);
		return ret;
	}
	*out = s;
	return 0;
}

int sink_send(struct sink *s, const void *buf, size_t len, bool wait)
{
	int flags = ZMQ_DONTWAIT;

	if (s->file) {
		if (fwrite(buf, 1, len, s->file) != len || fflush(s->file))
			return -errno;
		return 0;
	}
	if (wait) {
		zmq_setsockopt(s->zsock, ZMQ_SNDTIMEO, &s->linger_ms, sizeof(s->linger_ms));
		flags = 0;
	}
	while (zmq_send(s->zsock, buf, len, flags) < 0) {
		if (errno == EINTR)
			continue;
		return errno == EAGAIN ? 1 : -errno;
	}
	return 0;
}

void sink_close(struct sink *s)
{
	if (!s)
		return;
	if (s->file)
		fclose(s->file);
	if (s->zsock)
		zmq_close(s->zsock);
	if (s->zctx)
		zmq_ctx_term(s->zctx);
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
	ret = sink_send(s, b->buf, sizeof(*h) + b->count * b->hdr.event_size,
			flags & XPU_BATCH_FINAL);
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
