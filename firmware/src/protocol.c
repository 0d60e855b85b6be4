/* Wire protocol v2, device side. See protocol.h and docs/protocol.md. */
#include "protocol.h"

#include "mem.h"

/* ---- CRC-32/ISO-HDLC ----
 * Reflected poly 0xEDB88320, init and xorout 0xFFFFFFFF. Two table steps of 4 bits per byte:
 * a 64-byte table instead of the usual 1 KiB, at a speed that is ample for a UART. */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu, 0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu, 0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

/* The register without init and xorout, so that a CRC can run over data in pieces. */
static uint32_t crc_update(uint32_t crc, const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        crc ^= data[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 0x0Fu];
        crc = (crc >> 4) ^ crc_nibble[crc & 0x0Fu];
    }
    return crc;
}

uint32_t proto_crc32(const uint8_t *data, size_t len) { return crc_update(0xFFFFFFFFu, data, len) ^ 0xFFFFFFFFu; }

/* ---- little-endian integers ---- */

void proto_put_u16(uint8_t *out, uint16_t value) {
    out[0] = (uint8_t)value;
    out[1] = (uint8_t)(value >> 8);
}

void proto_put_u32(uint8_t *out, uint32_t value) {
    proto_put_u16(out, (uint16_t)value);
    proto_put_u16(out + 2, (uint16_t)(value >> 16));
}

uint16_t proto_get_u16(const uint8_t *in) { return (uint16_t)(in[0] | (in[1] << 8)); }

uint32_t proto_get_u32(const uint8_t *in) { return proto_get_u16(in) | ((uint32_t)proto_get_u16(in + 2) << 16); }

/* ---- COBS encoder, fed one byte at a time so that no raw frame buffer is needed ---- */

typedef struct {
    uint8_t *out;
    size_t n;        /* bytes written so far, the open block's code byte included */
    size_t code_at;  /* where the open block's code byte goes */
    uint8_t code;    /* 1 + data bytes in the open block */
    bool after_full; /* the open block is empty and follows a full (0xFF) block */
} cobs_writer_t;

static void cobs_begin(cobs_writer_t *w, uint8_t *out) {
    w->out = out;
    w->n = 1;
    w->code_at = 0;
    w->code = 1;
    w->after_full = false;
}

static void cobs_put(cobs_writer_t *w, uint8_t byte) {
    if (byte != 0) {
        w->out[w->n++] = byte;
        w->code++;
    }
    w->after_full = false;
    if (byte == 0 || w->code == 0xFFu) { /* close the block: at a zero, or full */
        w->out[w->code_at] = w->code;
        w->after_full = (byte != 0);
        w->code_at = w->n++;
        w->code = 1;
    }
}

static void cobs_put_all(cobs_writer_t *w, const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) cobs_put(w, data[i]);
}

/* Closes the last block and adds the delimiter; returns the total length. */
static size_t cobs_end(cobs_writer_t *w) {
    if (w->after_full) {
        w->n--; /* data ending in a full block gets no final 0x01 code (see docs/protocol.md) */
    } else {
        w->out[w->code_at] = w->code;
    }
    w->out[w->n] = 0x00u;
    return w->n + 1;
}

size_t proto_encode(uint8_t type, uint16_t seq, const uint8_t *payload, size_t len, uint8_t *out) {
    if (len > PROTO_MAX_PAYLOAD) return 0;
    uint8_t header[PROTO_HEADER_SIZE] = {type, 0, 0};
    proto_put_u16(header + 1, seq);
    uint32_t crc = crc_update(crc_update(0xFFFFFFFFu, header, sizeof header), payload, len);
    uint8_t trailer[PROTO_CRC_SIZE];
    proto_put_u32(trailer, crc ^ 0xFFFFFFFFu);

    cobs_writer_t w;
    cobs_begin(&w, out);
    cobs_put_all(&w, header, sizeof header);
    cobs_put_all(&w, payload, len);
    cobs_put_all(&w, trailer, sizeof trailer);
    return cobs_end(&w);
}

/* ---- receiver ---- */

void proto_rx_init(proto_rx_t *rx) {
    memset(rx, 0, sizeof *rx);
    rx->seq = PROTO_SEQ_UNKNOWN;
}

/* COBS-decodes buf[0..len) onto itself (the output never overtakes the input).
 * Returns false if a code byte points past the end; buf holds no 0x00 by construction. */
