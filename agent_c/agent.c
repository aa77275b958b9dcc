// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * xputrace-agent: one process per monitor. Attaches the CUDA probe to a
 * process (--target-pid) or to a library file system-wide (--target-library),
 * drains the ring buffer into binary batches and sends them to the backend
 * over ZeroMQ or writes them to a capture file. SIGTERM flushes and exits 0.
 */
#include <argp.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include "cuda.h"
#include "pystack.h"	/* before the skeleton: its rodata holds struct py_offsets */
#include "cuda.skel.h"
#include "cuda_probe.h"
#include "agent_env.h"
#include "cuda_slots.h"
#include "pystack_agent.h"
#include "drain_helpers.h"
#include "exit_codes.h"
#include "proc_helpers.h"
#include "release_helpers.h"
#include "sink_helpers.h"
#include "python_monitor.h"
#include "syscall_monitor.h"
#include "uprobe_multi_helpers.h"

#define MAX_LIBS 16
#define MAX_LINKS (2 * MAX_LIBS * 64)	/* two per function per library at most */

static struct agent_env env = {
	.attach_mode = "auto",
	.machine_id = "",
	.proc_root = "/proc",
	.ringbuf_kb = 8192,
	.max_threads = 4096,
	.wakeup_kb = -1,
	.batch_events = 4096,
	.flush_ms = 200,
	.poll_ms = 100,
	.send_hwm = 256,
	.linger_ms = 10000,
	.resend_ms = 1000,
	.sample_hz = 99,
};

enum opt_key {
	OPT_MONITOR_ID = 0x100, OPT_MONITOR_TYPE, OPT_MACHINE_ID, OPT_TARGET_PID,
	OPT_TARGET_LIBRARY, OPT_TARGET_COMM, OPT_ENDPOINT, OPT_OUTPUT, OPT_CURVE_KEYFILE,
	OPT_PROC_ROOT, OPT_ATTACH_MODE, OPT_RINGBUF_KB, OPT_MAX_THREADS, OPT_WAKEUP_KB, OPT_BATCH_EVENTS,
	OPT_FLUSH_MS, OPT_POLL_MS, OPT_SEND_HWM, OPT_LINGER_MS, OPT_RESEND_MS, OPT_SYSCALLS,
	OPT_PY_RUNTIME, OPT_PY_OFFSETS, OPT_SAMPLE_HZ, OPT_PY_BINARY,
};

const char *argp_program_version = "xputrace-agent 0.1";
static const char argp_doc[] =
	"xputrace-agent: trace CUDA runtime and driver calls with eBPF uprobes (CUDA),\n"
	"or a process's system calls through the raw syscall tracepoints (SYSCALL).\n"
	"\n"
	"Exit codes: 0 ok, 1 failed while running, 2 INVALID_CONFIG, 3 TARGET_NOT_FOUND,\n"
	"4 PERMISSION_DENIED, 5 AGENT_START_FAILED.";

