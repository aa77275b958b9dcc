// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "exit_codes.h"
#include "proc_helpers.h"

int proc_find_mapped_libs(const char *proc_root, pid_t pid, lib_match_fn match,
			  struct mapped_lib *out, int max, char *err, size_t errlen)
{
	char maps[PATH_MAX], line[PATH_MAX + 256];
	enum { MAX_FILES = 64 };	/* the most files kept */
	dev_t devs[MAX_FILES];
	ino_t inos[MAX_FILES];
	int n = 0, i, e;
	FILE *f;

	if (max > MAX_FILES)
		max = MAX_FILES;
	snprintf(maps, sizeof(maps), "%s/%d/maps", proc_root, pid);
	f = fopen(maps, "re");
	if (!f) {
		e = errno;
		if (e == ENOENT)
			snprintf(err, errlen, "no process with pid %d", pid);
		else
			snprintf(err, errlen, "cannot read %s: %s", maps, strerror(e));
		return -agent_exit_for_errno(e);
	}
	while (n < max && fgets(line, sizeof(line), f)) {
		char *path = strchr(line, '/'), *base, *nl;
		struct stat st;
		bool seen = false;

		if (!path)
			continue;
		nl = strchr(path, '\n');
		if (nl)
			*nl = '\0';
		if (strstr(path, " (deleted)"))
			continue;
		base = strrchr(path, '/') + 1;
		if (!match(base))
			continue;
		snprintf(out[n].path, sizeof(out[n].path), "%s/%d/root%s", proc_root, pid, path);
		if (stat(out[n].path, &st))
			continue;
		for (i = 0; i < n; i++)
			seen |= devs[i] == st.st_dev && inos[i] == st.st_ino;
		if (seen)
			continue;
		snprintf(out[n].target_path, sizeof(out[n].target_path), "%s", path);
		devs[n] = st.st_dev;
		inos[n] = st.st_ino;
		n++;
	}
	fclose(f);
	return n;
}

bool proc_alive(const char *proc_root, pid_t pid)
{
	char path[PATH_MAX], buf[512], *p;
	FILE *f;
	bool alive = false;

	snprintf(path, sizeof(path), "%s/%d/stat", proc_root, pid);
	f = fopen(path, "re");
	if (!f)
		return false;
	if (fgets(buf, sizeof(buf), f)) {
		p = strrchr(buf, ')');
		alive = p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
	}
	fclose(f);
	return alive;
}
