/* STM32F7 registers the stm32f7 HAL uses, written by hand from RM0410 (STM32F76xxx/77xxx, Rev 4);
 * each block cites its section. The core's (caches, DWT) are in boards/cortex-m/cortex_m.h (PM0253). */
#ifndef STM32F7_H
#define STM32F7_H

#include <stdint.h>

#define F7_REG(base, offset) (*(volatile uint32_t *)((base) + (offset)))

/* FLASH access control (RM0410 §3.7.1 FLASH_ACR; wait states §3.3.2 Table 7: 7 for 210 < HCLK <= 216 MHz
 * at 2.7-3.6 V). */
#define FLASH_BASE_ADDR 0x40023C00u
#define FLASH_ACR F7_REG(FLASH_BASE_ADDR, 0x00u)
#define FLASH_ACR_LATENCY_MASK 0xFu /* bits 3:0 */
#define FLASH_ACR_LATENCY_7WS 7u
#define FLASH_ACR_PRFTEN (1u << 8)
#define FLASH_ACR_ARTEN (1u << 9)

/* Power control (RM0410 §4.4.1 PWR_CR1, §4.4.2 PWR_CSR1; over-drive sequence §4.1.4). */
#define PWR_BASE 0x40007000u
#define PWR_CR1 F7_REG(PWR_BASE, 0x00u)
#define PWR_CR1_VOS_MASK (3u << 14)
#define PWR_CR1_VOS_SCALE1 (3u << 14)
#define PWR_CR1_ODEN (1u << 16)
#define PWR_CR1_ODSWEN (1u << 17)
#define PWR_CSR1 F7_REG(PWR_BASE, 0x04u)
#define PWR_CSR1_ODRDY (1u << 16)
#define PWR_CSR1_ODSWRDY (1u << 17)

/* Reset and clock control (RM0410 §5.3). */
#define RCC_BASE 0x40023800u
#define RCC_CR F7_REG(RCC_BASE, 0x00u) /* §5.3.1 */
#define RCC_CR_HSEON (1u << 16)
#define RCC_CR_HSERDY (1u << 17)
#define RCC_CR_HSEBYP (1u << 18)
#define RCC_CR_PLLON (1u << 24)
#define RCC_CR_PLLRDY (1u << 25)
#define RCC_PLLCFGR F7_REG(RCC_BASE, 0x04u) /* §5.3.2 */
#define RCC_PLLCFGR_PLLM(m) ((m) << 0)  /* bits 5:0: VCO input = source / m */
#define RCC_PLLCFGR_PLLN(n) ((n) << 6)  /* bits 14:6: VCO = input * n */
#define RCC_PLLCFGR_PLLP_DIV2 (0u << 16) /* bits 17:16 = 00: PLLCLK = VCO / 2 */
#define RCC_PLLCFGR_PLLSRC_HSE (1u << 22)
#define RCC_PLLCFGR_PLLQ(q) ((q) << 24) /* bits 27:24: 48 MHz clock = VCO / q */
#define RCC_PLLCFGR_PLLR(r) ((r) << 28) /* bits 30:28: the DSI clock, unused; 2 as at reset */
#define RCC_CFGR F7_REG(RCC_BASE, 0x08u) /* §5.3.3 */
#define RCC_CFGR_SW_MASK 3u
#define RCC_CFGR_SW_PLL 2u
#define RCC_CFGR_SWS_MASK (3u << 2)
#define RCC_CFGR_SWS_PLL (2u << 2)
#define RCC_CFGR_PPRE1_MASK (7u << 10)
#define RCC_CFGR_PPRE1_DIV4 (5u << 10)
#define RCC_CFGR_PPRE2_MASK (7u << 13)
#define RCC_CFGR_PPRE2_DIV2 (4u << 13)
#define RCC_AHB1ENR F7_REG(RCC_BASE, 0x30u) /* §5.3.10 */
#define RCC_AHB1ENR_GPIODEN (1u << 3)
#define RCC_AHB1ENR_GPIOEEN (1u << 4)
#define RCC_AHB1ENR_GPIOGEN (1u << 6)
#define RCC_APB1ENR F7_REG(RCC_BASE, 0x40u) /* §5.3.13 */
#define RCC_APB1ENR_USART3EN (1u << 18)
#define RCC_APB1ENR_PWREN (1u << 28)
#define RCC_APB2ENR F7_REG(RCC_BASE, 0x44u) /* §5.3.14 */
#define RCC_APB2ENR_USART6EN (1u << 5)

/* GPIO (RM0410 §6.4): the same layout as the L4's. */
#define GPIOD_BASE 0x40020C00u
#define GPIOE_BASE 0x40021000u
#define GPIOG_BASE 0x40021800u
#define GPIO_MODER 0x00u
#define GPIO_AFRL 0x20u
#define GPIO_AFRH 0x24u
#define GPIO_BSRR 0x18u
#define GPIO_MODE_OUTPUT 1u
#define GPIO_MODE_AF 2u

/* USART (RM0410 §34.8); kernel clock PCLK (RCC_DCKCFGR2 USARTxSEL = 00 at reset). */
#define USART3_BASE 0x40004800u
#define USART6_BASE 0x40011400u
#define USART_CR1 0x00u
#define USART_CR1_UE (1u << 0)
#define USART_CR1_RE (1u << 2)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_RXNEIE (1u << 5)
#define USART_CR3 0x08u
#define USART_CR3_OVRDIS (1u << 12)
#define USART_BRR 0x0Cu
#define USART_ISR 0x1Cu
#define USART_ISR_RXNE (1u << 5)
#define USART_ISR_TXE (1u << 7)
#define USART_RDR 0x24u
#define USART_TDR 0x28u

/* External interrupt numbers (RM0410 §10.1.2, Table 40). */
#define USART3_IRQ 39u

#endif
