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

/* The DSP path where the core has Armv7E-M's DSP instructions; -DKERNELS_PORTABLE forces the
 * portable kernels (bench/firmware.py builds both to compare them). */
#if defined(__ARM_FEATURE_DSP) && !defined(KERNELS_PORTABLE)
#define KERNELS_DSP 1
#include <arm_acle.h>
#else
#define KERNELS_DSP 0
#endif

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

/* ---- portable kernels: every core, and the host build the tests check against LiteRT ---- *
 * Not inlined into the public k_* functions that choose them: inlined there, gcc compiles their
 * loops worse (15-40% more instructions on the Cortex-M4), and bench/firmware.py compares the
 * DSP kernels with these as they always ran. */

static __attribute__((noinline)) void portable_conv2d(const conv_params_t *p, const int8_t *input,
    const int8_t *filter, const int32_t *bias, const qmul_t *per_channel, int8_t *output)
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

static __attribute__((noinline)) void portable_depthwise_conv2d(const conv_params_t *p, const int8_t *input,
    const int8_t *filter, const int32_t *bias, const qmul_t *per_channel, int8_t *output)
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

static __attribute__((noinline)) void portable_fully_connected(const fc_params_t *p, const int8_t *input,
    const int8_t *weights, const int32_t *bias, const fc_rescale_t *scale, int per_channel,
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

#if !KERNELS_DSP /* the DSP build's pool is dsp_avg_pool2d, for every shape */
static __attribute__((noinline)) void portable_avg_pool2d(const pool_params_t *p, const int8_t *input, int8_t *output)
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
#endif

/* ---- DSP kernels: Armv7E-M (Cortex-M4, M7), selected at compile time ------------------- *
 *
 * Same arithmetic as the portable kernels, faster: the products are the same int16 x int16
 * values (an input plus its offset, and a weight, both fit in 16 bits) and the int32 sums wrap
 * the same way (SMLAD and SMLABB wrap; they only set the Q flag, which nothing reads), so only
 * the order of the additions changes, and modular addition does not care: every output is
 * bit-identical. The convolutions' rescale is the portable arithmetic in fewer instructions
 * (conv_rescale, which says why it is the same); FULLY_CONNECTED's is the rounding mode's own
 * (fc_rescale).
 *
 * Techniques as in CMSIS-NN, written here from the instruction set:
 *  - CONV_2D: im2col. Two output pixels at a time, the taps of each are gathered (input plus
 *    offset, 0 in the padding) into an int16 column in `scratch`; then 2 output channels x
 *    2 columns per inner loop, 4 taps a step: a word of 4 int8 weights is expanded by SXTB16
 *    into (w0, w2) and (w1, w3), so the column is stored in that order too (each group of 4
 *    as x0, x2, x1, x3: `widen_reordered`), and SMLAD does two multiply-accumulates.
 *  - AVERAGE_POOL_2D: the window clipped to the image once per output pixel instead of a
 *    test per tap, 4 channels summed at a time (SXTAB16).
 *  - FULLY_CONNECTED: the input widened once into the same reordered int16 form, then two
 *    rows at a time, 4 SMLAD per row per 8 inputs.
 *  - DEPTHWISE_CONV_2D (depth multiplier 1, no dilation): per output row, the kernel_h input
 *    rows under it widened (plus offset) into `scratch` once for all the row's pixels; then
 *    4 channels at a time: weight words expanded by SXTB16 into channel pairs, SMLABB/SMLATT
 *    one channel each, over the taps inside the image (worked out once per pixel: no test in
 *    the loop).
 *  - The rescale: conv_rescale, with each channel's constants worked out once per call.
 * Shapes outside what a fast path handles (a column larger than the scratch, more output
 * channels than K_DSP_MAX_CHANNELS, a depthwise layer whose channels are not a multiple of 4,
 * whose depth multiplier is not 1 or that is dilated) fall back to the portable kernel; the
 * generator refuses models whose layers would not fit the scratch or have too many channels
 * (hil/firmware/codegen.py), so a model never silently takes the slow path. */
#if KERNELS_DSP

/* CONV_2D's two im2col columns, DEPTHWISE_CONV_2D's widened input rows, or FULLY_CONNECTED's
 * widened input. */
static int16_t scratch[K_DSP_SCRATCH_Q15] __attribute__((aligned(4)));

/* Unaligned word loads and stores are allowed on Armv7-M for normal memory; __builtin_memcpy
 * of 4 bytes becomes one LDR/STR (a builtin, so no libc call even with -ffreestanding). */
static inline int32_t read_word(const void *source)
{
    int32_t word;
    __builtin_memcpy(&word, source, sizeof word);
    return word;
}

static inline void write_word(void *target, int32_t word)
{
    __builtin_memcpy(target, &word, sizeof word);
}

/* SXTB16 with ROR #8: bytes 1 and 3 sign-extended into the halves. */
static inline int32_t sxtb16_ror8(int32_t word)
{
    int32_t result;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(result) : "r"(word));
    return result;
}

