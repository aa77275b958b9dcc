/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* x86-64 syscall names by number (syscall_names.c, generated) and the --syscalls filter. */
#ifndef XPU_SYSCALL_NAMES_H
#define XPU_SYSCALL_NAMES_H

#include <stddef.h>
#include <linux/types.h>
#include "syscall.h"

extern const char *const syscall_names[XPU_SYSCALL_NR_MAX];

/*
 * Sets allow (SYSCALL_ALLOW_WORDS words, or NULL to only check) to the
 * syscalls a comma-separated list of names gives, or to all when list is
 * NULL. Returns how many are allowed, or -1 with the reason in err.
 */
int syscall_allow_list(const char *list, __u64 *allow, char *err, size_t errlen);

#endif
