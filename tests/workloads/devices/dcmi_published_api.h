/* The part of Huawei's DCMI (libdcmi.so, the Ascend driver's device management interface)
 * that the manager's device sampler calls, written down from the published signatures:
 * Huawei's "DCMI API Reference" for Ascend (e.g. dcmi_get_device_utilization_rate: "int
 * dcmi_get_device_utilization_rate(int card_id, int device_id, int input_type, unsigned int
 * *utilization_rate)") and the dcmi_interface_api.h that Ascend's own npu-exporter
 * (mind-cluster) and ascend-docker-runtime compile against. Units as those sources give them:
 * power in 0.1 W, temperature in degrees C, memory sizes in MB, process memory in bytes.
 * Only the libdcmi.so stand-in (dcmi_standin.c) includes this; the manager loads the real
 * library with ctypes, mirroring the same structs (manager/devices/dcmi.py). */
#ifndef XPU_DCMI_PUBLISHED_API_H
#define XPU_DCMI_PUBLISHED_API_H

#define MAX_CHIP_NAME_LEN 32
#define DCMI_UTILIZATION_RATE_AICORE 2

struct dcmi_chip_info {
	unsigned char chip_type[MAX_CHIP_NAME_LEN];
	unsigned char chip_name[MAX_CHIP_NAME_LEN];
	unsigned char chip_ver[MAX_CHIP_NAME_LEN];
	unsigned int aicore_cnt;
};

struct dcmi_pcie_info_all {
	unsigned int venderid;
	unsigned int subvenderid;
	unsigned int deviceid;
	unsigned int subdeviceid;
	int domain;
	unsigned int bdf_busid;
	unsigned int bdf_deviceid;
	unsigned int bdf_funcid;
	unsigned char reserve[32];
};

struct dcmi_hbm_info {
	unsigned long long memory_size; /* MB */
	unsigned int freq;
	unsigned long long memory_usage; /* MB */
	int temp;
	unsigned int bandwith_util_rate;
};

struct dcmi_get_memory_info_stru {
	unsigned long long memory_size; /* MB */
	unsigned long long memory_available; /* MB */
	unsigned int freq;
	unsigned long hugepagesize;
	unsigned long hugepages_total;
	unsigned long hugepages_free;
	unsigned int utiliza;
	unsigned char reserve[60];
};

struct dcmi_proc_mem_info {
	int proc_id;
	unsigned long proc_mem_usage; /* bytes */
};

int dcmi_init(void);
int dcmi_get_card_num_list(int *card_num, int *card_list, int list_len);
int dcmi_get_device_num_in_card(int card_id, int *device_num);
int dcmi_get_device_logic_id(int *device_logic_id, int card_id, int device_id);
int dcmi_get_device_chip_info(int card_id, int device_id, struct dcmi_chip_info *chip_info);
int dcmi_get_device_pcie_info_v2(int card_id, int device_id, struct dcmi_pcie_info_all *pcie_info);
/* 0 normal, 1 general alarm, 2 important alarm, 3 urgent alarm, 0xffffffff absent */
int dcmi_get_device_health(int card_id, int device_id, unsigned int *health);
int dcmi_get_device_temperature(int card_id, int device_id, int *temperature);
int dcmi_get_device_power_info(int card_id, int device_id, int *power);
int dcmi_get_device_utilization_rate(int card_id, int device_id, int input_type,
				     unsigned int *utilization_rate);
int dcmi_get_device_memory_info_v3(int card_id, int device_id,
				   struct dcmi_get_memory_info_stru *memory_info);
int dcmi_get_device_hbm_info(int card_id, int device_id, struct dcmi_hbm_info *hbm_info);
int dcmi_get_device_resource_info(int card_id, int device_id, struct dcmi_proc_mem_info *proc_info,
				  int *proc_num);

#endif
