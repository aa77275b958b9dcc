// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * xputrace-agent: one process per monitor. Attaches the CUDA or ACL probe to
 * a process (--target-pid) or to a library file system-wide (--target-library),
 * or traces a process's system calls (SYSCALL) or samples its Python stacks (PYTHON),
 * drains the ring buffer into binary batches and sends them to the backend
 * over ZeroMQ or writes them to a capture file. SIGTERM flushes and exits 0.
 */
#include <argp.h>
#include <stdarg.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <bpf/libbpf.h>
#include "agent_env.h"
#include "call_monitor.h"
#include "exit_codes.h"
#include "pystack_agent.h"
#include "python_monitor.h"
#include "python_calls.h"
#include "syscall_hub.h"
#include "syscall_monitor.h"

static const struct agent_env defaults = {
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

static struct agent_env env;

/* The library-call probes (call_monitor.c), by --monitor-type. */
static const struct call_probe *const call_probes[] = { &cuda_probe, &acl_probe };

static const struct call_probe *call_probe_of(const char *monitor_type)
{
	for (size_t i = 0; i < sizeof(call_probes) / sizeof(call_probes[0]); i++)
		if (!strcmp(call_probes[i]->type, monitor_type))
			return call_probes[i];
	return NULL;
}

enum opt_key {
	OPT_MONITOR_ID = 0x100, OPT_MONITOR_TYPE, OPT_MACHINE_ID, OPT_TARGET_PID,
	OPT_TARGET_LIBRARY, OPT_TARGET_COMM, OPT_ENDPOINT, OPT_OUTPUT, OPT_CURVE_KEYFILE,
	OPT_PROC_ROOT, OPT_ATTACH_MODE, OPT_RINGBUF_KB, OPT_MAX_THREADS, OPT_WAKEUP_KB, OPT_BATCH_EVENTS,
	OPT_FLUSH_MS, OPT_POLL_MS, OPT_SEND_HWM, OPT_LINGER_MS, OPT_RESEND_MS, OPT_SYSCALLS,
	OPT_PY_RUNTIME, OPT_PY_OFFSETS, OPT_SAMPLE_HZ, OPT_PY_BINARY, OPT_PY_FUNCTIONS, OPT_PY_HOOKS,
	OPT_HUB, OPT_WINDOW, OPT_NO_PY_STACKS,
};

const char *argp_program_version = "xputrace-agent 0.1";
static const char argp_doc[] =
	"xputrace-agent: trace CUDA runtime, driver and NCCL calls (CUDA) or Ascend\n"
	"AscendCL, aclop, aclnn, aclmdl and HCCL calls (ACL) with eBPF uprobes, a\n"
	"process's system calls through the raw syscall tracepoints (SYSCALL), or sample\n"
	"its Python stacks (PYTHON).\n"
	"\n"
	"Exit codes: 0 ok, 1 failed while running, 2 INVALID_CONFIG, 3 TARGET_NOT_FOUND,\n"
	"4 PERMISSION_DENIED, 5 AGENT_START_FAILED, 6 its --window closed (done).";

static const struct argp_option opts[] = {
	{ "monitor-id", OPT_MONITOR_ID, "ID", 0, "Monitor id (letters, digits, . _ -; up to 39)" },
	{ "monitor-type", OPT_MONITOR_TYPE, "TYPE", 0, "Monitor type: CUDA, ACL, SYSCALL or PYTHON" },
	{ "machine-id", OPT_MACHINE_ID, "ID", 0, "Machine id carried in every batch" },
	{ "target-pid", OPT_TARGET_PID, "PID", 0, "Trace every CUDA (ACL) library mapped in PID" },
	{ "target-library", OPT_TARGET_LIBRARY, "PATH", 0,
	  "Trace this library in every process, now and later" },
	{ "target-comm", OPT_TARGET_COMM, "COMM", 0,
	  "Only tasks with this name (CUDA, ACL: library mode)" },
	{ "py-runtime", OPT_PY_RUNTIME, "ADDR", 0,
	  "CUDA, ACL: attribute calls to Python stacks; PYTHON: sample them. &_PyRuntime in "
	  "--target-pid (0x...)" },
	{ "py-offsets", OPT_PY_OFFSETS, "LIST", 0,
	  "That CPython's structure offsets, name=value,... (with --py-runtime)" },
	{ "sample-hz", OPT_SAMPLE_HZ, "HZ", 0, "PYTHON: samples per second per CPU (99)" },
	{ "py-binary", OPT_PY_BINARY, "PATH", 0,
	  "PYTHON: the interpreter file (as the target sees it) whose gc USDT probes to attach" },
	{ "py-functions", OPT_PY_FUNCTIONS, "LIST", 0,
	  "PYTHON: trace every call of these functions exactly (qualified names, a,b,...; "
	  "with --py-hooks)" },
	{ "py-hooks", OPT_PY_HOOKS, "MODE:ENTRY:EXIT", 0,
	  "PYTHON: file offsets in --py-binary where Python functions start and return: "
	  "opcode:E,E..:X,X.. (3.11+ eval loop handlers) or eval:E: (3.10 "
	  "_PyEval_EvalFrameDefault)" },
	{ "window", OPT_WINDOW, "FUNCTION:SKIP:COUNT", 0,
	  "CUDA, ACL, PYTHON: keep events only from the start of call SKIP+1 of this Python "
	  "function (a qualified name) to the end of call SKIP+COUNT, then exit 6 (with "
	  "--py-runtime, --py-offsets, --py-binary and --py-hooks)" },
	{ "no-py-stacks", OPT_NO_PY_STACKS, NULL, 0,
	  "CUDA, ACL: --py-runtime serves the --window only: no Python stack per call" },
	{ "syscalls", OPT_SYSCALLS, "LIST", 0,
	  "SYSCALL: only these syscalls (comma-separated names, e.g. read,write); default all" },
	{ "hub", OPT_HUB, NULL, 0,
	  "SYSCALL: the machine's one syscall tracer, serving the monitors given on stdin "
	  "(add<TAB>ARGS..., remove<TAB>ID, exclude<TAB>PID; a JSON line answers each)" },
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

/*
 * Where parse_arg reports: argp_error (it exits) for the agent's own command
 * line; err, for a monitor the SYSCALL hub is given on its pipe.
 */
struct parse_ctx {
	struct agent_env *env;
	char *err;
	size_t errlen;
};

static error_t bad(struct argp_state *st, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static error_t bad(struct argp_state *st, const char *fmt, ...)
{
	struct parse_ctx *ctx = st->input;
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!ctx->err) {
		argp_error(st, "%s", msg);	/* exits */
		return EINVAL;
	}
	if (!ctx->err[0])
		snprintf(ctx->err, ctx->errlen, "%s", msg);
	return EINVAL;
}

static error_t parse_long(const char *flag, const char *arg, long min, long max,
			  struct argp_state *st, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(arg, &end, 10);
	if (errno || end == arg || *end || v < min || v > max)
		return bad(st, "invalid --%s '%s': expected an integer in [%ld, %ld]", flag, arg,
			   min, max);
	*out = v;
	return 0;
}

#define LONG_ARG(field, flag, min, max) do {					\
	error_t e_ = parse_long(flag, arg, min, max, st, &env->field);		\
	if (e_)									\
		return e_;							\
} while (0)

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

/*
 * --window: a PYTHON monitor or a CUDA or ACL monitor of one process, with
 * what the call hooks need: the interpreter's offsets, file and hook offsets.
 */
static error_t check_window(struct argp_state *st, const struct agent_env *env)
{
	struct py_window w;
	char why[256];

	if (py_window_parse(env->window, &w, why, sizeof(why)))
		return bad(st, "%s", why);
	if (!strcmp(env->monitor_type, "SYSCALL"))
		return bad(st, "--window is for CUDA, ACL and PYTHON monitors");
	if (!env->target_pid || env->target_library || env->target_comm)
		return bad(st, "--window needs one process: --target-pid");
	if (!env->py_runtime || !env->py_hooks || !env->py_binary)
		return bad(st, "--window needs --py-runtime, --py-offsets, --py-binary and "
			   "--py-hooks");
	if (py_calls_check(NULL, env->py_hooks, why, sizeof(why)))
		return bad(st, "%s", why);
	return 0;
}

/* --py-offsets, when given, must parse (the monitor parses them again as it starts). */
static error_t check_py_offsets(struct argp_state *st, const char *list)
{
	struct py_code_offsets code;
	struct py_offsets walk;
	char why[160];

	if (list && py_parse_offsets(list, &walk, &code, why, sizeof(why)))
		return bad(st, "invalid --py-offsets: %s", why);
	return 0;
}

static error_t parse_arg(int key, char *arg, struct argp_state *st)
{
	struct agent_env *env = ((struct parse_ctx *)st->input)->env;
	long v;

	switch (key) {
	case OPT_MONITOR_ID:
		if (!valid_id(arg, XPU_MONITOR_ID_LEN - 1))
			return bad(st, "invalid --monitor-id '%s': 1-39 of [A-Za-z0-9._-]", arg);
		env->monitor_id = arg;
		break;
	case OPT_MONITOR_TYPE:
		env->monitor_type = arg;
		break;
	case OPT_MACHINE_ID:
		if (!valid_id(arg, XPU_MACHINE_ID_LEN - 1))
			return bad(st, "invalid --machine-id '%s': 1-71 of [A-Za-z0-9._-]", arg);
		env->machine_id = arg;
		break;
	case OPT_TARGET_PID:
		if (parse_long("target-pid", arg, 1, INT_MAX, st, &v))
			return EINVAL;
		env->target_pid = v;
		break;
	case OPT_TARGET_LIBRARY:
		if (arg[0] != '/')
			return bad(st, "invalid --target-library '%s': must be an absolute path", arg);
		env->target_library = arg;
		break;
	case OPT_TARGET_COMM:
		if (!arg[0] || strlen(arg) >= XPU_COMM_LEN)
			return bad(st, "invalid --target-comm '%s': 1-15 characters", arg);
		env->target_comm = arg;
		break;
	case OPT_ENDPOINT:
		if (strncmp(arg, "tcp://", 6) && strncmp(arg, "ipc://", 6))
			return bad(st, "invalid --backend-zmq-endpoint '%s': tcp:// or ipc://", arg);
		env->endpoint = arg;
		break;
	case OPT_OUTPUT: env->output = arg; break;
	case OPT_CURVE_KEYFILE: env->curve_keyfile = arg; break;
	case OPT_PROC_ROOT: env->proc_root = arg; break;
	case OPT_ATTACH_MODE:
		if (strcmp(arg, "auto") && strcmp(arg, "multi") && strcmp(arg, "perf"))
			return bad(st, "invalid --attach-mode '%s': auto, multi or perf", arg);
		env->attach_mode = arg;
		break;
	case OPT_RINGBUF_KB:
		LONG_ARG(ringbuf_kb, "ringbuf-kb", 4, 1 << 20);
		if (env->ringbuf_kb & (env->ringbuf_kb - 1))
			return bad(st, "invalid --ringbuf-kb '%s': must be a power of two", arg);
		break;
	case OPT_MAX_THREADS:
		LONG_ARG(max_threads, "max-threads", 1, 1 << 20);
		if (env->max_threads & (env->max_threads - 1))
			return bad(st, "invalid --max-threads '%s': must be a power of two", arg);
		break;
	case OPT_WAKEUP_KB: LONG_ARG(wakeup_kb, "wakeup-kb", 0, 1 << 21); break;
	case OPT_BATCH_EVENTS:
		LONG_ARG(batch_events, "batch-events", 1, 1 << 20);
		break;
	case OPT_FLUSH_MS: LONG_ARG(flush_ms, "flush-ms", 1, 600000); break;
	case OPT_POLL_MS: LONG_ARG(poll_ms, "poll-ms", 1, 60000); break;
	case OPT_SEND_HWM: LONG_ARG(send_hwm, "send-hwm", 1, 1 << 20); break;
	case OPT_LINGER_MS: LONG_ARG(linger_ms, "linger-ms", 0, 600000); break;
	case OPT_RESEND_MS: LONG_ARG(resend_ms, "resend-ms", 10, 600000); break;
	case OPT_SYSCALLS: env->syscalls = arg; break;
	case OPT_PY_RUNTIME: {
		char *end;

		errno = 0;
		env->py_runtime = strtoull(arg, &end, 0);
		if (errno || end == arg || *end || !env->py_runtime)
			return bad(st, "invalid --py-runtime '%s': an address", arg);
		break;
	}
	case OPT_PY_OFFSETS: env->py_offsets = arg; break;
	case OPT_SAMPLE_HZ: LONG_ARG(sample_hz, "sample-hz", 1, 10000); break;
	case OPT_PY_BINARY:
		if (arg[0] != '/' || strstr(arg, "/../") || strlen(arg) > 1024)
			return bad(st, "invalid --py-binary '%s': an absolute path", arg);
		env->py_binary = arg;
		break;
	case OPT_PY_FUNCTIONS: env->py_functions = arg; break;
	case OPT_PY_HOOKS: env->py_hooks = arg; break;
	case OPT_HUB: env->hub = true; break;
	case OPT_WINDOW: env->window = arg; break;
	case OPT_NO_PY_STACKS: env->no_py_stacks = true; break;
	case 'v': env->verbose = true; break;
	case ARGP_KEY_ARG:
		return bad(st, "unexpected argument '%s'", arg);
		break;
	case ARGP_KEY_END:
		if (!env->monitor_id)
			return bad(st, "missing --monitor-id");
		if (!env->monitor_type)
			return bad(st, "missing --monitor-type");
		if (!call_probe_of(env->monitor_type) && strcmp(env->monitor_type, "SYSCALL") &&
		    strcmp(env->monitor_type, "PYTHON"))
			return bad(st, "invalid --monitor-type '%s': CUDA, ACL, SYSCALL or PYTHON",
				   env->monitor_type);
		if (!!env->py_runtime != !!env->py_offsets)
			return bad(st, "--py-runtime and --py-offsets go together");
		if (env->window && check_window(st, env))
			return EINVAL;
		if (env->no_py_stacks && (!env->window || !strcmp(env->monitor_type, "PYTHON")))
			return bad(st, "--no-py-stacks is for CUDA and ACL monitors with a --window");
		if (!strcmp(env->monitor_type, "PYTHON")) {
			char why[160];

			if (!env->target_pid || env->target_library || env->target_comm)
				return bad(st, "a PYTHON monitor samples one process: --target-pid");
			if (!env->py_runtime)
				return bad(st, "a PYTHON monitor needs --py-runtime and --py-offsets");
			if (check_py_offsets(st, env->py_offsets))
				return EINVAL;
			if (!!env->py_functions != !!env->py_hooks && !env->window)
				return bad(st, "--py-functions and --py-hooks go together");
			if (env->py_hooks && !env->py_binary)
				return bad(st, "--py-hooks needs --py-binary");
			if (env->py_hooks && py_calls_check(env->py_functions, env->py_hooks, why,
							   sizeof(why)))
				return bad(st, "%s", why);
		} else if (env->hub && strcmp(env->monitor_type, "SYSCALL")) {
			return bad(st, "--hub is for SYSCALL");
		} else if (env->py_functions || (env->py_hooks && !env->window)) {
			return bad(st, "--py-functions and --py-hooks are for PYTHON monitors");
		} else if (!strcmp(env->monitor_type, "SYSCALL") && env->hub) {
			if (env->target_pid || env->target_comm || env->target_library ||
			    env->syscalls || env->endpoint || env->output || env->py_runtime)
				return bad(st, "--hub takes its monitors on stdin: no target, "
					   "--syscalls or output");
			break;
		} else if (!strcmp(env->monitor_type, "SYSCALL")) {
			char why[128];

			if (env->target_library)
				return bad(st, "--target-library is for CUDA and ACL monitors");
			if (env->py_runtime)
				return bad(st, "--py-runtime is for CUDA, ACL and PYTHON monitors");
			if (!env->target_pid && !env->target_comm)
				return bad(st, "missing --target-pid or --target-comm");
			if (syscall_allow_list(env->syscalls, NULL, why, sizeof(why)) < 0)
				return bad(st, "invalid --syscalls: %s", why);
		} else {
			if (env->syscalls)
				return bad(st, "--syscalls is for SYSCALL monitors");
			if (env->py_runtime && !env->target_pid)
				return bad(st, "--py-runtime needs --target-pid");
			if (check_py_offsets(st, env->py_offsets))
				return EINVAL;
			if (!env->target_pid && !env->target_library)
				return bad(st, "missing --target-pid or --target-library");
			if (env->target_comm && !env->target_library)
				return bad(st, "--target-comm needs --target-library");
		}
		if (!!env->endpoint == !!env->output)
			return bad(st, "give exactly one of --backend-zmq-endpoint and --output");
		if (env->curve_keyfile && !env->endpoint)
			return bad(st, "--curve-keyfile needs --backend-zmq-endpoint");
		break;
	default:
		return ARGP_ERR_UNKNOWN;
	}
	return 0;
}

int agent_parse_monitor(int argc, char **argv, struct agent_env *out, char *err, size_t errlen)
{
	static const struct argp argp = { .options = opts, .parser = parse_arg };
	struct parse_ctx ctx = { .env = out, .err = err, .errlen = errlen };

	*out = defaults;
	err[0] = '\0';
	if (argp_parse(&argp, argc, argv, ARGP_NO_EXIT | ARGP_NO_ERRS | ARGP_NO_HELP, NULL, &ctx)) {
		if (!err[0])
			snprintf(err, errlen, "invalid option among the monitor's arguments");
		return AGENT_INVALID_CONFIG;
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

int main(int argc, char **argv)
{
	static const struct argp argp = { .options = opts, .parser = parse_arg, .doc = argp_doc };

	struct parse_ctx ctx = { .env = &env };

	env = defaults;
	argp_err_exit_status = AGENT_INVALID_CONFIG;
	if (argp_parse(&argp, argc, argv, 0, NULL, &ctx))
		return AGENT_INVALID_CONFIG;
	libbpf_set_print(libbpf_print_fn);
	signal(SIGINT, sig_handler);
	signal(SIGTERM, sig_handler);
	signal(SIGPIPE, SIG_IGN);
	if (!strcmp(env.monitor_type, "SYSCALL") && env.hub)
		return hub_main(&env, &exiting);
	if (!strcmp(env.monitor_type, "SYSCALL"))
		return syscall_main(&env, &exiting);
	if (!strcmp(env.monitor_type, "PYTHON"))
		return python_main(&env, &exiting);
	return call_main(&env, &exiting, call_probe_of(env.monitor_type));
}
