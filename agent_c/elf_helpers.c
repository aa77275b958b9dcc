// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <fcntl.h>
#include <gelf.h>
#include <libelf.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "elf_helpers.h"
#include "exit_codes.h"

/* Virtual address to file offset through the PT_LOAD segment that holds it. */
static long vaddr_to_offset(Elf *elf, GElf_Addr addr)
{
	size_t n, i;
	GElf_Phdr ph;

	if (elf_getphdrnum(elf, &n))
		return -1;
	for (i = 0; i < n; i++) {
		if (!gelf_getphdr(elf, i, &ph) || ph.p_type != PT_LOAD)
			continue;
		if (addr >= ph.p_vaddr && addr < ph.p_vaddr + ph.p_memsz)
			return (long)(addr - ph.p_vaddr + ph.p_offset);
	}
	return -1;
}

static void scan_symbols(Elf *elf, Elf_Scn *scn, GElf_Shdr *sh, struct elf_sym_query *q, size_t n)
{
	Elf_Data *data = elf_getdata(scn, NULL);
	size_t count, i, j;
	GElf_Sym sym;
	const char *name;

	if (!data || !sh->sh_entsize)
		return;
	count = sh->sh_size / sh->sh_entsize;
	for (i = 0; i < count; i++) {
		if (!gelf_getsym(data, i, &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
		    sym.st_shndx == SHN_UNDEF || !sym.st_value)
			continue;
		name = elf_strptr(elf, sh->sh_link, sym.st_name);
		if (!name)
			continue;
		for (j = 0; j < n; j++) {
			if (q[j].offset < 0 && !strcmp(name, q[j].name))
				q[j].offset = vaddr_to_offset(elf, sym.st_value);
		}
	}
}

static void elf_close(int fd, Elf *elf)
{
	if (elf)
		elf_end(elf);
	close(fd);
}

/* Opens path as an x86-64 ELF file. Returns 0 (*fd, *elf set) or an exit code. */
static int elf_open(const char *path, int *fd, Elf **elf, char *err, size_t errlen)
{
	GElf_Ehdr eh;
	int ret;

	*elf = NULL;
	if (elf_version(EV_CURRENT) == EV_NONE) {
		snprintf(err, errlen, "libelf: %s", elf_errmsg(-1));
		return AGENT_START_FAILED;
	}
	*fd = open(path, O_RDONLY | O_CLOEXEC);
	if (*fd < 0) {
		ret = errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(ret));
		return agent_exit_for_errno(ret);
	}
	*elf = elf_begin(*fd, ELF_C_READ, NULL);
	if (!*elf || elf_kind(*elf) != ELF_K_ELF || !gelf_getehdr(*elf, &eh)) {
		snprintf(err, errlen, "%s is not an ELF file", path);
		ret = AGENT_INVALID_CONFIG;
	} else if (eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_machine != EM_X86_64 ||
		   (eh.e_type != ET_DYN && eh.e_type != ET_EXEC)) {
		snprintf(err, errlen, "%s is not an x86-64 executable or shared library", path);
		ret = AGENT_INVALID_CONFIG;
	} else {
		return 0;
	}
	elf_close(*fd, *elf);
	return ret;
}

int elf_resolve_functions(const char *path, struct elf_sym_query *q, size_t n,
			  char *err, size_t errlen)
{
	int fd, ret, pass;
	Elf_Scn *scn;
	GElf_Shdr sh;
	Elf *elf;
	size_t j;

	for (j = 0; j < n; j++)
		q[j].offset = -1;
	ret = elf_open(path, &fd, &elf, err, errlen);
	if (ret)
		return ret;
	/* Exported symbols first: they are what callers reach through the PLT. */
	for (pass = 0; pass < 2; pass++) {
		for (scn = NULL; (scn = elf_nextscn(elf, scn));) {
			if (!gelf_getshdr(scn, &sh))
				continue;
			if (sh.sh_type == (pass ? SHT_SYMTAB : SHT_DYNSYM))
				scan_symbols(elf, scn, &sh, q, n);
		}
	}
	elf_close(fd, elf);
	return 0;
}

int elf_list_functions(const char *path, const char *prefix, elf_function_fn fn, void *ctx,
		       char *err, size_t errlen)
{
	size_t plen = strlen(prefix), count, i;
	int fd, ret;
	Elf_Data *data;
	const char *name;
	Elf_Scn *scn;
	GElf_Shdr sh;
	GElf_Sym sym;
	Elf *elf;

	ret = elf_open(path, &fd, &elf, err, errlen);
	if (ret)
		return ret;
	for (scn = NULL; !ret && (scn = elf_nextscn(elf, scn));) {
		if (!gelf_getshdr(scn, &sh) || sh.sh_type != SHT_DYNSYM || !sh.sh_entsize)
			continue;
		data = elf_getdata(scn, NULL);
		count = data ? sh.sh_size / sh.sh_entsize : 0;
		for (i = 0; !ret && i < count; i++) {
			if (!gelf_getsym(data, i, &sym) || GELF_ST_TYPE(sym.st_info) != STT_FUNC ||
			    sym.st_shndx == SHN_UNDEF || !sym.st_value)
				continue;
			name = elf_strptr(elf, sh.sh_link, sym.st_name);
			if (name && !strncmp(name, prefix, plen))
				ret = fn(ctx, name, vaddr_to_offset(elf, sym.st_value));
		}
	}
	elf_close(fd, elf);
	return ret;
}
