/* Kernel conformance vectors, device side. See conformance.h and docs/protocol.md (CONFORMANCE). */
#include "conformance.h"

#include "kernels.h"

#define CONV_HEADER 23u
#define FC_HEADER 13u
#define POOL_HEADER 14u

/* The words a kernel reads aligned; the payload holds them packed. A vector is a convolution's or an FC's,
 * never both, so their scales share one buffer. */
static union {
    qmul_t channel_multipliers[CONF_MAX_CHANNELS];
    fc_rescale_t fc_scales[CONF_MAX_CHANNELS]; /* the image's rounding mode's (kernels.h) */
} scales;
static int32_t biases[CONF_MAX_CHANNELS];

static int32_t get_i16(const uint8_t *in) { return (int16_t)proto_get_u16(in); }

static int32_t get_i8(const uint8_t *in) { return (int8_t)in[0]; }

/* Unpacks `count` int32 biases starting at `in`. */
static void unpack_biases(const uint8_t *in, size_t count) {
    for (size_t i = 0; i < count; i++) biases[i] = (int32_t)proto_get_u32(in + 4u * i);
}

static proto_error_t run_conv(const uint8_t *payload, size_t len, bool depthwise, int8_t *output, size_t *out_size) {
    if (len < CONV_HEADER) return PROTO_ERR_BAD_LENGTH;
    const uint8_t *h = payload + 1;
    conv_params_t p = {
        .in_h = h[0], .in_w = h[1], .in_c = h[2], .out_h = h[3], .out_w = h[4], .out_c = h[5],
        .kernel_h = h[6], .kernel_w = h[7], .stride_h = h[8], .stride_w = h[9],
        .dilation_h = h[10], .dilation_w = h[11], .pad_h = h[12], .pad_w = h[13], .depth_multiplier = h[14],
        .input_offset = get_i16(payload + 16), .output_offset = get_i16(payload + 18),
        .act_min = get_i8(payload + 20), .act_max = get_i8(payload + 21),
    };
    const bool has_bias = payload[22] != 0;
    const size_t channels = (size_t)p.out_c;
    if (channels > CONF_MAX_CHANNELS) return PROTO_ERR_BAD_VALUE;
    if (depthwise && p.out_c != p.in_c * p.depth_multiplier) return PROTO_ERR_BAD_VALUE;
    const size_t input_size = (size_t)p.in_h * p.in_w * p.in_c;
    const size_t taps = (size_t)p.kernel_h * p.kernel_w;
    const size_t filter_size = depthwise ? taps * channels : taps * p.in_c * channels;
    *out_size = (size_t)p.out_h * p.out_w * channels;
    if (*out_size > CONF_MAX_OUTPUT) return PROTO_ERR_BAD_VALUE;
    const size_t words = channels * (5u + (has_bias ? 4u : 0u));
    if (len != CONV_HEADER + words + input_size + filter_size) return PROTO_ERR_BAD_LENGTH;

    const uint8_t *at = payload + CONV_HEADER;
    for (size_t c = 0; c < channels; c++, at += 5) {
        scales.channel_multipliers[c].multiplier = (int32_t)proto_get_u32(at);
        scales.channel_multipliers[c].shift = get_i8(at + 4);
        /* What QuantizeMultiplier gives (kernels.h); a shift beyond would shift past the word. */
        if (scales.channel_multipliers[c].shift < -31 || scales.channel_multipliers[c].shift > 30) {
            return PROTO_ERR_BAD_VALUE;
        }
    }
    if (has_bias) {
        unpack_biases(at, channels);
        at += 4u * channels;
    }
    const int8_t *input = (const int8_t *)at;
    const int8_t *filter = (const int8_t *)(at + input_size);
    const int32_t *bias = has_bias ? biases : NULL;
    if (depthwise) {
        k_depthwise_conv2d(&p, input, filter, bias, scales.channel_multipliers, output);
    } else {
        k_conv2d(&p, input, filter, bias, scales.channel_multipliers, output);
    }
    return PROTO_OK;
}

/* A vector carries an FC's exact double scale, mantissa * 2^exponent (kernels.h fc_scale_t); the image takes it
 * in its rounding mode's form. The tflm mode's is TFLite's QuantizeMultiplier of that double, in integers, as
 * hil/firmware/quantization.py computes it for the generated code: frexp's fraction is mantissa / 2^53, so
 * round(fraction * 2^31) is mantissa / 2^22 rounded half up, and the exponent is exponent + 53. */
