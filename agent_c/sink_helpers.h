/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Event batches (struct xpu_batch_hdr + events) and where they go: a capture
 * file or a ZeroMQ PUSH socket, CURVE-encrypted when keys are given.
 */
#ifndef XPU_SINK_HELPERS_H
#define XPU_SINK_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <linux/types.h>
#include "xpu_abi.h"

struct sink_opts {
	const char *output_path;	/* capture file, or NULL */
	const char *endpoint;		/* tcp://host:port or ipc://path, or NULL */
	const char *curve_keyfile;	/* server_public_key=, public_key=, secret_key= (Z85) */
	int send_hwm;			/* batches held unacknowledged before new ones are dropped */
	int linger_ms;			/* how long sink_finish waits for acknowledgements */
	int resend_ms;			/* resend a batch unacknowledged for this long */
};

struct sink_counts {
	__u64 delivered_events;		/* written to the file, or acknowledged by the backend */
	__u64 delivered_batches;
	__u64 resent_batches;		/* sent again for want of an acknowledgement */
	__u64 pending_batches;		/* sent, not yet acknowledged */
};

struct sink;

/* Returns 0, or an agent exit code with the reason in err. */
int sink_open(struct sink **out, const struct sink_opts *opts, char *err, size_t errlen);
/*
 * Hands one batch over: a file writes it; the ZeroMQ sink keeps a copy until
 * the backend acknowledges it (struct xpu_batch_ack), resending it meanwhile.
 * Returns 0 when written or held, 1 when there was no room and it was dropped
 * (the caller counts its events), -errno on a write error.
 */
int sink_send(struct sink *s, const void *buf, size_t len, __u64 seq, __u32 events);
/* Takes acknowledgements in and resends what is overdue; call it often. */
void sink_service(struct sink *s);
/* Waits up to linger_ms for every batch to be acknowledged; the events never acknowledged. */
__u64 sink_finish(struct sink *s);
/* The same, waiting up to linger_ms instead. */
__u64 sink_finish_within(struct sink *s, int linger_ms);
void sink_counts(struct sink *s, struct sink_counts *out);
void sink_close(struct sink *s);

struct batcher {
	struct xpu_batch_hdr hdr;	/* template: identity fields filled once */
	char *buf;			/* header followed by up to cap events */
	size_t cap;
	size_t count;
	__u64 events_sent;		/* handed to the sink */
	__u64 batches_sent;
	__u64 send_drops;		/* events of batches the sink had no room for */
	bool not_events;		/* records that are not events (stacks): counted as none */
};

int batcher_init(struct batcher *b, __u16 monitor_type, __u16 event_size, size_t cap,
		 const char *monitor_id, const char *machine_id);
/* Room for one more event; NULL when full (flush first). */
void *batcher_slot(struct batcher *b);
/*
 * Sends what is held (a header alone when empty and flags say FINAL) with the
 * running drop totals. Returns 0 or -errno from the sink.
 */
int batcher_flush(struct batcher *b, struct sink *s, __u64 kernel_drops, __u64 inflight_drops,
		  __u32 flags);
void batcher_free(struct batcher *b);

#endif
