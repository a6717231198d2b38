/*
 * SHA-256 of two equal-length messages at once, with the x86 SHA extensions.
 *
 * One SHA-256 stream is a chain of dependent round instructions: each
 * sha256rnds2 needs the state the one before it produced. On CPUs where that
 * instruction's latency is longer than its issue interval (AMD Zen: 4 cycles
 * against 2), one stream leaves the unit idle half of the time and a second,
 * independent stream fills those cycles for free. The engine hashes volumes
 * in 32 KiB blocks, thousands per piece, so it always has a second stream.
 *
 * Each round group below is written once for both streams, so that the
 * compiler interleaves their instructions. The state layout is the one the
 * SHA extensions use: two registers holding (A, B, E, F) and (C, D, G, H).
 *
 * sha256x2_available() says whether the CPU has the extensions (SHA, SSSE3,
 * SSE4.1); without them, or on other architectures, callers hash one stream
 * at a time with OpenSSL. Tests compare both against hashlib.
 */
#include "sha256x2.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>

#define TARGET __attribute__((target("sha,ssse3,sse4.1")))

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static const uint32_t INITIAL[8] = {
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
};

int
sha256x2_available(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    int ssse3 = (c >> 9) & 1, sse41 = (c >> 19) & 1;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d))
        return 0;
    int sha = (b >> 29) & 1;
    return sha && ssse3 && sse41;
}

/* The state words A..H as the two registers the round instruction takes. */
TARGET static inline void
load_state(const uint32_t h[8], __m128i *abef, __m128i *cdgh)
{
    __m128i abcd = _mm_loadu_si128((const __m128i *)&h[0]);    /* D C B A (high..low) */
    __m128i efgh = _mm_loadu_si128((const __m128i *)&h[4]);    /* H G F E */
    abcd = _mm_shuffle_epi32(abcd, 0xB1);                       /* C D A B */
    efgh = _mm_shuffle_epi32(efgh, 0x1B);                       /* E F G H */
    *abef = _mm_alignr_epi8(abcd, efgh, 8);                     /* A B E F */
    *cdgh = _mm_blend_epi16(efgh, abcd, 0xF0);                  /* C D G H */
}

TARGET static inline void
store_digest(__m128i abef, __m128i cdgh, unsigned char out[32])
{
    __m128i feba = _mm_shuffle_epi32(abef, 0x1B);
    __m128i dchg = _mm_shuffle_epi32(cdgh, 0xB1);
    __m128i abcd = _mm_blend_epi16(feba, dchg, 0xF0);           /* D C B A */
    __m128i efgh = _mm_alignr_epi8(dchg, feba, 8);              /* H G F E */
    /* The digest is the words big-endian. */
    const __m128i swap = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
    _mm_storeu_si128((__m128i *)out, _mm_shuffle_epi8(abcd, swap));
    _mm_storeu_si128((__m128i *)(out + 16), _mm_shuffle_epi8(efgh, swap));
}

/* Four rounds of both streams: message words w (plus K) into both states. */
#define ROUNDS(wa, wb, g)                                                   \
    do {                                                                    \
        __m128i k_ = _mm_loadu_si128((const __m128i *)&K[4 * (g)]);         \
        __m128i ma_ = _mm_add_epi32((wa), k_), mb_ = _mm_add_epi32((wb), k_); \
        cdgh_a = _mm_sha256rnds2_epu32(cdgh_a, abef_a, ma_);                \
        cdgh_b = _mm_sha256rnds2_epu32(cdgh_b, abef_b, mb_);                \
        ma_ = _mm_shuffle_epi32(ma_, 0x0E);                                 \
        mb_ = _mm_shuffle_epi32(mb_, 0x0E);                                 \
        abef_a = _mm_sha256rnds2_epu32(abef_a, cdgh_a, ma_);                \
        abef_b = _mm_sha256rnds2_epu32(abef_b, cdgh_b, mb_);                \
    } while (0)

/* The next four message words from the last sixteen (w0 oldest .. w3 newest). */
#define SCHEDULE(w0, w1, w2, w3)                                            \
    _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32((w0), (w1)),    \
                                       _mm_alignr_epi8((w3), (w2), 4)),     \
                         (w3))

