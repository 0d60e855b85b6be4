/* HAL for QEMU's MPS2 boards: UART0 carries the protocol, UART1 is the emulated wire to
 * the measurement unit (QEMU emulates no GPIO here), timer 0 is the cycle counter. */
#include "board.h"
#include "cmsdk.h"
#include "cortex_m.h"
#include "hal.h"
#include "protocol.h"

static void uart_init(uint32_t base) {
    CMSDK_REG(base, UART_BAUDDIV) = 16u;
    CMSDK_REG(base, UART_CTRL) = UART_CTRL_TX_EN | UART_CTRL_RX_EN;
}

static void uart_write(uint32_t base, const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        while (CMSDK_REG(base, UART_STATE) & UART_STATE_TX_FULL) {
        }
        CMSDK_REG(base, UART_DATA) = data[i];
    }
}

void hal_init(void) {
    uart_init(BOARD_LINK_UART);
    uart_init(BOARD_WIRE_UART);
    CMSDK_REG(BOARD_CYCLE_TIMER, TIMER_CTRL) = 0u;
    CMSDK_REG(BOARD_CYCLE_TIMER, TIMER_RELOAD) = 0xFFFFFFFFu;
    CMSDK_REG(BOARD_CYCLE_TIMER, TIMER_VALUE) = 0xFFFFFFFFu;
    CMSDK_REG(BOARD_CYCLE_TIMER, TIMER_CTRL) = TIMER_CTRL_ENABLE;
    /* The link's RX interrupt is enabled but masked by PRIMASK: it wakes WFI in
     * hal_link_read without running a handler. */
    __asm volatile("cpsid i" ::: "memory");
    CMSDK_REG(BOARD_LINK_UART, UART_CTRL) |= UART_CTRL_RX_INT_EN;
    NVIC_ISER(UART0_RX_IRQ) = NVIC_BIT(UART0_RX_IRQ);
}

/* Sleeps until a byte arrives, as firmware on a battery would; under QEMU this also turns
 * a busy poll that keeps a host core at 100% into an idle wait, so a rack of emulated
 * boards shares the host's cores with the work that matters. */
uint8_t hal_link_read(void) {
    while (!(CMSDK_REG(BOARD_LINK_UART, UART_STATE) & UART_STATE_RX_FULL)) {
        __asm volatile("wfi" ::: "memory");
    }
    uint8_t byte = (uint8_t)CMSDK_REG(BOARD_LINK_UART, UART_DATA);
    CMSDK_REG(BOARD_LINK_UART, UART_INTCLEAR) = UART_INT_RX;
    NVIC_ICPR(UART0_RX_IRQ) = NVIC_BIT(UART0_RX_IRQ);
    return byte;
}

void hal_link_write(const uint8_t *data, size_t len) { uart_write(BOARD_LINK_UART, data, len); }

/* The timer counts down; report it counting up. */
uint32_t hal_cycles(void) { return 0xFFFFFFFFu - CMSDK_REG(BOARD_CYCLE_TIMER, TIMER_VALUE); }

/* Writing VALUE restarts QEMU's timer period at this instruction; the count itself goes on
 * from where it was. Without it the tick phase would depend on how long the firmware
 * waited for the host, and the same inference would measure one tick more or less. */
uint32_t hal_cycles_start(void) {
    uint32_t value = CMSDK_REG(BOARD_CYCLE_TIMER, TIMER_VALUE);
    CMSDK_REG(BOARD_CYCLE_TIMER, TIMER_VALUE) = value;
    return 0xFFFFFFFFu - value;
}

uint32_t hal_clock_hz(void) { return BOARD_CYCLE_HZ; }

/* The emulated wire: each edge travels as an EDGE frame on UART1, stamped with the time
 * the caller read from the cycle counter, so the monitor sees the device's own clock.
 * A UART can stall when its host side is slow to read, and a real pin never does, so the
 * edges are queued here and sent by hal_gpio_flush() once the timed window is over. */
#define EDGE_QUEUE 8
static struct {
    uint8_t pin, level;
    uint32_t at;
} edge_queue[EDGE_QUEUE];
static unsigned edges_queued;

void hal_gpio_flush(void) {
    static uint16_t edge_seq;
    uint8_t payload[8];
    uint8_t frame[PROTO_MAX_ENCODED_FRAME];
    for (unsigned i = 0; i < edges_queued; i++) {
        size_t payload_len = proto_put_edge(payload, edge_queue[i].pin, edge_queue[i].level, edge_queue[i].at);
        size_t len = proto_encode(PROTO_MSG_EDGE, edge_seq++, payload, payload_len, frame);
        uart_write(BOARD_WIRE_UART, frame, len);
    }
    edges_queued = 0;
}

void hal_gpio_write(uint8_t pin, uint8_t level, uint32_t at_cycles) {
    if (edges_queued == EDGE_QUEUE) {
        hal_gpio_flush(); /* only a caller that never flushes gets here */
    }
    edge_queue[edges_queued].pin = pin;
    edge_queue[edges_queued].level = level;
    edge_queue[edges_queued].at = at_cycles;
    edges_queued++;
}

const char *hal_board_kind(void) { return BOARD_KIND; }

void hal_reset(void) {
    SCB_AIRCR = SCB_AIRCR_RESET;
    for (;;) {
    }
}