static const struct argp_option opts[] = {
	{ "monitor-id", OPT_MONITOR_ID, "ID", 0, "Monitor id (letters, digits, . _ -; up to 39)" },
	{ "monitor-type", OPT_MONITOR_TYPE, "TYPE", 0, "Monitor type: CUDA, SYSCALL or PYTHON" },
	{ "machine-id", OPT_MACHINE_ID, "ID", 0, "Machine id carried in every batch" },
	{ "target-pid", OPT_TARGET_PID, "PID", 0, "Trace every CUDA library mapped in PID" },
	{ "target-library", OPT_TARGET_LIBRARY, "PATH", 0,
	  "Trace this library in every process, now and later" },
	{ "target-comm", OPT_TARGET_COMM, "COMM", 0,
	  "Only tasks with this name (CUDA: library mode)" },
	{ "py-runtime", OPT_PY_RUNTIME, "ADDR", 0,
	  "CUDA: attribute calls to Python stacks; PYTHON: sample them. &_PyRuntime in "
	  "--target-pid (0x...)" },
	{ "py-offsets", OPT_PY_OFFSETS, "LIST", 0,
	  "That CPython's structure offsets, name=value,... (with --py-runtime)" },
	{ "sample-hz", OPT_SAMPLE_HZ, "HZ", 0, "PYTHON: samples per second per CPU (99)" },
	{ "py-binary", OPT_PY_BINARY, "PATH", 0,
	  "PYTHON: the interpreter file (as the target sees it) whose gc USDT probes to attach" },
	{ "syscalls", OPT_SYSCALLS, "LIST", 0,
	  "SYSCALL: only these syscalls (comma-separated names, e.g. read,write); default all" },
	{ "backend-zmq-endpoint", OPT_ENDPOINT, "URL", 0, "Send batches here (tcp:// or ipc://)" },
	{ "output", OPT_OUTPUT, "FILE", 0, "Write batches to a capture file instead" },
	{ "curve-keyfile", OPT_CURVE_KEYFILE, "FILE", 0,
	  "CURVE keys: server_public_key=, public_key=, secret_key= (Z85)" },
	{ "proc-root", OPT_PROC_ROOT, "DIR", 0, "procfs mount (default /proc)" },
	{ "attach-mode", OPT_ATTACH_MODE, "MODE", 0,
	  "multi (one uprobe_multi link per library, Linux 6.6+), perf (a link per probe), "
	  "or auto (multi where the kernel has it)" },
	{ "ringbuf-kb", OPT_RINGBUF_KB, "KB", 0, "Ring buffer size, a power of two >= 4 (8192)" },
	{ "wakeup-kb", OPT_WAKEUP_KB, "KB", 0,
	  "Wake the agent once this much is buffered (ring/8); above the ring: poll only" },
	{ "max-threads", OPT_MAX_THREADS, "N", 0,
	  "In-flight slots, a power of two (4096); threads sharing one lose calls, counted" },
	{ "batch-events", OPT_BATCH_EVENTS, "N", 0, "Events per batch (4096)" },
	{ "flush-ms", OPT_FLUSH_MS, "MS", 0, "Send a partial batch after this long (200)" },
	{ "poll-ms", OPT_POLL_MS, "MS", 0, "Ring buffer poll timeout (100)" },
	{ "send-hwm", OPT_SEND_HWM, "N", 0,
	  "Batches held unacknowledged before new ones are dropped (256)" },
	{ "linger-ms", OPT_LINGER_MS, "MS", 0,
	  "How long exit waits for the backend to acknowledge everything (10000)" },
	{ "resend-ms", OPT_RESEND_MS, "MS", 0, "Resend a batch unacknowledged this long (1000)" },
	{ "verbose", 'v', NULL, 0, "Verbose libbpf output" },
	{},
};

static long parse_long(const char *flag, const char *arg, long min, long max, struct argp_state *st)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v < min || v > max)
		argp_error(st, "invalid --%s '%s': expected an integer in [%ld, %ld]", flag, arg,
			   min, max);
	return v;
}

static bool valid_id(const char *s, size_t max)
{
	size_t n = strlen(s);

	if (!n || n > max)
		return false;
	for (; *s; s++) {
		if (!(*s >= 'a' && *s <= 'z') && !(*s >= 'A' && *s <= 'Z') &&
		    !(*s >= '0' && *s <= '9') && *s != '-' && *s != '_' && *s != '.')
			return false;
	}
	return true;
}

