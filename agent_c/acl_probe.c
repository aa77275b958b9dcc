// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * What the Ascend probe hooks, and where: each symbol in the library that
 * really defines it, whichever of the process's CANN libraries that is.
 * Current CANN defines the runtime (aclrt*) in libacl_rt.so and keeps
 * libascendcl.so for compatibility; older CANN has it all in libascendcl.so.
 * aclop's compile-and-execute calls are in libacl_op_compiler.so, the aclnn
 * operators in libopapi.so (and libaclnn_*.so, libcust_opapi.so), HCCL in
 * libhccl.so.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "acl.h"
#include "pystack.h"	/* before the skeleton: its rodata holds struct py_offsets */
#include "acl.skel.h"
#include "call_probe.h"
#include "elf_helpers.h"
#include "exit_codes.h"

/* The libraries of acl.fns: ACL_LIB_acl_rt, ACL_LIB_ascendcl, ... */
enum acl_lib {
#define ACL_LIB(lib) ACL_LIB_##lib,
	ACL_LIBRARIES(ACL_LIB)
#undef ACL_LIB
};

#define FN(sym, lib, required) { #sym, ACL_FN_##sym, ACL_LIB_##lib },

/* acl.fns, in its order, but for aclnn (plan_nn_ops()). */
static const struct {
	const char *name;
	__u16 id;
	enum acl_lib lib;
} acl_functions[] = { ACL_FUNCTIONS(FN) };
_Static_assert(sizeof(acl_functions) / sizeof(acl_functions[0]) == ACL_FUNCTION_COUNT,
	       "acl_functions[] is ACL_FUNCTIONS, every entry");

/* Base names (any suffix: .so, .so.1, ...) of the files that may define hooked functions. */
static const char *const acl_libs[] = {
	"libacl_rt.so", "libascendcl.so", "libacl_op_compiler.so", "libhccl.so", "libopapi.so",
	"libcust_opapi.so", "libaclnn_",
};

static bool acl_library_match(const char *base)
{
	for (size_t i = 0; i < sizeof(acl_libs) / sizeof(acl_libs[0]); i++) {
		if (!strncmp(base, acl_libs[i], strlen(acl_libs[i])) && strstr(base, ".so"))
			return true;
	}
	return false;
}

static bool is_acl_rt(const struct mapped_lib *lib)
{
	const char *base = strrchr(lib->target_path, '/');

	return !strncmp(base ? base + 1 : lib->target_path, "libacl_rt.so", 12);
}

/* The aclnn ops, as the plan's data: names without "aclnn", by cookie. */
struct nn_ops {
	int count;
	char (*name)[sizeof(((struct acl_event *)0)->op_type)];
};

/* The aclnn* functions one file exports. */
struct nn_syms {
	int count;
	struct nn_sym {
		const char *name;
		long offset;
	} *sym;
	struct call_plan *plan;
};

static int nn_collect(void *ctx, const char *name, long offset)
{
	struct nn_syms *ns = ctx;
	void *grown;

	if (!(ns->count & 255)) {
		grown = realloc(ns->sym, sizeof(*ns->sym) * (ns->count + 256));
		if (!grown)
			return -ENOMEM;
		ns->sym = grown;
	}
	name = call_plan_keep(ns->plan, name);
	if (!name)
		return -ENOMEM;
	ns->sym[ns->count++] = (struct nn_sym){ name, offset };
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(((const struct nn_sym *)a)->name, ((const struct nn_sym *)b)->name);
}

#define WS_SUFFIX "GetWorkspaceSize"

/*
 * Hooks the aclnn<Op> launches lib exports: every aclnn<Op> whose
 * aclnn<Op>GetWorkspaceSize is exported too. Returns 0 or an exit code.
 */
static int plan_nn_ops(struct call_plan *plan, const struct mapped_lib *lib, struct nn_ops *ops,
		       char *err, size_t errlen)
{
	struct nn_syms ns = { .plan = plan };
	char ws[256];
	int ret;

	ret = elf_list_functions(lib->path, "aclnn", nn_collect, &ns, err, errlen);
	if (ret == -ENOMEM)
		ret = AGENT_START_FAILED;
	qsort(ns.sym, ns.count, sizeof(*ns.sym), by_name);
	for (int i = 0; !ret && i < ns.count; i++) {
		struct nn_sym key = { ws, 0 };
		void *grown;

		if (ns.sym[i].offset < 0 ||
		    snprintf(ws, sizeof(ws), "%s" WS_SUFFIX, ns.sym[i].name) >= (int)sizeof(ws) ||
		    !bsearch(&key, ns.sym, ns.count, sizeof(*ns.sym), by_name))
			continue;
		if (!(ops->count & 255)) {
			grown = realloc(ops->name, sizeof(*ops->name) * (ops->count + 256));
			if (!grown) {
				ret = AGENT_START_FAILED;
				break;
			}
			ops->name = grown;
		}
		/* The op as the event names it (without "aclnn"), cut to fit with its NUL. */
		snprintf(ops->name[ops->count], sizeof(ops->name[0]), "%s", ns.sym[i].name + 5);
		if (call_plan_add(plan, lib, "enter_aclnn", ns.sym[i].name, ns.sym[i].offset,
				  ops->count))
			ret = AGENT_START_FAILED;
		ops->count++;
	}
	if (ret == AGENT_START_FAILED)
		snprintf(err, errlen, "out of memory");
	free(ns.sym);
	return ret;
}

