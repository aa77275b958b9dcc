// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#define _GNU_SOURCE	/* strchrnul */
#include <stdio.h>
#include <string.h>
#include "syscall_names.h"

static int lookup(const char *name, size_t len)
{
	for (int nr = 0; nr < XPU_SYSCALL_NR_MAX; nr++)
		if (syscall_names[nr] && strlen(syscall_names[nr]) == len &&
		    !memcmp(syscall_names[nr], name, len))
			return nr;
	return -1;
}

int syscall_allow_list(const char *list, __u64 *allow, char *err, size_t errlen)
{
	__u64 bits[SYSCALL_ALLOW_WORDS] = {};
	const char *p = list, *end;
	int n = 0, nr;

	if (!list) {
		for (nr = 0; nr < XPU_SYSCALL_NR_MAX; nr++)
			if (syscall_names[nr])
				bits[nr >> 6] |= 1ULL << (nr & 63), n++;
	} else {
		for (; *p; p = *end ? end + 1 : end) {
			end = strchrnul(p, ',');
			nr = lookup(p, end - p);
			if (nr < 0) {
				snprintf(err, errlen, "unknown syscall '%.*s'", (int)(end - p), p);
				return -1;
			}
			if (!(bits[nr >> 6] & (1ULL << (nr & 63))))
				n++;
			bits[nr >> 6] |= 1ULL << (nr & 63);
		}
		if (!n) {
			snprintf(err, errlen, "no syscall named");
			return -1;
		}
	}
	if (allow)
		memcpy(allow, bits, sizeof(bits));
	return n;
}
