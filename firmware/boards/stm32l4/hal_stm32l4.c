/* HAL for the STM32L4 (RM0394), the same image on a Nucleo-L432KC and on QEMU's b-l475e-iot01a:
 * - clocks: MSI 4 MHz -> PLL 80 MHz in voltage range 1, 4 flash wait states first;
 * - link: USART2, the ST-LINK virtual COM port (UM1956), 115200 8N1, received by its interrupt;
 * - pins: busy and exit on GPIO (board.h), each edge also sent as an EDGE frame on the wire USART;
 * - cycles: SysTick at the core clock, extended to 32 bits by counting its wraps. */
#include "board.h"
#include "cortex_m.h"
#include "edge_queue.h"
#include "hal.h"
#include "stm32l4.h"

#define SYSTICK_PERIOD (1u << 24) /* SysTick is 24 bits: it wraps every 2^24 ticks (0.21 s at 80 MHz) */
#define BAUD 115200u
#define LINK_RX_BUFFER 128u /* a power of two */
/* RM0394 §3.3.3: after writing FLASH_ACR.LATENCY, read it back to confirm before raising the clock.
 * On silicon the first read shows it. QEMU 10 does not model FLASH_ACR (it reads 0), and this very
 * image must run there too, so the confirmation is a bounded poll that goes on either way: no branch
 * on "am I emulated", and no hang. */
#define ACR_READBACK_TRIES 16u

static void gpio_mode(uint32_t port, unsigned pin, uint32_t mode) {
    L4_REG(port, GPIO_MODER) = (L4_REG(port, GPIO_MODER) & ~(3u << (2u * pin))) | (mode << (2u * pin));
}

static void gpio_alternate(uint32_t port, unsigned pin, uint32_t function) {
    uint32_t offset = pin < 8u ? GPIO_AFRL : GPIO_AFRH;
    unsigned shift = 4u * (pin % 8u);
    L4_REG(port, offset) = (L4_REG(port, offset) & ~(0xFu << shift)) | (function << shift);
    gpio_mode(port, pin, GPIO_MODE_AF);
}

/* RM0394 §5.1.8 (dynamic voltage scaling), §3.3.3 (increasing the CPU frequency), §6.2.5 (PLL). */
static void clock_init(void) {
    RCC_APB1ENR1 |= RCC_APB1ENR1_PWREN;
    (void)RCC_APB1ENR1; /* the read lets the enable take effect before PWR is written */
    PWR_CR1 = (PWR_CR1 & ~PWR_CR1_VOS_MASK) | PWR_CR1_VOS_RANGE1; /* range 1 (the reset value): up to 80 MHz */
    while (PWR_SR2 & PWR_SR2_VOSF) {
    }
    /* Wait states before the clock goes up; prefetch and both caches on, as §3.3.3 recommends. */
    FLASH_ACR = (FLASH_ACR & ~FLASH_ACR_LATENCY_MASK) | FLASH_ACR_LATENCY_4WS | FLASH_ACR_PRFTEN | FLASH_ACR_ICEN |
                FLASH_ACR_DCEN;
    for (unsigned i = 0; i < ACR_READBACK_TRIES && (FLASH_ACR & FLASH_ACR_LATENCY_MASK) != FLASH_ACR_LATENCY_4WS;
         i++) {
    }
    /* MSI 4 MHz / M 1 = 4 MHz into the VCO, x N 40 = 160 MHz, / R 2 = 80 MHz. */
    RCC_PLLCFGR = RCC_PLLCFGR_PLLSRC_MSI | RCC_PLLCFGR_PLLM(1u) | RCC_PLLCFGR_PLLN(40u) | RCC_PLLCFGR_PLLR_DIV2 |
                  RCC_PLLCFGR_PLLREN;
    RCC_CR |= RCC_CR_PLLON;
    while (!(RCC_CR & RCC_CR_PLLRDY)) {
    }
    RCC_CFGR = (RCC_CFGR & ~RCC_CFGR_SW_MASK) | RCC_CFGR_SW_PLL; /* AHB and both APBs /1: PCLK1 = PCLK2 = 80 MHz */
    while ((RCC_CFGR & RCC_CFGR_SWS_MASK) != RCC_CFGR_SWS_PLL) {
    }
}

