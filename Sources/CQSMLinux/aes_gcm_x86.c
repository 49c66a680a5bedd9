// AES-128-GCM (NIST SP 800-38D) with the x86 AES and carry-less multiply instructions,
// and the CPUID check that says whether this CPU has them. Intrinsics live here only; the
// portable Swift implementation in QSMProtocol stays the fallback and the reference the
// tests compare this against (plus the GCM specification's test vectors and `openssl`).
//
// The context is 512 bytes: eleven round keys (0...175), the hash key H and its powers
// H^2, H^3, H^4 (176...239), byte-reversed (the order the multiplication below works in);
// then H^16 down to H^1 (240...495) for the wide hash, and at 496 whether this CPU runs
// it (VPCLMULQDQ on 512-bit registers: sixteen blocks per reduction). Only 96-bit nonces
// are supported.
#include "CQSMLinux.h"
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

int cqsm_cpu_has_aes_gcm(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    const int pclmul = (ecx >> 1) & 1, ssse3 = (ecx >> 9) & 1, sse41 = (ecx >> 19) & 1, aes = (ecx >> 25) & 1;
    return pclmul && ssse3 && sse41 && aes;
}

#define TARGET __attribute__((target("aes,pclmul,ssse3,sse4.1")))
#define WIDE __attribute__((target("aes,pclmul,ssse3,sse4.1,avx512f,avx512bw,avx512vl,vpclmulqdq")))

// The context (AESGCM.contextBytes): round keys, H..H^4, the wide flag, and the table
// of H^96..H^1 (highest first) the folds take their powers from.
enum { WIDE_FLAG = 496, ALL_POWERS = 512, ALL_POWER_COUNT = 96 };

// CPUID traps to the hypervisor in a virtual machine (microseconds each), and every
// key set up asks (`cqsm_aes128_gcm_set_wide`): a datagram claiming a new sender epoch
// costs a key, so the answer is found once and kept.
static int wide_ghash_supported(void);

int cqsm_cpu_has_wide_ghash(void) {
    static int known = -1;
    int answer = __atomic_load_n(&known, __ATOMIC_RELAXED);
    if (answer < 0) {
        answer = wide_ghash_supported();
        __atomic_store_n(&known, answer, __ATOMIC_RELAXED);
    }
    return answer;
}

static int wide_ghash_supported(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !((ecx >> 27) & 1)) return 0;  // OSXSAVE
    unsigned int low, high;
    __asm__ volatile("xgetbv" : "=a"(low), "=d"(high) : "c"(0));
    (void)high;
    if ((low & 0xE6) != 0xE6) return 0;  // the OS saves the SSE, AVX and AVX-512 state
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return 0;
    const int avx512f = (ebx >> 16) & 1, avx512bw = (ebx >> 30) & 1, avx512vl = (ebx >> 31) & 1, vpclmul = (ecx >> 10) & 1;
    return cqsm_cpu_has_aes_gcm() && avx512f && avx512bw && avx512vl && vpclmul;
}

void cqsm_aes128_gcm_set_wide(uint8_t *context, int enabled) {
    context[WIDE_FLAG] = (uint8_t)(enabled && cqsm_cpu_has_wide_ghash());
}

TARGET static inline __m128i expand_step(__m128i key, __m128i assist) {
    assist = _mm_shuffle_epi32(assist, 0xff);
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    key = _mm_xor_si128(key, _mm_slli_si128(key, 4));
    return _mm_xor_si128(key, assist);
}

TARGET static inline __m128i byte_reverse(__m128i x) {
    const __m128i mask = _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    return _mm_shuffle_epi8(x, mask);
}

TARGET static inline __m128i encrypt_block(const __m128i *rk, __m128i block) {
    block = _mm_xor_si128(block, rk[0]);
    for (int round = 1; round < 10; round++) block = _mm_aesenc_si128(block, rk[round]);
    return _mm_aesenclast_si128(block, rk[10]);
}