/* SXTAB16 with ROR #8: halves of `pair` plus bytes 1 and 3 of `word`, sign-extended. */
static inline int32_t sxtab16_ror8(int32_t pair, int32_t word)
{
    int32_t result;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(result) : "r"(pair), "r"(word));
    return result;
}

/* An int16 in both halves of a word, for the halfword adds. */
static inline int32_t both_halves(int32_t value)
{
    return (int32_t)(((uint32_t)value & 0xFFFFu) * 0x10001u);
}

/* target[0..n) = source + offset as int16, each whole group of 4 stored x0, x2, x1, x3 (the
 * order SXTB16 expands a weight word in), the last n % 4 in order. */
static void widen_reordered(const int8_t *source, int32_t n, int32_t offset, int16_t *target)
{
    const int32_t offsets = both_halves(offset);
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const int32_t word = read_word(source + i);
        write_word(target + i, __sxtab16(offsets, word));
        write_word(target + i + 2, sxtab16_ror8(offsets, word));
    }
    for (; i < n; i++) {
        target[i] = (int16_t)(source[i] + offset);
    }
}

/* Swap the middle two of each whole group of 4: natural order into the SXTB16 order. */
static void reorder_groups(int16_t *column, int32_t n)
{
    for (int32_t i = 0; i + 4 <= n; i += 4) {
        const int16_t second = column[i + 1];
        column[i + 1] = column[i + 2];
        column[i + 2] = second;
    }
}

/* The im2col column of output pixel (out_y, out_x): kernel_h * kernel_w * in_c entries in the
 * filter's [ky][kx][ic] order, input plus offset, 0 where a tap falls in the padding. */
static void im2col(const conv_params_t *p, const int8_t *input, int32_t out_y, int32_t out_x, int16_t *column)
{
    /* Locals, not p->: the int16 stores below may alias the int16 fields of *p, so gcc would
     * reload each after every store. */
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c, kernel_h = p->kernel_h, kernel_w = p->kernel_w;
    const int32_t dilation_h = p->dilation_h, dilation_w = p->dilation_w, offset = p->input_offset;
    const int32_t in_y0 = out_y * p->stride_h - p->pad_h;
    const int32_t in_x0 = out_x * p->stride_w - p->pad_w;
    const bool whole_groups = (in_c & 3) == 0; /* each tap's channels are whole groups of 4 */
    int16_t *target = column;
    for (int32_t ky = 0; ky < kernel_h; ky++) {
        const int32_t in_y = in_y0 + ky * dilation_h;
        if (in_y < 0 || in_y >= in_h) { /* a row of padding */
            for (int32_t i = 0; i < kernel_w * in_c; i++) {
                target[i] = 0;
            }
            target += kernel_w * in_c;
            continue;
        }
        const int8_t *in_row = input + in_y * in_w * in_c;
        for (int32_t kx = 0; kx < kernel_w; kx++) {
            const int32_t in_x = in_x0 + kx * dilation_w;
            if (in_x < 0 || in_x >= in_w) {
                for (int32_t ic = 0; ic < in_c; ic++) {
                    target[ic] = 0;
                }
            } else if (whole_groups) {
                widen_reordered(in_row + in_x * in_c, in_c, offset, target);
            } else if (in_c == 1) {
                target[0] = (int16_t)(in_row[in_x] + offset);
            } else {
                const int8_t *in = in_row + in_x * in_c;
                for (int32_t ic = 0; ic < in_c; ic++) {
                    target[ic] = (int16_t)(in[ic] + offset);
                }
            }
            target += in_c;
        }
    }
    if (!whole_groups) {
        reorder_groups(column, kernel_h * kernel_w * in_c);
    }
}

