/* HAL for the STM32F7 (RM0410) on a Nucleo-F767ZI:
 * - clocks: HSE bypass 8 MHz (the ST-LINK's MCO, UM1974) -> PLL 216 MHz, VOS scale 1 + over-drive,
 *   7 flash wait states, APB1 /4 (54 MHz), APB2 /2 (108 MHz); I- and D-cache on;
 * - link: USART3 on PD8/PD9, the ST-LINK virtual COM port, 115200 8N1;
 * - pins: busy and exit on GPIO (board.h), each edge also sent as an EDGE frame on the wire USART;
 * - cycles: DWT CYCCNT, 32 bits at the core clock.
 * No QEMU has an STM32F7: every wait below is a plain poll of the documented ready bit, so that a
 * harness modelling RCC, PWR, FLASH, GPIO and the USARTs runs this image unchanged. */
#include "board.h"
#include "cortex_m.h"
#include "edge_queue.h"
#include "hal.h"
#include "stm32f7.h"

#define BAUD 115200u

static void gpio_mode(uint32_t port, unsigned pin, uint32_t mode) {
    F7_REG(port, GPIO_MODER) = (F7_REG(port, GPIO_MODER) & ~(3u << (2u * pin))) | (mode << (2u * pin));
}

static void gpio_alternate(uint32_t port, unsigned pin, uint32_t function) {
    uint32_t offset = pin < 8u ? GPIO_AFRL : GPIO_AFRH;
    unsigned shift = 4u * (pin % 8u);
    F7_REG(port, offset) = (F7_REG(port, offset) & ~(0xFu << shift)) | (function << shift);
    gpio_mode(port, pin, GPIO_MODE_AF);
}

/* RM0410 §5.2.2 (HSE bypass), §4.1.4 (entering over-drive: PLL on, ODEN/ODRDY, ODSWEN/ODSWRDY, then
 * the latency and the switch), §3.3.2 (increasing the CPU frequency: latency first, confirmed by a read). */
static void clock_init(void) {
    RCC_APB1ENR |= RCC_APB1ENR_PWREN;
    (void)RCC_APB1ENR; /* the read lets the enable take effect before PWR is written */
    PWR_CR1 = (PWR_CR1 & ~PWR_CR1_VOS_MASK) | PWR_CR1_VOS_SCALE1;
    RCC_CR |= RCC_CR_HSEBYP; /* before HSEON: the MCO is a clock, not a crystal */
    RCC_CR |= RCC_CR_HSEON;
    while (!(RCC_CR & RCC_CR_HSERDY)) {
    }
    /* 8 MHz / M 4 = 2 MHz into the VCO, x N 216 = 432 MHz; / P 2 = 216 MHz, / Q 9 = 48 MHz. */
    RCC_PLLCFGR = RCC_PLLCFGR_PLLSRC_HSE | RCC_PLLCFGR_PLLM(4u) | RCC_PLLCFGR_PLLN(216u) | RCC_PLLCFGR_PLLP_DIV2 |
                  RCC_PLLCFGR_PLLQ(9u) | RCC_PLLCFGR_PLLR(2u);
    RCC_CR |= RCC_CR_PLLON;
    PWR_CR1 |= PWR_CR1_ODEN;
    while (!(PWR_CSR1 & PWR_CSR1_ODRDY)) {
    }
    PWR_CR1 |= PWR_CR1_ODSWEN;
    while (!(PWR_CSR1 & PWR_CSR1_ODSWRDY)) {
    }
    FLASH_ACR = (FLASH_ACR & ~FLASH_ACR_LATENCY_MASK) | FLASH_ACR_LATENCY_7WS | FLASH_ACR_PRFTEN | FLASH_ACR_ARTEN;
    while ((FLASH_ACR & FLASH_ACR_LATENCY_MASK) != FLASH_ACR_LATENCY_7WS) {
    }
    while (!(RCC_CR & RCC_CR_PLLRDY)) {
    }
    RCC_CFGR = (RCC_CFGR & ~(RCC_CFGR_PPRE1_MASK | RCC_CFGR_PPRE2_MASK)) | RCC_CFGR_PPRE1_DIV4 | RCC_CFGR_PPRE2_DIV2;
    RCC_CFGR = (RCC_CFGR & ~RCC_CFGR_SW_MASK) | RCC_CFGR_SW_PLL;
    while ((RCC_CFGR & RCC_CFGR_SWS_MASK) != RCC_CFGR_SWS_PLL) {
    }
}

/* PM0253 §4.8.4 / §4.9: invalidate the I-cache, enable it; invalidate the D-cache by set and way,
 * enable it; each step completed by DSB and ISB. */
static void caches_init(void) {
    SCB_ICIALLU = 0u;
    core_dsb_isb();
    SCB_CCR |= SCB_CCR_IC;
    core_dsb_isb();
    SCB_CSSELR = 0u; /* level 1 data cache */
    core_dsb_isb();
    uint32_t ccsidr = SCB_CCSIDR;
    uint32_t sets = ((ccsidr >> 13) & 0x7FFFu) + 1u; /* NumSets - 1 in bits 27:13 */
    uint32_t ways = ((ccsidr >> 3) & 0x3FFu) + 1u;   /* Associativity - 1 in bits 12:3 */
    for (uint32_t set = 0; set < sets; set++) {
        for (uint32_t way = 0; way < ways; way++) {
            SCB_DCISW = (way << 30) | (set << 5); /* 4 ways in bits 31:30, 32-byte lines: set from bit 5 */
        }
    }
    core_dsb_isb();
    SCB_CCR |= SCB_CCR_DC;
    core_dsb_isb();
}

