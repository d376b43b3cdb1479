#include <malloc.h>

// glibc's mallopt, which Swift's Glibc module does not bring: at most `arenas` malloc arenas.
static inline int tributary_limit_malloc_arenas(int arenas) { return mallopt(M_ARENA_MAX, arenas); }
