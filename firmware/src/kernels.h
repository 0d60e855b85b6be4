/* int8 inference kernels with TFLite's reference integer semantics, bit for bit.
 *
 * Ground truth is LiteRT with OpResolverType.BUILTIN_REF (hil/litert.py); the tests in
 * tests/test_kernels.py compare every output byte against it. Layout is NHWC, batch 1.
 * Filters are in TFLite's order: conv [out_c][kh][kw][in_c], depthwise [1][kh][kw][out_c],
 * fully connected [out][in].
 *
 * Every quantization parameter arrives precomputed as an integer (hil/firmware/single_op.py
 * shows how TFLite's Prepare derives them): no floating point, no heap, no libc at run
 * time; the only division is one per average-pool output.
 *
 * Two rescaling rules, because LiteRT's reference kernels use two:
 *  - CONV_2D and DEPTHWISE_CONV_2D: MultiplyByQuantizedMultiplier in its double-rounding
 *    (gemmlowp) form, with a per-channel (multiplier, shift) from QuantizeMultiplier.
 *  - FULLY_CONNECTED: round(double(acc) * scale), ties away from zero, where scale is the
 *    double input_scale * filter_scale / output_scale. The kernel carries that double
 *    exactly (fc_scale_t) and reproduces the double product with integer arithmetic.
 * TFLM rescales FULLY_CONNECTED as the convolutions are; an image built with
 * -DKERNEL_ROUNDING_TFLM does the same (fc_rescale_t below, docs/firmware.md "Rounding mode").
 */
#ifndef KERNELS_H
#define KERNELS_H

#include <stdint.h>

/* TFLite QuantizeMultiplier output: real ~= multiplier * 2^(shift - 31), multiplier in
 * [2^30, 2^31) (or 0); shift > 0 is a left shift. Valid shifts: -31..30. */
typedef struct {
    int32_t multiplier;
    int32_t shift;
} qmul_t;

/* Added for FULLY_CONNECTED: the double scale = input_scale * filter_scale / output_scale
 * (each scale a float32 widened to double, product and quotient in double), stored
 * exactly as scale = mantissa * 2^exponent with mantissa its 53-bit significand
 * (2^52 <= mantissa < 2^53), or mantissa 0 for a zero scale. */
typedef struct {
    uint64_t mantissa;
    int32_t exponent;
} fc_scale_t;

/* The FULLY_CONNECTED rounding mode, fixed when the image is built (docs/decisions.md, Which
 * reference): LiteRT's by default, one rounding of the double product (fc_scale_t,
 * k_fc_rescale); with KERNEL_ROUNDING_TFLM defined, TFLM's, QuantizeMultiplier of the same
 * double and k_multiply_by_quantized_multiplier (qmul_t). The generated model code emits the
 * scales in the form of the mode it is compiled in. */
#ifdef KERNEL_ROUNDING_TFLM
typedef qmul_t fc_rescale_t;
#else
typedef fc_scale_t fc_rescale_t;
#endif

/* CONV_2D and DEPTHWISE_CONV_2D. */
typedef struct {
    int16_t in_h, in_w, in_c, out_h, out_w, out_c;
    int16_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w;
    int16_t pad_h, pad_w;      /* top/left padding as TFLite computes it (ComputePaddingHeightWidth) */
    int16_t depth_multiplier;  /* depthwise only: out_c = in_c * depth_multiplier */
    int32_t input_offset;      /* = -input_zero_point */
    int32_t output_offset;     /* = output_zero_point */
    int32_t act_min, act_max;  /* fused activation range in the output's int8 domain */
} conv_params_t;

/* FULLY_CONNECTED. filter_offset = -filter_zero_point for per-tensor weights; it must be 0
 * for per-channel weights, whose zero points TFLite ignores (they are symmetric). */
typedef struct {
    int16_t in_features, out_features;
    int32_t input_offset, filter_offset, output_offset, act_min, act_max;
} fc_params_t;

/* AVERAGE_POOL_2D (input and output share one quantization, so no offsets). */
typedef struct {
    int16_t in_h, in_w, channels, out_h, out_w, filter_h, filter_w, stride_h, stride_w, pad_h, pad_w;
    int32_t act_min, act_max;
} pool_params_t;

/* The DSP kernels' static scratch (kernels.c), in int16 entries: CONV_2D's two im2col columns
 * (2 * kernel_h * kernel_w * in_c), DEPTHWISE_CONV_2D's widened input rows (kernel_h * in_w *
 * in_c) or FULLY_CONNECTED's widened input (in_features) must fit. hil/firmware/codegen.py
 * refuses a model whose layers do not (its K_DSP_SCRATCH_Q15). */
#define K_DSP_SCRATCH_Q15 1152
/* The most output channels a DSP CONV_2D or DEPTHWISE_CONV_2D rescales from its per-call table
 * (24 bytes a channel, kernels.c); codegen.py's K_DSP_MAX_CHANNELS too. */
#define K_DSP_MAX_CHANNELS 64

/* TFLite MultiplyByQuantizedMultiplier (double rounding): round(x * multiplier * 2^(shift - 31)). */
int32_t k_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift);

/* Added: the FULLY_CONNECTED rescale, (int32)round(double(acc) * scale) with round() ties
 * away from zero; saturates where the double would not fit int32. */
int32_t k_fc_rescale(int32_t acc, const fc_scale_t *scale);

/* bias may be NULL (same as a zero bias); per_channel has out_c entries. */
void k_conv2d(const conv_params_t *p, const int8_t *input, const int8_t *filter,
              const int32_t *bias, const qmul_t *per_channel, int8_t *output);
void k_depthwise_conv2d(const conv_params_t *p, const int8_t *input, const int8_t *filter,
                        const int32_t *bias, const qmul_t *per_channel, int8_t *output);

/* scale: one entry, or out_features entries if per_channel, in the rounding mode's form
 * (fc_rescale_t). bias may be NULL. */
void k_fully_connected(const fc_params_t *p, const int8_t *input, const int8_t *weights,
                       const int32_t *bias, const fc_rescale_t *scale, int per_channel,
                       int8_t *output);

void k_avg_pool2d(const pool_params_t *p, const int8_t *input, int8_t *output);

/* RESHAPE: the bytes do not change. input == output is allowed. */
void k_copy(const int8_t *input, int8_t *output, int32_t size);

#endif /* KERNELS_H */
