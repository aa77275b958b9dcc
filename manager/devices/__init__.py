"""The machine's accelerators, sampled for DEVICE_METRICS (xpucore.device_wire): NVIDIA GPUs
through NVML (nvml.py), Ascend NPUs through DCMI (dcmi.py), both called only in a helper
process (probe.py) that the manager's DeviceSampler (sampler.py) starts, times out, kills and
restarts, so a library that hangs or crashes never takes the manager down."""
