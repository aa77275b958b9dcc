/* libnvidia-ml.so.1 stand-in: 4 GPUs whose every value is a known function of (index,
 * generation), built against the real nvml.h (wheel nvidia-nvml-dev-cu12), so the
 * signatures are NVIDIA's. tests/manager/device_standins.py computes the same values;
 * standin_state.h says how a test picks the generation or makes a call hang or crash. */
#include <stdio.h>
#include <string.h>

#include <nvml.h>

#include "standin_state.h"

#define GPUS 4
#define MIB (1024ULL * 1024)

struct nvmlDevice_st {
	unsigned int index;
};

static struct nvmlDevice_st gpus[GPUS] = { { 0 }, { 1 }, { 2 }, { 3 } };
static long gen;

static nvmlReturn_t copy_text(char *out, unsigned int length, const char *text)
{
	if (!out || strlen(text) + 1 > length)
		return NVML_ERROR_INSUFFICIENT_SIZE;
	strcpy(out, text);
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlInitWithFlags(unsigned int flags)
{
	(void)flags;
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit(void) /* nvmlInit_v2 */
{
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void)
{
	return NVML_SUCCESS;
}

const char *nvmlErrorString(nvmlReturn_t result)
{
	return result == NVML_SUCCESS ? "Success" : "Stand-in error";
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
	return copy_text(version, length, "555.42.06");
}

nvmlReturn_t nvmlDeviceGetCount(unsigned int *count) /* nvmlDeviceGetCount_v2 */
{
	gen = standin_generation("XPUTRACE_NVML_STANDIN_STATE");
	*count = GPUS;
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex(unsigned int index, nvmlDevice_t *device)
{
	if (index >= GPUS)
		return NVML_ERROR_INVALID_ARGUMENT;
	*device = &gpus[index];
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
	char text[64];

	snprintf(text, sizeof(text), "NVIDIA Stand-in GPU %u", device->index);
	return copy_text(name, length, text);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
	char text[64];

	snprintf(text, sizeof(text), "GPU-5a1d0000-0000-4000-8000-%012u", device->index);
	return copy_text(uuid, length, text);
}

nvmlReturn_t nvmlDeviceGetPciInfo(nvmlDevice_t device, nvmlPciInfo_t *pci) /* _v3 */
{
	memset(pci, 0, sizeof(*pci));
	pci->domain = 0;
	pci->bus = 0x10 + device->index;
	snprintf(pci->busId, sizeof(pci->busId), "00000000:%02X:00.0", pci->bus);
	snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "0000:%02X:00.0", pci->bus);
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power)
{
	*power = 100000 + 1000 * device->index + 10 * gen; /* mW */
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, nvmlTemperatureSensors_t sensor,
				      unsigned int *temp)
{
	if (sensor != NVML_TEMPERATURE_GPU)
		return NVML_ERROR_NOT_SUPPORTED;
	*temp = 40 + device->index + gen % 10;
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *u)
{
	u->gpu = (10 * device->index + gen) % 101;
	u->memory = (5 * device->index + 2 * gen) % 101;
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
	memory->total = 80 * 1024 * MIB;
	memory->used = (1024ULL * (device->index + 1) + gen) * MIB;
	memory->free = memory->total - memory->used;
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetClockInfo(nvmlDevice_t device, nvmlClockType_t type, unsigned int *clock)
{
	if (type != NVML_CLOCK_SM)
		return NVML_ERROR_NOT_SUPPORTED;
	*clock = 1000 + 10 * device->index + gen;
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPcieThroughput(nvmlDevice_t device, nvmlPcieUtilCounter_t counter,
					 unsigned int *value)
{
	unsigned int base = counter == NVML_PCIE_UTIL_TX_BYTES ? 1000 : 2000;

	*value = base * (device->index + 1) + gen; /* KB/s */
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetTotalEccErrors(nvmlDevice_t device, nvmlMemoryErrorType_t error,
					 nvmlEccCounterType_t counter, unsigned long long *count)
{
	/* GPU 3 has had one uncorrected error since the driver loaded */
	*count = error == NVML_MEMORY_ERROR_TYPE_UNCORRECTED && counter == NVML_VOLATILE_ECC &&
		 device->index == 3;
	return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetRetiredPages(nvmlDevice_t device, nvmlPageRetirementCause_t cause,
				       unsigned int *count, unsigned long long *addresses)
{
	unsigned int n = cause == NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS ?
				 device->index : 0;

	if (!addresses || *count < n) {
		*count = n;
		return addresses || n ? NVML_ERROR_INSUFFICIENT_SIZE : NVML_SUCCESS;
	}
	for (unsigned int i = 0; i < n; i++)
		addresses[i] = 0x1000ULL * (i + 1);
	*count = n;
	return NVML_SUCCESS;
}

static nvmlReturn_t processes(unsigned int *count, nvmlProcessInfo_t *infos, unsigned int n,
			      unsigned int pid, unsigned long long bytes)
{
	if (n == 0) {
		*count = 0;
		return NVML_SUCCESS;
	}
	if (!infos || *count < n) {
		*count = n;
		return NVML_ERROR_INSUFFICIENT_SIZE;
	}
	memset(infos, 0, sizeof(*infos) * n);
	infos[0].pid = pid;
	infos[0].usedGpuMemory = bytes;
	infos[0].gpuInstanceId = infos[0].computeInstanceId = 0xFFFFFFFF;
	*count = n;
	return NVML_SUCCESS;
}

/* one compute process on every GPU (GPU 0's: the state file's pid, if it names one);
 * GPU 0 also has a graphics one */
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses(nvmlDevice_t device, unsigned int *count,
						  nvmlProcessInfo_t *infos) /* _v3 */
{
	unsigned int pid = device->index == 0 && standin_pid ? standin_pid : 1000 + device->index;

	return processes(count, infos, 1, pid, (256ULL + device->index) * MIB);
}

nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses(nvmlDevice_t device, unsigned int *count,
						   nvmlProcessInfo_t *infos) /* _v3 */
{
	return processes(count, infos, device->index == 0, 2000, 64 * MIB);
}
