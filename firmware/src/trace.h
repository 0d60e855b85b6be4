/* TRACE (docs/protocol.md): one sample's layer outputs, for the host to find where the device and
 * its reference first diverge. Each layer's output is read at its model_layer_done, because the
 * arena is reused: later, it is overwritten. */
#ifndef TRACE_H
#define TRACE_H

#include <stddef.h>
#include <stdint.h>

/* Runs the full path (both stages, whatever the threshold) on input and writes a TRACE_RESULT
 * payload to out (PROTO_MAX_PAYLOAD bytes): with layer PROTO_TRACE_DIGESTS the CRC-32 of every
 * layer's output, else up to PROTO_TRACE_CHUNK bytes of that layer's output from offset. Returns
 * its length, or 0 if the layer or offset does not exist (offset must be 0 for the digests). */
size_t trace_run(const int8_t *input, uint8_t layer, uint16_t offset, uint8_t *out);

/* Called from model_layer_done after every layer; does nothing unless a trace runs. */
void trace_layer_done(uint32_t layer, const int8_t *output, uint32_t bytes);

#endif