/* Dot products of two filter rows with two reordered columns, n taps each: the second row and
 * the second column follow the first (w + n, c + n), so one register n reaches both (LDR's
 * register offset, shifted by 1 for the int16 column). acc[row][column]. The last n % 4 taps
 * one by one. The loop is written in assembly: 13 values are live in it, and gcc, scheduling
 * the loads early, spilled (27 instructions per 16 multiply-accumulates; here 22). */
static void dot_2x2(const int8_t *w, const int16_t *c, int32_t n, int32_t acc[2][2])
{
    int32_t a00 = 0, a01 = 0, a10 = 0, a11 = 0;
    const int32_t whole = n & ~3;
    if (whole > 0) {
        const int8_t *end = w + whole;
        int32_t word0, word1, half, x0, x1;
        __asm__ volatile(
            "1:\n\t"
            "ldr %[word1], [%[w], %[n]]\n\t"
            "ldr %[word0], [%[w]], #4\n\t"
            "ldr %[x0], [%[c]]\n\t"
            "ldr %[x1], [%[c], %[n], lsl #1]\n\t"
            "sxtb16 %[half], %[word0]\n\t"
            "smlad %[a00], %[half], %[x0], %[a00]\n\t"
            "smlad %[a01], %[half], %[x1], %[a01]\n\t"
            "sxtb16 %[half], %[word1]\n\t"
            "smlad %[a10], %[half], %[x0], %[a10]\n\t"
            "smlad %[a11], %[half], %[x1], %[a11]\n\t"
            "adds %[c], %[c], #4\n\t"
            "ldr %[x0], [%[c]]\n\t"
            "ldr %[x1], [%[c], %[n], lsl #1]\n\t"
            "sxtb16 %[half], %[word0], ror #8\n\t"
            "smlad %[a00], %[half], %[x0], %[a00]\n\t"
            "smlad %[a01], %[half], %[x1], %[a01]\n\t"
            "sxtb16 %[half], %[word1], ror #8\n\t"
            "smlad %[a10], %[half], %[x0], %[a10]\n\t"
            "smlad %[a11], %[half], %[x1], %[a11]\n\t"
            "adds %[c], %[c], #4\n\t"
            "cmp %[w], %[end]\n\t"
            "bne 1b"
            : [a00] "+r"(a00), [a01] "+r"(a01), [a10] "+r"(a10), [a11] "+r"(a11), [w] "+r"(w), [c] "+r"(c),
              [word0] "=&r"(word0), [word1] "=&r"(word1), [half] "=&r"(half), [x0] "=&r"(x0), [x1] "=&r"(x1)
            : [n] "r"(n), [end] "r"(end)
            : "cc", "memory");
    }
    /* The last n % 4 taps; w and c have moved past the whole groups. Wrapping int32 sums, as
     * in the portable loop (unsigned: no signed-overflow UB). */
    for (int32_t i = 0; i < n - whole; i++) {
        a00 = (int32_t)((uint32_t)a00 + (uint32_t)(w[i] * c[i]));
        a01 = (int32_t)((uint32_t)a01 + (uint32_t)(w[i] * c[n + i]));
        a10 = (int32_t)((uint32_t)a10 + (uint32_t)(w[n + i] * c[i]));
        a11 = (int32_t)((uint32_t)a11 + (uint32_t)(w[n + i] * c[n + i]));
    }
    acc[0][0] = a00;
    acc[0][1] = a01;
    acc[1][0] = a10;
    acc[1][1] = a11;
}

/* One filter row with one reordered column. */
static int32_t dot_1x1(const int8_t *w, const int16_t *c, int32_t n)
{
    int32_t acc = 0;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const int32_t word = read_word(w + i);
        acc = __smlad(__sxtb16(word), read_word(c + i), acc);
        acc = __smlad(sxtb16_ror8(word), read_word(c + i + 2), acc);
    }
    for (; i < n; i++) {
        acc = (int32_t)((uint32_t)acc + (uint32_t)(w[i] * c[i]));
    }
    return acc;
}

