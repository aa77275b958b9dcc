/* How a test steers the device-library stand-ins (libnvidia-ml.so.1, libdcmi.so).
 *
 * The variable named by the library (XPUTRACE_NVML_STANDIN_STATE, XPUTRACE_DCMI_STANDIN_STATE)
 * holds the path of a file with one word, read at the start of every sample (the device count
 * call):
 *   a number N   every value is that of generation N (tests/manager/device_standins.py
 *                computes the same values); a second number P after it (NVML only) is
 *                the pid of GPU 0's compute process, instead of 1000;
 *   "hang"       the call never returns;
 *   "crash"      the call dies of SIGSEGV.
 * Without the variable or the file, the generation counts the samples: 1, 2, 3, ...
 */
#ifndef XPU_STANDIN_STATE_H
#define XPU_STANDIN_STATE_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the second number of the state file, 0 when absent (read by standin_generation) */
static long standin_pid;

static long standin_generation(const char *variable)
{
	static long counted;
	char *rest;
	long gen;
	const char *path = getenv(variable);
	char word[32] = "";
	FILE *f = path ? fopen(path, "r") : NULL;

	standin_pid = 0;
	if (!f)
		return ++counted;
	if (!fgets(word, sizeof(word), f))
		word[0] = '\0';
	fclose(f);
	if (strncmp(word, "hang", 4) == 0) {
		for (;;)
			pause();
	}
	if (strncmp(word, "crash", 5) == 0)
		raise(SIGSEGV);
	gen = strtol(word, &rest, 10);
	standin_pid = strtol(rest, NULL, 10);
	return gen;
}

#endif
