/* STM32L4 registers the stm32l4 HAL uses, written by hand from RM0394 (STM32L41x-L46x, Rev 4);
 * each block cites its section. The same addresses and bits hold on QEMU's STM32L475
 * (b-l475e-iot01a), whose RM0351 agrees with RM0394 on all of them. */
#ifndef STM32L4_H
#define STM32L4_H

#include <stdint.h>

#define L4_REG(base, offset) (*(volatile uint32_t *)((base) + (offset)))

/* FLASH access control (RM0394 §3.7.1 FLASH_ACR; latency table §3.3.3: 4 wait states for
 * HCLK <= 80 MHz in voltage range 1). */
#define FLASH_BASE_ADDR 0x40022000u
#define FLASH_ACR L4_REG(FLASH_BASE_ADDR, 0x00u)
#define FLASH_ACR_LATENCY_MASK 0x7u /* bits 2:0 */
#define FLASH_ACR_LATENCY_4WS 4u
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ICEN (1u << 9)
#define FLASH_ACR_DCEN (1u << 10)

/* Power control (RM0394 §5.4.1 PWR_CR1, §5.4.5 PWR_SR2). */
#define PWR_BASE 0x40007000u
#define PWR_CR1 L4_REG(PWR_BASE, 0x00u)
#define PWR_CR1_VOS_MASK (3u << 9)
#define PWR_CR1_VOS_RANGE1 (1u << 9)
#define PWR_SR2 L4_REG(PWR_BASE, 0x14u)
#define PWR_SR2_VOSF (1u << 10) /* 1 while the regulator is changing range */

/* Reset and clock control (RM0394 §6.4). */
#define RCC_BASE 0x40021000u
#define RCC_CR L4_REG(RCC_BASE, 0x00u) /* §6.4.1 */
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
#define RCC_CFGR L4_REG(RCC_BASE, 0x08u) /* §6.4.3; HPRE, PPRE1, PPRE2 = 0: HCLK, PCLK1, PCLK2 = SYSCLK */
#define RCC_CFGR_SW_MASK 3u
#define RCC_CFGR_SW_PLL 3u
#define RCC_CFGR_SWS_MASK (3u << 2)
#define RCC_CFGR_SWS_PLL (3u << 2)
#define RCC_PLLCFGR L4_REG(RCC_BASE, 0x0Cu) /* §6.4.4 */
#define RCC_PLLCFGR_PLLSRC_MSI 1u       /* bits 1:0 */
#define RCC_PLLCFGR_PLLM(m) (((m) - 1u) << 4) /* bits 6:4: VCO input = source / m */
#define RCC_PLLCFGR_PLLN(n) ((n) << 8)        /* bits 14:8: VCO = input * n */
#define RCC_PLLCFGR_PLLREN (1u << 24)         /* PLLCLK (the R output) on */
#define RCC_PLLCFGR_PLLR_DIV2 (0u << 25)      /* bits 26:25 = 00: PLLCLK = VCO / 2 */
#define RCC_AHB2ENR L4_REG(RCC_BASE, 0x4Cu) /* §6.4.17 */
#define RCC_AHB2ENR_GPIOAEN (1u << 0)
#define RCC_AHB2ENR_GPIOBEN (1u << 1)
#define RCC_APB1ENR1 L4_REG(RCC_BASE, 0x58u) /* §6.4.19 */
#define RCC_APB1ENR1_USART2EN (1u << 17)
#define RCC_APB1ENR1_PWREN (1u << 28)
#define RCC_APB2ENR L4_REG(RCC_BASE, 0x60u) /* §6.4.21 */
#define RCC_APB2ENR_USART1EN (1u << 14)

/* GPIO (RM0394 §8.4): MODER 2 bits a pin (10 = alternate function, 01 = output), AFRL/AFRH 4 bits
 * a pin, BSRR sets (bits 15:0) or resets (bits 31:16) output pins in one write. */
#define GPIOA_BASE 0x48000000u
#define GPIOB_BASE 0x48000400u
#define GPIO_MODER 0x00u
#define GPIO_OSPEEDR 0x08u
#define GPIO_AFRL 0x20u
#define GPIO_AFRH 0x24u
#define GPIO_BSRR 0x18u
#define GPIO_MODE_OUTPUT 1u
#define GPIO_MODE_AF 2u

/* USART (RM0394 §38.8); its kernel clock is PCLK (RCC_CCIPR USARTxSEL = 00 at reset). Only 32-bit
 * accesses: QEMU's model takes no other size. */
#define USART1_BASE 0x40013800u
#define USART2_BASE 0x40004400u
#define USART_CR1 0x00u
#define USART_CR1_UE (1u << 0)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_RXNEIE (1u << 5)
#define USART_CR3 0x08u
#define USART_CR3_OVRDIS (1u << 12) /* a byte that finds RDR full replaces it: no ORE to clear */
#define USART_BRR 0x0Cu
#define USART_ISR 0x1Cu
#define USART_ISR_RXNE (1u << 5)
#define USART_ISR_TXE (1u << 7)
#define USART_RDR 0x24u
#define USART_TDR 0x28u

/* External interrupt numbers (RM0394 §12.3, Table 46). */
#define USART2_IRQ 38u
#define L4_IRQ_COUNT 39u /* the table covers IRQs 0..USART2_IRQ */

#endif