static bool cobs_decode_in_place(uint8_t *buf, size_t len, size_t *out_len) {
    size_t r = 0, w = 0;
    while (r < len) {
        size_t code = buf[r];
        if (r + code > len) return false;
        for (size_t k = 1; k < code; k++) buf[w++] = buf[r + k];
        r += code;
        if (code < 0xFFu && r < len) buf[w++] = 0x00u; /* the zero a short block stands for */
    }
    *out_len = w;
    return true;
}

static proto_rx_status_t rx_fail(proto_rx_t *rx, proto_error_t error) {
    rx->error = (uint8_t)error;
    rx->seq = PROTO_SEQ_UNKNOWN; /* nothing in a dropped frame can be trusted */
    return PROTO_RX_ERROR;
}

static proto_rx_status_t rx_finish(proto_rx_t *rx, size_t len) {
    size_t raw_len;
    if (!cobs_decode_in_place(rx->buf, len, &raw_len)) return rx_fail(rx, PROTO_ERR_BAD_FRAMING);
    if (raw_len < PROTO_MIN_RAW_FRAME) return rx_fail(rx, PROTO_ERR_BAD_FRAMING);
    if (raw_len > PROTO_MAX_RAW_FRAME) return rx_fail(rx, PROTO_ERR_FRAME_TOO_LONG);
    size_t body = raw_len - PROTO_CRC_SIZE;
    if (proto_crc32(rx->buf, body) != proto_get_u32(rx->buf + body)) return rx_fail(rx, PROTO_ERR_BAD_CRC);
    rx->type = rx->buf[0];
    rx->seq = proto_get_u16(rx->buf + 1);
    rx->payload = rx->buf + PROTO_HEADER_SIZE;
    rx->payload_len = body - PROTO_HEADER_SIZE;
    return PROTO_RX_FRAME_READY;
}

proto_rx_status_t proto_rx_byte(proto_rx_t *rx, uint8_t byte) {
    rx->payload_len = 0; /* the last outcome expires with a new byte */
    rx->error = PROTO_OK;
    if (byte != 0x00u) {
        if (rx->discarding) return PROTO_RX_NONE;
        if (rx->len == sizeof rx->buf) { /* no room, and no 0x00 yet: too long */
            rx->len = 0;
            rx->discarding = true;
            return rx_fail(rx, PROTO_ERR_FRAME_TOO_LONG);
        }
        rx->buf[rx->len++] = byte;
        return PROTO_RX_NONE;
    }
    size_t len = rx->len;
    bool discarded = rx->discarding;
    rx->len = 0;
    rx->discarding = false;
    /* The end of an overlong frame was reported already; an empty frame is a flush. */
    if (discarded || len == 0) return PROTO_RX_NONE;
    return rx_finish(rx, len);
}

/* ---- host -> device messages ---- */

proto_error_t proto_parse_request(uint8_t type, const uint8_t *payload, size_t len, size_t input_size,
                                  proto_request_t *req) {
    memset(req, 0, sizeof *req);
    req->type = type;
    switch (type) {
    case PROTO_MSG_HELLO:
        return len == 0 ? PROTO_OK : PROTO_ERR_BAD_LENGTH;
    case PROTO_MSG_SET_THRESHOLD:
        if (len != 2) return PROTO_ERR_BAD_LENGTH;
        req->tau_q15 = proto_get_u16(payload);
        return PROTO_OK;
    case PROTO_MSG_INFER:
        if (len != input_size) return PROTO_ERR_BAD_LENGTH;
        req->count = 1;
        req->sample = (const int8_t *)payload;
        return PROTO_OK;
    case PROTO_MSG_INFER_BURST: /* the length is checked before the count, as on the host */
    case PROTO_MSG_PROFILE:     /* the same layout: a count, then the sample */
        if (len != 2 + input_size) return PROTO_ERR_BAD_LENGTH;
        req->count = proto_get_u16(payload);
        req->sample = (const int8_t *)(payload + 2);
        return req->count >= 1 ? PROTO_OK : PROTO_ERR_BAD_VALUE;
    case PROTO_MSG_TRACE: /* whether the layer and offset exist, the model knows (src/trace.c) */
        if (len != 3 + input_size) return PROTO_ERR_BAD_LENGTH;
        req->count = 1;
        req->trace_layer = payload[0];
        req->trace_offset = proto_get_u16(payload + 1);
        req->sample = (const int8_t *)(payload + 3);
        return PROTO_OK;
    case PROTO_MSG_CONFORMANCE: /* its own layout is checked where it runs (conformance.c) */
        if (len < 1) return PROTO_ERR_BAD_LENGTH;
        req->vector = payload;
        req->vector_len = len;
        return PROTO_OK;
    default:
        return PROTO_ERR_UNKNOWN_MESSAGE;
    }
}

