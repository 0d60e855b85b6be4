/* int8 kernels matching TFLite's reference integer kernels bit for bit (see kernels.h).
 *
 * Each kernel is the loop nest of TFLite's tensorflow/lite/kernels/internal/reference/
 * integer_ops/{conv,depthwise_conv,fully_connected,pooling}.h with the same arithmetic:
 * 32-bit accumulators, taps outside the image skipped (zero padding in the real domain),
 * then rescale, add the output zero point, clamp.
 *
 * Portability notes, relied on by the bit-exactness: right shifts of negative signed
 * integers are arithmetic and conversions to a narrower signed type wrap, as on GCC, Clang
 * and Arm Compiler for every target we build (C11 leaves both implementation-defined).
 */
#include "kernels.h"

#include <stdbool.h>
#include <stddef.h>

/* ---- rescaling ------------------------------------------------------------------------ */

/* gemmlowp SaturatingRoundingDoublingHighMul: round(a * b / 2^31), ties away from zero. */
static int32_t saturating_rounding_doubling_high_mul(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX; /* the only product whose doubled high half overflows */
    }
    const int64_t ab = (int64_t)a * (int64_t)b;
    const int64_t nudge = ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30));
    const int64_t sum = ab + nudge;
    /* gemmlowp divides by 2^31, truncating toward zero; a shift floors, so bias negatives
     * by 2^31 - 1 first. Avoids a 64-bit division, which is a library call on Cortex-M. */
    const int64_t biased = sum >= 0 ? sum : sum + (((int64_t)1 << 31) - 1);
    return (int32_t)(biased >> 31);
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero. */
static int32_t rounding_divide_by_pot(int32_t x, int32_t exponent)
{
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

int32_t k_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left_shift = shift > 0 ? shift : 0;
    const int32_t right_shift = shift > 0 ? 0 : -shift;
    /* TFLite computes x * (1 << left_shift) in int32 and lets it wrap. */
    const int32_t shifted = (int32_t)((uint32_t)x << left_shift);
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right_shift);
}

/* Number of significant bits of the 128-bit value hi:lo (0 for zero). */
static int32_t bit_length_128(uint64_t hi, uint64_t lo)
{
    int32_t bits = hi != 0 ? 64 : 0;
    for (uint64_t top = hi != 0 ? hi : lo; top != 0; top >>= 1) {
        bits++;
    }
    return bits;
}

int32_t k_fc_rescale(int32_t acc, const fc_scale_t *scale)
{
    if (acc == 0 || scale->mantissa == 0) {
        return 0;
    }
    const bool negative = acc < 0;
    const uint64_t magnitude = negative ? (uint64_t)0 - (uint64_t)(int64_t)acc : (uint64_t)acc;

    /* 1. The exact product |acc| * mantissa, below 2^31 * 2^53 = 2^84, as 128 bits hi:lo. */
    const uint64_t low_part = magnitude * (scale->mantissa & 0xFFFFFFFFu); /* < 2^63 */
    const uint64_t high_part = magnitude * (scale->mantissa >> 32);      /* < 2^52, weight 2^32 */
    const uint64_t lo = low_part + (high_part << 32);
    const uint64_t hi = (high_part >> 32) + (lo < low_part ? 1u : 0u);

    /* 2. double(acc) * scale is that product rounded to 53 significant bits, ties to even.
     *    At most 84 - 53 = 31 bits go, all from lo. */
    const int32_t excess = bit_length_128(hi, lo) - 53;
    uint64_t significand = lo;
    int32_t exponent = scale->exponent;
    if (excess > 0) {
        const uint64_t dropped = lo & (((uint64_t)1 << excess) - 1);
        const uint64_t half = (uint64_t)1 << (excess - 1);
        significand = (lo >> excess) | (hi << (64 - excess));
        if (dropped > half || (dropped == half && (significand & 1u) != 0)) {
            significand++; /* may reach 2^53: still the exact rounded value */
        }
        exponent += excess;
    }

    /* 3. round() the value significand * 2^exponent to an integer, ties away from zero
     *    (on the magnitude); anything from 2^32 up is marked as 2^32 and saturates below. */
    uint64_t rounded;
    if (exponent >= 0) {
        const bool too_big = exponent >= 32 || (significand >> (32 - exponent)) != 0;
        rounded = too_big ? (uint64_t)1 << 32 : significand << exponent;
    } else if (exponent < -54) {
        rounded = 0; /* significand <= 2^53, so the value is below 1/2 */
    } else {
        const int32_t drop = -exponent;
        const uint64_t fraction = significand & (((uint64_t)1 << drop) - 1);
        rounded = (significand >> drop) + (fraction >= (uint64_t)1 << (drop - 1) ? 1u : 0u);
    }
    if (negative) {
        return rounded >= (uint64_t)1 << 31 ? INT32_MIN : -(int32_t)rounded;
    }
    return rounded > (uint64_t)INT32_MAX ? INT32_MAX : (int32_t)rounded;
}