/*
 * Compress n 64-byte blocks of each stream into its state (the registers
 * swap roles every two rounds, so after a whole group they are back).
 */
TARGET static void
compress_x2(__m128i state[4], const unsigned char *pa, const unsigned char *pb, size_t n)
{
    const __m128i swap = _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3);
    __m128i abef_a = state[0], cdgh_a = state[1], abef_b = state[2], cdgh_b = state[3];
    for (size_t i = 0; i < n; i++, pa += 64, pb += 64) {
        __m128i save_abef_a = abef_a, save_cdgh_a = cdgh_a;
        __m128i save_abef_b = abef_b, save_cdgh_b = cdgh_b;
        __m128i a0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 0)), swap);
        __m128i a1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 16)), swap);
        __m128i a2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 32)), swap);
        __m128i a3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 48)), swap);
        __m128i b0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 0)), swap);
        __m128i b1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 16)), swap);
        __m128i b2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 32)), swap);
        __m128i b3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 48)), swap);
        ROUNDS(a0, b0, 0);
        ROUNDS(a1, b1, 1);
        ROUNDS(a2, b2, 2);
        ROUNDS(a3, b3, 3);
        for (int g = 4; g < 16; g += 4) {
            a0 = SCHEDULE(a0, a1, a2, a3);
            b0 = SCHEDULE(b0, b1, b2, b3);
            ROUNDS(a0, b0, g);
            a1 = SCHEDULE(a1, a2, a3, a0);
            b1 = SCHEDULE(b1, b2, b3, b0);
            ROUNDS(a1, b1, g + 1);
            a2 = SCHEDULE(a2, a3, a0, a1);
            b2 = SCHEDULE(b2, b3, b0, b1);
            ROUNDS(a2, b2, g + 2);
            a3 = SCHEDULE(a3, a0, a1, a2);
            b3 = SCHEDULE(b3, b0, b1, b2);
            ROUNDS(a3, b3, g + 3);
        }
        abef_a = _mm_add_epi32(abef_a, save_abef_a);
        cdgh_a = _mm_add_epi32(cdgh_a, save_cdgh_a);
        abef_b = _mm_add_epi32(abef_b, save_abef_b);
        cdgh_b = _mm_add_epi32(cdgh_b, save_cdgh_b);
    }
    state[0] = abef_a, state[1] = cdgh_a, state[2] = abef_b, state[3] = cdgh_b;
}

/* The last one or two blocks of a message of ``length`` bytes: its tail, 0x80,
 * zeros and the bit length, big-endian. Returns the number of blocks. */
static size_t
final_blocks(const unsigned char *tail, size_t tail_length, uint64_t length,
             unsigned char out[128])
{
    size_t n = tail_length + 9 <= 64 ? 1 : 2;
    memset(out, 0, 128);
    memcpy(out, tail, tail_length);
    out[tail_length] = 0x80;
    uint64_t bits = length * 8;
    for (int i = 0; i < 8; i++)
        out[64 * n - 1 - i] = (unsigned char)(bits >> (8 * i));
    return n;
}

TARGET void
sha256x2(const unsigned char *a, const unsigned char *b, size_t length,
         unsigned char digest_a[32], unsigned char digest_b[32])
{
    __m128i state[4];
    load_state(INITIAL, &state[0], &state[1]);
    state[2] = state[0], state[3] = state[1];
    size_t whole = length / 64;
    compress_x2(state, a, b, whole);
    unsigned char last_a[128], last_b[128];
    size_t tail = length - whole * 64;
    size_t n = final_blocks(a + whole * 64, tail, length, last_a);
    final_blocks(b + whole * 64, tail, length, last_b);
    compress_x2(state, last_a, last_b, n);
    store_digest(state[0], state[1], digest_a);
    store_digest(state[2], state[3], digest_b);
}

#else   /* not x86-64 with GCC or Clang: never available */

int
sha256x2_available(void)
{
    return 0;
}

void
sha256x2(const unsigned char *a, const unsigned char *b, size_t length,
         unsigned char digest_a[32], unsigned char digest_b[32])
{
    (void)a, (void)b, (void)length, (void)digest_a, (void)digest_b;
}

#endif
