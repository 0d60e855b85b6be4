#include "edge_queue.h"

#include "protocol.h"

#define EDGE_QUEUE 8
static struct {
    uint8_t pin, level;
    uint32_t at;
} edge_queue[EDGE_QUEUE];
static unsigned edges_queued;

void edge_queue_flush(edge_writer_t write) {
    static uint16_t edge_seq;
    uint8_t payload[8];
    uint8_t frame[PROTO_MAX_ENCODED_FRAME];
    for (unsigned i = 0; i < edges_queued; i++) {
        size_t payload_len = proto_put_edge(payload, edge_queue[i].pin, edge_queue[i].level, edge_queue[i].at);
        size_t len = proto_encode(PROTO_MSG_EDGE, edge_seq++, payload, payload_len, frame);
        write(frame, len);
    }
    edges_queued = 0;
}

void edge_queue_push(uint8_t pin, uint8_t level, uint32_t at_cycles, edge_writer_t write) {
    if (edges_queued == EDGE_QUEUE) {
        edge_queue_flush(write);
    }
    edge_queue[edges_queued].pin = pin;
    edge_queue[edges_queued].level = level;
    edge_queue[edges_queued].at = at_cycles;
    edges_queued++;
}