/* ---- helpers ------------------------------------------------------------------------- */

static int32_t clamp(int32_t value, int32_t low, int32_t high)
{
    if (value < low) {
        return low;
    }
    return value > high ? high : value;
}

/* Rescale one conv/depthwise accumulator (bias already added) into the output's int8 domain. */
static int8_t requantize(int32_t acc, const qmul_t *q, int32_t output_offset, int32_t act_min, int32_t act_max)
{
    const int32_t scaled = k_multiply_by_quantized_multiplier(acc, q->multiplier, q->shift);
    /* TFLite adds in int32 and, in the pathological case of overflow, wraps; so do we,
     * without signed-overflow undefined behaviour. */
    const int32_t shifted = (int32_t)((uint32_t)scaled + (uint32_t)output_offset);
    return (int8_t)clamp(shifted, act_min, act_max);
}

static bool inside(int32_t y, int32_t x, int32_t height, int32_t width)
{
    return y >= 0 && y < height && x >= 0 && x < width;
}

/* ---- kernels ------------------------------------------------------------------------- */

void k_conv2d(const conv_params_t *p, const int8_t *input, const int8_t *filter,
              const int32_t *bias, const qmul_t *per_channel, int8_t *output)
{
    for (int32_t out_y = 0; out_y < p->out_h; out_y++) {
        const int32_t in_y0 = out_y * p->stride_h - p->pad_h;
        for (int32_t out_x = 0; out_x < p->out_w; out_x++) {
            const int32_t in_x0 = out_x * p->stride_w - p->pad_w;
            for (int32_t oc = 0; oc < p->out_c; oc++) {
                int32_t acc = 0;
                for (int32_t ky = 0; ky < p->kernel_h; ky++) {
                    const int32_t in_y = in_y0 + ky * p->dilation_h;
                    for (int32_t kx = 0; kx < p->kernel_w; kx++) {
                        const int32_t in_x = in_x0 + kx * p->dilation_w;
                        /* A tap in the padding adds nothing: padding is real zero. */
                        if (!inside(in_y, in_x, p->in_h, p->in_w)) {
                            continue;
                        }
                        const int8_t *in = input + (in_y * p->in_w + in_x) * p->in_c;
                        const int8_t *w = filter + ((oc * p->kernel_h + ky) * p->kernel_w + kx) * p->in_c;
                        for (int32_t ic = 0; ic < p->in_c; ic++) {
                            acc += (int32_t)w[ic] * ((int32_t)in[ic] + p->input_offset);
                        }
                    }
                }
                if (bias != NULL) {
                    acc += bias[oc];
                }
                output[(out_y * p->out_w + out_x) * p->out_c + oc] =
                    requantize(acc, &per_channel[oc], p->output_offset, p->act_min, p->act_max);
            }
        }
    }
}

