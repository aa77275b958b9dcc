/* libdcmi.so stand-in: 8 NPUs (4 cards of 2 chips) whose every value is a known function of
 * (logic id, generation), to the published DCMI signatures (dcmi_published_api.h).
 * tests/manager/device_standins.py computes the same values; standin_state.h says how a test
 * picks the generation or makes a call hang or crash. */
#include <stdio.h>
#include <string.h>

#include "dcmi_published_api.h"
#include "standin_state.h"

#define CARDS 4
#define CHIPS 2
#define MIB (1024UL * 1024)
#define ERR_INVALID (-8001) /* DCMI_ERR_CODE_INVALID_PARAMETER */

static const int cards[CARDS] = { 0, 1, 2, 3 };
static long gen;

static int logic(int card, int chip, unsigned int *out)
{
	if (card < 0 || card >= CARDS || chip < 0 || chip >= CHIPS)
		return ERR_INVALID;
	*out = (unsigned int)(card * CHIPS + chip);
	return 0;
}

int dcmi_init(void)
{
	return 0;
}

int dcmi_get_card_num_list(int *card_num, int *card_list, int list_len)
{
	gen = standin_generation("XPUTRACE_DCMI_STANDIN_STATE");
	if (list_len < CARDS)
		return ERR_INVALID;
	memcpy(card_list, cards, sizeof(cards));
	*card_num = CARDS;
	return 0;
}

int dcmi_get_device_num_in_card(int card_id, int *device_num)
{
	if (card_id < 0 || card_id >= CARDS)
		return ERR_INVALID;
	*device_num = CHIPS;
	return 0;
}

int dcmi_get_device_logic_id(int *device_logic_id, int card_id, int device_id)
{
	unsigned int i = 0;
	int rc = logic(card_id, device_id, &i);

	*device_logic_id = (int)i;
	return rc;
}

int dcmi_get_device_chip_info(int card_id, int device_id, struct dcmi_chip_info *chip_info)
{
	unsigned int i = 0;
	int rc = logic(card_id, device_id, &i);

	if (rc)
		return rc;
	memset(chip_info, 0, sizeof(*chip_info));
	strcpy((char *)chip_info->chip_type, "Ascend");
	strcpy((char *)chip_info->chip_name, "910B3");
	strcpy((char *)chip_info->chip_ver, "V1");
	chip_info->aicore_cnt = 20;
	return 0;
}

int dcmi_get_device_pcie_info_v2(int card_id, int device_id, struct dcmi_pcie_info_all *pcie)
{
	unsigned int i = 0;
	int rc = logic(card_id, device_id, &i);

	if (rc)
		return rc;
	memset(pcie, 0, sizeof(*pcie));
	pcie->venderid = 0x19e5;
	pcie->deviceid = 0xd802;
	pcie->bdf_busid = 0x80 + i;
	return 0;
}

int dcmi_get_device_health(int card_id, int device_id, unsigned int *health)
{
	unsigned int i = 0;
	int rc = logic(card_id, device_id, &i);

	*health = i == 5 ? 1 : i == 7 ? 3 : 0; /* NPU 5: general alarm, NPU 7: urgent alarm */
	return rc;
}

int dcmi_get_device_temperature(int card_id, int device_id, int *temperature)
{
	unsigned int i = 0;
	int rc = logic(card_id, device_id, &i);

	*temperature = (int)(50 + i + gen % 5);
	return rc;
}

int dcmi_get_device_power_info(int card_id, int device_id, int *power)
{
	unsigned int i = 0;
	int rc = logic(card_id, device_id, &i);

	*power = (int)(3000 + 10 * i + gen); /* 0.1 W */
	return rc;
}

int dcmi_get_device_utilization_rate(int card_id, int device_id, int input_type,
				     unsigned int *utilization_rate)
{
	unsigned int i = 0;
	int rc = logic(card_id, device_id, &i);

	if (rc)
		return rc;
	if (input_type != DCMI_UTILIZATION_RATE_AICORE)
		return -8005; /* DCMI_ERR_CODE_NOT_SUPPORT */
	*utilization_rate = (unsigned int)((7 * i + gen) % 101);
	return 0;
}

int dcmi_get_device_memory_info_v3(int card_id, int device_id,
				   struct dcmi_get_memory_info_stru *memory_info)
{
	unsigned int i = 0;
	int rc = logic(card_id, device_id, &i);

	if (rc)
		return rc;
	memset(memory_info, 0, sizeof(*memory_info));
	memory_info->memory_size = 32768;
	memory_info->memory_available = 32768 - (1024ULL * (i + 1) + gen);
	return 0;
}

int dcmi_get_device_hbm_info(int card_id, int device_id, struct dcmi_hbm_info *hbm_info)
{
	unsigned int i = 0;
	int rc = logic(card_id, device_id, &i);

	if (rc)
		return rc;
	memset(hbm_info, 0, sizeof(*hbm_info));
	hbm_info->memory_size = 65536;
	hbm_info->memory_usage = 2048ULL * (i + 1) + gen;
	return 0;
}

/* one process on every NPU */
int dcmi_get_device_resource_info(int card_id, int device_id, struct dcmi_proc_mem_info *proc_info,
				  int *proc_num)
{
	unsigned int i = 0;
	int rc = logic(card_id, device_id, &i);

	if (rc)
		return rc;
	proc_info[0].proc_id = (int)(3000 + i);
	proc_info[0].proc_mem_usage = (128UL + i) * MIB;
	*proc_num = 1;
	return 0;
}