/* The rescale of k_multiply_by_quantized_multiplier in fewer instructions, bit-identical for
 * every input except a multiplier of INT32_MIN, which QuantizeMultiplier never gives (0 or
 * [2^30, 2^31)):
 *  - SaturatingRoundingDoublingHighMul: gemmlowp adds 2^30 to the product ab (1 - 2^30 when
 *    ab < 0) and truncates the division by 2^31 toward zero. For ab < 0 that truncation is
 *    ceil((ab + 1 - 2^30) / 2^31) = floor((ab + 2^30) / 2^31), the same floor as for ab >= 0:
 *    one SMLAL and a shift. Only INT32_MIN * INT32_MIN saturates, excluded above.
 *  - RoundingDivideByPOT: gemmlowp's own form (a mask, a threshold, a compare), which cannot
 *    overflow where adding the rounding term first would.
 * What depends on the channel only (its bias, the shifts, the mask) is worked out once per
 * kernel call into `rescales`, so an output costs its multiply, rounding and store. */
typedef struct {
    int32_t bias, multiplier, left_shift, right_shift, mask, half_mask;
} channel_rescale_t;

static channel_rescale_t rescales[K_DSP_MAX_CHANNELS];

/* What turns a conv accumulator into its output byte, read once per kernel call: the outputs
 * are int8 stores, which may alias the parameters, so the compiler would reload them all after
 * every output. */
typedef struct {
    const channel_rescale_t *channel;
    int32_t offset, act_min, act_max;
    bool narrowed; /* an activation range inside int8's (else SSAT's saturation to int8 is the clamp) */
} conv_output_t;

static conv_output_t conv_output_of(const conv_params_t *p, const int32_t *bias, const qmul_t *per_channel)
{
    for (int32_t oc = 0; oc < p->out_c; oc++) {
        const int32_t shift = per_channel[oc].shift;
        const int32_t left_shift = shift > 0 ? shift : 0;
        const int32_t right_shift = shift > 0 ? 0 : -shift;
        const int32_t mask = (int32_t)(((uint32_t)1 << right_shift) - 1u);
        const channel_rescale_t channel = {bias != NULL ? bias[oc] : 0, per_channel[oc].multiplier, left_shift,
                                           right_shift, mask, mask >> 1};
        rescales[oc] = channel;
    }
    const conv_output_t o = {rescales, p->output_offset, p->act_min, p->act_max,
                             p->act_min > INT8_MIN || p->act_max < INT8_MAX};
    return o;
}

/* requantize() of the portable kernels, with the bias added first as they add it, up to the
 * clamp. */
static inline int32_t conv_rescale(int32_t acc, const channel_rescale_t *r, int32_t offset)
{
    const int32_t biased = (int32_t)((uint32_t)acc + (uint32_t)r->bias);
    const int32_t shifted = (int32_t)((uint32_t)biased << r->left_shift);
    const int32_t high = (int32_t)(((int64_t)shifted * r->multiplier + ((int64_t)1 << 30)) >> 31);
    const int32_t threshold = r->half_mask + (int32_t)((uint32_t)high >> 31);
    const int32_t scaled = (high >> r->right_shift) + ((high & r->mask) > threshold ? 1 : 0);
    return (int32_t)((uint32_t)scaled + (uint32_t)offset);
}

/* out[c] for the sums acc[c] of the channels c < count of one output pixel. The clamp to
 * act_min .. act_max is the int8 saturation, one SSAT, unless the range is narrower; the test
 * is made once, outside the loops. */
static __attribute__((noinline)) void conv_outputs(const int32_t *acc, int32_t count, const conv_output_t *o,
                                                   int8_t *out)
{
    const channel_rescale_t *r = o->channel;
    const int32_t offset = o->offset;
    if (o->narrowed) {
        const int32_t act_min = o->act_min, act_max = o->act_max;
        for (int32_t i = 0; i < count; i++) {
            out[i] = (int8_t)clamp(conv_rescale(acc[i], &r[i], offset), act_min, act_max);
        }
    } else {
        for (int32_t i = 0; i < count; i++) {
            out[i] = (int8_t)__ssat(conv_rescale(acc[i], &r[i], offset), 8);
        }
    }
}

