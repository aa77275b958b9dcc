// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>
#include "exit_codes.h"
#include "xpu_abi.h"
#include "zmq_helpers.h"

struct held {
	__u64 seq;
	__u64 sent_ns;		/* 0: not on the wire yet */
	__u32 events;
	size_t len;
	void *buf;		/* NULL: free slot */
};

struct zsink {
	void *zctx;
	void *zsock;
	int linger_ms;
	__u64 resend_ns;
	struct held *held;	/* ring of cap slots, oldest at head */
	int cap, head, count;
	struct sink_counts counts;
};

static __u64 mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

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

static int open_socket(struct zsink *s, const struct sink_opts *o, char *err, size_t errlen)
{
	char server[41], pub[41], sec[41];
	int ret, zero = 0;

	s->zctx = zmq_ctx_new();
	s->zsock = s->zctx ? zmq_socket(s->zctx, ZMQ_DEALER) : NULL;
	if (!s->zsock) {
		snprintf(err, errlen, "failed to create ZeroMQ socket: %s", zmq_strerror(errno));
		return AGENT_START_FAILED;
	}
	zmq_setsockopt(s->zsock, ZMQ_SNDHWM, &o->send_hwm, sizeof(o->send_hwm));
	zmq_setsockopt(s->zsock, ZMQ_LINGER, &zero, sizeof(zero));	/* we keep our own copies */
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


int zsink_open(struct zsink **out, const struct sink_opts *o, char *err, size_t errlen)
{
	struct zsink *z = calloc(1, sizeof(*z));
	int ret;

	if (!z || !(z->held = calloc(o->send_hwm, sizeof(*z->held)))) {
		free(z);
		snprintf(err, errlen, "out of memory");
		return AGENT_START_FAILED;
	}
	z->cap = o->send_hwm;
	z->linger_ms = o->linger_ms;
	z->resend_ns = (__u64)(o->resend_ms > 0 ? o->resend_ms : 1000) * 1000000;
	ret = open_socket(z, o, err, errlen);
	if (ret) {
		zsink_close(z);
		return ret;
	}
	*out = z;
	return 0;
}

/* Puts h on the wire if the socket takes it now; it stays held either way. */
static void transmit(struct zsink *z, struct held *h)
{
	while (zmq_send(z->zsock, h->buf, h->len, ZMQ_DONTWAIT) < 0) {
		if (errno != EINTR)
			return;	/* EAGAIN: no peer or queue full; resent later */
	}
	if (h->sent_ns)
		z->counts.resent_batches++;
	h->sent_ns = mono_ns();
}

int zsink_send(struct zsink *z, const void *buf, size_t len, __u64 seq, __u32 events)
{
	struct held *h;

	zsink_service(z);
	if (z->count == z->cap)
		return 1;
	h = &z->held[(z->head + z->count) % z->cap];
	h->buf = malloc(len);
	if (!h->buf)
		return 1;
	memcpy(h->buf, buf, len);
	h->len = len;
	h->seq = seq;
	h->events = events;
	h->sent_ns = 0;
	z->count++;
	transmit(z, h);
	return 0;
}

static void acknowledge(struct zsink *z, __u64 seq)
{
	for (int i = 0; i < z->count; i++) {
		struct held *h = &z->held[(z->head + i) % z->cap];

		if (!h->buf || h->seq != seq)
			continue;
		z->counts.delivered_events += h->events;
		z->counts.delivered_batches++;
		free(h->buf);
		h->buf = NULL;
		break;
	}
	/* drop acknowledged slots off the head (acks may come out of order) */
	while (z->count && !z->held[z->head].buf) {
		z->head = (z->head + 1) % z->cap;
		z->count--;
	}
}

void zsink_service(struct zsink *z)
{
	struct xpu_batch_ack ack;
	__u64 now;
	int n;

	while ((n = zmq_recv(z->zsock, &ack, sizeof(ack), ZMQ_DONTWAIT)) >= 0) {
		if (n == sizeof(ack) && ack.magic == XPU_ACK_MAGIC)
			acknowledge(z, ack.seq);
	}
	now = mono_ns();
	for (int i = 0; i < z->count; i++) {
		struct held *h = &z->held[(z->head + i) % z->cap];

		if (h->buf && (!h->sent_ns || now - h->sent_ns >= z->resend_ns))
			transmit(z, h);
	}
}

__u64 zsink_finish(struct zsink *z, int linger_ms)
{
	__u64 deadline = mono_ns() + (__u64)(linger_ms < 0 ? z->linger_ms : linger_ms) * 1000000;
	__u64 lost = 0;
	zmq_pollitem_t item = { .socket = z->zsock, .events = ZMQ_POLLIN };

	zsink_service(z);
	while (z->count && mono_ns() < deadline) {
		zmq_poll(&item, 1, 50);
		zsink_service(z);
	}
	for (int i = 0; i < z->count; i++) {
		struct held *h = &z->held[(z->head + i) % z->cap];

		if (h->buf) {
			lost += h->events;
			free(h->buf);
			h->buf = NULL;
		}
	}
	z->count = 0;
	return lost;
}

void zsink_counts(struct zsink *z, struct sink_counts *out)
{
	*out = z->counts;
	out->pending_batches = z->count;
}

void zsink_close(struct zsink *z)
{
	if (!z)
		return;
	for (int i = 0; i < z->count; i++)
		free(z->held[(z->head + i) % z->cap].buf);
	free(z->held);
	if (z->zsock)
		zmq_close(z->zsock);
	if (z->zctx)
		zmq_ctx_term(z->zctx);
	free(z);
}
