#include "decisions.h"

uint32_t qd_softmax_q15(const int8_t *logits, int n, const uint32_t *lut, uint32_t *p) {
    int8_t top = logits[0];
    for (int i = 1; i < n; i++) {
        if (logits[i] > top) {
            top = logits[i];
        }
    }
    uint32_t sum = 0;
    for (int i = 0; i < n; i++) {
        sum += lut[(int32_t)top - (int32_t)logits[i]];
    }
    if (p != 0) {
        for (int i = 0; i < n; i++) {
            /* e <= 2^16, so e << 15 <= 2^31 fits in 32 unsigned bits */
            p[i] = (lut[(int32_t)top - (int32_t)logits[i]] << 15) / sum;
        }
    }
    return sum;
}

uint16_t qd_exit_confidence(const int8_t *logits, int n, const uint32_t *lut) {
    return (uint16_t)(0x80000000u / qd_softmax_q15(logits, n, lut, 0));
}

int qd_takes_exit(uint16_t confidence_q15, uint32_t tau_q15) {
    return tau_q15 < QD_Q15_ONE && confidence_q15 >= tau_q15;
}

int qd_argmax(const int8_t *logits, int n) {
    int best = 0;
    for (int i = 1; i < n; i++) {
        if (logits[i] > logits[best]) {
            best = i;
        }
    }
    return best;
}

void qd_ensemble(const int8_t *logits, int k, int n, const uint32_t (*luts)[256], uint8_t *predicted,
                 uint16_t *confidence_q15) {
    uint32_t summed[QD_MAX_CLASSES] = {0};
    uint32_t p[QD_MAX_CLASSES];
    for (int head = 0; head < k; head++) {
        qd_softmax_q15(logits + head * n, n, luts[head], p);
        for (int c = 0; c < n; c++) {
            summed[c] += p[c];
        }
    }
    int best = 0;
    for (int c = 1; c < n; c++) {
        if (summed[c] > summed[best]) {
            best = c;
        }
    }
    *predicted = (uint8_t)best;
    *confidence_q15 = (uint16_t)(summed[best] / (uint32_t)k);
}
