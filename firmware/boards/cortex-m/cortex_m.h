/* Core peripherals every Cortex-M board here uses: NVIC, SCB, SysTick, DWT, caches.
 * Addresses and bits from PM0214 (Cortex-M4) §4, and PM0253 (Cortex-M7) §4, which agree on all
 * of these but the cache and DWT lock registers (M7 only). */
#ifndef CORTEX_M_H
#define CORTEX_M_H

#include <stdint.h>

#define CORE_REG(address) (*(volatile uint32_t *)(address))

/* NVIC (PM0214 §4.2): set-enable, clear-pending and priority of external interrupt n. */
#define NVIC_ISER(n) CORE_REG(0xE000E100u + 4u * ((n) / 32u))
#define NVIC_ICPR(n) CORE_REG(0xE000E280u + 4u * ((n) / 32u))
#define NVIC_BIT(n) (1u << ((n) % 32u))
#define NVIC_IPR_BYTE(n) (*(volatile uint8_t *)(0xE000E400u + (n)))

/* SCB (PM0214 §4.4). */
#define SCB_ICSR CORE_REG(0xE000ED04u)
#define SCB_ICSR_PENDSTSET (1u << 26)
#define SCB_ICSR_PENDSTCLR (1u << 25)
#define SCB_AIRCR CORE_REG(0xE000ED0Cu)
#define SCB_AIRCR_RESET (0x05FA0000u | 0x4u) /* VECTKEY | SYSRESETREQ */
#define SCB_CCR CORE_REG(0xE000ED14u)
#define SCB_CCR_DC (1u << 16) /* M7: data cache enable (PM0253 §4.3.7) */
#define SCB_CCR_IC (1u << 17) /* M7: instruction cache enable */
#define SCB_SHPR3 CORE_REG(0xE000ED20u) /* bits 31:24: SysTick's priority */

/* SysTick (PM0214 §4.5): a 24-bit down counter. */
#define SYST_CSR CORE_REG(0xE000E010u)
#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SYST_CSR_CLKSOURCE (1u << 2) /* 1: the processor clock */
#define SYST_RVR CORE_REG(0xE000E014u)
#define SYST_CVR CORE_REG(0xE000E018u)

/* Debug: DEMCR.TRCENA powers the DWT; the M7's DWT is locked until LAR is written (PM0253 §4.1, ARMv7-M
 * ARM C1.6 and D1.2). */
#define DEMCR CORE_REG(0xE000EDFCu)
#define DEMCR_TRCENA (1u << 24)
#define DWT_CTRL CORE_REG(0xE0001000u)
#define DWT_CTRL_CYCCNTENA (1u << 0)
#define DWT_CYCCNT CORE_REG(0xE0001004u)
#define DWT_LAR CORE_REG(0xE0001FB0u)
#define DWT_LAR_KEY 0xC5ACCE55u

/* M7 cache identification and maintenance (PM0253 §4.8, §4.9). */
#define SCB_CCSIDR CORE_REG(0xE000ED80u)
#define SCB_CSSELR CORE_REG(0xE000ED84u)
#define SCB_ICIALLU CORE_REG(0xE000EF50u)
#define SCB_DCISW CORE_REG(0xE000EF60u)

static inline void core_dsb_isb(void) { __asm volatile("dsb\n\tisb" ::: "memory"); }
static inline void core_irq_disable(void) { __asm volatile("cpsid i" ::: "memory"); }
static inline void core_irq_enable(void) { __asm volatile("cpsie i" ::: "memory"); }
static inline void core_wfi(void) { __asm volatile("wfi" ::: "memory"); }

#endif
