#!/usr/bin/env python3
"""Pure-Python reference of @piflow/policy `randn` (policy/NOISE.md), no dependencies.

    python3 policy/vectors/noise_reference.py --check policy/vectors/noise.json
    python3 policy/vectors/noise_reference.py --seed 42 --count 8 [--offset 0]

Every float operation below is a single IEEE-754 binary64 operation in the order NOISE.md gives, so the
results are bit-identical to the TypeScript implementation. Keep it that way: no math.log / math.cos,
no fused multiply-add, no reassociation.
"""
import json
import math
import struct
import sys

M0, M1 = 0xD2511F53, 0xCD9E8D57
W0, W1 = 0x9E3779B9, 0xBB67AE85
MASK = 0xFFFFFFFF
SQRT2 = 1.4142135623730951
LN2 = 0.6931471805599453
HALF_PI = 1.5707963267948966


def philox4x32_10(ctr, key):
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(10):
        if r > 0:
            k0 = (k0 + W0) & MASK
            k1 = (k1 + W1) & MASK
        p0 = M0 * c0
        p1 = M1 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & MASK, p1 & MASK, ((p0 >> 32) ^ c3 ^ k1) & MASK, p0 & MASK
    return [c0, c1, c2, c3]


def ln_uniform(a):
    t = 2 * a + 1  # odd integer < 2^33, exact
    e = t.bit_length() - 1
    m = t / float(2 ** e)  # exact
    if m > SQRT2:
        m = m / 2.0
        e += 1
    s = (m - 1.0) / (m + 1.0)
    z = s * s
    p = 1.0 / 23.0
    for k in range(10, -1, -1):
        p = p * z + 1.0 / float(2 * k + 1)
    return float(e - 33) * LN2 + (2.0 * s) * p


def sin_cos_small(phi):
    z = phi * phi
    s = 1.0
    c = 1.0
    for k in range(9, 0, -1):
        s = 1.0 - (z / float((2 * k) * (2 * k + 1))) * s
        c = 1.0 - (z / float((2 * k - 1) * (2 * k))) * c
    return phi * s, c


def box_muller(a, b):
    radius = math.sqrt(-2.0 * ln_uniform(a))  # sqrt is correctly rounded in IEEE-754
    quadrant = b >> 30
    f = float((b & 0x3FFFFFFF)) + 0.5
    f = f / 1073741824.0
    if f < 0.5:
        sin_p, cos_p = sin_cos_small(f * HALF_PI)
    else:
        sin_q, cos_q = sin_cos_small((1.0 - f) * HALF_PI)
        sin_p, cos_p = cos_q, sin_q
    sin_t, cos_t = [(sin_p, cos_p), (cos_p, -sin_p), (-sin_p, -cos_p), (-cos_p, sin_p)][quadrant]
    return radius * cos_t, radius * sin_t


def randn(count, seed, offset=0):
    out = []
    j = offset
    while j < offset + count:
        block = j // 4
        words = philox4x32_10([block & MASK, block >> 32, 0, 0], [seed, 0])
        lanes = list(box_muller(words[0], words[1])) + list(box_muller(words[2], words[3]))
        lane = j - block * 4
        while lane < 4 and j < offset + count:
            out.append(lanes[lane])
            lane += 1
            j += 1
    return out


def f32_bits(x):
    return '%08x' % struct.unpack('<I', struct.pack('<f', x))[0]


def check(path):
    vectors = json.load(open(path))
    failures = 0
    for case in vectors['philox4x32_10']:
        got = ['%08x' % w for w in philox4x32_10([int(h, 16) for h in case['counter']], [int(h, 16) for h in case['key']])]
        if got != case['output']:
            failures += 1
            print('philox mismatch', case, got)
    for case in vectors['box_muller']:
        a, b = int(case['a'], 16), int(case['b'], 16)
        if ln_uniform(a) != case['ln_uniform_a'] or list(box_muller(a, b)) != case['normals']:
            failures += 1
            print('box_muller mismatch', case, ln_uniform(a), box_muller(a, b))
    for case in vectors['streams']:
        got = randn(len(case['float64']), case['seed'], case['offset'])
        if got != case['float64'] or [f32_bits(v) for v in got] != case['float32_bits']:
            failures += 1
            print('stream mismatch', case['seed'], case['offset'], got)
    total = len(vectors['philox4x32_10']) + len(vectors['box_muller']) + len(vectors['streams'])
    print('%d passed, %d failed' % (total - failures, failures))
    return failures == 0


if __name__ == '__main__':
    args = sys.argv[1:]
    if args[:1] == ['--check']:
        sys.exit(0 if check(args[1]) else 1)
    opts = dict(zip(args[::2], args[1::2]))
    for v in randn(int(opts.get('--count', 8)), int(opts.get('--seed', 0)), int(opts.get('--offset', 0))):
        print(repr(v))
