/* QUTE firmware: answers protocol v2 frames on the host link, one at a time. */
#include <stdint.h>

#include "conformance.h"
#include "decisions.h"
#include "hal.h"
#include "model.h"
#include "protocol.h"
#include "qute.h"
#include "sha256.h"
#include "trace.h"

#define FIRMWARE_ID "qute-fw/2 " MODEL_NAME /* /2: speaks protocol v2 */

/* The loadable image, [__image_start, __image_end), as the linker script lays it out: from the
 * board's flash origin, where firmware.bin is flashed. */
extern const uint8_t __image_start[], __image_end[];

static proto_rx_t rx;
static uint8_t out_payload[PROTO_MAX_PAYLOAD];
static uint8_t out_frame[PROTO_MAX_ENCODED_FRAME];

static void send(uint8_t type, uint16_t seq, size_t payload_len) {
    size_t len = proto_encode(type, seq, out_payload, payload_len, out_frame);
    hal_link_write(out_frame, len);
}

static void send_error(uint8_t code, uint16_t seq) { send(PROTO_MSG_ERROR, seq, proto_put_error(out_payload, code, seq)); }

/* The image's own sha256, computed once: it is what the manifest's image_sha256 names. */
static const uint8_t *firmware_sha256(void) {
    static uint8_t digest[PROTO_SHA256_SIZE];
    static int done;
    if (!done) {
        sha256(__image_start, (size_t)(__image_end - __image_start), digest);
        done = 1;
    }
    return digest;
}

static void answer_hello(uint16_t seq) {
    proto_info_t info = {
        .clock_hz = hal_clock_hz(),
        .input_size = MODEL_INPUT_SIZE,
        .num_classes = MODEL_NUM_CLASSES,
        .num_heads = MODEL_NUM_HEADS,
        .tau_q15 = (uint16_t)qute_threshold(),
        .windows = qute_windows(),
        .model_sha256 = model_sha256,
        .firmware_sha256 = firmware_sha256(),
        .board = hal_board_kind(),
        .firmware_id = FIRMWARE_ID,
    };
    send(PROTO_MSG_INFO, seq, proto_put_info(out_payload, &info));
}

static void answer_infer(uint16_t seq, const proto_request_t *request) {
    static qute_result_t result;
    qute_infer(request->sample, 1, &result);
    proto_result_t reply = {
        .exited = result.exited,
        .predicted = result.predicted,
        .confidence_q15 = result.confidence_q15,
        .cycles = result.cycles,
        .window = result.window,
        .num_outputs = result.num_outputs,
        .num_classes = MODEL_NUM_CLASSES,
        .logits = &result.logits[0][0],
    };
    send(PROTO_MSG_RESULT, seq, proto_put_result(out_payload, &reply));
}

static void answer_burst(uint16_t seq, const proto_request_t *request) {
    static qute_result_t last;
    uint32_t total = qute_infer_burst(request->sample, request->count, &last);
    proto_burst_result_t reply = {
        .count = request->count,
        .total_cycles = total,
        .window = last.window,
        .exited = last.exited,
        .predicted = last.predicted,
        .confidence_q15 = last.confidence_q15,
    };
    send(PROTO_MSG_BURST_RESULT, seq, proto_put_burst_result(out_payload, &reply));
}

static void answer_profile(uint16_t seq, const proto_request_t *request) {
    static uint64_t ticks[MODEL_NUM_LAYERS];
    qute_profile(request->sample, request->count, ticks);
    send(PROTO_MSG_PROFILE_RESULT, seq,
         proto_put_profile_result(out_payload, request->count, ticks, (uint8_t)MODEL_NUM_LAYERS));
}

/* No busy window: a trace is a diagnosis, not a measured inference. */
static void answer_trace(uint16_t seq, const proto_request_t *request) {
    size_t len = trace_run(request->sample, request->trace_layer, request->trace_offset, out_payload);
    if (len == 0) {
        send_error(PROTO_ERR_BAD_VALUE, seq); /* no such layer, or an offset past its output */
        return;
    }
    send(PROTO_MSG_TRACE_RESULT, seq, len);
}

/* Not an inference: no busy window, so neither the metering nor the window count sees it. */
static void answer_conformance(uint16_t seq, const proto_request_t *request) {
    size_t len = 0;
    proto_error_t error = conformance_run(request->vector, request->vector_len, out_payload, &len);
    if (error != PROTO_OK) {
        send_error(error, seq);
        return;
    }
    send(PROTO_MSG_CONFORMANCE_RESULT, seq, len);
}

static void handle_frame(void) {
    proto_request_t request;
    proto_error_t error = proto_parse_request(rx.type, rx.payload, rx.payload_len, MODEL_INPUT_SIZE, &request);
    if (error != PROTO_OK) {
        send_error(error, rx.seq);
        return;
    }
    switch (request.type) {
    case PROTO_MSG_HELLO:
        answer_hello(rx.seq);
        break;
    case PROTO_MSG_SET_THRESHOLD:
        qute_set_threshold(request.tau_q15);
        send(PROTO_MSG_THRESHOLD_SET, rx.seq, proto_put_threshold_set(out_payload, (uint16_t)qute_threshold()));
        break;
    case PROTO_MSG_INFER:
        answer_infer(rx.seq, &request);
        break;
    case PROTO_MSG_INFER_BURST:
        answer_burst(rx.seq, &request);
        break;
    case PROTO_MSG_PROFILE:
        answer_profile(rx.seq, &request);
        break;
    case PROTO_MSG_TRACE:
        answer_trace(rx.seq, &request);
        break;
    case PROTO_MSG_CONFORMANCE:
        answer_conformance(rx.seq, &request);
        break;
    default:
        send_error(PROTO_ERR_UNKNOWN_MESSAGE, rx.seq);
    }
}

int main(void) {
    hal_init();
    /* Tell the measurement unit the pins' levels at reset: the first bytes on the wire. */
    uint32_t now = hal_cycles();
    hal_gpio_write(PIN_BUSY, 0, now);
    hal_gpio_write(PIN_EXIT, 0, now);
    hal_gpio_flush();
    proto_rx_init(&rx);
    for (;;) {
        switch (proto_rx_byte(&rx, hal_link_read())) {
        case PROTO_RX_FRAME_READY:
            handle_frame();
            break;
        case PROTO_RX_ERROR:
            send_error(rx.error, rx.seq);
            break;
        default:
            break;
        }
    }
}
