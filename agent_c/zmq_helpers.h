/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Batches to the backend over ZeroMQ (DEALER, CURVE when keys are given), each
 * kept until the backend acknowledges it and sent again when the
 * acknowledgement is late: a backend restart loses nothing the agent held.
 */
#ifndef XPU_ZMQ_HELPERS_H
#define XPU_ZMQ_HELPERS_H

#include <stddef.h>
#include <linux/types.h>
#include "sink_helpers.h"

struct zsink;

int zsink_open(struct zsink **out, const struct sink_opts *o, char *err, size_t errlen);
int zsink_send(struct zsink *z, const void *buf, size_t len, __u64 seq, __u32 events);
void zsink_service(struct zsink *z);
/* linger_ms < 0: the sink's own */
__u64 zsink_finish(struct zsink *z, int linger_ms);
void zsink_counts(struct zsink *z, struct sink_counts *out);
void zsink_close(struct zsink *z);

#endif