/* Output channels of one or two pixels (out0, and out1 unless it is NULL) from their columns. */
static void conv_pixels(int32_t taps, int32_t out_c, const int8_t *filter, conv_output_t o,
                        const int16_t *col0, const int16_t *col1, int8_t *out0, int8_t *out1)
{
    /* All the sums first, then all the rescales: each loop on its own keeps its values in
     * registers (together, gcc spills). acc[column][oc]. */
    int32_t acc[2][K_DSP_MAX_CHANNELS];
    int32_t oc = 0;
    for (; oc + 2 <= out_c; oc += 2) {
        const int8_t *w0 = filter + oc * taps;
        if (out1 != NULL) {
            int32_t block[2][2];
            dot_2x2(w0, col0, taps, block); /* col1 = col0 + taps */
            acc[0][oc] = block[0][0];
            acc[0][oc + 1] = block[1][0];
            acc[1][oc] = block[0][1];
            acc[1][oc + 1] = block[1][1];
        } else {
            acc[0][oc] = dot_1x1(w0, col0, taps);
            acc[0][oc + 1] = dot_1x1(w0 + taps, col0, taps);
        }
    }
    if (oc < out_c) {
        const int8_t *w = filter + oc * taps;
        acc[0][oc] = dot_1x1(w, col0, taps);
        if (out1 != NULL) {
            acc[1][oc] = dot_1x1(w, col1, taps);
        }
    }
    conv_outputs(acc[0], out_c, &o, out0);
    if (out1 != NULL) {
        conv_outputs(acc[1], out_c, &o, out1);
    }
}

static bool dsp_conv2d(const conv_params_t *p, const int8_t *input, const int8_t *filter,
                       const int32_t *bias, const qmul_t *per_channel, int8_t *output)
{
    const int32_t taps = p->kernel_h * p->kernel_w * p->in_c;
    if (2 * taps > K_DSP_SCRATCH_Q15 || p->out_c > K_DSP_MAX_CHANNELS) {
        return false;
    }
    const conv_output_t o = conv_output_of(p, bias, per_channel);
    int16_t *col0 = scratch, *col1 = scratch + taps;
    int8_t *pending_out = NULL; /* the pixel whose column is in col0, waiting for its pair */
    for (int32_t out_y = 0; out_y < p->out_h; out_y++) {
        for (int32_t out_x = 0; out_x < p->out_w; out_x++) {
            int8_t *out = output + (out_y * p->out_w + out_x) * p->out_c;
            if (pending_out == NULL) {
                im2col(p, input, out_y, out_x, col0);
                pending_out = out;
            } else {
                im2col(p, input, out_y, out_x, col1);
                conv_pixels(taps, p->out_c, filter, o, col0, col1, pending_out, out);
                pending_out = NULL;
            }
        }
    }
    if (pending_out != NULL) {
        conv_pixels(taps, p->out_c, filter, o, col0, NULL, pending_out, NULL);
    }
    return true;
}

/* The range [*first, *last) of kernel taps k whose input coordinate origin + k lies in
 * [0, size): contiguous, as the coordinate grows with k. */
static void taps_inside(int32_t origin, int32_t kernel, int32_t size, int32_t *first, int32_t *last)
{
    int32_t k = 0;
    while (k < kernel && origin + k < 0) {
        k++;
    }
    *first = k;
    while (k < kernel && origin + k < size) {
        k++;
    }
    *last = k;
}

/* One output pixel's sums, every channel, over rows x cols taps: x the widened input rows
 * (x_row_step int16 apart, each 4 channels as (c0, c2), (c1, c3)), w the filter (w_row_step
 * bytes a row), the taps of a row `channels` apart in both; acc[c] is channel c's. Four
 * channels at a time. Not inlined: on its own the loop keeps everything in registers; inlined
 * in the loop nest, gcc spills. */
