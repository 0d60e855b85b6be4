/* Wire protocol v2, device side: framing (COBS + CRC-32) and the v2 messages.
 *
 * docs/protocol.md is the spec; hil/protocol.py is the host side of the same spec and
 * docs/protocol-vectors.json holds the vectors both sides pass. Portable C11: static
 * buffers only, nothing board-specific, so the tests build this file for the host.
 *
 * Receiving, per byte from the UART:
 *     switch (proto_rx_byte(&rx, byte)) {
 *     case PROTO_RX_FRAME_READY: handle(rx.type, rx.seq, rx.payload, rx.payload_len); break;
 *     case PROTO_RX_ERROR:       send ERROR(rx.error, rx.seq); break;   // rx.seq is 0xFFFF
 *     case PROTO_RX_NONE:        break;
 *     }
 * Sending: build the payload with a proto_put_* helper, then proto_encode() it into a
 * buffer of PROTO_MAX_ENCODED_FRAME bytes and write that many bytes as it returns.
 */
#ifndef PROTOCOL_H
#define PROTOCOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 2u
#define PROTO_MAX_PAYLOAD 256u
#define PROTO_HEADER_SIZE 3u /* type + seq */
#define PROTO_CRC_SIZE 4u
#define PROTO_MIN_RAW_FRAME (PROTO_HEADER_SIZE + PROTO_CRC_SIZE)        /* 7 */
#define PROTO_MAX_RAW_FRAME (PROTO_MIN_RAW_FRAME + PROTO_MAX_PAYLOAD)   /* 263 */
/* COBS adds a code byte per started block of 254 bytes, then comes the 0x00: 266. */
#define PROTO_MAX_ENCODED_FRAME (PROTO_MAX_RAW_FRAME + (PROTO_MAX_RAW_FRAME + 253u) / 254u + 1u)
#define PROTO_SEQ_UNKNOWN 0xFFFFu
#define PROTO_SHA256_SIZE 32u

typedef enum {
    PROTO_MSG_HELLO = 0x01,
    PROTO_MSG_SET_THRESHOLD = 0x02,
    PROTO_MSG_INFER = 0x03,
    PROTO_MSG_INFER_BURST = 0x04,
    PROTO_MSG_PROFILE = 0x05,
    PROTO_MSG_TRACE = 0x06,
    PROTO_MSG_CONFORMANCE = 0x07, /* one kernel conformance vector (conformance.h) */
    PROTO_MSG_INFO = 0x81,
    PROTO_MSG_THRESHOLD_SET = 0x82,
    PROTO_MSG_RESULT = 0x83,
    PROTO_MSG_BURST_RESULT = 0x84,
    PROTO_MSG_PROFILE_RESULT = 0x85,
    PROTO_MSG_TRACE_RESULT = 0x86,
    PROTO_MSG_CONFORMANCE_RESULT = 0x87,
    PROTO_MSG_EDGE = 0x90,
    PROTO_MSG_ERROR = 0xE0,
} proto_msg_type_t;

typedef enum {
    PROTO_OK = 0,
    PROTO_ERR_BAD_CRC = 1,
    PROTO_ERR_UNKNOWN_MESSAGE = 2,
    PROTO_ERR_BAD_LENGTH = 3,
    PROTO_ERR_FRAME_TOO_LONG = 4,
    PROTO_ERR_BAD_FRAMING = 5,
    PROTO_ERR_BAD_VALUE = 6,
} proto_error_t;

/* ---- framing ---- */

typedef enum {
    PROTO_RX_NONE = 0,        /* nothing yet */
    PROTO_RX_FRAME_READY = 1, /* a good frame: type, seq, payload, payload_len */
    PROTO_RX_ERROR = 2,       /* a dropped frame: error; seq is PROTO_SEQ_UNKNOWN */
} proto_rx_status_t;

typedef struct {
    /* Encoded bytes since the last 0x00, decoded in place when the 0x00 comes. */
    uint8_t buf[PROTO_MAX_ENCODED_FRAME - 1u];
    size_t len;
    bool discarding; /* an overlong frame was reported; drop bytes up to the next 0x00 */
    /* The outcome of the last byte fed, valid until the next byte is fed. */
    uint8_t type;
    uint16_t seq;
    const uint8_t *payload; /* points into buf */
    size_t payload_len;
    uint8_t error; /* a proto_error_t after PROTO_RX_ERROR */
} proto_rx_t;

void proto_rx_init(proto_rx_t *rx);
proto_rx_status_t proto_rx_byte(proto_rx_t *rx, uint8_t byte);

/* Writes the wire bytes of one frame (COBS, then the 0x00) to out, which holds at least
 * PROTO_MAX_ENCODED_FRAME bytes; returns their count, or 0 if len > PROTO_MAX_PAYLOAD. */
size_t proto_encode(uint8_t type, uint16_t seq, const uint8_t *payload, size_t len, uint8_t *out);