// Multiplication in GF(2^128) of byte-reversed operands (Gueron and Kounavis, "Intel
// Carry-Less Multiplication Instruction and its Usage for Computing the GCM Mode",
// algorithm 5: four products, a shift left by one for the bit order, then reduction).
// Split in two: the 256-bit carry-less product, and its reduction. Both steps are linear
// over XOR, so products that are summed anyway (four blocks of GHASH) are reduced once.
TARGET static inline void carryless_product(__m128i a, __m128i b, __m128i *low, __m128i *high) {
    __m128i middle = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x10), _mm_clmulepi64_si128(a, b, 0x01));
    *low = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x00), _mm_slli_si128(middle, 8));
    *high = _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x11), _mm_srli_si128(middle, 8));
}

TARGET static inline __m128i reduce(__m128i low, __m128i high) {
    // Shift the 256-bit product left by one bit.
    __m128i low_carry = _mm_srli_epi32(low, 31), high_carry = _mm_srli_epi32(high, 31);
    low = _mm_slli_epi32(low, 1);
    high = _mm_slli_epi32(high, 1);
    __m128i across = _mm_srli_si128(low_carry, 12);
    high_carry = _mm_slli_si128(high_carry, 4);
    low_carry = _mm_slli_si128(low_carry, 4);
    low = _mm_or_si128(low, low_carry);
    high = _mm_or_si128(_mm_or_si128(high, high_carry), across);
    // Reduce modulo x^128 + x^7 + x^2 + x + 1.
    __m128i a1 = _mm_slli_epi32(low, 31), a2 = _mm_slli_epi32(low, 30), a3 = _mm_slli_epi32(low, 25);
    __m128i folded = _mm_xor_si128(_mm_xor_si128(a1, a2), a3);
    __m128i carried = _mm_srli_si128(folded, 4);
    low = _mm_xor_si128(low, _mm_slli_si128(folded, 12));
    __m128i b1 = _mm_srli_epi32(low, 1), b2 = _mm_srli_epi32(low, 2), b3 = _mm_srli_epi32(low, 7);
    __m128i sum = _mm_xor_si128(_mm_xor_si128(_mm_xor_si128(b1, b2), b3), carried);
    low = _mm_xor_si128(low, sum);
    return _mm_xor_si128(high, low);
}

TARGET static inline __m128i gf_multiply(__m128i a, __m128i b) {
    __m128i low, high;
    carryless_product(a, b, &low, &high);
    return reduce(low, high);
}

TARGET void cqsm_aes128_gcm_init(uint8_t *context, const uint8_t *key) {
    __m128i rk[11];
    rk[0] = _mm_loadu_si128((const __m128i *)key);
    rk[1] = expand_step(rk[0], _mm_aeskeygenassist_si128(rk[0], 0x01));
    rk[2] = expand_step(rk[1], _mm_aeskeygenassist_si128(rk[1], 0x02));
    rk[3] = expand_step(rk[2], _mm_aeskeygenassist_si128(rk[2], 0x04));
    rk[4] = expand_step(rk[3], _mm_aeskeygenassist_si128(rk[3], 0x08));
    rk[5] = expand_step(rk[4], _mm_aeskeygenassist_si128(rk[4], 0x10));
    rk[6] = expand_step(rk[5], _mm_aeskeygenassist_si128(rk[5], 0x20));
    rk[7] = expand_step(rk[6], _mm_aeskeygenassist_si128(rk[6], 0x40));
    rk[8] = expand_step(rk[7], _mm_aeskeygenassist_si128(rk[7], 0x80));
    rk[9] = expand_step(rk[8], _mm_aeskeygenassist_si128(rk[8], 0x1b));
    rk[10] = expand_step(rk[9], _mm_aeskeygenassist_si128(rk[9], 0x36));
    for (int i = 0; i < 11; i++) _mm_storeu_si128((__m128i *)(context + 16 * i), rk[i]);
    __m128i powers[ALL_POWER_COUNT];
    powers[0] = byte_reverse(encrypt_block(rk, _mm_setzero_si128()));
    for (int i = 1; i < ALL_POWER_COUNT; i++) powers[i] = gf_multiply(powers[i - 1], powers[0]);
    for (int i = 0; i < 4; i++) _mm_storeu_si128((__m128i *)(context + 176 + 16 * i), powers[i]);
    for (int i = 0; i < ALL_POWER_COUNT; i++) {
        _mm_storeu_si128((__m128i *)(context + ALL_POWERS + 16 * i), powers[ALL_POWER_COUNT - 1 - i]);
    }
    cqsm_aes128_gcm_set_wide(context, 1);
}

