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

#endif
