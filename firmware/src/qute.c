#include "qute.h"

#include "decisions.h"
#include "hal.h"
#include "trace.h"

/* Starts at 1.0: pure QUTE until the host sets a threshold. */
static uint32_t threshold_q15 = QD_Q15_ONE;

/* Busy windows raised since boot. Each window's ordinal goes out with its answer, so the host
 * can tell it from the window of a request whose answer was lost (docs/measurement.md). It is
 * counted once the window has closed, outside the timed code, so cycle counts are unchanged. */
static uint32_t windows;

uint32_t qute_windows(void) { return windows; }

/* PROFILE (docs/firmware.md, Per-layer profile): while profile_ticks points at the counts, each
 * layer's end adds the ticks since the last mark to its layer and marks anew. Outside a profile the
 * hook is one load and a branch, so INFER's cycles stay as they were. */
static uint64_t *profile_ticks;
static uint32_t profile_mark;

static void profile_layer_done(uint32_t layer) {
    if (profile_ticks == 0) {
        return;
    }
    uint32_t now = hal_cycles();
    profile_ticks[layer] += now - profile_mark;
    profile_mark = now;
}

/* Each layer's end (model.h): the one place per-layer timing and tracing read the layers from, so
 * the generated call sequence stays the same for all of them. */
void model_layer_done(uint32_t layer, const int8_t *output, uint32_t bytes) {
    trace_layer_done(layer, output, bytes);
    profile_layer_done(layer);
}

void qute_profile(const int8_t *input, uint16_t count, uint64_t ticks[MODEL_NUM_LAYERS]) {
    static int8_t logits[1 + MODEL_NUM_HEADS][MODEL_NUM_CLASSES];
    for (uint32_t layer = 0; layer < MODEL_NUM_LAYERS; layer++) {
        ticks[layer] = 0;
    }
    profile_ticks = ticks;
    for (uint16_t i = 0; i < count; i++) {
        profile_mark = hal_cycles_start();
        model_stage1(input, logits[0]);
        /* No exit decision: a profile covers every layer, and the mark restarts at stage 2's start. */
        profile_mark = hal_cycles();
        model_stage2(&logits[1][0]);
    }
    profile_ticks = 0;
}

void qute_set_threshold(uint32_t tau_q15) { threshold_q15 = tau_q15 > QD_Q15_ONE ? QD_Q15_ONE : tau_q15; }

uint32_t qute_threshold(void) { return threshold_q15; }

static void run(const int8_t *input, int mark_pins, qute_result_t *result) {
    model_stage1(input, result->logits[0]);
    uint16_t confidence = qd_exit_confidence(result->logits[0], MODEL_NUM_CLASSES, model_exit_lut);
    int exits = qd_takes_exit(confidence, threshold_q15);
    if (mark_pins) {
        /* Pin 1 rises when stage 1 has decided, on every inference, so its time is stage 1's
         * (what `hil sweep --replay` needs from a full-path run). It stays high to the end
         * when the early exit answers, and falls at once when stage 2 must run. */
        uint32_t decided = hal_cycles();
        hal_gpio_write(PIN_EXIT, 1, decided);
        if (!exits) {
            hal_gpio_write(PIN_EXIT, 0, decided);
        }
    }
    if (exits) {
        result->exited = 1;
        result->predicted = (uint8_t)qd_argmax(result->logits[0], MODEL_NUM_CLASSES);
        result->confidence_q15 = confidence;
        result->num_outputs = 1;
        return;
    }
    model_stage2(&result->logits[1][0]);
    result->exited = 0;
    qd_ensemble(&result->logits[1][0], MODEL_NUM_HEADS, MODEL_NUM_CLASSES, model_head_luts, &result->predicted,
                &result->confidence_q15);
    result->num_outputs = 1 + MODEL_NUM_HEADS;
}

void qute_infer(const int8_t *input, int mark_pins, qute_result_t *result) {
    uint32_t start = hal_cycles_start();
    if (mark_pins) {
        hal_gpio_write(PIN_BUSY, 1, start);
    }
    run(input, mark_pins, result);
    uint32_t end = hal_cycles();
    if (mark_pins) {
        if (result->exited) {
            hal_gpio_write(PIN_EXIT, 0, end);
        }
        hal_gpio_write(PIN_BUSY, 0, end);
        hal_gpio_flush();
    }
    result->cycles = end - start;
    result->window = mark_pins ? ++windows : 0;
}

uint32_t qute_infer_burst(const int8_t *input, uint16_t count, qute_result_t *last) {
    uint32_t start = hal_cycles_start();
    hal_gpio_write(PIN_BUSY, 1, start);
    for (uint16_t i = 0; i < count; i++) {
        run(input, 0, last); /* one window for all: no per-run timing or pins */
    }
    uint32_t end = hal_cycles();
    hal_gpio_write(PIN_BUSY, 0, end);
    hal_gpio_flush();
    last->cycles = (end - start) / count;
    last->window = ++windows;
    return end - start;
}
