/* Reset and system exception vectors for any Cortex-M core (PM0214 §2.3.4, PM0253 §2.4.4), without
 * a vendor SDK. A HAL that takes interrupts defines systick_handler and its own table of external
 * interrupt vectors in section .vectors.irq, which sections.ld places right after these 16. */
#include <stdint.h>

#include "hal.h"

extern uint32_t __data_start, __data_end, __data_load, __bss_start, __bss_end, __stack_top;
int main(void);

void reset_handler(void) {
    uint32_t *src = &__data_load;
    for (uint32_t *dst = &__data_start; dst < &__data_end;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = &__bss_start; dst < &__bss_end;) {
        *dst++ = 0u;
    }
    main();
    hal_reset();
}

/* A fault, or an exception no HAL asked for, must never leave the board hung: restart it, the
 * host sees a fresh HELLO state. */
void fault_handler(void) { hal_reset(); }

/* Weak: a HAL that counts SysTick wraps (boards/stm32l4) defines its own. */
void systick_handler(void) __attribute__((weak, alias("fault_handler")));

typedef void (*vector_t)(void);

__attribute__((section(".vectors"), used)) static const vector_t vectors[16] = {
    (vector_t)(uintptr_t)&__stack_top, /* initial stack pointer */
    reset_handler,
    fault_handler, /* NMI */
    fault_handler, /* HardFault */
    fault_handler, /* MemManage */
    fault_handler, /* BusFault */
    fault_handler, /* UsageFault */
    0, 0, 0, 0,    /* reserved */
    fault_handler, /* SVCall */
    fault_handler, /* DebugMonitor */
    0,             /* reserved */
    fault_handler, /* PendSV */
    systick_handler,
};
