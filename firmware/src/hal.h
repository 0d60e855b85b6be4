/* The hardware abstraction every board implements: one UART link, a cycle counter and
 * the GPIO pins the measurement unit watches. Each board's board.h says how. */
#ifndef HAL_H
#define HAL_H

#include <stddef.h>
#include <stdint.h>

/* The pins the measurement unit captures. */
enum { PIN_BUSY = 0, /* high while an inference runs */
       PIN_EXIT = 1  /* high from the exit decision to the end of an inference that exits early */ };

void hal_init(void);
/* Blocks until the host link delivers a byte. */
uint8_t hal_link_read(void);
void hal_link_write(const uint8_t *data, size_t len);
/* Free-running 32-bit counter at hal_clock_hz(); wraps, so subtract as uint32_t. */
uint32_t hal_cycles(void);
/* Reads the counter at the start of a timed interval. Where the counter ticks slower than
 * instructions run (QEMU's 25 MHz timers), it also re-phases the counter to this
 * instruction, so that the interval's length in ticks depends only on the code run. */
uint32_t hal_cycles_start(void);
uint32_t hal_clock_hz(void);
/* Drives a pin at the given cycle-counter time (the caller read it just before). Must not
 * stall the caller: a timed window may contain it. */
void hal_gpio_write(uint8_t pin, uint8_t level, uint32_t at_cycles);
/* Called after a timed window: lets a board finish work its pin writes deferred. */
void hal_gpio_flush(void);
/* A short name of the board kind, reported in INFO. */
const char *hal_board_kind(void);
/* Restart the device (after a fault). */
void hal_reset(void) __attribute__((noreturn));

#endif
