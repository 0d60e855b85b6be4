/* Board: Nucleo-L432KC (UM1956), STM32L432KC at 80 MHz; in QEMU, b-l475e-iot01a runs the same image.
 * The pins are on the Nucleo-32 (Arduino Nano) header. PB0 (D3) and PB1 (D6) are free of the solder
 * bridges SB16/SB18, which join PA5/PA6 (A4/A5) with PB6/PB7 (D4/D5). */
#ifndef BOARD_H
#define BOARD_H

#include "stm32l4.h"

#define BOARD_KIND "nucleo-l432kc"
#define BOARD_CYCLE_HZ 80000000u /* SysTick at the core clock */
#define BOARD_PCLK_HZ 80000000u  /* PCLK1 = PCLK2 = HCLK */

/* The protocol: USART2 = ST-LINK virtual COM port, TX PA2 (AF7), RX PA15 (AF3) (UM1956). */
#define BOARD_LINK_USART USART2_BASE
#define BOARD_LINK_TX_PORT GPIOA_BASE
#define BOARD_LINK_TX_PIN 2u
#define BOARD_LINK_TX_AF 7u
#define BOARD_LINK_RX_PORT GPIOA_BASE
#define BOARD_LINK_RX_PIN 15u
#define BOARD_LINK_RX_AF 3u

/* The wire: EDGE frames on USART1 TX, PA9 = D1 (AF7), the spare trace port. In QEMU USART1 is the
 * emulated wire to the measurement unit. */
#define BOARD_WIRE_USART USART1_BASE
#define BOARD_WIRE_TX_PORT GPIOA_BASE
#define BOARD_WIRE_TX_PIN 9u
#define BOARD_WIRE_TX_AF 7u

/* The pins: busy on PB0 = D3, exit on PB1 = D6. */
#define BOARD_PIN_PORT GPIOB_BASE
#define BOARD_BUSY_PIN 0u
#define BOARD_EXIT_PIN 1u

#endif
