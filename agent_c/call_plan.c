// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "call_probe.h"

/* Arrays hold 16 at first and double when full: full at 0, 16, 32, 64, ... */
static int full(int n)
{
	return n == 0 || (n >= 16 && !(n & (n - 1)));
}

static struct call_lib_plan *lib_plan(struct call_plan *plan, const struct mapped_lib *lib)
{
	for (int i = 0; i < plan->nlibs; i++) {
		if (plan->libs[i].lib == lib)
			return &plan->libs[i];
	}
	if (plan->nlibs == (int)(sizeof(plan->libs) / sizeof(plan->libs[0])))
		return NULL;
	plan->libs[plan->nlibs].lib = lib;
	return &plan->libs[plan->nlibs++];
}

int call_plan_add(struct call_plan *plan, const struct mapped_lib *lib, const char *prog,
		  const char *name, unsigned long offset, __u64 cookie)
{
	struct call_lib_plan *lp = lib_plan(plan, lib);
	struct call_site *sites;

	if (!lp)
		return -E2BIG;
	/* An alias at an address already hooked would report each call twice. */
	for (int i = 0; i < lp->nsites; i++) {
		if (lp->sites[i].offset == offset)
			return 0;
	}
	if (full(lp->nsites)) {
		sites = realloc(lp->sites, sizeof(*sites) * (lp->nsites ? 2 * lp->nsites : 16));
		if (!sites)
			return -ENOMEM;
		lp->sites = sites;
	}
	lp->sites[lp->nsites++] = (struct call_site){ prog, name, offset, cookie };
	return 0;
}

int call_plan_add_entry(struct call_plan *plan, const struct mapped_lib *lib, const char *name,
			unsigned long offset, __u64 cookie)
{
	char prog[64];
	const char *kept;

	snprintf(prog, sizeof(prog), "enter_%s", name);
	kept = call_plan_keep(plan, prog);
	return kept ? call_plan_add(plan, lib, kept, name, offset, cookie) : -ENOMEM;
}

const char *call_plan_keep(struct call_plan *plan, const char *s)
{
	char **names, *copy;

	if (full(plan->nnames)) {
		names = realloc(plan->names, sizeof(*names) * (plan->nnames ? 2 * plan->nnames : 16));
		if (!names)
			return NULL;
		plan->names = names;
	}
	copy = strdup(s);
	if (copy)
		plan->names[plan->nnames++] = copy;
	return copy;
}

void call_plan_free(struct call_plan *plan)
{
	for (int i = 0; i < plan->nlibs; i++)
		free(plan->libs[i].sites);
	for (int i = 0; i < plan->nnames; i++)
		free(plan->names[i]);
	free(plan->names);
	free(plan->data);
	memset(plan, 0, sizeof(*plan));
}
