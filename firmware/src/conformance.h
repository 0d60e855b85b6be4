/* Kernel conformance: one vector of the host's conformance suite through one kernel.
 *
 * The host streams each vector in a CONFORMANCE request (docs/protocol.md): a kernel id, its
 * parameters as the code generator would emit them, and its small int8 tensors. The vector is read
 * from the request payload where it lies; only what a kernel takes as aligned words (per-channel
 * multipliers, FC scales, biases) is unpacked into static arrays. Nothing is kept between vectors,
 * nothing is stored in flash, and no busy window is raised: conformance is not a timed inference.
 * Portable C11 without a HAL, so the host tests build this file too (tests/unit/test_conformance.py).
 */
#ifndef CONFORMANCE_H
#define CONFORMANCE_H

#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

typedef enum {
    CONF_CONV_2D = 1,
    CONF_DEPTHWISE_CONV_2D = 2,
    CONF_FULLY_CONNECTED = 3,
    CONF_AVERAGE_POOL_2D = 4,
    CONF_RESHAPE = 5,
} conf_kernel_t;

#define CONF_MAX_CHANNELS 32u /* per-channel parameters a vector may carry */
#define CONF_MAX_OUTPUT (PROTO_MAX_PAYLOAD - 1u) /* the reply is the kernel id, then the output */

/* Runs the vector in payload[0..len) and writes the reply payload (kernel id, output bytes) to
 * out[PROTO_MAX_PAYLOAD]. Returns PROTO_OK and sets *out_len, or BAD_LENGTH when the payload's
 * size is not the one its header implies, BAD_VALUE for an unknown kernel or sizes beyond the
 * static buffers. */
proto_error_t conformance_run(const uint8_t *payload, size_t len, uint8_t *out, size_t *out_len);

#endif /* CONFORMANCE_H */
