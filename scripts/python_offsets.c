// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Prints, as JSON, the offsets of the CPython structures the Python stack
 * reader walks, compiled against one CPython's own headers (3.10-3.13; 3.13
 * has no _PyCFrame: the thread state points at the current frame itself;
 * 3.10 chains frame objects and counts its instruction as an index).
 * scripts/gen-python-offsets runs it for each installed CPython and writes
 * manager/python/offsets.py.
 */
#define Py_BUILD_CORE 1
#include <Python.h>
#include <stdio.h>
#include <stddef.h>
#include "internal/pycore_runtime.h"
#include "internal/pycore_interp.h"
#if PY_VERSION_HEX >= 0x030B0000
#include "internal/pycore_frame.h"
#else
#include <frameobject.h>
#endif
#define P(name, type, member) printf(",\n  \"%s\": %zu", name, offsetof(type, member))
int main(void)
{
	printf("{\"version\": \"%s\"", PY_VERSION);
	P("runtime_interp_head", _PyRuntimeState, interpreters.head);
	P("interp_next", PyInterpreterState, next);
	P("tstate_next", PyThreadState, next);
#if PY_VERSION_HEX < 0x030B0000
	/* 3.10: frame objects; no native thread id (thread_id is pthread_self(): the fs base) */
	P("interp_threads_head", PyInterpreterState, tstate_head);
	P("tstate_thread_id", PyThreadState, thread_id);
	P("tstate_current_frame", PyThreadState, frame);
	P("frame_code", PyFrameObject, f_code);
	P("frame_previous", PyFrameObject, f_back);
	P("frame_lasti", PyFrameObject, f_lasti);
	P("code_firstlineno", PyCodeObject, co_firstlineno);
	P("code_filename", PyCodeObject, co_filename);
	P("code_qualname", PyCodeObject, co_name);	/* 3.10 has no qualified name */
	P("code_linetable", PyCodeObject, co_linetable);
#else
	P("interp_threads_head", PyInterpreterState, threads.head);
	P("tstate_native_tid", PyThreadState, native_thread_id);
#endif
#if PY_VERSION_HEX < 0x030B0000
#elif PY_VERSION_HEX >= 0x030D0000
	P("tstate_current_frame", PyThreadState, current_frame);
	P("frame_code", _PyInterpreterFrame, f_executable);
	P("frame_instr", _PyInterpreterFrame, instr_ptr);
#else
	P("tstate_cframe", PyThreadState, cframe);
	P("cframe_current_frame", _PyCFrame, current_frame);
	P("frame_code", _PyInterpreterFrame, f_code);
	P("frame_instr", _PyInterpreterFrame, prev_instr);
#endif
#if PY_VERSION_HEX >= 0x030B0000
	P("frame_previous", _PyInterpreterFrame, previous);
	P("frame_owner", _PyInterpreterFrame, owner);
	P("code_firstlineno", PyCodeObject, co_firstlineno);
	P("code_filename", PyCodeObject, co_filename);
	P("code_qualname", PyCodeObject, co_qualname);
	P("code_linetable", PyCodeObject, co_linetable);
	P("code_firsttraceable", PyCodeObject, _co_firsttraceable);
	P("code_adaptive", PyCodeObject, co_code_adaptive);
#endif
	P("bytes_size", PyVarObject, ob_size);
	P("bytes_data", PyBytesObject, ob_sval);
	P("str_length", PyASCIIObject, length);
	P("str_state", PyASCIIObject, state);
	printf(",\n  \"str_ascii_data\": %zu", sizeof(PyASCIIObject));
	printf(",\n  \"str_compact_data\": %zu\n}\n", sizeof(PyCompactUnicodeObject));
	return 0;
}