typedef struct { __m128i rk[11]; __m128i h, h2, h3, h4; } expanded;

TARGET static inline void load_context(expanded *e, const uint8_t *context) {
    for (int i = 0; i < 11; i++) e->rk[i] = _mm_loadu_si128((const __m128i *)(context + 16 * i));
    e->h = _mm_loadu_si128((const __m128i *)(context + 176));
    e->h2 = _mm_loadu_si128((const __m128i *)(context + 192));
    e->h3 = _mm_loadu_si128((const __m128i *)(context + 208));
    e->h4 = _mm_loadu_si128((const __m128i *)(context + 224));
}

// Folds `length` bytes into the hash state: four blocks at a time (Horner's rule over
// H^4...H: four products summed, then one reduction), then single blocks, then a
// zero-padded tail.
TARGET static inline __m128i ghash(const expanded *e, __m128i state, const uint8_t *data, size_t length) {
    while (length >= 64) {
        __m128i x0 = _mm_xor_si128(state, byte_reverse(_mm_loadu_si128((const __m128i *)data)));
        __m128i x1 = byte_reverse(_mm_loadu_si128((const __m128i *)(data + 16)));
        __m128i x2 = byte_reverse(_mm_loadu_si128((const __m128i *)(data + 32)));
        __m128i x3 = byte_reverse(_mm_loadu_si128((const __m128i *)(data + 48)));
        __m128i l0, h0, l1, h1, l2, h2, l3, h3;
        carryless_product(x0, e->h4, &l0, &h0);
        carryless_product(x1, e->h3, &l1, &h1);
        carryless_product(x2, e->h2, &l2, &h2);
        carryless_product(x3, e->h, &l3, &h3);
        state = reduce(_mm_xor_si128(_mm_xor_si128(l0, l1), _mm_xor_si128(l2, l3)),
                       _mm_xor_si128(_mm_xor_si128(h0, h1), _mm_xor_si128(h2, h3)));
        data += 64;
        length -= 64;
    }
    while (length >= 16) {
        state = gf_multiply(_mm_xor_si128(state, byte_reverse(_mm_loadu_si128((const __m128i *)data))), e->h);
        data += 16;
        length -= 16;
    }
    if (length > 0) {
        uint8_t block[16] = {0};
        memcpy(block, data, length);
        state = gf_multiply(_mm_xor_si128(state, byte_reverse(_mm_loadu_si128((const __m128i *)block))), e->h);
    }
    return state;
}

// Where a run of m blocks (the lengths block last) finds its powers: block j is
// multiplied by H^(m-j), which lies at index j from here in the context's table of
// H^96..H^1 (m <= ALL_POWER_COUNT).
TARGET static inline const uint8_t *powers_for(const uint8_t *context, size_t m) {
    return context + ALL_POWERS + 16 * (ALL_POWER_COUNT - m);
}