static error_t parse_arg(int key, char *arg, struct argp_state *st)
{
	switch (key) {
	case OPT_MONITOR_ID:
		if (!valid_id(arg, XPU_MONITOR_ID_LEN - 1))
			argp_error(st, "invalid --monitor-id '%s': 1-39 of [A-Za-z0-9._-]", arg);
		env.monitor_id = arg;
		break;
	case OPT_MONITOR_TYPE:
		env.monitor_type = arg;
		break;
	case OPT_MACHINE_ID:
		if (!valid_id(arg, XPU_MACHINE_ID_LEN - 1))
			argp_error(st, "invalid --machine-id '%s': 1-71 of [A-Za-z0-9._-]", arg);
		env.machine_id = arg;
		break;
	case OPT_TARGET_PID:
		env.target_pid = parse_long("target-pid", arg, 1, INT_MAX, st);
		break;
	case OPT_TARGET_LIBRARY:
		if (arg[0] != '/')
			argp_error(st, "invalid --target-library '%s': must be an absolute path", arg);
		env.target_library = arg;
		break;
	case OPT_TARGET_COMM:
		if (!arg[0] || strlen(arg) >= XPU_COMM_LEN)
			argp_error(st, "invalid --target-comm '%s': 1-15 characters", arg);
		env.target_comm = arg;
		break;
	case OPT_ENDPOINT:
		if (strncmp(arg, "tcp://", 6) && strncmp(arg, "ipc://", 6))
			argp_error(st, "invalid --backend-zmq-endpoint '%s': tcp:// or ipc://", arg);
		env.endpoint = arg;
		break;
	case OPT_OUTPUT: env.output = arg; break;
	case OPT_CURVE_KEYFILE: env.curve_keyfile = arg; break;
	case OPT_PROC_ROOT: env.proc_root = arg; break;
	case OPT_ATTACH_MODE:
		if (strcmp(arg, "auto") && strcmp(arg, "multi") && strcmp(arg, "perf"))
			argp_error(st, "invalid --attach-mode '%s': auto, multi or perf", arg);
		env.attach_mode = arg;
		break;
	case OPT_RINGBUF_KB:
		env.ringbuf_kb = parse_long("ringbuf-kb", arg, 4, 1 << 20, st);
		if (env.ringbuf_kb & (env.ringbuf_kb - 1))
			argp_error(st, "invalid --ringbuf-kb '%s': must be a power of two", arg);
		break;
	case OPT_MAX_THREADS:
		env.max_threads = parse_long("max-threads", arg, 1, 1 << 20, st);
		if (env.max_threads & (env.max_threads - 1))
			argp_error(st, "invalid --max-threads '%s': must be a power of two", arg);
		break;
	case OPT_WAKEUP_KB: env.wakeup_kb = parse_long("wakeup-kb", arg, 0, 1 << 21, st); break;
	case OPT_BATCH_EVENTS:
		env.batch_events = parse_long("batch-events", arg, 1, 1 << 20, st);
		break;
	case OPT_FLUSH_MS: env.flush_ms = parse_long("flush-ms", arg, 1, 600000, st); break;
	case OPT_POLL_MS: env.poll_ms = parse_long("poll-ms", arg, 1, 60000, st); break;
	case OPT_SEND_HWM: env.send_hwm = parse_long("send-hwm", arg, 1, 1 << 20, st); break;
	case OPT_LINGER_MS: env.linger_ms = parse_long("linger-ms", arg, 0, 600000, st); break;
	case OPT_RESEND_MS: env.resend_ms = parse_long("resend-ms", arg, 10, 600000, st); break;
	case OPT_SYSCALLS: env.syscalls = arg; break;
	case OPT_PY_RUNTIME: {
		char *end;

		errno = 0;
		env.py_runtime = strtoull(arg, &end, 0);
		if (errno || end == arg || *end || !env.py_runtime)
			argp_error(st, "invalid --py-runtime '%s': an address", arg);
		break;
	}
	case OPT_PY_OFFSETS: env.py_offsets = arg; break;
	case OPT_SAMPLE_HZ: env.sample_hz = parse_long("sample-hz", arg, 1, 10000, st); break;
	case OPT_PY_BINARY:
		if (arg[0] != '/' || strstr(arg, "/../") || strlen(arg) > 1024)
			argp_error(st, "invalid --py-binary '%s': an absolute path", arg);
		env.py_binary = arg;
		break;
	case 'v': env.verbose = true; break;
	case ARGP_KEY_ARG:
		argp_error(st, "unexpected argument '%s'", arg);
		break;
	case ARGP_KEY_END:
		if (!env.monitor_id)
			argp_error(st, "missing --monitor-id");
		if (!env.monitor_type)
			argp_error(st, "missing --monitor-type");
		if (strcmp(env.monitor_type, "CUDA") && strcmp(env.monitor_type, "SYSCALL") &&
		    strcmp(env.monitor_type, "PYTHON"))
			argp_error(st, "invalid --monitor-type '%s': CUDA, SYSCALL or PYTHON",
				   env.monitor_type);
		if (!!env.py_runtime != !!env.py_offsets)
			argp_error(st, "--py-runtime and --py-offsets go together");
		if (!strcmp(env.monitor_type, "PYTHON")) {
			struct py_code_offsets code;
			struct py_offsets walk;
			char why[160];

			if (!env.target_pid || env.target_library || env.target_comm)
				argp_error(st, "a PYTHON monitor samples one process: --target-pid");
			if (!env.py_runtime)
				argp_error(st, "a PYTHON monitor needs --py-runtime and --py-offsets");
			if (py_parse_offsets(env.py_offsets, &walk, &code, why, sizeof(why)))
				argp_error(st, "invalid --py-offsets: %s", why);
		} else if (!strcmp(env.monitor_type, "SYSCALL")) {
			char why[128];

			if (env.target_library)
				argp_error(st, "--target-library is for CUDA monitors");
			if (env.py_runtime)
				argp_error(st, "--py-runtime is for CUDA and PYTHON monitors");
			if (!env.target_pid && !env.target_comm)
				argp_error(st, "missing --target-pid or --target-comm");
			if (syscall_allow_list(env.syscalls, NULL, why, sizeof(why)) < 0)
				argp_error(st, "invalid --syscalls: %s", why);
		} else {
			struct py_code_offsets code;
			struct py_offsets walk;
			char why[160];

			if (env.syscalls)
				argp_error(st, "--syscalls is for SYSCALL monitors");
			if (env.py_runtime && !env.target_pid)
				argp_error(st, "--py-runtime needs --target-pid");
			if (env.py_offsets && py_parse_offsets(env.py_offsets, &walk, &code, why,
							       sizeof(why)))
				argp_error(st, "invalid --py-offsets: %s", why);
			if (!env.target_pid && !env.target_library)
				argp_error(st, "missing --target-pid or --target-library");
			if (env.target_comm && !env.target_library)
				argp_error(st, "--target-comm needs --target-library");
		}
		if (!!env.endpoint == !!env.output)
			argp_error(st, "give exactly one of --backend-zmq-endpoint and --output");
		if (env.curve_keyfile && !env.endpoint)
			argp_error(st, "--curve-keyfile needs --backend-zmq-endpoint");
		break;
	default:
		return ARGP_ERR_UNKNOWN;
	}
	return 0;
}

