/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
#ifndef XPU_ELF_HELPERS_H
#define XPU_ELF_HELPERS_H

#include <stddef.h>

struct elf_sym_query {
	const char *name;	/* in: symbol name, unversioned */
	long offset;		/* out: file offset of the function, -1 if not defined */
};

/*
 * Looks every query up among the defined functions of the ELF file at path
 * (.dynsym, then .symtab) and fills in the file offsets uprobes attach to.
 * Returns 0, or an agent exit code with the reason in err.
 */
int elf_resolve_functions(const char *path, struct elf_sym_query *q, size_t n,
			  char *err, size_t errlen);

/* Called for each exported function; return nonzero to stop (that value is returned). */
typedef int (*elf_function_fn)(void *ctx, const char *name, long offset);

/*
 * Calls fn for every function the ELF file at path exports (.dynsym, defined)
 * whose name starts with prefix. Returns 0, fn's nonzero return, or an agent
 * exit code with the reason in err.
 */
int elf_list_functions(const char *path, const char *prefix, elf_function_fn fn, void *ctx,
		       char *err, size_t errlen);

#endif
