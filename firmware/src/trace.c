#include "trace.h"

#include "model.h"
#include "protocol.h"

/* What the running trace captures; nothing runs outside trace_run (armed is 0). */
static int armed;
static uint8_t wanted_layer;
static uint16_t wanted_offset;
static uint16_t wanted_bytes;                  /* the wanted layer's output size, once it ran */
static uint8_t data[PROTO_TRACE_CHUNK];        /* its bytes from wanted_offset, or the digests */
static size_t data_len;

/* The digests must fit one reply: 6 header bytes and 4 per layer. */
_Static_assert(6u + 4u * MODEL_NUM_LAYERS <= PROTO_MAX_PAYLOAD, "too many layers for one TRACE_RESULT");
_Static_assert(4u * MODEL_NUM_LAYERS <= PROTO_TRACE_CHUNK, "the digests do not fit the trace buffer");

void trace_layer_done(uint32_t layer, const int8_t *output, uint32_t bytes) {
    if (!armed) {
        return;
    }
    if (wanted_layer == PROTO_TRACE_DIGESTS) {
        proto_put_u32(data + 4u * layer, proto_crc32((const uint8_t *)output, bytes));
        return;
    }
    if (layer != wanted_layer) {
        return;
    }
    wanted_bytes = (uint16_t)bytes;
    data_len = 0;
    for (uint32_t i = wanted_offset; i < bytes && data_len < PROTO_TRACE_CHUNK; i++) {
        data[data_len++] = (uint8_t)output[i];
    }
}

size_t trace_run(const int8_t *input, uint8_t layer, uint16_t offset, uint8_t *out) {
    static int8_t exit_logits[MODEL_NUM_CLASSES];
    static int8_t head_logits[MODEL_NUM_HEADS * MODEL_NUM_CLASSES];
    int digests = layer == PROTO_TRACE_DIGESTS;
    if (digests ? offset != 0 : layer >= MODEL_NUM_LAYERS) {
        return 0;
    }
    wanted_layer = layer;
    wanted_offset = offset;
    wanted_bytes = 0;
    data_len = digests ? 4u * MODEL_NUM_LAYERS : 0;
    armed = 1;
    model_stage1(input, exit_logits);
    model_stage2(head_logits); /* the full path: stage 2 reads stage 1's feature map from the arena */
    armed = 0;
    if (!digests && offset >= wanted_bytes) {
        return 0;
    }
    proto_trace_result_t reply = {
        .layer = layer,
        .num_layers = (uint8_t)MODEL_NUM_LAYERS,
        .layer_bytes = wanted_bytes,
        .offset = offset,
        .data = data,
        .data_len = data_len,
    };
    return proto_put_trace_result(out, &reply);
}