static int libbpf_print_fn(enum libbpf_print_level level, const char *fmt, va_list args)
{
	if (level == LIBBPF_DEBUG && !env.verbose)
		return 0;
	if (level == LIBBPF_WARN && !env.verbose)
		return 0;	/* failures are reported by us, once, with context */
	return vfprintf(stderr, fmt, args);
}

static volatile sig_atomic_t exiting;

static void sig_handler(int sig)
{
	exiting = 1;
}

struct agent {
	struct cuda_bpf *skel;
	struct sink *sink;
	struct drain drain;
	bool multi;			/* uprobe_multi links, see attach_multi_links() */
	__u64 unacknowledged;		/* events the backend never acknowledged */
	struct bpf_link *links[MAX_LINKS];	/* otherwise one perf link per probe */
	int nlinks;
	int multi_fds[MAX_LINKS];
	int nmulti;
	struct cuda_slots slots;
	__u64 taken;			/* calls taken from idle threads' slots while running */
	__u64 incomplete;
	struct py_resolver py;		/* with --py-runtime */
	bool py_on;
};

static __u64 now_ns(clockid_t clk)
{
	struct timespec ts;

	clock_gettime(clk, &ts);
	return ts.tv_sec * 1000000000ULL + ts.tv_nsec;
}

/* The entry program of the function named name (see CUDA_ENTRY in cuda.bpf.c). */
static struct bpf_program *entry_program(struct agent *a, const char *name, char *err,
					 size_t errlen)
{
	struct bpf_program *p;
	char prog[64];

	snprintf(prog, sizeof(prog), "enter_%s", name);
	p = bpf_object__find_program_by_name(a->skel->obj, prog);
	if (!p)
		snprintf(err, errlen, "the BPF object has no entry program %s", prog);
	return p;
}