static void usart_init(uint32_t base, uint32_t cr1) {
    L4_REG(base, USART_CR1) = 0u;
    L4_REG(base, USART_BRR) = (BOARD_PCLK_HZ + BAUD / 2u) / BAUD; /* 694: 115,274 baud, 0.06 % fast */
    L4_REG(base, USART_CR3) = USART_CR3_OVRDIS;
    L4_REG(base, USART_CR1) = cr1 | USART_CR1_UE;
}

static void usart_write(uint32_t base, const uint8_t *data, size_t len) {
    for (size_t i = 0; i < len; i++) {
        while (!(L4_REG(base, USART_ISR) & USART_ISR_TXE)) {
        }
        L4_REG(base, USART_TDR) = data[i];
    }
}

/* --- the link: bytes taken from USART2 by its interrupt, so none is lost while the firmware sends --- */

static volatile uint8_t link_rx[LINK_RX_BUFFER];
static volatile uint32_t link_rx_head, link_rx_tail;

static void link_rx_handler(void) {
    if (L4_REG(BOARD_LINK_USART, USART_ISR) & USART_ISR_RXNE) {
        uint8_t byte = (uint8_t)L4_REG(BOARD_LINK_USART, USART_RDR); /* the read clears RXNE and the IRQ */
        if (link_rx_head - link_rx_tail < LINK_RX_BUFFER) {
            link_rx[link_rx_head % LINK_RX_BUFFER] = byte;
            link_rx_head++;
        } /* else dropped, as an overrun would: the host resyncs */
    }
}

/* Sleeps until a byte arrives, as the CMSDK HAL does, so an idle emulated board costs no host CPU.
 * With PRIMASK set, a pending interrupt wakes WFI without being taken (ARMv7-M ARM B1.5.19); it
 * is taken once PRIMASK is cleared, so no byte can arrive between the check and the sleep. */
uint8_t hal_link_read(void) {
    core_irq_disable();
    while (link_rx_head == link_rx_tail) {
        core_wfi();
        core_irq_enable();
        __asm volatile("isb" ::: "memory"); /* the pending interrupts are taken here */
        core_irq_disable();
    }
    uint8_t byte = link_rx[link_rx_tail % LINK_RX_BUFFER];
    link_rx_tail++;
    core_irq_enable();
    return byte;
}

void hal_link_write(const uint8_t *data, size_t len) { usart_write(BOARD_LINK_USART, data, len); }

/* --- cycles: SysTick (PM0214 §4.5) counts down from 2^24 - 1 at the core clock --- */

/* The 32-bit count at which SysTick's current period began: the handler adds a period at each wrap. */
static volatile uint32_t period_start;

void systick_handler(void) { period_start += SYSTICK_PERIOD; }

/* The count now; interrupts must be disabled. The ticks gone in this period are (-CVR) mod 2^24:
 * CVR = 0 is both the last tick of a period and, once the wrap has pended, the first of the next,
 * the one the pending (not yet handled) wrap belongs to. */
static uint32_t cycles_now(void) {
    uint32_t value = SYST_CVR;
    uint32_t start = period_start;
    if (SCB_ICSR & SCB_ICSR_PENDSTSET) { /* wrapped, and the handler has not run: count it here */
        value = SYST_CVR;
        start += SYSTICK_PERIOD;
    }
    return start + ((0u - value) & (SYSTICK_PERIOD - 1u));
}

static uint32_t irq_save(void) {
    uint32_t primask;
    __asm volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask)::"memory");
    return primask;
}

static void irq_restore(uint32_t primask) { __asm volatile("msr primask, %0" ::"r"(primask) : "memory"); }

uint32_t hal_cycles(void) {
    uint32_t primask = irq_save();
    uint32_t now = cycles_now();
    irq_restore(primask);
    return now;
}