static __attribute__((noinline)) void depthwise_pixel(const int16_t *x, const int8_t *w, int32_t rows, int32_t cols,
                                                      int32_t channels, int32_t x_row_step, int32_t w_row_step,
                                                      int32_t *acc)
{
    for (int32_t c = 0; c < channels; c += 4) {
        int32_t acc0 = 0, acc1 = 0, acc2 = 0, acc3 = 0;
        const int16_t *x_row = x + c;
        const int8_t *w_row = w + c;
        for (int32_t r = rows; r > 0; r--) {
            const int16_t *xt = x_row;
            const int8_t *wt = w_row;
            for (int32_t t = cols; t > 0; t--) {
                const int32_t w_word = read_word(wt);
                const int32_t w02 = __sxtb16(w_word), w13 = sxtb16_ror8(w_word);
                const int32_t x02 = read_word(xt), x13 = read_word(xt + 2);
                acc0 = __smlabb(x02, w02, acc0);
                acc2 = __smlatt(x02, w02, acc2);
                acc1 = __smlabb(x13, w13, acc1);
                acc3 = __smlatt(x13, w13, acc3);
                xt += channels;
                wt += channels;
            }
            x_row += x_row_step;
            w_row += w_row_step;
        }
        acc[c] = acc0;
        acc[c + 1] = acc1;
        acc[c + 2] = acc2;
        acc[c + 3] = acc3;
    }
}

static bool dsp_depthwise_conv2d(const conv_params_t *p, const int8_t *input, const int8_t *filter,
                                 const int32_t *bias, const qmul_t *per_channel, int8_t *output)
{
    const int32_t channels = p->in_c;
    const int32_t row = p->in_w * channels; /* one input row, widened */
    if (p->depth_multiplier != 1 || (channels & 3) != 0 || p->dilation_h != 1 || p->dilation_w != 1 ||
        p->kernel_h * row > K_DSP_SCRATCH_Q15 || channels > K_DSP_MAX_CHANNELS) {
        return false;
    }
    const conv_output_t o = conv_output_of(p, bias, per_channel);
    for (int32_t out_y = 0; out_y < p->out_h; out_y++) {
        const int32_t in_y0 = out_y * p->stride_h - p->pad_h;
        int32_t ky_first, ky_last;
        taps_inside(in_y0, p->kernel_h, p->in_h, &ky_first, &ky_last);
        /* The input rows under the kernel, plus offset, row ky at scratch + ky * row. */
        for (int32_t ky = ky_first; ky < ky_last; ky++) {
            widen_reordered(input + (in_y0 + ky) * row, row, p->input_offset, scratch + ky * row);
        }
        for (int32_t out_x = 0; out_x < p->out_w; out_x++) {
            const int32_t in_x0 = out_x * p->stride_w - p->pad_w;
            int32_t kx_first, kx_last;
            taps_inside(in_x0, p->kernel_w, p->in_w, &kx_first, &kx_last);
            const int16_t *x = scratch + ky_first * row + (in_x0 + kx_first) * channels;
            const int8_t *w = filter + (ky_first * p->kernel_w + kx_first) * channels;
            int8_t *out = output + (out_y * p->out_w + out_x) * channels;
            int32_t acc[K_DSP_MAX_CHANNELS];
            depthwise_pixel(x, w, ky_last - ky_first, kx_last - kx_first, channels, row, p->kernel_w * channels,
                            acc);
            conv_outputs(acc, channels, &o, out);
        }
    }
    return true;
}

/* A filter row's dot product with the widened input when the weights have an offset
 * (per-tensor weights with a zero point): each weight pair plus the offset pair. */
static int32_t dot_offset_weights(const int8_t *w, int32_t filter_offset, const int16_t *x, int32_t n)
{
    const int32_t offsets = both_halves(filter_offset);
    int32_t acc = 0;
    int32_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const int32_t word = read_word(w + i);
        acc = __smlad(__sxtab16(offsets, word), read_word(x + i), acc);
        acc = __smlad(sxtab16_ror8(offsets, word), read_word(x + i + 2), acc);
    }
    for (; i < n; i++) {
        acc = (int32_t)((uint32_t)acc + (uint32_t)((w[i] + filter_offset) * x[i]));
    }
    return acc;
}