static int attach_error(char *err, size_t errlen, int e, const char *what, const char *path)
{
	snprintf(err, errlen, "failed to attach %s in %s: %s", what, path, strerror(e));
	return -(e == EPERM || e == EACCES ? AGENT_PERMISSION_DENIED : AGENT_START_FAILED);
}

static int attach_perf_links(struct agent *a, const char *path, pid_t pid, const char **names,
			     const unsigned long *offsets, const __u64 *cookies, int n,
			     char *err, size_t errlen)
{
	LIBBPF_OPTS(bpf_uprobe_opts, uo);
	struct bpf_program *prog;
	int i, r;

	for (i = 0; i < n; i++) {
		for (r = 0; r < 2; r++) {
			if (a->nlinks == MAX_LINKS) {
				snprintf(err, errlen, "too many probes (more than %d)", MAX_LINKS);
				return -AGENT_START_FAILED;
			}
			prog = r ? a->skel->progs.cuda_return : entry_program(a, names[i], err, errlen);
			if (!prog)
				return -AGENT_START_FAILED;
			uo.bpf_cookie = cookies[i];
			uo.retprobe = r;
			a->links[a->nlinks] = bpf_program__attach_uprobe_opts(
				prog, pid ? pid : -1, path, offsets[i], &uo);
			if (!a->links[a->nlinks])
				return attach_error(err, errlen, errno, names[i], path);
			a->nlinks++;
		}
	}
	return 0;
}

/* One link per entry program, one for the return program on every offset. */
static int attach_multi_links(struct agent *a, const char *path, pid_t pid, const char **names,
			      const unsigned long *offsets, const __u64 *cookies, int n,
			      char *err, size_t errlen)
{
	struct bpf_program *prog;
	int i, fd;

	if (a->nmulti + n + 1 > MAX_LINKS) {
		snprintf(err, errlen, "too many probes (more than %d)", MAX_LINKS);
		return -AGENT_START_FAILED;
	}
	for (i = 0; i < n; i++) {
		prog = entry_program(a, names[i], err, errlen);
		if (!prog)
			return -AGENT_START_FAILED;
		fd = uprobe_multi_attach(prog, path, pid, &offsets[i], &cookies[i], 1, false);
		if (fd < 0)
			return attach_error(err, errlen, -fd, names[i], path);
		a->multi_fds[a->nmulti++] = fd;
	}
	fd = uprobe_multi_attach(a->skel->progs.cuda_return, path, pid, offsets, cookies, n, true);
	if (fd < 0)
		return attach_error(err, errlen, -fd, "the return probes", path);
	a->multi_fds[a->nmulti++] = fd;
	return 0;
}