// GHASH sixteen blocks at a time on 512-bit registers: four blocks per register, each
// lane multiplied by its own power of H (the first block by H^16, the last by H^1), the
// products of all sixteen summed lane by lane and across lanes, then reduced once.
// `length` is a multiple of 256; the caller folds the rest.
WIDE __attribute__((noinline)) static __m128i ghash_wide(const uint8_t *context, __m128i state, const uint8_t *data,
                                                         size_t length) {
    const __m512i reverse = _mm512_broadcast_i32x4(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const uint8_t *powers = powers_for(context, 16);
    const __m512i p0 = _mm512_loadu_si512((const void *)powers);
    const __m512i p1 = _mm512_loadu_si512((const void *)(powers + 64));
    const __m512i p2 = _mm512_loadu_si512((const void *)(powers + 128));
    const __m512i p3 = _mm512_loadu_si512((const void *)(powers + 192));
    while (length >= 256) {
        __m512i x0 = _mm512_shuffle_epi8(_mm512_loadu_si512((const void *)data), reverse);
        const __m512i x1 = _mm512_shuffle_epi8(_mm512_loadu_si512((const void *)(data + 64)), reverse);
        const __m512i x2 = _mm512_shuffle_epi8(_mm512_loadu_si512((const void *)(data + 128)), reverse);
        const __m512i x3 = _mm512_shuffle_epi8(_mm512_loadu_si512((const void *)(data + 192)), reverse);
        x0 = _mm512_xor_si512(x0, _mm512_zextsi128_si512(state));
        __m512i low = _mm512_xor_si512(_mm512_xor_si512(_mm512_clmulepi64_epi128(x0, p0, 0x00), _mm512_clmulepi64_epi128(x1, p1, 0x00)),
                                       _mm512_xor_si512(_mm512_clmulepi64_epi128(x2, p2, 0x00), _mm512_clmulepi64_epi128(x3, p3, 0x00)));
        __m512i high = _mm512_xor_si512(_mm512_xor_si512(_mm512_clmulepi64_epi128(x0, p0, 0x11), _mm512_clmulepi64_epi128(x1, p1, 0x11)),
                                        _mm512_xor_si512(_mm512_clmulepi64_epi128(x2, p2, 0x11), _mm512_clmulepi64_epi128(x3, p3, 0x11)));
        __m512i middle = _mm512_xor_si512(_mm512_xor_si512(_mm512_clmulepi64_epi128(x0, p0, 0x10), _mm512_clmulepi64_epi128(x0, p0, 0x01)),
                                          _mm512_xor_si512(_mm512_clmulepi64_epi128(x1, p1, 0x10), _mm512_clmulepi64_epi128(x1, p1, 0x01)));
        middle = _mm512_xor_si512(middle, _mm512_xor_si512(_mm512_xor_si512(_mm512_clmulepi64_epi128(x2, p2, 0x10), _mm512_clmulepi64_epi128(x2, p2, 0x01)),
                                                           _mm512_xor_si512(_mm512_clmulepi64_epi128(x3, p3, 0x10), _mm512_clmulepi64_epi128(x3, p3, 0x01))));
        low = _mm512_xor_si512(low, _mm512_bslli_epi128(middle, 8));
        high = _mm512_xor_si512(high, _mm512_bsrli_epi128(middle, 8));
        const __m256i low4 = _mm256_xor_si256(_mm512_castsi512_si256(low), _mm512_extracti64x4_epi64(low, 1));
        const __m256i high4 = _mm256_xor_si256(_mm512_castsi512_si256(high), _mm512_extracti64x4_epi64(high, 1));
        state = reduce(_mm_xor_si128(_mm256_castsi256_si128(low4), _mm256_extracti128_si256(low4, 1)),
                       _mm_xor_si128(_mm256_castsi256_si128(high4), _mm256_extracti128_si256(high4, 1)));
        data += 256;
        length -= 256;
    }
    return state;
}

// Block `j` of `length` bytes at `data`, byte-reversed for the hash; the final block,
// if short, zero-padded.
TARGET static inline __m128i hash_block(const uint8_t *data, size_t j, size_t length) {
    if (length - 16 * j >= 16) return byte_reverse(_mm_loadu_si128((const __m128i *)(data + 16 * j)));
    uint8_t block[16] = {0};
    memcpy(block, data + 16 * j, length - 16 * j);
    return byte_reverse(_mm_loadu_si128((const __m128i *)block));
}

// Ends a fold: adds blocks `j` up to `blocks` of the `length` bytes at `data` (the final
// block zero-padded), each times its power from `table`, with `pending` (the state,
// if no block took it yet) folded into the first, then the lengths block times H, to
// the running products `low` and `high`, and reduces the sum once.
TARGET static inline __m128i fold_rest(const uint8_t *table, const expanded *e, const uint8_t *data, size_t j, size_t blocks,
                                       size_t length, __m128i pending, __m128i low, __m128i high, __m128i lengths) {
    __m128i l, h;
    for (; j < blocks; j++) {
        carryless_product(_mm_xor_si128(hash_block(data, j, length), pending),
                          _mm_loadu_si128((const __m128i *)(table + 16 * j)), &l, &h);
        pending = _mm_setzero_si128();
        low = _mm_xor_si128(low, l);
        high = _mm_xor_si128(high, h);
    }
    carryless_product(_mm_xor_si128(lengths, pending), e->h, &l, &h);
    return reduce(_mm_xor_si128(low, l), _mm_xor_si128(high, h));
}

// Folds the last `length` bytes (the final block zero-padded) and then the lengths block
// into the hash state, and returns it. With m blocks in all (the state folded into the
// first), block j is multiplied by H^(m-j) and the products summed before one reduction,
// instead of one reduction per four blocks, each waiting on the one before (Horner's
// rule). Blocks beyond what the table covers go through `ghash` first.
TARGET static inline __m128i ghash_finish(const uint8_t *context, const expanded *e, __m128i state,
                                          const uint8_t *data, size_t length, __m128i lengths) {
    size_t blocks = (length + 15) / 16;
    if (blocks + 1 > ALL_POWER_COUNT) {
        const size_t lead = (blocks + 1 - ALL_POWER_COUNT) * 16;
        state = ghash(e, state, data, lead);
        data += lead;
        length -= lead;
        blocks = ALL_POWER_COUNT - 1;
    }
    return fold_rest(powers_for(context, blocks + 1), e, data, 0, blocks, length, state, _mm_setzero_si128(),
                     _mm_setzero_si128(), lengths);
}

// `ghash_finish` on 512-bit registers, for the whole of a datagram at once: with m
// blocks in all (the lengths block last, the state folded into the first), block j is
// multiplied by H^(m-j), four blocks per register against four consecutive powers from
// the context's descending table, and everything is summed before one reduction. Data
// longer than the table covers goes through `ghash_wide` first, 256 bytes at a time.
WIDE __attribute__((noinline)) static __m128i ghash_finish_wide(const uint8_t *context, const expanded *e, __m128i state,
                                                                const uint8_t *data, size_t length, __m128i lengths) {
    size_t blocks = (length + 15) / 16;
    if (blocks + 1 > ALL_POWER_COUNT) {
        const size_t lead = ((blocks + 1 - ALL_POWER_COUNT + 15) / 16) * 256;
        state = ghash_wide(context, state, data, lead);
        data += lead;
        length -= lead;
        blocks = (length + 15) / 16;
    }
    const __m512i reverse = _mm512_broadcast_i32x4(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const uint8_t *table = powers_for(context, blocks + 1);
    __m512i low = _mm512_setzero_si512(), high = _mm512_setzero_si512(), middle = _mm512_setzero_si512();
    __m128i pending = state;
    size_t j = 0;
    for (; j + 4 <= length / 16; j += 4) {
        __m512i x = _mm512_shuffle_epi8(_mm512_loadu_si512((const void *)(data + 16 * j)), reverse);
        x = _mm512_xor_si512(x, _mm512_zextsi128_si512(pending));
        pending = _mm_setzero_si128();
        const __m512i p = _mm512_loadu_si512((const void *)(table + 16 * j));
        low = _mm512_xor_si512(low, _mm512_clmulepi64_epi128(x, p, 0x00));
        high = _mm512_xor_si512(high, _mm512_clmulepi64_epi128(x, p, 0x11));
        middle = _mm512_xor_si512(middle, _mm512_xor_si512(_mm512_clmulepi64_epi128(x, p, 0x10), _mm512_clmulepi64_epi128(x, p, 0x01)));
    }
    low = _mm512_xor_si512(low, _mm512_bslli_epi128(middle, 8));
    high = _mm512_xor_si512(high, _mm512_bsrli_epi128(middle, 8));
    const __m256i low4 = _mm256_xor_si256(_mm512_castsi512_si256(low), _mm512_extracti64x4_epi64(low, 1));
    const __m256i high4 = _mm256_xor_si256(_mm512_castsi512_si256(high), _mm512_extracti64x4_epi64(high, 1));
    // The last few blocks, then the lengths block.
    return fold_rest(table, e, data, j, blocks, length, pending,
                     _mm_xor_si128(_mm256_castsi256_si128(low4), _mm256_extracti128_si256(low4, 1)),
                     _mm_xor_si128(_mm256_castsi256_si128(high4), _mm256_extracti128_si256(high4, 1)), lengths);
}

TARGET static inline __m128i counter_block(const uint8_t *nonce, uint32_t counter) {
    uint8_t block[16];
    memcpy(block, nonce, 12);
    block[12] = (uint8_t)(counter >> 24);
    block[13] = (uint8_t)(counter >> 16);
    block[14] = (uint8_t)(counter >> 8);
    block[15] = (uint8_t)counter;
    return _mm_loadu_si128((const __m128i *)block);
}

// CTR mode from counter 2 (counter 1 masks the tag), four blocks at a time.
TARGET static inline void counter_mode(const expanded *e, const uint8_t *nonce, const uint8_t *input, uint8_t *output, size_t length) {
    uint32_t counter = 2;
    while (length >= 64) {
        __m128i b0 = counter_block(nonce, counter), b1 = counter_block(nonce, counter + 1);
        __m128i b2 = counter_block(nonce, counter + 2), b3 = counter_block(nonce, counter + 3);
        b0 = _mm_xor_si128(b0, e->rk[0]); b1 = _mm_xor_si128(b1, e->rk[0]);
        b2 = _mm_xor_si128(b2, e->rk[0]); b3 = _mm_xor_si128(b3, e->rk[0]);
        for (int round = 1; round < 10; round++) {
            b0 = _mm_aesenc_si128(b0, e->rk[round]); b1 = _mm_aesenc_si128(b1, e->rk[round]);
            b2 = _mm_aesenc_si128(b2, e->rk[round]); b3 = _mm_aesenc_si128(b3, e->rk[round]);
        }
        b0 = _mm_aesenclast_si128(b0, e->rk[10]); b1 = _mm_aesenclast_si128(b1, e->rk[10]);
        b2 = _mm_aesenclast_si128(b2, e->rk[10]); b3 = _mm_aesenclast_si128(b3, e->rk[10]);
        _mm_storeu_si128((__m128i *)output, _mm_xor_si128(b0, _mm_loadu_si128((const __m128i *)input)));
        _mm_storeu_si128((__m128i *)(output + 16), _mm_xor_si128(b1, _mm_loadu_si128((const __m128i *)(input + 16))));
        _mm_storeu_si128((__m128i *)(output + 32), _mm_xor_si128(b2, _mm_loadu_si128((const __m128i *)(input + 32))));
        _mm_storeu_si128((__m128i *)(output + 48), _mm_xor_si128(b3, _mm_loadu_si128((const __m128i *)(input + 48))));
        counter += 4;
        input += 64;
        output += 64;
        length -= 64;
    }
    while (length > 0) {
        uint8_t stream[16];
        _mm_storeu_si128((__m128i *)stream, encrypt_block(e->rk, counter_block(nonce, counter++)));
        const size_t n = length < 16 ? length : 16;
        for (size_t i = 0; i < n; i++) output[i] = input[i] ^ stream[i];
        input += n;
        output += n;
        length -= n;
    }
}

TARGET static inline __m128i tag_of(const uint8_t *context, const expanded *e, const uint8_t *nonce, const uint8_t *aad,
                                    size_t aad_length, const uint8_t *ciphertext, size_t length) {
    const int wide = context[WIDE_FLAG];
    const __m128i lengths = _mm_set_epi64x((long long)((uint64_t)aad_length * 8), (long long)((uint64_t)length * 8));
    const __m128i zero = _mm_setzero_si128();
    __m128i state;
    if (length == 0) {
        // GMAC (a datagram authenticated, not encrypted): the whole of it in one fold.
        state = wide ? ghash_finish_wide(context, e, zero, aad, aad_length, lengths)
                     : ghash_finish(context, e, zero, aad, aad_length, lengths);
    } else {
        const size_t aad_wide = wide ? aad_length & ~(size_t)255 : 0;
        state = aad_wide > 0 ? ghash_wide(context, zero, aad, aad_wide) : zero;
        state = ghash(e, state, aad + aad_wide, aad_length - aad_wide);
        const size_t text_wide = wide ? length & ~(size_t)255 : 0;
        if (text_wide > 0) state = ghash_wide(context, state, ciphertext, text_wide);
        state = ghash_finish(context, e, state, ciphertext + text_wide, length - text_wide, lengths);
    }
    return _mm_xor_si128(byte_reverse(state), encrypt_block(e->rk, counter_block(nonce, 1)));
}

TARGET void cqsm_aes128_gcm_seal(const uint8_t *context, const uint8_t *nonce, const uint8_t *aad, size_t aad_length,
                                 const uint8_t *plaintext, uint8_t *ciphertext, size_t length, uint8_t *tag) {
    expanded e;
    load_context(&e, context);
    counter_mode(&e, nonce, plaintext, ciphertext, length);
    _mm_storeu_si128((__m128i *)tag, tag_of(context, &e, nonce, aad, aad_length, ciphertext, length));
}

TARGET int cqsm_aes128_gcm_open(const uint8_t *context, const uint8_t *nonce, const uint8_t *aad, size_t aad_length,
                                const uint8_t *ciphertext, uint8_t *plaintext, size_t length, const uint8_t *tag) {
    expanded e;
    load_context(&e, context);
    const __m128i expected = tag_of(context, &e, nonce, aad, aad_length, ciphertext, length);
    const __m128i difference = _mm_xor_si128(expected, _mm_loadu_si128((const __m128i *)tag));
    if (!_mm_testz_si128(difference, difference)) return 0;
    counter_mode(&e, nonce, ciphertext, plaintext, length);
    return 1;
}

#else
int cqsm_cpu_has_aes_gcm(void) { return 0; }
int cqsm_cpu_has_wide_ghash(void) { return 0; }
void cqsm_aes128_gcm_set_wide(uint8_t *context, int enabled) { (void)context; (void)enabled; }
void cqsm_aes128_gcm_init(uint8_t *context, const uint8_t *key) { (void)context; (void)key; }
void cqsm_aes128_gcm_seal(const uint8_t *context, const uint8_t *nonce, const uint8_t *aad, size_t aad_length,
                          const uint8_t *plaintext, uint8_t *ciphertext, size_t length, uint8_t *tag) {
    (void)context; (void)nonce; (void)aad; (void)aad_length; (void)plaintext; (void)ciphertext; (void)length; (void)tag;
}
int cqsm_aes128_gcm_open(const uint8_t *context, const uint8_t *nonce, const uint8_t *aad, size_t aad_length,
                         const uint8_t *ciphertext, uint8_t *plaintext, size_t length, const uint8_t *tag) {
    (void)context; (void)nonce; (void)aad; (void)aad_length; (void)ciphertext; (void)plaintext; (void)length; (void)tag;
    return 0;
}
#endif
