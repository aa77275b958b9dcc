"""AscendCL and aclnn calls from known Python call sites, for Python attribution of ACL
calls: the Ascend stand-ins (tests/workloads/ascend) through ctypes, as torch_npu-less
scripts would call CANN. Lines a test looks for carry `# at:NAME`.

usage: python python_acl_calls.py LIBDIR ROUNDS   (LIBDIR: the stand-ins' rt/ folder)
Prints {"ready": ..., "pid": P, "tid": T, "tids": [T]}, waits for a line, makes ROUNDS
rounds, prints {"done": true, "calls": {...}}, waits for a line (or EOF).
"""

import ctypes
import json
import os
import sys
import threading
from collections import Counter

rt = ctypes.CDLL(os.path.join(sys.argv[1], "libacl_rt.so"))
nn = ctypes.CDLL(os.path.join(sys.argv[1], "libopapi.so"))
vp = ctypes.c_void_p
rt.aclrtMalloc.argtypes = [ctypes.POINTER(vp), ctypes.c_size_t, ctypes.c_int]
rt.aclrtFree.argtypes = [vp]
nn.aclnnAddGetWorkspaceSize.argtypes = [
    vp,
    vp,
    vp,
    vp,
    ctypes.POINTER(ctypes.c_uint64),
    ctypes.POINTER(vp),
]
nn.aclnnAdd.argtypes = [vp, ctypes.c_uint64, vp, vp]


def add(i: int) -> None:
    size, executor = ctypes.c_uint64(), vp()
    nn.aclnnAddGetWorkspaceSize(0x10, 0x20, 0x30, 0x40, ctypes.byref(size), ctypes.byref(executor))
    nn.aclnnAdd(None, size.value, executor, 0x5000 + i)  # at:add


def alloc(i: int) -> None:
    p = vp()
    rt.aclrtMalloc(ctypes.byref(p), 4096 + i, 0)  # at:alloc
    rt.aclrtFree(p)  # at:free


def forward(i: int) -> None:
    alloc(i)  # at:forward_alloc
    add(i)  # at:forward_add


def main() -> None:
    rounds = int(sys.argv[2])
    tid = threading.get_native_id()
    print(json.dumps({"ready": True, "pid": os.getpid(), "tid": tid, "tids": [tid]}), flush=True)
    sys.stdin.readline()
    for i in range(rounds):
        forward(i)  # at:main
    calls = Counter({"aclrtMalloc": rounds, "aclrtFree": rounds, "aclnnAdd": rounds})
    print(json.dumps({"done": True, "calls": dict(calls)}), flush=True)
    sys.stdin.readline()


if __name__ == "__main__":
    main()  # at:module
