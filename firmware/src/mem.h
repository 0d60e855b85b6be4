/* The C library functions the firmware uses, implemented in mem.c: no C library is linked
 * and none of its headers is needed. The declarations are the standard ones, so the host
 * build of the portable sources (tests) gets the host's own functions. */
#ifndef MEM_H
#define MEM_H

#include <stddef.h>

void *memcpy(void *restrict dst, const void *restrict src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int value, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *text);

#endif
