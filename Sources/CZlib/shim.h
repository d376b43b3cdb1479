#include <zlib.h>

// inflateInit2/deflateInit2 are macros Swift cannot import.
static inline int tributary_inflate_init_gzip(z_streamp stream) {
    return inflateInit2(stream, 15 + 16);
}
static inline int tributary_deflate_init_gzip(z_streamp stream, int level) {
    return deflateInit2(stream, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
}
