/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The aclnn operator API of CANN (libopapi.so), for the few operators the
 * stand-in exports. The torch-npu wheel has no aclnn headers, so these
 * declarations are written from CANN's published operator API: every operator
 * is two calls,
 *   aclnn<Op>GetWorkspaceSize(<op's tensors and attributes>,
 *                             uint64_t *workspaceSize, aclOpExecutor **executor)
 *   aclnn<Op>(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
 *             aclrtStream stream)
 * The second (the launch) has the same type for every operator, which the
 * wheel does show: torch_npu's op_api_common_base.h calls it through
 * int (*)(void *, uint64_t, aclOpExecutor *, const aclrtStream).
 */
#ifndef XPU_ACLNN_OPS_H
#define XPU_ACLNN_OPS_H

#include <stdint.h>
#include <acl/acl_base.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef int32_t aclnnStatus;
typedef struct aclTensor aclTensor;
typedef struct aclScalar aclScalar;
typedef struct aclOpExecutor aclOpExecutor;

#define ACLNN_SUCCESS 0			/* aclnnStatus of success */
#define ACLNN_ERR_PARAM_NULLPTR 161001	/* a required pointer is NULL */
#define ACLNN_ERR_PARAM_INVALID 161002	/* an argument is out of range */

/* out = self + alpha * other */
aclnnStatus aclnnAddGetWorkspaceSize(const aclTensor *self, const aclTensor *other,
				     const aclScalar *alpha, aclTensor *out,
				     uint64_t *workspaceSize, aclOpExecutor **executor);
aclnnStatus aclnnAdd(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
		     aclrtStream stream);

/* out = self @ mat2; cubeMathType: 0 keep dtype, 1 allow fp32 down, 2 use fp16, 3 hf32 */
aclnnStatus aclnnMatmulGetWorkspaceSize(const aclTensor *self, const aclTensor *mat2,
					aclTensor *out, int8_t cubeMathType,
					uint64_t *workspaceSize, aclOpExecutor **executor);
aclnnStatus aclnnMatmul(void *workspace, uint64_t workspaceSize, aclOpExecutor *executor,
			aclrtStream stream);

#ifdef __cplusplus
}
#endif

#endif
