/* Board: Cortex-M4 (QEMU mps2-an386), the twin of the STM32L432KC.
 * Memory is all RAM in QEMU; memory.ld caps it at the twin MCU's flash and SRAM sizes so
 * that an image that would not fit the real part does not link. */
#ifndef BOARD_H
#define BOARD_H

#define BOARD_KIND "mps2-an386"
#define BOARD_LINK_UART 0x40004000u /* UART0: the protocol */
#define BOARD_WIRE_UART 0x40005000u /* UART1: GPIO edges to the measurement unit */
#define BOARD_CYCLE_TIMER 0x40000000u /* CMSDK timer 0 */
/* The timers run at 25 MHz of QEMU's virtual time (icount: see docs/firmware.md). */
#define BOARD_CYCLE_HZ 25000000u

#endif