static int acl_plan(const struct mapped_lib *libs, int nlibs, struct call_plan *plan, char *err,
		    size_t errlen)
{
	struct elf_sym_query q[ACL_FUNCTION_COUNT];
	int at[ACL_FUNCTION_COUNT];	/* the library each function is hooked in, -1: none */
	long off[ACL_FUNCTION_COUNT];
	struct nn_ops *ops;
	int l, ret, found = 0;
	size_t i;

	ops = calloc(1, sizeof(*ops));
	if (!ops)
		goto oom;
	plan->data = ops;
	for (i = 0; i < ACL_FUNCTION_COUNT; i++)
		at[i] = -1;
	for (l = 0; l < nlibs; l++) {
		for (i = 0; i < ACL_FUNCTION_COUNT; i++)
			q[i].name = acl_functions[i].name;
		ret = elf_resolve_functions(libs[l].path, q, ACL_FUNCTION_COUNT, err, errlen);
		if (ret)
			return ret;
		for (i = 0; i < ACL_FUNCTION_COUNT; i++) {
			if (q[i].offset < 0)
				continue;
			/* Where both define a runtime function, libacl_rt.so's is the one called. */
			if (at[i] >= 0 &&
			    !(is_acl_rt(&libs[l]) && acl_functions[i].lib == ACL_LIB_acl_rt))
				continue;
			at[i] = l;
			off[i] = q[i].offset;
		}
		ret = plan_nn_ops(plan, &libs[l], ops, err, errlen);
		if (ret)
			return ret;
	}
	for (i = 0; i < ACL_FUNCTION_COUNT; i++) {
		if (at[i] < 0)
			continue;
		if (call_plan_add_entry(plan, &libs[at[i]], acl_functions[i].name, off[i],
					acl_functions[i].id))
			goto oom;
		found++;
	}
	if (!found && !ops->count) {
		snprintf(err, errlen, "none of the mapped CANN libraries (%s%s) defines an "
			 "AscendCL, aclnn or HCCL function the probe hooks", libs[0].target_path,
			 nlibs > 1 ? ", ..." : "");
		return AGENT_INVALID_CONFIG;
	}
	return 0;
oom:
	snprintf(err, errlen, "out of memory");
	return AGENT_START_FAILED;
}

CALL_PROBE_OPEN(acl)

static int acl_prepare(struct call_skel *cs, const struct call_plan *plan)
{
	const struct nn_ops *ops = plan->data;
	struct acl_bpf *sk = cs->skel;

	return bpf_map__set_max_entries(sk->maps.nn_ops, ops->count ? ops->count : 1) ?
		AGENT_START_FAILED : 0;
}

static int acl_loaded(struct call_skel *cs, const struct call_plan *plan, char *err,
		      size_t errlen)
{
	const struct nn_ops *ops = plan->data;
	struct acl_bpf *sk = cs->skel;
	int fd = bpf_map__fd(sk->maps.nn_ops);

	for (__u32 k = 0; k < (__u32)ops->count; k++) {
		if (bpf_map_update_elem(fd, &k, ops->name[k], BPF_ANY)) {
			snprintf(err, errlen, "failed to store the aclnn op names: %s",
				 strerror(errno));
			return AGENT_START_FAILED;
		}
	}
	return 0;
}

static bool acl_incomplete(void *event)
{
	struct acl_event *e = event;

	switch (e->h.func >> 8) {
	case ACL_ARGS_GET_DEVICE:
		return false;	/* never an event */
	case ACL_ARGS_MALLOC:
	case ACL_ARGS_MALLOC_HOST:
	case ACL_ARGS_CREATE_STREAM:
	case ACL_ARGS_MDL_LOAD_FILE:
		e->ptr2 = 0;	/* an out-pointer, not an argument */
		break;
	case ACL_ARGS_HCCL_INIT_ROOT:
		e->handle = 0;
	}
	return true;
}

const struct call_probe acl_probe = {
	.type = "ACL",
	.monitor_type = XPU_MONITOR_ACL,
	.libraries = "CANN (AscendCL, aclnn or HCCL)",
	.library_match = acl_library_match,
	.plan = acl_plan,
	.open = acl_open,
	.prepare = acl_prepare,
	.loaded = acl_loaded,
	.slots = CALL_SLOT_LAYOUT(acl, ACL, acl_incomplete),
};