static void usart_init(uint32_t base, uint32_t pclk_hz, uint32_t cr1) {
    F7_REG(base, USART_CR1) = 0u;
    F7_REG(base, USART_BRR) = (pclk_hz + BAUD / 2u) / BAUD;
    F7_REG(base, USART_CR3) = USART_CR3_OVRDIS;
    F7_REG(base, USART_CR1) = cr1 | USART_CR1_UE;
}

static void usart_write(uint32_t base, const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        while (!(F7_REG(base, USART_ISR) & USART_ISR_TXE)) {
        }
        F7_REG(base, USART_TDR) = data[i];
    }
}

void hal_init(void) {
    clock_init();
    caches_init();
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIODEN | RCC_AHB1ENR_GPIOEEN | RCC_AHB1ENR_GPIOGEN;
    RCC_APB1ENR |= RCC_APB1ENR_USART3EN;
    RCC_APB2ENR |= RCC_APB2ENR_USART6EN;
    (void)RCC_APB2ENR;
    gpio_alternate(BOARD_LINK_TX_PORT, BOARD_LINK_TX_PIN, BOARD_LINK_AF);
    gpio_alternate(BOARD_LINK_RX_PORT, BOARD_LINK_RX_PIN, BOARD_LINK_AF);
    gpio_alternate(BOARD_WIRE_TX_PORT, BOARD_WIRE_TX_PIN, BOARD_WIRE_AF);
    F7_REG(BOARD_PIN_PORT, GPIO_BSRR) = ((1u << BOARD_BUSY_PIN) | (1u << BOARD_EXIT_PIN)) << 16; /* low */
    gpio_mode(BOARD_PIN_PORT, BOARD_BUSY_PIN, GPIO_MODE_OUTPUT);
    gpio_mode(BOARD_PIN_PORT, BOARD_EXIT_PIN, GPIO_MODE_OUTPUT);
    usart_init(BOARD_WIRE_USART, BOARD_WIRE_PCLK_HZ, USART_CR1_TE);
    usart_init(BOARD_LINK_USART, BOARD_LINK_PCLK_HZ, USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE);
    /* DWT CYCCNT: trace on, the M7's DWT unlocked (PM0253), the counter from 0. */
    DEMCR |= DEMCR_TRCENA;
    DWT_LAR = DWT_LAR_KEY;
    DWT_CYCCNT = 0u;
    DWT_CTRL |= DWT_CTRL_CYCCNTENA;
    /* The link's RX interrupt is enabled but masked by PRIMASK: it wakes WFI in hal_link_read without
     * running a handler, as on the CMSDK boards. Nothing here needs an interrupt handler. */
    core_irq_disable();
    NVIC_ISER(USART3_IRQ) = NVIC_BIT(USART3_IRQ);
}

/* Sleeps until a byte arrives, as the CMSDK HAL does. */
uint8_t hal_link_read(void) {
    while (!(F7_REG(BOARD_LINK_USART, USART_ISR) & USART_ISR_RXNE)) {
        core_wfi();
    }
    uint8_t byte = (uint8_t)F7_REG(BOARD_LINK_USART, USART_RDR); /* clears RXNE */
    NVIC_ICPR(USART3_IRQ) = NVIC_BIT(USART3_IRQ);
    return byte;
}

void hal_link_write(const uint8_t *data, size_t len) { usart_write(BOARD_LINK_USART, data, len); }

uint32_t hal_cycles(void) { return DWT_CYCCNT; }

/* CYCCNT counts every core clock: there is no tick phase to restart. */
uint32_t hal_cycles_start(void) { return DWT_CYCCNT; }

uint32_t hal_clock_hz(void) { return BOARD_CYCLE_HZ; }

static const uint8_t pin_numbers[] = {[PIN_BUSY] = BOARD_BUSY_PIN, [PIN_EXIT] = BOARD_EXIT_PIN};

static void wire_write(const uint8_t *data, size_t len) { usart_write(BOARD_WIRE_USART, data, len); }

void hal_gpio_write(uint8_t pin, uint8_t level, uint32_t at_cycles) {
    uint32_t bit = 1u << pin_numbers[pin];
    F7_REG(BOARD_PIN_PORT, GPIO_BSRR) = level ? bit : bit << 16;
    edge_queue_push(pin, level, at_cycles, wire_write);
}

void hal_gpio_flush(void) { edge_queue_flush(wire_write); }

const char *hal_board_kind(void) { return BOARD_KIND; }

void hal_reset(void) {
    __asm volatile("dsb" ::: "memory");
    SCB_AIRCR = SCB_AIRCR_RESET;
    __asm volatile("dsb" ::: "memory");
    for (;;) {
    }
}
