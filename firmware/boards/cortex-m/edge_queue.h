/* The pin edges a measurement unit sees, also sent as protocol EDGE frames on a UART: the STM32
 * HALs drive the real pin at once and queue the frame here, to be sent once the timed window is
 * over (a UART write can stall, a pin write must not). The CMSDK HAL keeps its own copy of this
 * queue, so that the MPS2 images' timed code, and so their cycle counts, stay as they were. */
#ifndef EDGE_QUEUE_H
#define EDGE_QUEUE_H

#include <stddef.h>
#include <stdint.h>

typedef void (*edge_writer_t)(const uint8_t *data, size_t len);

/* Queues one edge; a full queue is sent first (only a caller that never flushes fills it). */
void edge_queue_push(uint8_t pin, uint8_t level, uint32_t at_cycles, edge_writer_t write);
/* Sends every queued edge as an EDGE frame through `write`, in order. */
void edge_queue_flush(edge_writer_t write);

#endif