void k_depthwise_conv2d(const conv_params_t *p, const int8_t *input, const int8_t *filter,
                        const int32_t *bias, const qmul_t *per_channel, int8_t *output)
{
    for (int32_t out_y = 0; out_y < p->out_h; out_y++) {
        const int32_t in_y0 = out_y * p->stride_h - p->pad_h;
        for (int32_t out_x = 0; out_x < p->out_w; out_x++) {
            const int32_t in_x0 = out_x * p->stride_w - p->pad_w;
            for (int32_t ic = 0; ic < p->in_c; ic++) {
                /* Output channel oc = ic * depth_multiplier + m reads input channel ic only. */
                for (int32_t m = 0; m < p->depth_multiplier; m++) {
                    const int32_t oc = ic * p->depth_multiplier + m;
                    int32_t acc = 0;
                    for (int32_t ky = 0; ky < p->kernel_h; ky++) {
                        const int32_t in_y = in_y0 + ky * p->dilation_h;
                        for (int32_t kx = 0; kx < p->kernel_w; kx++) {
                            const int32_t in_x = in_x0 + kx * p->dilation_w;
                            if (!inside(in_y, in_x, p->in_h, p->in_w)) {
                                continue;
                            }
                            const int32_t in_val = input[(in_y * p->in_w + in_x) * p->in_c + ic];
                            const int32_t w_val = filter[(ky * p->kernel_w + kx) * p->out_c + oc];
                            acc += w_val * (in_val + p->input_offset);
                        }
                    }
                    if (bias != NULL) {
                        acc += bias[oc];
                    }
                    output[(out_y * p->out_w + out_x) * p->out_c + oc] =
                        requantize(acc, &per_channel[oc], p->output_offset, p->act_min, p->act_max);
                }
            }
        }
    }
}

/* The FULLY_CONNECTED rescale of the image's rounding mode (kernels.h, fc_rescale_t). */
static int32_t fc_rescale(int32_t acc, const fc_rescale_t *scale)
{
#ifdef KERNEL_ROUNDING_TFLM
    return k_multiply_by_quantized_multiplier(acc, scale->multiplier, scale->shift);
#else
    return k_fc_rescale(acc, scale);
#endif
}

void k_fully_connected(const fc_params_t *p, const int8_t *input, const int8_t *weights,
                       const int32_t *bias, const fc_rescale_t *scale, int per_channel,
                       int8_t *output)
{
    for (int32_t o = 0; o < p->out_features; o++) {
        const int8_t *row = weights + o * p->in_features;
        int32_t acc = 0;
        for (int32_t i = 0; i < p->in_features; i++) {
            acc += ((int32_t)row[i] + p->filter_offset) * ((int32_t)input[i] + p->input_offset);
        }
        if (bias != NULL) {
            acc += bias[o];
        }
        const int32_t scaled = fc_rescale(acc, &scale[per_channel ? o : 0]);
        /* Saturating add: a saturated rescale must stay saturated, not wrap. */
        const int64_t shifted = (int64_t)scaled + p->output_offset;
        output[o] = (int8_t)(shifted < p->act_min ? p->act_min : shifted > p->act_max ? p->act_max : shifted);
    }
}

void k_avg_pool2d(const pool_params_t *p, const int8_t *input, int8_t *output)
{
    for (int32_t out_y = 0; out_y < p->out_h; out_y++) {
        const int32_t in_y0 = out_y * p->stride_h - p->pad_h;
        for (int32_t out_x = 0; out_x < p->out_w; out_x++) {
            const int32_t in_x0 = out_x * p->stride_w - p->pad_w;
            for (int32_t c = 0; c < p->channels; c++) {
                int32_t sum = 0;
                int32_t count = 0; /* taps inside the image: the divisor, as in TFLite */
                for (int32_t ky = 0; ky < p->filter_h; ky++) {
                    for (int32_t kx = 0; kx < p->filter_w; kx++) {
                        const int32_t in_y = in_y0 + ky;
                        const int32_t in_x = in_x0 + kx;
                        if (!inside(in_y, in_x, p->in_h, p->in_w)) {
                            continue;
                        }
                        sum += input[(in_y * p->in_w + in_x) * p->channels + c];
                        count++;
                    }
                }
                /* Round half away from zero with C's truncating division (one per output;
                 * SDIV on Cortex-M4/M7). TFLite padding never leaves a window empty; if
                 * one were, it would give 0 rather than divide by zero. */
                int32_t average = 0;
                if (count > 0) {
                    average = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
                }
                output[(out_y * p->out_w + out_x) * p->channels + c] =
                    (int8_t)clamp(average, p->act_min, p->act_max);
            }
        }
    }
}

void k_copy(const int8_t *input, int8_t *output, int32_t size)
{
    if (input == output) {
        return;
    }
    for (int32_t i = 0; i < size; i++) {
        output[i] = input[i];
    }
}