/* Two rows at once, 8 inputs a step: acc[0], acc[1]. */
static void dot_2_rows(const int8_t *w0, const int8_t *w1, const int16_t *x, int32_t n, int32_t acc[2])
{
    int32_t a0 = 0, a1 = 0;
    int32_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const int32_t x0 = read_word(x + i), x1 = read_word(x + i + 2);
        const int32_t x2 = read_word(x + i + 4), x3 = read_word(x + i + 6);
        const int32_t u0 = read_word(w0 + i), u1 = read_word(w0 + i + 4);
        const int32_t v0 = read_word(w1 + i), v1 = read_word(w1 + i + 4);
        a0 = __smlad(__sxtb16(u0), x0, a0);
        a0 = __smlad(sxtb16_ror8(u0), x1, a0);
        a0 = __smlad(__sxtb16(u1), x2, a0);
        a0 = __smlad(sxtb16_ror8(u1), x3, a0);
        a1 = __smlad(__sxtb16(v0), x0, a1);
        a1 = __smlad(sxtb16_ror8(v0), x1, a1);
        a1 = __smlad(__sxtb16(v1), x2, a1);
        a1 = __smlad(sxtb16_ror8(v1), x3, a1);
    }
    acc[0] = (int32_t)((uint32_t)a0 + (uint32_t)dot_1x1(w0 + i, x + i, n - i));
    acc[1] = (int32_t)((uint32_t)a1 + (uint32_t)dot_1x1(w1 + i, x + i, n - i));
}

static int8_t fc_output(int32_t acc, int32_t o, const fc_params_t *p, const int32_t *bias,
                        const fc_rescale_t *scale, int per_channel)
{
    if (bias != NULL) {
        acc = (int32_t)((uint32_t)acc + (uint32_t)bias[o]);
    }
    const int32_t scaled = fc_rescale(acc, &scale[per_channel ? o : 0]);
    const int64_t shifted = (int64_t)scaled + p->output_offset; /* saturating, as the portable kernel */
    return (int8_t)(shifted < p->act_min ? p->act_min : shifted > p->act_max ? p->act_max : shifted);
}

static bool dsp_fully_connected(const fc_params_t *p, const int8_t *input, const int8_t *weights,
                                const int32_t *bias, const fc_rescale_t *scale, int per_channel,
                                int8_t *output)
{
    const int32_t n = p->in_features;
    if (n > K_DSP_SCRATCH_Q15) {
        return false;
    }
    /* Widened as whole groups of 4 from index 0: the weight rows are expanded the same way. */
    widen_reordered(input, n, p->input_offset, scratch);
    int32_t o = 0;
    if (p->filter_offset == 0) {
        for (; o + 2 <= p->out_features; o += 2) {
            int32_t acc[2];
            dot_2_rows(weights + o * n, weights + (o + 1) * n, scratch, n, acc);
            output[o] = fc_output(acc[0], o, p, bias, scale, per_channel);
            output[o + 1] = fc_output(acc[1], o + 1, p, bias, scale, per_channel);
        }
    }
    for (; o < p->out_features; o++) {
        const int32_t acc = dot_offset_weights(weights + o * n, p->filter_offset, scratch, n);
        output[o] = fc_output(acc, o, p, bias, scale, per_channel);
    }
    return true;
}

/* The portable kernel's rounded average of `count` taps summing to `sum`, clamped. */
static inline int8_t pool_output(int32_t sum, int32_t count, int32_t act_min, int32_t act_max)
{
    int32_t average = 0;
    if (count > 0) {
        average = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
    }
    return (int8_t)clamp(average, act_min, act_max);
}

/* AVERAGE_POOL_2D with the window clipped to the image once per output pixel (taps_inside)
 * rather than a test per tap, and 4 channels summed at a time: SXTAB16 adds bytes 0 and 2 of
 * a word to two int16 sums, its ROR #8 form bytes 1 and 3. An int16 sum holds 255 taps of
 * int8 exactly (|sum| <= 255 * 128 < 2^15); larger windows, or channels not a multiple of 4,
 * are summed one channel at a time. The sums, counts and rounded division are the portable
 * kernel's. */