/* CRC-32/ISO-HDLC (zlib's crc32): proto_crc32("123456789", 9) == 0xCBF43926. */
uint32_t proto_crc32(const uint8_t *data, size_t len);

/* ---- little-endian integers ---- */

void proto_put_u16(uint8_t *out, uint16_t value);
void proto_put_u32(uint8_t *out, uint32_t value);
uint16_t proto_get_u16(const uint8_t *in);
uint32_t proto_get_u32(const uint8_t *in);

/* ---- host -> device messages ---- */

typedef struct {
    uint8_t type;          /* a PROTO_MSG_* host message */
    uint16_t tau_q15;      /* SET_THRESHOLD */
    uint16_t count;        /* INFER_BURST, PROFILE: >= 1; INFER: 1 */
    const int8_t *sample;  /* INFER, INFER_BURST, PROFILE, TRACE: input_size bytes inside the payload */
    uint8_t trace_layer;   /* TRACE: a layer, or PROTO_TRACE_DIGESTS */
    uint16_t trace_offset; /* TRACE: the first byte of that layer's output to send */
    const uint8_t *vector; /* CONFORMANCE: the vector, vector_len bytes inside the payload */
    size_t vector_len;
} proto_request_t;

/* TRACE's layer that asks for the CRC-32 of every layer's output instead of one layer's bytes. */
#define PROTO_TRACE_DIGESTS 0xFFu
/* The most output bytes one TRACE_RESULT carries: 6 bytes of header, then these. */
#define PROTO_TRACE_CHUNK 240u

/* Checks a received frame against the v2 message table for a model taking input_size bytes.
 * Returns PROTO_OK and fills req, or the code to answer in an ERROR frame
 * (UNKNOWN_MESSAGE, BAD_LENGTH, BAD_VALUE). */
proto_error_t proto_parse_request(uint8_t type, const uint8_t *payload, size_t len, size_t input_size,
                                  proto_request_t *req);

/* ---- device -> host messages: each writes a payload to out (PROTO_MAX_PAYLOAD bytes) and
 * returns its length, or 0 if it would not fit. ---- */

typedef struct {
    uint32_t clock_hz; /* frequency of the cycle counter */
    uint16_t input_size;
    uint8_t num_classes;
    uint8_t num_heads;
    uint16_t tau_q15; /* in force now */
    uint32_t windows; /* busy windows raised since boot: the last one's ordinal, 0 if none */
    const uint8_t *model_sha256;    /* PROTO_SHA256_SIZE bytes */
    const uint8_t *firmware_sha256; /* PROTO_SHA256_SIZE bytes */
    const char *board;              /* NUL-terminated ASCII, at most 255 characters */
    const char *firmware_id;        /* NUL-terminated ASCII, at most 255 characters */
} proto_info_t;

typedef struct {
    bool exited;
    uint8_t predicted;
    uint16_t confidence_q15;
    uint32_t cycles;
    uint32_t window;     /* the ordinal of the busy window it ran in: 1 for the first since boot */
    uint8_t num_outputs; /* 1 when exited, else 1 + num_heads */
    uint8_t num_classes;
    const int8_t *logits; /* num_outputs x num_classes: the exit's first, then each head's */
} proto_result_t;

typedef struct {
    uint16_t count;
    uint32_t total_cycles;
    uint32_t window; /* the ordinal of the one busy window all runs shared */
    bool exited;     /* this and the rest: the last run's */
    uint8_t predicted;
    uint16_t confidence_q15;
} proto_burst_result_t;

typedef struct {
    uint8_t layer;        /* as asked: a layer, or PROTO_TRACE_DIGESTS */
    uint8_t num_layers;   /* the model's layers */
    uint16_t layer_bytes; /* that layer's output size; 0 for the digests */
    uint16_t offset;      /* of data in that layer's output */
    const uint8_t *data;  /* a layer's bytes, or num_layers u32 CRC-32s (little-endian) */
    size_t data_len;
} proto_trace_result_t;

size_t proto_put_info(uint8_t *out, const proto_info_t *info); /* adds version, max payload */
size_t proto_put_threshold_set(uint8_t *out, uint16_t tau_q15);
size_t proto_put_result(uint8_t *out, const proto_result_t *result);
size_t proto_put_burst_result(uint8_t *out, const proto_burst_result_t *burst);
/* PROFILE's answer: count, num_layers, then each layer's ticks summed over the count runs (u64). */
size_t proto_put_profile_result(uint8_t *out, uint16_t count, const uint64_t *layer_ticks, uint8_t num_layers);
size_t proto_put_trace_result(uint8_t *out, const proto_trace_result_t *trace);
size_t proto_put_edge(uint8_t *out, uint8_t pin, uint8_t level, uint32_t ticks);
size_t proto_put_error(uint8_t *out, uint8_t code, uint16_t seq);

#endif /* PROTOCOL_H */