/* Returns the number of functions hooked in path, or minus an exit code. */
static int attach_library(struct agent *a, const char *path, pid_t pid, char *err, size_t errlen)
{
	struct elf_sym_query q[cuda_function_count];
	unsigned long offsets[cuda_function_count];
	__u64 cookies[cuda_function_count];
	const char *names[cuda_function_count];
	int found, i, j, n = 0, ret;
	bool dup;

	found = cuda_resolve_library(path, q, err, errlen);
	if (found < 0)
		return found;
	for (i = 0; i < (int)cuda_function_count; i++) {
		if (q[i].offset < 0)
			continue;
		/* An alias at an address already hooked would report each call twice. */
		for (dup = false, j = 0; j < i; j++)
			dup |= q[j].offset == q[i].offset;
		if (dup)
			continue;
		offsets[n] = q[i].offset;
		cookies[n] = cuda_functions[i].id;
		names[n++] = cuda_functions[i].name;
	}
	if (a->multi)
		ret = attach_multi_links(a, path, pid, names, offsets, cookies, n, err, errlen);
	else
		ret = attach_perf_links(a, path, pid, names, offsets, cookies, n, err, errlen);
	return ret ? ret : n;
}

static void destroy_link(void *link)
{
	bpf_link__destroy(link);
}

static void close_fd(void *fd)
{
	close((int)(intptr_t)fd);
}

static void detach_all(struct agent *a)
{
	void *fds[MAX_LINKS];

	for (int i = 0; i < a->nmulti; i++)
		fds[i] = (void *)(intptr_t)a->multi_fds[i];
	release_parallel((void **)a->links, a->nlinks, destroy_link);
	release_parallel(fds, a->nmulti, close_fd);
	a->nlinks = a->nmulti = 0;
}

/* Fills libs with what to attach to; returns the count or minus an exit code. */
static int find_libraries(struct mapped_lib *libs, char *err, size_t errlen)
{
	int n;

	if (env.target_library && !env.target_pid) {
		snprintf(libs[0].path, sizeof(libs[0].path), "%s", env.target_library);
		snprintf(libs[0].target_path, sizeof(libs[0].target_path), "%s", env.target_library);
		return 1;
	}
	n = proc_find_mapped_libs(env.proc_root, env.target_pid, cuda_library_match, libs,
				  MAX_LIBS, err, errlen);
	if (n == 0)
		snprintf(err, errlen, "process %d has no CUDA runtime or driver library mapped",
			 env.target_pid);
	if (n <= 0 || !env.target_library)
		return n ? n : -AGENT_TARGET_NOT_FOUND;
	/* --target-pid with --target-library: that file, if the process maps it */
	for (int i = 0; i < n; i++) {
		if (!strcmp(libs[i].target_path, env.target_library)) {
			libs[0] = libs[i];
			return 1;
		}
	}
	snprintf(err, errlen, "process %d does not map %s", env.target_pid, env.target_library);
	return -AGENT_TARGET_NOT_FOUND;
}

static void print_ready(struct mapped_lib *libs, int nlibs, int probes)
{
	printf("{\"ready\": true, \"pid\": %d, \"probes\": %d, \"libraries\": [", getpid(), probes);
	for (int i = 0; i < nlibs; i++)
		printf("%s\"%s\"", i ? ", " : "", libs[i].target_path);
	printf("]}\n");
	fflush(stdout);
}

