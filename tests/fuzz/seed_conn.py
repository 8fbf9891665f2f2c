#!/usr/bin/env python3
"""Seed tests/fuzz/corpus/conn from the request tables of the integration tests.

Every P case of TESTING.md (tests/integration/test_parsing.py), every hostile
sequence (tests/integration/test_hostile.py) and a few valid exchanges become
fuzz_conn inputs: four control bytes (see tests/fuzz/fuzz_conn.c), then the
bytes, then a canary request. Each is written with a few control settings:
cache on and off, one byte per read and larger pieces, several origin scripts.

    tests/fuzz/seed_conn.py            # rewrite the seed files (fuzzer finds stay)
"""
import hashlib
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / 'tests' / 'integration'))
import test_hostile  # noqa: E402
import test_parsing  # noqa: E402

OUT = ROOT / 'tests' / 'fuzz' / 'corpus' / 'conn'
CANARY = test_parsing.CANARY
# (flags, split seed, origin script, body size): cache on/off, half-close, splits
CONTROLS = [bytes([0, 0, 0, 16]), bytes([1, 7, 3, 40]), bytes([2, 63, 6, 200]),
            bytes([0x31, 12, 8, 3])]

VALID = [
    ('get', b'GET /a HTTP/1.1\r\nHost: x\r\n\r\n' * 2),
    ('head_then_get', b'HEAD /b HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n'),
    ('range', b'GET /c HTTP/1.1\r\nHost: x\r\nRange: bytes=0-9\r\n\r\n'
              b'GET /c HTTP/1.1\r\nHost: x\r\nRange: bytes=-5\r\n\r\n'),
    ('conditional', b'GET /d HTTP/1.1\r\nHost: x\r\nIf-None-Match: "fuzz-1"\r\n\r\n'),
    ('gzip', b'GET /e HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip, br\r\n\r\n'),
    ('http10', b'GET /f HTTP/1.0\r\n\r\n'),
    ('keepalive10', b'GET /f HTTP/1.0\r\nConnection: keep-alive\r\n\r\n'),
    ('close', b'GET /g HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
    ('post_cl', b'POST /rw/p HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello'),
    ('post_chunked', b'POST /rw/p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'
                     b'3\r\nabc\r\n4;x=y\r\ndefg\r\n0\r\nX-T: 1\r\n\r\n'),
    ('expect', b'PUT /rw/p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok'),
    ('cors_preflight', b'OPTIONS /q/a HTTP/1.1\r\nHost: x\r\nOrigin: http://a\r\n'
                       b'Access-Control-Request-Method: GET\r\n\r\n'),
    ('query', b'GET /q/a?x=1&y=2 HTTP/1.1\r\nHost: x\r\nCookie: a=b\r\n\r\n'),
    ('many', b''.join(b'GET /m%d HTTP/1.1\r\nHost: x\r\n\r\n' % i for i in range(8))),
    ('absolute', b'GET http://x/h HTTP/1.1\r\nHost: x\r\n\r\n'),
    # what the differential check against h11 found
    ('chunk_ext_list', b'POST /rw/p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n'
                       b'5;a=1;b=2\r\nhello\r\n0;a=1;b\r\n\r\n'),
    ('http10_keepalive_close', b'GET /k HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n'),
    ('obs_text_target', b'GET /y\x80 HTTP/1.1\r\nHost: x\r\n\r\nGET /q?\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n'),
    ('head_error_after_crlf', b'\r\nHEAD /a HTTP/1.2\r\nHost: x\r\n\r\n'),
]


def cases():
    for name, data, *_ in test_parsing.CASES:
        yield 'p_' + name, data
    for name, data in test_hostile.DIFF_CASES:
        yield 'h_' + name, data
    for name, method, trailers in test_hostile.TRAILER_CASES:
        yield 'trailers_' + name, (method + b' /rw/t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: '
                                   b'chunked\r\n\r\n5\r\nhello\r\n0\r\n' + trailers + b'\r\n')
    yield 'upgrade_ws', test_hostile.UPGRADE_WS + test_hostile.PLAIN
    yield 'upgrade_h2c', test_hostile.UPGRADE_H2C + test_hostile.PLAIN
    yield from VALID


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    n = 0
    for name, data in cases():
        for k, ctl in enumerate(CONTROLS):
            body = ctl + data + CANARY
            if len(body) > 8192:  # make fuzz runs with -max_len=8192
                continue
            digest = hashlib.sha1(body).hexdigest()[:8]
            (OUT / f'seed-{name}-{k}-{digest}').write_bytes(body)
            n += 1
    print(f'{n} seed inputs in {OUT.relative_to(ROOT)}')


if __name__ == '__main__':
    main()
