/* gcov's counters of a freestanding Cortex-M build, serialized into RAM for the host to read.
 *
 * Not firmware: tests/support/kernel_coverage.py links this with firmware/src/kernels.c and conformance.c built
 * with --coverage -fprofile-info-section, runs them on unicorn, calls gcov_dump() and reads `gcov_out`. GCC's
 * own freestanding scheme (its manual, "Profiling and Test Coverage in Freestanding Environments"): the linker
 * gathers a pointer to each object's gcov_info in .gcov_info, and libgcov's __gcov_info_to_gcda writes each
 * one's .gcda bytes through the callbacks below. The records here: u32 kind (1 a file name, 2 .gcda bytes of
 * the file last named), u32 length, the bytes, padded to a word.
 */
#include <gcov.h>
#include <stddef.h>
#include <stdint.h>

#define GCOV_OUT_SIZE (256u * 1024u)
#define GCOV_HEAP_SIZE (16u * 1024u)

extern const struct gcov_info *const __gcov_info_start[];
extern const struct gcov_info *const __gcov_info_end[];

uint8_t gcov_out[GCOV_OUT_SIZE] __attribute__((aligned(4)));
uint32_t gcov_out_length;
uint32_t gcov_overflow; /* set when gcov_out is too small: the host refuses the dump */

static uint8_t heap[GCOV_HEAP_SIZE] __attribute__((aligned(8)));
static uint32_t heap_used;

static void put_record(uint32_t kind, const void *data, uint32_t length)
{
    const uint32_t padded = (length + 3u) & ~3u;
    if (gcov_out_length + 8u + padded > GCOV_OUT_SIZE) {
        gcov_overflow = 1;
        return;
    }
    uint8_t *at = gcov_out + gcov_out_length;
    const uint32_t header[2] = {kind, length};
    __builtin_memcpy(at, header, sizeof header);
    for (uint32_t i = 0; i < length; i++) {
        at[8u + i] = ((const uint8_t *)data)[i];
    }
    gcov_out_length += 8u + padded;
}

static void on_filename(const char *name, void *arg)
{
    (void)arg;
    uint32_t length = 0;
    while (name[length] != '\0') {
        length++;
    }
    put_record(1u, name, length);
}

static void on_data(const void *data, unsigned length, void *arg)
{
    (void)arg;
    put_record(2u, data, length);
}

/* For the counters gcov merges by value (topn); a bump allocator, as nothing is ever freed. */
static void *on_allocate(unsigned length, void *arg)
{
    (void)arg;
    const uint32_t padded = (length + 7u) & ~7u;
    if (heap_used + padded > GCOV_HEAP_SIZE) {
        gcov_overflow = 1;
        return NULL;
    }
    void *block = heap + heap_used;
    heap_used += padded;
    return block;
}

void gcov_dump(void)
{
    gcov_out_length = 0;
    for (const struct gcov_info *const *info = __gcov_info_start; info < __gcov_info_end; info++) {
        __gcov_info_to_gcda(*info, on_filename, on_data, on_allocate, NULL);
    }
}
