// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#define _GNU_SOURCE
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/libbpf.h>
#include "exit_codes.h"
#include "pystack.h"	/* before the skeleton: its rodata holds struct py_offsets */
#include "python.skel.h"
#include "python_calls.h"

/* A qualified name: identifier characters, dots, and <locals>/<lambda>'s angle brackets. */
static bool valid_name(const char *s, size_t n)
{
	if (!n || n >= PY_FUNC_NAME_LEN)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];

		if (!(ch >= 'a' && ch <= 'z') && !(ch >= 'A' && ch <= 'Z') &&
		    !(ch >= '0' && ch <= '9') && !strchr("_.<>", ch))
			return false;
	}
	return true;
}

static int parse_offsets(const char *s, size_t len, unsigned long *out, int *n, char *err,
			 size_t errlen)
{
	const char *p = s, *end = s + len;

	*n = 0;
	while (p < end) {
		const char *comma = memchr(p, ',', end - p);
		const char *stop = comma ? comma : end;
		char buf[32], *tail;

		if (stop - p == 0 || stop - p >= (long)sizeof(buf) || *n == PY_MAX_HOOKS) {
			snprintf(err, errlen, "invalid --py-hooks: bad offset list '%.*s'",
				 (int)len, s);
			return -1;
		}
		memcpy(buf, p, stop - p);
		buf[stop - p] = 0;
		errno = 0;
		out[*n] = strtoul(buf, &tail, 0);
		if (errno || *tail || !out[*n]) {
			snprintf(err, errlen, "invalid --py-hooks: '%s' is not a file offset", buf);
			return -1;
		}
		(*n)++;
		p = comma ? comma + 1 : end;
	}
	return 0;
}

int py_calls_parse(const char *functions, const char *hooks, struct py_calls *c, char *err,
		   size_t errlen)
{
	const char *p = functions, *colon1, *colon2;

	memset(c, 0, sizeof(*c));
	for (; p && *p; c->nfuncs++) {
		const char *end = strchrnul(p, ',');

		if (c->nfuncs == PY_MAX_FUNCS || !valid_name(p, end - p)) {
			snprintf(err, errlen, "invalid --py-functions: '%.*s' (up to %d qualified "
				 "names of 1-%d characters: letters, digits, _ . < >)",
				 (int)(end - p), p, PY_MAX_FUNCS, PY_FUNC_NAME_LEN - 1);
			return -1;
		}
		memcpy(c->func[c->nfuncs], p, end - p);
		p = *end ? end + 1 : end;
	}
	if (functions && !c->nfuncs) {
		snprintf(err, errlen, "invalid --py-functions: no name");
		return -1;
	}
	colon1 = strchr(hooks, ':');
	colon2 = colon1 ? strchr(colon1 + 1, ':') : NULL;
	if (!colon2) {
		snprintf(err, errlen, "invalid --py-hooks '%s': MODE:ENTRY:EXIT", hooks);
		return -1;
	}
	if (colon1 - hooks == 4 && !strncmp(hooks, "eval", 4))
		c->eval = true;
	else if (!(colon1 - hooks == 6 && !strncmp(hooks, "opcode", 6))) {
		snprintf(err, errlen, "invalid --py-hooks '%s': mode opcode or eval", hooks);
		return -1;
	}
	if (parse_offsets(colon1 + 1, colon2 - colon1 - 1, c->entry, &c->nentry, err, errlen) ||
	    parse_offsets(colon2 + 1, strlen(colon2 + 1), c->exit, &c->nexit, err, errlen))
		return -1;
	if (!c->nentry || (c->eval ? c->nentry != 1 || c->nexit : !c->nexit)) {
		snprintf(err, errlen, "invalid --py-hooks '%s': opcode mode takes entry and exit "
			 "offsets, eval mode one entry offset and no exit", hooks);
		return -1;
	}
	return 0;
}

int py_calls_check(const char *functions, const char *hooks, char *err, size_t errlen)
{
	struct py_calls c;

	return py_calls_parse(functions, hooks, &c, err, errlen);
}

void py_calls_configure(struct python_bpf *skel, const struct py_calls *c)
{
	skel->rodata->py_nfuncs = c->nfuncs;
	memcpy((void *)skel->rodata->py_funcs, c->func, sizeof(c->func));
	skel->rodata->py_eval_frame = c->eval;
}

int py_window_parse(const char *arg, struct py_window *w, char *err, size_t errlen)
{
	const char *colon = strchr(arg, ':');
	char tail;

	memset(w, 0, sizeof(*w));
	if (!colon || !valid_name(arg, colon - arg) ||
	    sscanf(colon + 1, "%llu:%llu%c", &w->skip, &w->count, &tail) != 2 ||
	    strchr(colon + 1, '-') || !w->count || w->skip > 1ULL << 62 || w->count > 1ULL << 62) {
		snprintf(err, errlen, "invalid --window '%s': FUNCTION:SKIP:COUNT (a qualified name "
			 "of 1-%d characters, SKIP >= 0, COUNT >= 1)", arg, PY_FUNC_NAME_LEN - 1);
		return -1;
	}
	memcpy(w->func, arg, colon - arg);
	return 0;
}

void py_window_configure(struct python_bpf *skel, const struct py_window *w)
{
	skel->rodata->gated = 1;
	memcpy((void *)skel->rodata->window_func, w->func, sizeof(w->func));
	skel->rodata->window_skip = w->skip;
	skel->rodata->window_count = w->count;
}

static struct bpf_link *attach(const struct bpf_program *prog, bool ret, pid_t pid,
			       const char *path, unsigned long offset, char *err, size_t errlen)
{
	struct bpf_link *link = bpf_program__attach_uprobe(prog, ret, pid, path, offset);

	if (!link)
		snprintf(err, errlen, "failed to attach at offset %#lx of %s: %s", offset, path,
			 strerror(errno));
	return link;
}

int py_calls_attach(struct python_bpf *skel, const struct agent_env *env,
		    const struct py_calls *c, struct bpf_link **links, char *err, size_t errlen)
{
	char path[PATH_MAX];
	int n = 0;

	snprintf(path, sizeof(path), "%s/%d/root%s", env->proc_root, env->target_pid,
		 env->py_binary);
	/* calls start at the entries; 3.10's return there, 3.11+'s at the exits */
	const struct {
		const struct bpf_program *prog;
		bool ret;
		const unsigned long *at;
		int n;
	} sets[] = {
		{ skel->progs.py_enter, false, c->entry, c->nentry },
		{ skel->progs.py_eval_return, true, c->entry, c->eval ? c->nentry : 0 },
		{ skel->progs.py_return, false, c->exit, c->nexit },
	};

	for (size_t k = 0; k < sizeof(sets) / sizeof(sets[0]); k++) {
		for (int i = 0; i < sets[k].n; i++) {
			links[n] = attach(sets[k].prog, sets[k].ret, env->target_pid, path,
					  sets[k].at[i], err, errlen);
			if (!links[n])
				return -AGENT_START_FAILED;
			n++;
		}
	}
	return n;
}

void py_calls_print_stats(const struct python_bpf *skel)
{
	printf("{\"py_calls\": {\"trapped\": %llu, \"named\": %llu, \"lost\": %llu}}\n",
	       (unsigned long long)skel->bss->py_calls_seen,
	       (unsigned long long)skel->bss->py_calls_named,
	       (unsigned long long)skel->bss->py_calls_lost);
	fflush(stdout);
}