static fc_rescale_t fc_scale_of(uint64_t mantissa, int32_t exponent) {
#ifdef KERNEL_ROUNDING_TFLM
    if (mantissa == 0) {
        return (qmul_t){0, 0};
    }
    uint64_t fixed = (mantissa + ((uint64_t)1 << 21)) >> 22;
    int32_t shift = exponent + 53;
    if (fixed == ((uint64_t)1 << 31)) {
        fixed /= 2;
        shift++;
    }
    if (shift < -31) {
        return (qmul_t){0, 0};
    }
    return (qmul_t){(int32_t)fixed, shift};
#else
    return (fc_scale_t){mantissa, exponent};
#endif
}

static proto_error_t run_fc(const uint8_t *payload, size_t len, int8_t *output, size_t *out_size) {
    if (len < FC_HEADER) return PROTO_ERR_BAD_LENGTH;
    fc_params_t p = {
        .in_features = payload[1], .out_features = payload[2],
        .input_offset = get_i16(payload + 5), .filter_offset = get_i16(payload + 7),
        .output_offset = get_i16(payload + 9), .act_min = get_i8(payload + 11), .act_max = get_i8(payload + 12),
    };
    const bool per_channel = payload[3] != 0, has_bias = payload[4] != 0;
    const size_t outputs = (size_t)p.out_features, inputs = (size_t)p.in_features;
    const size_t count = per_channel ? outputs : 1u;
    if (outputs > CONF_MAX_CHANNELS) return PROTO_ERR_BAD_VALUE;
    *out_size = outputs;
    if (len != FC_HEADER + 10u * count + (has_bias ? 4u * outputs : 0u) + inputs + outputs * inputs) {
        return PROTO_ERR_BAD_LENGTH;
    }
    const uint8_t *at = payload + FC_HEADER;
    for (size_t s = 0; s < count; s++, at += 10) {
        const uint64_t mantissa = proto_get_u32(at) | ((uint64_t)proto_get_u32(at + 4) << 32);
        /* A double's significand (kernels.h fc_scale_t), or 0: what k_fc_rescale's arithmetic is sized for. */
        if (mantissa != 0 && (mantissa >> 52) != 1u) return PROTO_ERR_BAD_VALUE;
        scales.fc_scales[s] = fc_scale_of(mantissa, get_i16(at + 8));
    }
    if (has_bias) {
        unpack_biases(at, outputs);
        at += 4u * outputs;
    }
    k_fully_connected(&p, (const int8_t *)at, (const int8_t *)(at + inputs), has_bias ? biases : NULL,
                      scales.fc_scales, per_channel, output);
    return PROTO_OK;
}

static proto_error_t run_pool(const uint8_t *payload, size_t len, int8_t *output, size_t *out_size) {
    if (len < POOL_HEADER) return PROTO_ERR_BAD_LENGTH;
    const uint8_t *h = payload + 1;
    pool_params_t p = {
        .in_h = h[0], .in_w = h[1], .channels = h[2], .out_h = h[3], .out_w = h[4], .filter_h = h[5],
        .filter_w = h[6], .stride_h = h[7], .stride_w = h[8], .pad_h = h[9], .pad_w = h[10],
        .act_min = get_i8(payload + 12), .act_max = get_i8(payload + 13),
    };
    *out_size = (size_t)p.out_h * p.out_w * p.channels;
    if (*out_size > CONF_MAX_OUTPUT) return PROTO_ERR_BAD_VALUE;
    if (len != POOL_HEADER + (size_t)p.in_h * p.in_w * p.channels) return PROTO_ERR_BAD_LENGTH;
    k_avg_pool2d(&p, (const int8_t *)(payload + POOL_HEADER), output);
    return PROTO_OK;
}

proto_error_t conformance_run(const uint8_t *payload, size_t len, uint8_t *out, size_t *out_len) {
    if (len < 1) return PROTO_ERR_BAD_LENGTH;
    int8_t *output = (int8_t *)(out + 1);
    size_t size = 0;
    proto_error_t error;
    switch (payload[0]) {
    case CONF_CONV_2D:
    case CONF_DEPTHWISE_CONV_2D:
        error = run_conv(payload, len, payload[0] == CONF_DEPTHWISE_CONV_2D, output, &size);
        break;
    case CONF_FULLY_CONNECTED:
        error = run_fc(payload, len, output, &size);
        break;
    case CONF_AVERAGE_POOL_2D:
        error = run_pool(payload, len, output, &size);
        break;
    case CONF_RESHAPE:
        size = len - 1u;
        error = size <= CONF_MAX_OUTPUT ? PROTO_OK : PROTO_ERR_BAD_VALUE;
        if (error == PROTO_OK) k_copy((const int8_t *)(payload + 1), output, (int32_t)size);
        break;
    default:
        error = PROTO_ERR_BAD_VALUE;
    }
    if (error != PROTO_OK) return error;
    out[0] = payload[0];
    *out_len = 1u + size;
    return PROTO_OK;
}
