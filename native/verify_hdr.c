/* fio-style verify blocks for ioengine-bench (ioengine.bench.verifier): every verify_interval of
   a written block starts with a header saying where it belongs and which write made it, then room
   for a digest of the rest. Written and checked here rather than one Python struct call per
   header: fio's surface-scan example checks 128 headers per 64 KiB read. The layout is the
   verifier's (little-endian): magic u32, length u32, offset u64, write number u64, writer u32,
   4 bytes of padding, IE_VSUM_LEN bytes of digest, then the data. */
#include <stdint.h>
#include <string.h>

#include "ioengine_native.h"

#define IE_VMAGIC 0xACCA10E0u

static void put_le(unsigned char *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_le(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

void ie_verify_fill(uint64_t addr, uint64_t n, uint64_t interval, uint64_t pos, uint64_t seq, uint32_t writer)
{
    unsigned char *p = (unsigned char *)(uintptr_t)addr;
    uint64_t step = interval ? interval : n;
    for (uint64_t c = 0; c < n; c += step) {
        uint64_t size = step < n - c ? step : n - c;
        if (size < IE_VDATA_AT)
            continue; /* too short for a header: left as it is, and not checked */
        unsigned char *h = p + c;
        put_le(h, IE_VMAGIC, 4);
        put_le(h + 4, size, 4);
        put_le(h + 8, pos + c, 8);
        put_le(h + 16, seq, 8);
        put_le(h + 24, writer, 4);
        memset(h + 28, 0, IE_VDATA_AT - 28); /* padding and the digest's room */
    }
}

int64_t ie_verify_check(uint64_t addr, uint64_t n, uint64_t interval, uint64_t pos, int64_t seq, int64_t writer,
                        int zero_sum)
{
    const unsigned char *p = (const unsigned char *)(uintptr_t)addr;
    uint64_t step = interval ? interval : n;
    for (uint64_t c = 0; c < n; c += step) {
        uint64_t size = step < n - c ? step : n - c;
        if (size < IE_VDATA_AT)
            continue;
        const unsigned char *h = p + c;
        int why = 0;
        if (get_le(h, 4) != IE_VMAGIC)
            why = IE_VBAD_MAGIC;
        else if (get_le(h + 8, 8) != pos + c || get_le(h + 4, 4) != size)
            why = IE_VBAD_OFFSET;
        else if (writer >= 0 && (get_le(h + 24, 4) != (uint64_t)writer || get_le(h + 16, 8) != (uint64_t)seq))
            why = IE_VBAD_NUMBERIO;
        else if (zero_sum) {
            for (int i = IE_VSUM_AT; i < IE_VDATA_AT; i++)
                if (h[i]) {
                    why = IE_VBAD_SUM;
                    break;
                }
        }
        if (why)
            return (int64_t)(c << 3) | why;
    }
    return -1;
}

void ie_fill_pattern(uint64_t addr, uint64_t n, uint64_t pattern, uint64_t plen)
{
    unsigned char *p = (unsigned char *)(uintptr_t)addr;
    if (!n || !plen)
        return;
    uint64_t have = plen < n ? plen : n;
    memcpy(p, (const void *)(uintptr_t)pattern, have);
    while (have < n) { /* doubling: a few memcpys per block */
        uint64_t more = have < n - have ? have : n - have;
        memcpy(p + have, p, more);
        have += more;
    }
}

int64_t ie_check_pattern(uint64_t addr, uint64_t n, uint64_t pattern, uint64_t plen)
{
    const unsigned char *p = (const unsigned char *)(uintptr_t)addr;
    const unsigned char *pat = (const unsigned char *)(uintptr_t)pattern;
    if (!plen)
        return -1;
    uint64_t i = 0;
    for (; i + plen <= n; i += plen)
        if (memcmp(p + i, pat, plen))
            break;
    for (; i < n; i++)
        if (p[i] != pat[i % plen])
            return (int64_t)i;
    return -1;
}