int main(int argc, char **argv)
{
	static const struct argp argp = { .options = opts, .parser = parse_arg, .doc = argp_doc };
	static struct mapped_lib libs[MAX_LIBS];
	struct py_code_offsets py_code;
	struct sink_opts so = {};
	struct agent a = {};
	char err[PATH_MAX + 256];
	int nlibs, i, n, probes = 0, ret;
	__u64 ring_bytes, last_flush, now;

	argp_err_exit_status = AGENT_INVALID_CONFIG;
	if (argp_parse(&argp, argc, argv, 0, NULL, NULL))
		return AGENT_INVALID_CONFIG;
	libbpf_set_print(libbpf_print_fn);
	signal(SIGINT, sig_handler);
	signal(SIGTERM, sig_handler);
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(env.monitor_type, "SYSCALL"))
		return syscall_main(&env, &exiting);
	if (!strcmp(env.monitor_type, "PYTHON"))
		return python_main(&env, &exiting);

	nlibs = find_libraries(libs, err, sizeof(err));
	if (nlibs < 0)
		return agent_fail(-nlibs, "%s", err);
	/* Check every library before loading anything into the kernel. */
	for (i = 0; i < nlibs; i++) {
		struct elf_sym_query q[cuda_function_count];

		n = cuda_resolve_library(libs[i].path, q, err, sizeof(err));
		if (n < 0)
			return agent_fail(-n, "%s", err);
	}

	a.skel = cuda_bpf__open();
	if (!a.skel)
		return agent_fail(AGENT_START_FAILED, "failed to open BPF skeleton: %s",
				  strerror(errno));
	ring_bytes = (__u64)env.ringbuf_kb * 1024;
	a.skel->rodata->targ_tgid = env.target_pid;
	a.skel->rodata->wakeup_bytes = env.wakeup_kb < 0 ? ring_bytes / 8
							: (__u64)env.wakeup_kb * 1024;
	if (env.target_comm) {
		a.skel->rodata->filter_comm = 1;
		strncpy((char *)a.skel->rodata->targ_comm, env.target_comm, XPU_COMM_LEN - 1);
	}
	a.multi = strcmp(env.attach_mode, "perf") && uprobe_multi_supported();
	if (!a.multi && !strcmp(env.attach_mode, "multi")) {
		ret = agent_fail(AGENT_START_FAILED, "this kernel has no uprobe_multi links "
				 "(Linux 6.6+); use --attach-mode perf");
		goto cleanup;
	}
	if (a.multi) {
		struct bpf_program *prog;

		bpf_object__for_each_program(prog, a.skel->obj)
			bpf_program__set_expected_attach_type(prog,
				(enum bpf_attach_type)XPU_BPF_TRACE_UPROBE_MULTI);
	}
	bpf_map__set_max_entries(a.skel->maps.events, ring_bytes);
	bpf_map__set_max_entries(a.skel->maps.inflight, env.max_threads);
	a.skel->rodata->slot_mask = env.max_threads - 1;
	a.skel->rodata->hold_ns = (__u64)env.flush_ms * 1000000;
	if (env.py_runtime) {
		py_parse_offsets(env.py_offsets, (struct py_offsets *)&a.skel->rodata->py, &py_code,
				 err, sizeof(err));	/* checked when the flags were parsed */
		a.skel->rodata->py_runtime = env.py_runtime;
	}
	ret = cuda_bpf__load(a.skel);
	if (ret) {
		/* As root, EACCES is the verifier refusing the program, not a permission. */
		if (ret == -EPERM || (ret == -EACCES && geteuid() != 0))
			ret = agent_fail(AGENT_PERMISSION_DENIED, "failed to load BPF object: %s "
					 "(needs root, or CAP_BPF and CAP_PERFMON)", strerror(-ret));
		else
			ret = agent_fail(AGENT_START_FAILED, "failed to load BPF object: %s%s",
					 strerror(-ret), ret == -EACCES ? " (verifier)" : "");
		goto cleanup;
	}
	if (env.py_runtime) {
		ret = py_resolver_init(&a.py, bpf_map__fd(a.skel->maps.py_stacks), &py_code,
				       env.proc_root, XPU_MONITOR_CUDA, env.monitor_id,
				       env.machine_id);
		if (ret) {
			ret = agent_fail(AGENT_START_FAILED, "out of memory");
			goto cleanup;
		}
		a.py_on = true;
	}
	for (i = 0; i < nlibs; i++) {
		n = attach_library(&a, libs[i].path, env.target_pid, err, sizeof(err));
		if (n < 0) {
			ret = agent_fail(-n, "%s", err);
			goto cleanup;
		}
		probes += n;
	}
	so.output_path = env.output;
	so.endpoint = env.endpoint;
	so.curve_keyfile = env.curve_keyfile;
	so.send_hwm = env.send_hwm;
	so.linger_ms = env.linger_ms;
	so.resend_ms = env.resend_ms;
	ret = sink_open(&a.sink, &so, err, sizeof(err));
	if (ret) {
		ret = agent_fail(ret, "%s", err);
		goto cleanup;
	}
	ret = drain_init(&a.drain, bpf_map__fd(a.skel->maps.events),
			 bpf_map__fd(a.skel->maps.drops), a.sink, XPU_MONITOR_CUDA,
			 sizeof(struct cuda_event), env.batch_events, env.monitor_id,
			 env.machine_id);
	if (ret) {
		ret = agent_fail(AGENT_START_FAILED, "failed to create ring buffer: %s",
				 strerror(-ret));
		goto cleanup;
	}
	ret = cuda_slots_map(&a.slots, bpf_map__fd(a.skel->maps.inflight), env.max_threads);
	if (ret) {
		ret = agent_fail(AGENT_START_FAILED, "failed to map per-thread slots: %s",
				 strerror(-ret));
		goto cleanup;
	}
	print_ready(libs, nlibs, probes);

	last_flush = now_ns(CLOCK_MONOTONIC);
	ret = AGENT_OK;
	while (!exiting && !a.drain.err) {
		n = drain_poll(&a.drain, env.poll_ms);
		if (n < 0) {
			fprintf(stderr, "xputrace-agent: failed to poll ring buffer: %s\n",
				strerror(-n));
			ret = AGENT_RUNTIME_ERROR;
			break;
		}
		sink_service(a.sink);
		now = now_ns(CLOCK_MONOTONIC);
		if (now - last_flush >= (__u64)env.flush_ms * 1000000) {
			/* What idle threads left behind, then everything batched. */
			/*
			 * What threads have held for half the flush interval: an
			 * idle thread's calls arrive within one interval, and an
			 * active thread is not raced for what it flushes itself
			 * (at flush_ms) for long.
			 */
			a.taken += cuda_slots_take_done(&a.slots, &a.drain,
							now - (__u64)env.flush_ms * 500000);
			a.drain.missed_entries = prog_recursion_misses(a.skel->obj, "enter_");
			if (a.py_on && py_resolver_flush(&a.py, &a.drain.batch, a.sink) && !a.drain.err)
				a.drain.err = -EIO;
			drain_flush(&a.drain, 0);
			last_flush = now_ns(CLOCK_MONOTONIC);
			if (env.target_pid && !proc_alive(env.proc_root, env.target_pid)) {
				fprintf(stderr, "xputrace-agent: target %d exited\n", env.target_pid);
				break;
			}
		}
	}
	if (a.drain.err) {
		fprintf(stderr, "xputrace-agent: failed to send batch: %s\n",
			strerror(-a.drain.err));
		ret = AGENT_RUNTIME_ERROR;
	}

	/* Stop new events, take what the kernel holds, then the calls still in flight. */
	detach_all(&a);
	drain_consume(&a.drain);
	cuda_slots_take_done(&a.slots, &a.drain, ~0ULL);
	a.incomplete = cuda_slots_take_incomplete(&a.slots, &a.drain, now_ns(CLOCK_MONOTONIC));
	a.drain.missed_entries = prog_recursion_misses(a.skel->obj, "enter_");
	if (a.py_on && py_resolver_flush(&a.py, &a.drain.batch, a.sink) && ret == AGENT_OK)
		ret = AGENT_RUNTIME_ERROR;
	if (drain_flush(&a.drain, XPU_BATCH_FINAL) && ret == AGENT_OK)
		ret = AGENT_RUNTIME_ERROR;
	a.unacknowledged = sink_finish(a.sink);
	drain_print_stats(&a.drain, a.sink, a.unacknowledged, a.incomplete, a.taken);
	if (a.py_on)
		py_resolver_print_stats(&a.py, a.skel->bss->py_unsaved);

cleanup:
	detach_all(&a);
	cuda_slots_unmap(&a.slots);
	if (a.py_on)
		py_resolver_free(&a.py);
	drain_free(&a.drain);
	sink_close(a.sink);
	cuda_bpf__destroy(a.skel);
	return ret;
}
