/* The QUTE runtime: stage 1, the exit decision at threshold tau, stage 2, the ensemble. */
#ifndef QUTE_H
#define QUTE_H

#include <stdint.h>

#include "model.h"

typedef struct {
    uint8_t exited;         /* 1 if the early exit answered */
    uint8_t predicted;      /* the class */
    uint16_t confidence_q15;
    uint32_t cycles;        /* cycle-counter ticks from the busy pin's rise to its fall */
    uint32_t window;        /* the busy window's ordinal since boot (1, 2, ...); 0: no window */
    uint8_t num_outputs;    /* 1 (the exit) or 1 + MODEL_NUM_HEADS */
    int8_t logits[1 + MODEL_NUM_HEADS][MODEL_NUM_CLASSES]; /* exit first, then the heads */
} qute_result_t;

void qute_set_threshold(uint32_t tau_q15);
uint32_t qute_threshold(void);
/* Busy windows raised since boot: the ordinal of the last one, 0 before the first. */
uint32_t qute_windows(void);
/* One inference. With mark_pins, the busy pin frames it (a window with the next ordinal) and the
 * exit pin marks an early exit. */
void qute_infer(const int8_t *input, int mark_pins, qute_result_t *result);
/* `count` back-to-back inferences of one sample inside one busy-pin window (energy bursts);
 * returns the window's ticks and leaves the last result in *last (its cycles: the mean; its
 * window: the burst's). */
uint32_t qute_infer_burst(const int8_t *input, uint16_t count, qute_result_t *last);
/* `count` runs of both stages of one sample, whatever the threshold, without the exit decision, the
 * ensemble or the pins; ticks[layer] gets each layer's cycle-counter ticks summed over the runs
 * (64 bits: no run count overflows them). */
void qute_profile(const int8_t *input, uint16_t count, uint64_t ticks[MODEL_NUM_LAYERS]);

#endif
