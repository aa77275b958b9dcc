// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
#include <errno.h>
#include <string.h>
#include <sys/syscall.h>	/* not <syscall.h>: xpucore/include/syscall.h is the SYSCALL probe's */
#include <unistd.h>
#include <linux/bpf.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "uprobe_multi_helpers.h"

#define XPU_BPF_F_UPROBE_MULTI_RETURN 1

/* union bpf_attr's link_create member as of Linux 6.6 (struct uprobe_multi). */
struct link_create_uprobe_multi {
	__u32 prog_fd;
	__u32 target_fd;
	__u32 attach_type;
	__u32 flags;
	__u64 path;
	__u64 offsets;
	__u64 ref_ctr_offsets;
	__u64 cookies;
	__u32 cnt;
	__u32 multi_flags;
	__u32 pid;
	__u32 pad;
};

static int link_create(int prog_fd, const char *path, pid_t pid, const unsigned long *offsets,
		       const __u64 *cookies, size_t cnt, bool retprobe)
{
	struct link_create_uprobe_multi attr;
	int fd;

	memset(&attr, 0, sizeof(attr));
	attr.prog_fd = prog_fd;
	attr.attach_type = XPU_BPF_TRACE_UPROBE_MULTI;
	attr.path = (unsigned long)path;
	attr.offsets = (unsigned long)offsets;
	attr.cookies = (unsigned long)cookies;
	attr.cnt = cnt;
	attr.multi_flags = retprobe ? XPU_BPF_F_UPROBE_MULTI_RETURN : 0;
	attr.pid = pid;
	fd = syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(attr));
	return fd < 0 ? -errno : fd;
}

int uprobe_multi_attach(const struct bpf_program *prog, const char *path, pid_t pid,
			const unsigned long *offsets, const __u64 *cookies, size_t cnt,
			bool retprobe)
{
	return link_create(bpf_program__fd(prog), path, pid, offsets, cookies, cnt, retprobe);
}

bool uprobe_multi_supported(void)
{
	struct bpf_insn insns[] = {
		{ .code = BPF_ALU64 | BPF_MOV | BPF_K, .dst_reg = BPF_REG_0, .imm = 0 },
		{ .code = BPF_JMP | BPF_EXIT },
	};
	LIBBPF_OPTS(bpf_prog_load_opts, opts,
		    .expected_attach_type = (enum bpf_attach_type)XPU_BPF_TRACE_UPROBE_MULTI);
	unsigned long offset = 0;
	int prog, link;
	bool ok;

	prog = bpf_prog_load(BPF_PROG_TYPE_KPROBE, NULL, "GPL", insns, 2, &opts);
	if (prog < 0)
		return false;
	/* A bad path with a real link type fails with EBADF or ENOENT, not EINVAL. */
	link = link_create(prog, "/", 0, &offset, NULL, 1, false);
	ok = link != -EINVAL;
	if (link >= 0)
		close(link);
	close(prog);
	return ok;
}
