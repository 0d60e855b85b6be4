/* Board: Nucleo-F767ZI (UM1974), STM32F767ZI at 216 MHz. No QEMU twin. The pins are on the Zio
 * (Arduino Uno R3) header, at the same Arduino positions as the Nucleo-L432KC's: D1, D3, D6. */
#ifndef BOARD_H
#define BOARD_H

#include "stm32f7.h"

#define BOARD_KIND "nucleo-f767zi"
#define BOARD_CYCLE_HZ 216000000u /* DWT CYCCNT at the core clock */

/* The protocol: USART3 = ST-LINK virtual COM port, TX PD8, RX PD9, AF7 (UM1974). PCLK1 = 54 MHz. */
#define BOARD_LINK_USART USART3_BASE
#define BOARD_LINK_PCLK_HZ 54000000u
#define BOARD_LINK_TX_PORT GPIOD_BASE
#define BOARD_LINK_TX_PIN 8u
#define BOARD_LINK_RX_PORT GPIOD_BASE
#define BOARD_LINK_RX_PIN 9u
#define BOARD_LINK_AF 7u

/* The wire: EDGE frames on USART6 TX, PG14 = D1 (AF8), the spare UART of the Arduino header (D0/D1 are
 * USART6 on the Nucleo-144, UM1974). PCLK2 = 108 MHz. */
#define BOARD_WIRE_USART USART6_BASE
#define BOARD_WIRE_PCLK_HZ 108000000u
#define BOARD_WIRE_TX_PORT GPIOG_BASE
#define BOARD_WIRE_TX_PIN 14u
#define BOARD_WIRE_AF 8u

/* The pins: busy on PE13 = D3, exit on PE9 = D6. */
#define BOARD_PIN_PORT GPIOE_BASE
#define BOARD_BUSY_PIN 13u
#define BOARD_EXIT_PIN 9u

#endif