/* Starts a new SysTick period at this instruction (a write of CVR clears it and the next tick reloads
 * it, without an interrupt), counting on from where the count was. So in QEMU, where ticks (12.5 ns)
 * and instructions (16 ns) are out of phase, a window's length in ticks depends only on the code run;
 * and any wrap inside a window comes at the same point of it on every run. On silicon the few ticks
 * between the read and the write are not counted: a window's count is unchanged by them. */
uint32_t hal_cycles_start(void) {
    uint32_t primask = irq_save();
    uint32_t now = cycles_now();
    SYST_CVR = 0u;
    SCB_ICSR = SCB_ICSR_PENDSTCLR; /* a wrap cycles_now counted must not be counted again */
    period_start = now;
    irq_restore(primask);
    return now;
}

uint32_t hal_clock_hz(void) { return BOARD_CYCLE_HZ; }

/* --- pins: the GPIO (what a measurement unit on the header sees), and EDGE frames on the wire --- */

static const uint8_t pin_numbers[] = {[PIN_BUSY] = BOARD_BUSY_PIN, [PIN_EXIT] = BOARD_EXIT_PIN};

static void wire_write(const uint8_t *data, size_t len) { usart_write(BOARD_WIRE_USART, data, len); }

void hal_gpio_write(uint8_t pin, uint8_t level, uint32_t at_cycles) {
    uint32_t bit = 1u << pin_numbers[pin];
    L4_REG(BOARD_PIN_PORT, GPIO_BSRR) = level ? bit : bit << 16;
    edge_queue_push(pin, level, at_cycles, wire_write);
}

void hal_gpio_flush(void) { edge_queue_flush(wire_write); }

void hal_init(void) {
    clock_init();
    RCC_AHB2ENR |= RCC_AHB2ENR_GPIOAEN | RCC_AHB2ENR_GPIOBEN;
    RCC_APB1ENR1 |= RCC_APB1ENR1_USART2EN;
    RCC_APB2ENR |= RCC_APB2ENR_USART1EN;
    (void)RCC_APB2ENR;
    gpio_alternate(BOARD_LINK_TX_PORT, BOARD_LINK_TX_PIN, BOARD_LINK_TX_AF);
    gpio_alternate(BOARD_LINK_RX_PORT, BOARD_LINK_RX_PIN, BOARD_LINK_RX_AF);
    gpio_alternate(BOARD_WIRE_TX_PORT, BOARD_WIRE_TX_PIN, BOARD_WIRE_TX_AF);
    L4_REG(BOARD_PIN_PORT, GPIO_BSRR) = ((1u << BOARD_BUSY_PIN) | (1u << BOARD_EXIT_PIN)) << 16; /* low */
    gpio_mode(BOARD_PIN_PORT, BOARD_BUSY_PIN, GPIO_MODE_OUTPUT);
    gpio_mode(BOARD_PIN_PORT, BOARD_EXIT_PIN, GPIO_MODE_OUTPUT);
    usart_init(BOARD_WIRE_USART, USART_CR1_TE);
    usart_init(BOARD_LINK_USART, USART_CR1_TE | USART_CR1_RE | USART_CR1_RXNEIE);
    NVIC_ISER(USART2_IRQ) = NVIC_BIT(USART2_IRQ);
    SYST_RVR = SYSTICK_PERIOD - 1u;
    SYST_CVR = 0u;
    SYST_CSR = SYST_CSR_CLKSOURCE | SYST_CSR_TICKINT | SYST_CSR_ENABLE;
}

const char *hal_board_kind(void) { return BOARD_KIND; }

void hal_reset(void) {
    __asm volatile("dsb" ::: "memory");
    SCB_AIRCR = SCB_AIRCR_RESET;
    __asm volatile("dsb" ::: "memory");
    for (;;) {
    }
}

/* External interrupts 0..38 (RM0394 §12.3). Only USART2's is enabled; any other is never pending,
 * and were one to be taken, its zero vector faults and fault_handler restarts the board. */
typedef void (*vector_t)(void);
__attribute__((section(".vectors.irq"), used)) static const vector_t irq_vectors[L4_IRQ_COUNT] = {
    [USART2_IRQ] = link_rx_handler,
};
