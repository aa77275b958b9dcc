/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef XPU_PROC_HELPERS_H
#define XPU_PROC_HELPERS_H

#include <limits.h>
#include <stdbool.h>
#include <sys/types.h>

/* Decides from a file's base name whether a mapped file is of interest. */
typedef bool (*lib_match_fn)(const char *basename);

struct mapped_lib {
	char path[PATH_MAX];	/* as seen from here: <proc_root>/<pid>/root<path in target> */
	char target_path[PATH_MAX];	/* as the target sees it */
};

/*
 * Lists the distinct files mapped into pid whose base name satisfies match,
 * reached through the target's root so that containers work. proc_root is
 * "/proc" outside tests. Returns the number found (up to max) or minus an
 * agent exit code, with the reason in err.
 */
int proc_find_mapped_libs(const char *proc_root, pid_t pid, lib_match_fn match,
			  struct mapped_lib *out, int max, char *err, size_t errlen);

/* True while pid exists (a zombie counts as gone). */
bool proc_alive(const char *proc_root, pid_t pid);

#endif
