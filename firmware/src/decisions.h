/* The QUTE decisions as integer arithmetic: the C twin of hil/decisions.py.
 * docs/decisions.md is the specification; both sides must agree bit for bit. */
#ifndef DECISIONS_H
#define DECISIONS_H

#include <stdint.h>

#define QD_Q15_ONE 32768u
#define QD_MAX_CLASSES 16

/* Q15 softmax of n int8 logits through a 256-entry table; writes p (may be NULL), returns S. */
uint32_t qd_softmax_q15(const int8_t *logits, int n, const uint32_t *lut, uint32_t *p);
/* floor(2^31 / S): the Q15 probability of the top class. */
uint16_t qd_exit_confidence(const int8_t *logits, int n, const uint32_t *lut);
/* 1 iff tau_q15 < 32768 and confidence >= tau_q15. */
int qd_takes_exit(uint16_t confidence_q15, uint32_t tau_q15);
/* Index of the largest logit, the lowest index on ties. */
int qd_argmax(const int8_t *logits, int n);
/* Ensemble of k heads (k rows of n logits): the class of the largest summed Q15
 * probability (lowest index on ties) and floor(P_max / k). */
void qd_ensemble(const int8_t *logits, int k, int n, const uint32_t (*luts)[256], uint8_t *predicted,
                 uint16_t *confidence_q15);

#endif
