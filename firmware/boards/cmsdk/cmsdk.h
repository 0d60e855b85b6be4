/* ARM CMSDK APB peripherals as QEMU's MPS2 boards model them (see shared notes). */
#ifndef CMSDK_H
#define CMSDK_H

#include <stdint.h>

#define CMSDK_REG(base, offset) (*(volatile uint32_t *)((base) + (offset)))

/* UART: one byte of RX holding register; TX must be enabled or output is dropped. */
#define UART_DATA 0x00u
#define UART_STATE 0x04u
#define UART_CTRL 0x08u
#define UART_INTCLEAR 0x0Cu
#define UART_BAUDDIV 0x10u
#define UART_STATE_TX_FULL 0x1u
#define UART_STATE_RX_FULL 0x2u
#define UART_CTRL_TX_EN 0x1u
#define UART_CTRL_RX_EN 0x2u
#define UART_CTRL_RX_INT_EN 0x8u
#define UART_INT_RX 0x2u

/* Timer: 32-bit down counter at the peripheral clock, reloaded from RELOAD. */
#define TIMER_CTRL 0x00u
#define TIMER_VALUE 0x04u
#define TIMER_RELOAD 0x08u
#define TIMER_CTRL_ENABLE 0x1u

/* QEMU's MPS2 boards wire UART n's RX interrupt to IRQ 2n (TX to 2n + 1) for n < 3. */
#define UART0_RX_IRQ 0u

#endif