static void dsp_avg_pool2d(const pool_params_t *p, const int8_t *input, int8_t *output)
{
    const int32_t channels = p->channels;
    const int32_t row = p->in_w * channels;
    const int32_t act_min = p->act_min, act_max = p->act_max;
    const bool by_fours = (channels & 3) == 0 && p->filter_h * p->filter_w <= 255;
    for (int32_t out_y = 0; out_y < p->out_h; out_y++) {
        const int32_t in_y0 = out_y * p->stride_h - p->pad_h;
        int32_t ky_first, ky_last;
        taps_inside(in_y0, p->filter_h, p->in_h, &ky_first, &ky_last);
        const int32_t rows = ky_last - ky_first;
        for (int32_t out_x = 0; out_x < p->out_w; out_x++) {
            const int32_t in_x0 = out_x * p->stride_w - p->pad_w;
            int32_t kx_first, kx_last;
            taps_inside(in_x0, p->filter_w, p->in_w, &kx_first, &kx_last);
            const int32_t cols = kx_last - kx_first;
            const int32_t count = rows * cols;
            const int8_t *window = input + (in_y0 + ky_first) * row + (in_x0 + kx_first) * channels;
            int8_t *out = output + (out_y * p->out_w + out_x) * channels;
            int32_t c = 0;
            for (; by_fours && c < channels; c += 4) {
                int32_t sums02 = 0, sums13 = 0;
                const int8_t *in_row = window + c;
                for (int32_t ky = 0; ky < rows; ky++) {
                    const int8_t *in = in_row;
                    for (int32_t kx = 0; kx < cols; kx++) {
                        const int32_t word = read_word(in);
                        sums02 = __sxtab16(sums02, word);
                        sums13 = sxtab16_ror8(sums13, word);
                        in += channels;
                    }
                    in_row += row;
                }
                out[c] = pool_output((int16_t)sums02, count, act_min, act_max);
                out[c + 1] = pool_output((int16_t)sums13, count, act_min, act_max);
                out[c + 2] = pool_output(sums02 >> 16, count, act_min, act_max);
                out[c + 3] = pool_output(sums13 >> 16, count, act_min, act_max);
            }
            for (; c < channels; c++) {
                int32_t sum = 0;
                const int8_t *in_row = window + c;
                for (int32_t ky = 0; ky < rows; ky++) {
                    const int8_t *in = in_row;
                    for (int32_t kx = 0; kx < cols; kx++) {
                        sum += *in;
                        in += channels;
                    }
                    in_row += row;
                }
                out[c] = pool_output(sum, count, act_min, act_max);
            }
        }
    }
}

#endif /* KERNELS_DSP */

/* ---- the public kernels: the DSP path where the core has one, else the portable one ---- */

void k_conv2d(const conv_params_t *p, const int8_t *input, const int8_t *filter,
              const int32_t *bias, const qmul_t *per_channel, int8_t *output)
{
#if KERNELS_DSP
    if (dsp_conv2d(p, input, filter, bias, per_channel, output)) {
        return;
    }
#endif
    portable_conv2d(p, input, filter, bias, per_channel, output);
}

void k_depthwise_conv2d(const conv_params_t *p, const int8_t *input, const int8_t *filter,
                        const int32_t *bias, const qmul_t *per_channel, int8_t *output)
{
#if KERNELS_DSP
    if (dsp_depthwise_conv2d(p, input, filter, bias, per_channel, output)) {
        return;
    }
#endif
    portable_depthwise_conv2d(p, input, filter, bias, per_channel, output);
}

void k_fully_connected(const fc_params_t *p, const int8_t *input, const int8_t *weights,
                       const int32_t *bias, const fc_rescale_t *scale, int per_channel,
                       int8_t *output)
{
#if KERNELS_DSP
    if (dsp_fully_connected(p, input, weights, bias, scale, per_channel, output)) {
        return;
    }
#endif
    portable_fully_connected(p, input, weights, bias, scale, per_channel, output);
}

void k_avg_pool2d(const pool_params_t *p, const int8_t *input, int8_t *output)
{
#if KERNELS_DSP
    dsp_avg_pool2d(p, input, output);
#else
    portable_avg_pool2d(p, input, output);
#endif
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