/* ---- device -> host messages ---- */

/* Appends a u8 length and the text; returns the new length, or 0 past 255 characters. */
static size_t put_text(uint8_t *out, size_t at, const char *text) {
    size_t len = strlen(text);
    if (len > 255u || at + 1u + len > PROTO_MAX_PAYLOAD) return 0;
    out[at] = (uint8_t)len;
    memcpy(out + at + 1, text, len);
    return at + 1u + len;
}

size_t proto_put_info(uint8_t *out, const proto_info_t *info) {
    out[0] = PROTO_VERSION;
    proto_put_u32(out + 1, info->clock_hz);
    proto_put_u16(out + 5, (uint16_t)PROTO_MAX_PAYLOAD);
    proto_put_u16(out + 7, info->input_size);
    out[9] = info->num_classes;
    out[10] = info->num_heads;
    proto_put_u16(out + 11, info->tau_q15);
    proto_put_u32(out + 13, info->windows);
    memcpy(out + 17, info->model_sha256, PROTO_SHA256_SIZE);
    memcpy(out + 49, info->firmware_sha256, PROTO_SHA256_SIZE);
    size_t at = put_text(out, 81, info->board);
    return at == 0 ? 0 : put_text(out, at, info->firmware_id);
}

size_t proto_put_threshold_set(uint8_t *out, uint16_t tau_q15) {
    proto_put_u16(out, tau_q15);
    return 2;
}

size_t proto_put_result(uint8_t *out, const proto_result_t *result) {
    size_t logits = (size_t)result->num_outputs * result->num_classes;
    if (logits == 0 || 13u + logits > PROTO_MAX_PAYLOAD) return 0;
    out[0] = result->exited ? 1u : 0u;
    out[1] = result->predicted;
    proto_put_u16(out + 2, result->confidence_q15);
    proto_put_u32(out + 4, result->cycles);
    proto_put_u32(out + 8, result->window);
    out[12] = result->num_outputs;
    memcpy(out + 13, result->logits, logits);
    return 13u + logits;
}

size_t proto_put_burst_result(uint8_t *out, const proto_burst_result_t *burst) {
    proto_put_u16(out, burst->count);
    proto_put_u32(out + 2, burst->total_cycles);
    proto_put_u32(out + 6, burst->window);
    out[10] = burst->exited ? 1u : 0u;
    out[11] = burst->predicted;
    proto_put_u16(out + 12, burst->confidence_q15);
    return 14;
}

size_t proto_put_profile_result(uint8_t *out, uint16_t count, const uint64_t *layer_ticks, uint8_t num_layers) {
    if (3u + 8u * (size_t)num_layers > PROTO_MAX_PAYLOAD) return 0;
    proto_put_u16(out, count);
    out[2] = num_layers;
    for (size_t i = 0; i < num_layers; i++) {
        proto_put_u32(out + 3 + 8 * i, (uint32_t)layer_ticks[i]);
        proto_put_u32(out + 7 + 8 * i, (uint32_t)(layer_ticks[i] >> 32));
    }
    return 3u + 8u * (size_t)num_layers;
}

size_t proto_put_trace_result(uint8_t *out, const proto_trace_result_t *trace) {
    if (6u + trace->data_len > PROTO_MAX_PAYLOAD) return 0;
    out[0] = trace->layer;
    out[1] = trace->num_layers;
    proto_put_u16(out + 2, trace->layer_bytes);
    proto_put_u16(out + 4, trace->offset);
    memcpy(out + 6, trace->data, trace->data_len);
    return 6u + trace->data_len;
}

size_t proto_put_edge(uint8_t *out, uint8_t pin, uint8_t level, uint32_t ticks) {
    out[0] = pin;
    out[1] = level;
    proto_put_u32(out + 2, ticks);
    return 6;
}

size_t proto_put_error(uint8_t *out, uint8_t code, uint16_t seq) {
    out[0] = code;
    proto_put_u16(out + 1, seq);
    return 3;
}
