"""Generators of HTTP/1.1 request streams for the differential test (test_differential.py).

A Case is one viewer connection: a few pipelined requests (GenReq) and, last, a canary
`GET /rw/d/<case>/c`. Every generated request names its case and its place in the
path (`/rw/d/<case>/<k>`, hidden requests `/rw/d/<case>/h<k>`), so what reaches the
origin can be told apart per case.

valid_case() builds only requests RFC 9112 allows and Shield must serve: methods with
and without bodies, Content-Length and chunked framing (extensions, trailers, upper and
lower case hex, leading zeros), OWS around values, duplicate fields, obs-text in values,
HTTP/1.0 with keep-alive, absolute-form targets, Expect: 100-continue, empty lines
before a request, bodies that contain a complete request.

mutated_case() starts from a valid case and breaks framing on purpose: Content-Length
and Transfer-Encoding variants, the smuggling shapes (CL.TE, TE.CL, TE.TE), chunk sizes,
extensions and trailers, bare LF/CR, obs-fold, whitespace before a colon or the first
field, control bytes, request-line and Host variants, bodies on GET/HEAD, Connection:
close or HTTP/1.0 in the middle of a pipeline, and random byte edits. case.first_mut is
the first request a mutation touched: requests before it are still valid.

Everything is drawn from the random.Random passed in, so a case is a pure function of
its seed.
"""

CRLF = b'\r\n'
HOST = b'x'
# The viewer headers the differential behavior forwards (its forward_headers).
FWD = (b'X-A', b'X-B', b'X-Keep', b'Origin')
# Headers the behavior does not forward: they must not reach the origin.
NOISE = (b'Accept', b'X-Other', b'Cookie', b'Authorization', b'Cache-Control', b'User-Agent',
         b'Accept-Language', b'X-Forwarded-For')
TCHARS = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
VCHARS = bytes(range(0x21, 0x7f))
OBS_TEXT = bytes(range(0x80, 0x100))
# Path and query bytes no input rule refuses (no '.' segments, %2F, %5C or controls).
PATH_CHARS = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_~!$&'()*+,;=:@"
# (no %25: "%25" + "5c" is a double-encoded backslash, which the input rules refuse)
SAFE_ESCAPES = (b'%20', b'%41', b'%7E', b'%C3%A9', b'%3A')
QUERY_KEYS = (b'a', b'b', b'q', b'k1', b'page', b'lang', b'x-y')
METHODS_NOBODY = (b'GET', b'HEAD')
METHODS_BODY = (b'POST', b'PUT', b'PATCH')
METHODS_EITHER = (b'DELETE', b'OPTIONS')


def case_prefix(case_no):
    return b'/rw/d/%d/' % case_no


def hidden_request(case_no, k):
    """A complete request smuggling attempts try to slip past the proxy."""
    return b'GET ' + case_prefix(case_no) + b'h%d HTTP/1.1\r\nHost: x\r\n\r\n' % k


def canary(case_no):
    return b'GET ' + case_prefix(case_no) + b'c HTTP/1.1\r\nHost: x\r\n\r\n'


def rand_case(rng, name):
    """The field name in a random but equivalent letter case."""
    r = rng.random()
    if r < 0.6:
        return name
    if r < 0.75:
        return name.lower()
    if r < 0.85:
        return name.upper()
    return bytes(c ^ 0x20 if chr(c).isalpha() and rng.random() < 0.5 else c for c in name)


def rand_value(rng, maxlen=40):
    """A valid field value: VCHAR and sometimes obs-text, single inner SP/HTAB runs."""
    n = rng.choice((0, 1, 2, 5, 10, maxlen)) if rng.random() < 0.3 else rng.randint(1, maxlen)
    alphabet = VCHARS + (OBS_TEXT if rng.random() < 0.15 else b'')
    out = bytearray()
    for i in range(n):
        if 0 < i < n - 1 and rng.random() < 0.1 and out[-1:] not in (b' ', b'\t'):
            out += rng.choice((b' ', b'\t', b'  '))
        else:
            out.append(rng.choice(alphabet))
    return bytes(out)


def rand_token(rng, lo=1, hi=12):
    return bytes(rng.choice(TCHARS) for _ in range(rng.randint(lo, hi)))


def rand_body(rng, case_no, k):
    r = rng.random()
    if r < 0.15:
        return b''
    if r < 0.25:  # a body that looks like a request: it is still only a body
        return hidden_request(case_no, 100 + k) * rng.randint(1, 2)
    if r < 0.30:
        return rng.randbytes(rng.randint(8_000, 30_000))
    if r < 0.55:
        return bytes(rng.choice(b'0123456789abcdef\r\n') for _ in range(rng.randint(1, 64)))
    return rng.randbytes(rng.randint(1, 1500))


class GenReq:
    """One request as bytes-to-be, with every separator explicit so mutations can bend it.

    fields: [name, sep, value, eol] (sep is what follows the name: b': ', b':', ...).
    Chunked framing: chunks = [size, ext, size_eol, data, data_eol]; last = [size, ext,
    eol]; trailers = [line, eol]; body_end ends the trailer section. raw, when set,
    replaces the whole rendering (byte-level mutations)."""

    def __init__(self, method, target, version=b'HTTP/1.1'):
        self.pre = b''  # empty lines before the request line
        self.method, self.target, self.version = method, target, version
        self.sp1 = self.sp2 = b' '
        self.rl_end = CRLF
        self.fields = []
        self.head_end = CRLF
        self.framing = None  # None, 'cl' or 'chunked'
        self.payload = b''
        self.chunks = []
        self.last = [b'0', b'', CRLF]
        self.trailers = []
        self.body_end = CRLF
        self.after = b''  # bytes right after the body (smuggled requests)
        self.raw = None

    # ---- fields
    def add(self, name, value, sep=b': ', at=None):
        f = [name, sep, value, CRLF]
        if at is None:
            self.fields.append(f)
        else:
            self.fields.insert(at, f)
        return f

    def find(self, name):
        return [f for f in self.fields if f[0].lower() == name.lower()]

    def drop(self, name):
        self.fields = [f for f in self.fields if f[0].lower() != name.lower()]

    # ---- body
    def set_chunks(self, rng, payload=None):
        if payload is not None:
            self.payload = payload
        p = self.payload
        cuts = []
        if len(p) > 1:
            cuts = sorted(rng.sample(range(1, len(p)), min(len(p) - 1, rng.randint(0, 3))))
        parts = [p[a:b] for a, b in zip([0] + cuts, cuts + [len(p)])] if p else []
        self.chunks = []
        for d in parts:
            size = b'%x' % len(d)
            r = rng.random()
            if r < 0.15:
                size = size.upper()
            elif r < 0.25:
                size = b'00' + size
            ext = b''
            if rng.random() < 0.2:
                ext = rng.choice((b';a', b';name=value', b';q="quoted ; value"', b';x;y=2',
                                  b';x="1";y=2', b';x=1;y=2', b';a=1;b',
                                  b';' + rand_token(rng)))
            self.chunks.append([size, ext, CRLF, d, CRLF])
        self.last = [b'0', b'', CRLF]
        self.trailers = []
        if rng.random() < 0.15:
            self.trailers = [[b'X-T: ' + rand_value(rng, 20), CRLF]
                             for _ in range(rng.randint(1, 2))]
        self.body_end = CRLF

    def frame(self, rng, framing, payload=None):
        """Set the framing headers and body (replaces any Content-Length/TE fields)."""
        self.drop(b'Content-Length')
        self.drop(b'Transfer-Encoding')
        if payload is not None:
            self.payload = payload
        self.framing = framing
        if framing == 'cl':
            self.add(rand_case(rng, b'Content-Length'), b'%d' % len(self.payload))
        elif framing == 'chunked':
            self.add(rand_case(rng, b'Transfer-Encoding'), rng.choice((b'chunked', b'chunked',
                                                                         b'Chunked')))
            self.set_chunks(rng)

    def body(self):
        if self.framing == 'chunked':
            out = b''.join(s + e + se + d + de for s, e, se, d, de in self.chunks)
            out += b''.join(self.last)
            out += b''.join(ln + eol for ln, eol in self.trailers) + self.body_end
            return out + self.after
        if self.framing == 'cl':
            return self.payload + self.after
        return self.after

    def head(self):
        line = self.method + self.sp1 + self.target + self.sp2 + self.version + self.rl_end
        return line + b''.join(n + s + v + e for n, s, v, e in self.fields) + self.head_end

    def wire(self):
        if self.raw is not None:
            return self.raw
        return self.pre + self.head() + self.body()


class Case:
    """One viewer connection: requests, optional tail bytes, then the canary."""

    def __init__(self, no, kind):
        self.no = no
        self.kind = kind  # 'valid' or 'mutated'
        self.reqs = []
        self.labels = []
        self.first_mut = None  # index of the first request a mutation touched
        self.tail = b''
        self.truncate = None  # cut the stream (canary included) to this many bytes

    def mutated(self, i, label):
        self.labels.append(f'{label}@{i}')
        self.first_mut = i if self.first_mut is None else min(self.first_mut, i)

    def stream(self):
        s = b''.join(r.wire() for r in self.reqs) + self.tail + canary(self.no)
        return s if self.truncate is None else s[:self.truncate]

    def pieces(self, rng):
        """The stream cut into sends: one, a few random cuts, or the head byte by byte."""
        s = self.stream()
        r = rng.random()
        if r < 0.5 or len(s) < 2:
            return [s]
        if r < 0.95:
            cuts = sorted(set(rng.randrange(1, len(s)) for _ in range(rng.randint(1, 4))))
        else:
            cuts = list(range(1, min(len(s), 120)))
        return [s[a:b] for a, b in zip([0] + cuts, cuts + [len(s)])]


# ---- valid requests -----------------------------------------------------------------

def rand_target(rng, case_no, k):
    t = case_prefix(case_no) + b'%d' % k
    if rng.random() < 0.3:
        seg = bytearray()
        for _ in range(rng.randint(1, 12)):
            if rng.random() < 0.1:
                seg += rng.choice(SAFE_ESCAPES)
            else:
                seg.append(rng.choice(PATH_CHARS))
        t += b'/' + bytes(seg)
    if rng.random() < 0.35:
        parts = []
        for _ in range(rng.randint(1, 3)):
            v = bytes(rng.choice(PATH_CHARS + b'/?') for _ in range(rng.randint(0, 10)))
            parts.append(rng.choice(QUERY_KEYS) + b'=' + v)
        t += b'?' + b'&'.join(parts)
    if rng.random() < 0.08:
        t = rng.choice((b'http://x', b'http://x:8080', b'HTTP://x', b'https://example.com')) + t
    return t


def valid_request(rng, case_no, k, last):
    """A request Shield must forward as is. A non-last one keeps the connection open."""
    r = rng.random()
    if r < 0.35:
        method = rng.choice(METHODS_NOBODY)
    elif r < 0.85:
        method = rng.choice(METHODS_BODY)
    else:
        method = rng.choice(METHODS_EITHER)
    v10 = rng.random() < 0.1
    g = GenReq(method, rand_target(rng, case_no, k), b'HTTP/1.0' if v10 else b'HTTP/1.1')
    if rng.random() < 0.06:
        g.pre = CRLF * rng.randint(1, 4)  # RFC 9112 §2.2: ignored before a request line
    fields = []
    if not v10 or rng.random() < 0.8:
        fields.append((rand_case(rng, b'Host'), HOST))
    for name in FWD:
        if rng.random() < 0.5:
            for _ in range(1 if rng.random() < 0.85 else rng.randint(2, 3)):
                fields.append((rand_case(rng, name), rand_value(rng)))
    for name in rng.sample(NOISE, rng.randint(0, 3)):
        val = b'10.0.0.%d' % rng.randint(1, 254) if name == b'X-Forwarded-For' else rand_value(rng)
        fields.append((rand_case(rng, name), val))
    if rng.random() < 0.15:
        fields.append((b'X-' + rand_token(rng), rand_value(rng)))
    if rng.random() < 0.03:  # a large field, within Shield's 20 KiB head limit
        fields.append((b'X-A', bytes(rng.choice(VCHARS) for _ in range(rng.randint(4000, 12000)))))
    rng.shuffle(fields)
    for n, v in fields:
        sep = rng.choice((b': ', b': ', b':', b':\t', b':  '))
        tail = rng.choice((b'', b'', b'', b' ', b'\t', b' \t '))
        g.add(n, v + tail if v else v, sep)
    conn = []
    if v10 and not last:
        conn.append(rng.choice((b'keep-alive', b'Keep-Alive')))
    elif last and rng.random() < 0.1:
        conn.append(b'close')
    elif not v10 and rng.random() < 0.1:
        conn.append(b'keep-alive')
    if conn:
        g.add(rand_case(rng, b'Connection'), b', '.join(conn))
    if method in METHODS_NOBODY:
        if rng.random() < 0.05:
            g.add(b'Content-Length', b'0')
        return g
    if method in METHODS_EITHER and rng.random() < 0.5:
        return g
    payload = rand_body(rng, case_no, k)
    framing = 'cl' if v10 or rng.random() < 0.5 else 'chunked'
    if rng.random() < 0.3:
        g.add(rand_case(rng, b'Content-Type'), rng.choice((b'text/plain', b'application/json',
                                                           b'application/octet-stream; x=1')))
    if not v10 and rng.random() < 0.15:
        g.add(b'Expect', rng.choice((b'100-continue', b'100-Continue')))
    g.frame(rng, framing, payload)
    return g


def valid_case(rng, no):
    c = Case(no, 'valid')
    n = rng.choice((1, 1, 2, 2, 3, 4, 5))
    c.reqs = [valid_request(rng, no, k, k == n - 1) for k in range(n)]
    c.labels.append(f'valid x{n}')
    return c


# ---- mutations ----------------------------------------------------------------------

def _with_body(rng, g, framing, payload=None):
    """Make g carry a body (a POST-like method unless it keeps GET/HEAD on purpose)."""
    if g.method in METHODS_NOBODY and rng.random() < 0.85:
        g.method = rng.choice(METHODS_BODY)
    if g.version == b'HTTP/1.0' and framing == 'chunked' and rng.random() < 0.8:
        g.version = b'HTTP/1.1'
        if not g.find(b'Host'):
            g.add(b'Host', HOST, at=0)
    if payload is None:
        payload = g.payload or rand_body(rng, 0, 0) or b'hello'
    g.frame(rng, framing, payload)


CL_NAMES = (b'Content-Length', b'content-length', b'Content_Length', b'Content-Length ',
            b'Content-Length\t', b'Content-Lengthx', b' Content-Length', b'Content-Length\x00')


def m_content_length(rng, case, i):
    g = case.reqs[i]
    _with_body(rng, g, 'cl')
    n = len(g.payload)
    f = g.find(b'Content-Length')[0]
    r = rng.random()
    if r < 0.45:
        v = rng.choice([b'%d, %d' % (n, n), b'%d,%d' % (n, n), b'%d, %d' % (n, n + 1), b'+%d' % n,
                        b'-%d' % n, b'-1', b' %d' % n, b'%d ' % n, b'\t%d' % n, b'0%d' % n,
                        b'000%d' % n, b'%#x' % n, b'%d.0' % n, b'%de0' % n, b'', b'1' * 20,
                        b'9' * 25, b'%d' % (2**63), b'%d' % (2**64 + n), b'%d' % (2**32 + n),
                        b'%d\x00' % n, b'%d\x0b' % n, b'%d;' % n, b'%d %d' % (n, n),
                        b'%d_' % n, b'1_0', b'%d\x80' % n, b'"%d"' % n])
        f[2] = v
        label = f'cl_value={v[:24]!r}'
    elif r < 0.6:
        second = rng.choice((n, n, n + 1, max(0, n - 1), 0))
        g.add(rand_case(rng, b'Content-Length'), b'%d' % second,
              at=rng.randint(0, len(g.fields)))
        label = f'cl_dup={second}'
    elif r < 0.75:  # shorter than the body: the rest would be read as a request
        hid = hidden_request(case.no, i)
        g.payload = g.payload[:rng.randint(0, 8)] + (hid if rng.random() < 0.7 else g.payload)
        d = rng.randint(1, len(g.payload))
        f[2] = b'%d' % (len(g.payload) - d)
        label = f'cl_short_by={d}'
    elif r < 0.85:  # longer than the body: swallows what follows
        d = rng.choice((1, 2, 3, 5, 16, 40))
        f[2] = b'%d' % (n + d)
        label = f'cl_long_by={d}'
    else:
        f[0] = rng.choice(CL_NAMES)
        label = f'cl_name={f[0]!r}'
    case.mutated(i, label)


TE_VALUES = (b'chunked, chunked', b'CHUNKED', b' chunked', b'chunked ', b'\tchunked', b'chunked\t',
             b'identity', b'gzip, chunked', b'chunked, gzip', b'xchunked', b'chunked;q=1',
             b'"chunked"', b'chunk', b'chunked\x0b', b'\x0bchunked', b'', b'chunked,', b',chunked',
             b'identity, chunked', b'chunked\x00', b'chunked\r', b'ch unked', b'cow')
TE_NAMES = (b'Transfer-Encoding : ', b'Transfer_Encoding: ', b'Transfer-Encoding\t: ',
            b' Transfer-Encoding: ', b'Transfer-Encodings: ', b'Transfer-Encoding:\r\n ',
            b'Transfer-Encoding: \r\n\t', b'Transfer-Encoding:\n ')


def m_transfer_encoding(rng, case, i):
    g = case.reqs[i]
    _with_body(rng, g, 'chunked')
    f = g.find(b'Transfer-Encoding')[0]
    r = rng.random()
    if r < 0.5:
        f[2] = rng.choice(TE_VALUES)
        label = f'te_value={f[2]!r}'
    elif r < 0.7:
        name_sep = rng.choice(TE_NAMES)
        f[0], f[1] = name_sep.split(b':', 1)[0], b':' + name_sep.split(b':', 1)[1]
        label = f'te_name={name_sep!r}'
    elif r < 0.85:
        v = rng.choice((b'chunked', b'identity', b'xchunked', b'gzip'))
        g.add(rand_case(rng, b'Transfer-Encoding'), v, at=rng.randint(0, len(g.fields)))
        label = f'te_dup={v!r}'
    else:
        g.version = b'HTTP/1.0'
        label = 'te_http10'
    case.mutated(i, label)


def m_smuggle(rng, case, i):
    """CL.TE, TE.CL and TE.TE: two framings, a hidden request between them."""
    g = case.reqs[i]
    if g.method in METHODS_NOBODY and rng.random() < 0.8:
        g.method = rng.choice(METHODS_BODY)
    g.drop(b'Content-Length')
    g.drop(b'Transfer-Encoding')
    hid = hidden_request(case.no, i)
    shape = rng.choice(('cl.te', 'te.cl', 'te.te'))
    te_val = rng.choice((b'chunked', b'chunked', b' chunked', b'Chunked', b'chunked, identity'))
    g.framing = None
    if shape == 'cl.te':
        body = b'0\r\n\r\n' + hid
        hs = [(b'Content-Length', b'%d' % len(body)), (b'Transfer-Encoding', te_val)]
    elif shape == 'te.cl':
        body = b'%x\r\n' % len(hid) + hid + b'\r\n0\r\n\r\n'
        hs = [(b'Transfer-Encoding', te_val), (b'Content-Length', b'%d' % rng.choice((3, 4, 5)))]
    else:
        body = b'0\r\n\r\n' + hid
        other = rng.choice((b'xchunked', b'identity', b'chunked', b'cow', b' chunked'))
        name = rng.choice((b'Transfer-Encoding', b'Transfer-encoding', b'Transfer-Encoding '))
        hs = [(b'Transfer-Encoding', te_val), (name, other)]
        if rng.random() < 0.5:
            hs.append((b'Content-Length', b'%d' % len(body)))
    if rng.random() < 0.5:
        hs.reverse()
    for n, v in hs:
        g.add(n, v, at=rng.randint(0, len(g.fields)))
    g.after = body
    case.mutated(i, f'smuggle_{shape}')


def _chunked(rng, g):
    if g.framing != 'chunked' or not g.chunks:
        _with_body(rng, g, 'chunked', g.payload or rng.randbytes(rng.randint(1, 40)))


def m_chunk(rng, case, i):
    g = case.reqs[i]
    _chunked(rng, g)
    ch = rng.choice(g.chunks) if g.chunks else None
    r = rng.random()
    if ch is not None and r < 0.25:
        n = len(ch[3])
        ch[0] = rng.choice((b'0x%x' % n, b'+%x' % n, b' %x' % n, b'%x ' % n, b'%x\t' % n,
                            b'0' * 16 + b'%x' % n, b'0' * 20 + b'%x' % n, b'1Z', b'', b'-%x' % n,
                            b'%X' % n, b'%x_' % n, b'fffffffffffffffff', b'%x\x00' % n))
        label = f'chunk_size={ch[0]!r}'
    elif ch is not None and r < 0.4:
        d = rng.choice((-2, -1, 1, 2, 7))
        ch[0] = b'%x' % max(0, len(ch[3]) + d)
        label = f'chunk_size_off={d}'
    elif ch is not None and r < 0.55:
        ch[1] = rng.choice((b';x=1;y=2', b';a=\x01', b';a\nb', b';a\rb', b';', b';a=b\x7f',
                            b'; a=b', b';a=\x80', b' ;a', b';a="\r\n"', b';' + b'e' * 5000))
        label = f'chunk_ext={ch[1][:20]!r}'
    elif ch is not None and r < 0.7:
        which = rng.choice((2, 4))
        ch[which] = rng.choice((b'\n', b'\r', b'', b'XX\r\n', b'\r\r\n', b' \r\n', b'\n\r'))
        label = f'chunk_eol[{which}]={ch[which]!r}'
    elif r < 0.78:
        g.last = rng.choice(([b'0', b'', b'\n'], [b'00', b'', CRLF], [b'0', b';e=1', CRLF],
                             [b'0', b'', b'\r'], [b'', b'', b''], [b'0 ', b'', CRLF]))
        label = f'last_chunk={b"".join(g.last)!r}'
    elif r < 0.9:
        kind = rng.choice(('valid', 'cl', 'host', 'te', 'fold', 'no_colon', 'space_colon', 'nul',
                           'bare_lf_line', 'big', 'conn'))
        line = {'valid': b'X-T: v', 'cl': b'Content-Length: 50', 'host': b'Host: evil',
                'te': b'Transfer-Encoding: chunked', 'fold': b'X-T: a\r\n b', 'no_colon': b'X-T a',
                'space_colon': b'X-T : a', 'nul': b'X-T: a\x00b', 'bare_lf_line': b'X-T: a\nX-U: b',
                'big': b'X-T: ' + b'a' * 3000, 'conn': b'Connection: close'}[kind]
        g.trailers.append([line, CRLF])
        label = f'trailer_{kind}'
    else:
        g.body_end = rng.choice((b'\n', b'\r', b'', b'\r\r\n', b' \r\n'))
        label = f'trailer_end={g.body_end!r}'
    case.mutated(i, label)


def m_line_endings(rng, case, i):
    g = case.reqs[i]
    r = rng.random()
    eol = rng.choice((b'\n', b'\r', b'\r\r\n', b'\n\r'))
    if r < 0.2:
        g.rl_end = eol
        label = f'request_line_eol={eol!r}'
    elif r < 0.45 and g.fields:
        f = rng.choice(g.fields)
        f[3] = eol
        label = f'field_eol={eol!r}'
    elif r < 0.6:
        g.head_end = eol
        label = f'head_end={eol!r}'
    elif r < 0.75:  # every line of the head with bare LF (h11 accepts that)
        g.rl_end = g.head_end = b'\n'
        for f in g.fields:
            f[3] = b'\n'
        label = 'all_bare_lf'
    elif g.fields:
        f = rng.choice(g.fields)
        pos = rng.randint(0, len(f[2]))
        f[2] = f[2][:pos] + rng.choice((b'\r', b'\n')) + f[2][pos:]
        label = 'cr_or_lf_in_value'
    else:
        g.target += b'\r'
        label = 'cr_in_target'
    case.mutated(i, label)


def m_fold(rng, case, i):
    g = case.reqs[i]
    name = rng.choice(FWD + (b'Host', b'Content-Length', b'Transfer-Encoding', b'X-Other'))
    if name in (b'Content-Length', b'Transfer-Encoding'):
        _with_body(rng, g, 'cl' if name == b'Content-Length' else 'chunked')
        f = g.find(name)[0]
    elif name == b'Host' and g.find(b'Host'):
        f = g.find(b'Host')[0]
    else:
        f = g.add(name, rand_value(rng, 10))
    ws = rng.choice((b' ', b'\t', b'  '))
    if rng.random() < 0.5:  # obs-fold after an empty first value: "Name:\r\n value"
        f[1] = rng.choice((b':', b': ', b':\t'))
        f[2] = b'\r\n' + ws + (f[2] or b'b')
        label = f'fold_after_empty({name.decode()})'
    else:
        f[2] = f[2] + b'\r\n' + ws + rand_value(rng, 8)
        label = f'fold({name.decode()})'
    case.mutated(i, label)


def m_whitespace(rng, case, i):
    g = case.reqs[i]
    r = rng.random()
    if r < 0.35 and g.fields:
        g.fields[0][0] = rng.choice((b' ', b'\t')) + g.fields[0][0]
        label = 'ws_before_first_field'
    elif r < 0.7 and g.fields:
        f = rng.choice(g.fields)
        f[0] += rng.choice((b' ', b'\t', b'  '))
        label = f'ws_before_colon({f[0]!r})'
    else:
        f = g.add(rng.choice((b' X-A', b'\tX-B')), b'v', at=rng.randint(0, len(g.fields)))
        label = f'ws_field_line({f[0]!r})'
    case.mutated(i, label)


CTLS = b'\x00\x01\x08\x0b\x0c\x1b\x1f\x7f'


def m_control(rng, case, i):
    g = case.reqs[i]
    if not g.fields:
        g.add(b'X-A', b'v')
    f = rng.choice(g.fields)
    b = bytes([rng.choice(CTLS)])
    r = rng.random()
    if r < 0.55:
        pos = rng.randint(0, len(f[2]))
        f[2] = f[2][:pos] + b + f[2][pos:]
        label = f'ctl_in_value({b!r})'
    elif r < 0.75:
        pos = rng.randint(0, len(f[0]))
        f[0] = f[0][:pos] + b + f[0][pos:]
        label = f'ctl_in_name({b!r})'
    elif r < 0.85:
        f[0] = f[0] + bytes([rng.choice(OBS_TEXT)])
        label = 'obs_text_in_name'
    elif r < 0.93:
        f[0] = f[0] + rng.choice((b'(', b'/', b'@', b'"', b'[', b'=', b'{'))
        label = 'separator_in_name'
    else:
        f[1] = rng.choice((b' ', b'', b'\t'))  # no colon at all
        label = 'no_colon'
    case.mutated(i, label)


def m_request_line(rng, case, i):
    g = case.reqs[i]
    r = rng.random()
    if r < 0.2:
        g.method = rng.choice((g.method.lower(), b'FOO', b'G\x01T', b'GE(T', b'GET\t', b'M-SEARCH',
                               b'PROPFIND', b'CONNECT', b'TRACE', b'get'))
        label = f'method={g.method!r}'
    elif r < 0.4:
        which = rng.choice(('sp1', 'sp2'))
        setattr(g, which, rng.choice((b'  ', b'\t', b' \t', b'')))
        label = f'{which}={getattr(g, which)!r}'
    elif r < 0.65:
        g.version = rng.choice((b'HTTP/1.2', b'HTTP/2.0', b'HTTP/0.9', b'http/1.1', b'HTTP/1.10',
                                b'HTTP/1.1 ', b'HTTP/1', b'HTTP/11', b'HTTP/4294967295.255',
                                b'HTTP/1.0', b'HTTP/1.1\x00', b'HTTPS/1.1'))
        label = f'version={g.version!r}'
    elif r < 0.75:
        g.version = g.sp2 = b''
        label = 'http09'
    else:
        t = g.target
        g.target = rng.choice((b'*', t[1:], t + b'#frag', t + b'/%', t + b'/%1', t + b'/%zz',
                               t + b'/../x', t + b'/%2e%2e/x', t + b'/%2F', t + b'\\x',
                               t + b'/%00', t + b'?a=%00', t + b'/\x7f', t + b'/\x01', b'http://x',
                               b'http://' + t, b'//x' + t, b'http:/' + t, b'http://x:99999' + t,
                               b'http://u@x' + t, b'http://x y' + t))
        label = f'target={g.target[-12:]!r}'
    case.mutated(i, label)


def m_host(rng, case, i):
    g = case.reqs[i]
    r = rng.random()
    if r < 0.25:
        g.drop(b'Host')
        if g.version == b'HTTP/1.0':
            g.version = b'HTTP/1.1'
        label = 'no_host'
    elif r < 0.5:
        g.add(rand_case(rng, b'Host'), rng.choice((b'x', b'y', b'evil')),
              at=rng.randint(0, len(g.fields)))
        label = 'two_hosts'
    elif r < 0.75:
        g.drop(b'Host')
        g.add(b'Host', rng.choice((b'a b', b'a/b', b'x:abc', b'x:1234567', b'u@x', b'', b'x\x01',
                                   b'[::1', b'x:', b'-x', b'x..y')))
        label = f'host_value={g.fields[-1][2]!r}'
    else:
        g.target = b'http://' + rng.choice((b'x', b'other', b'x:81')) + g.target
        if rng.random() < 0.5:
            g.drop(b'Host')
        label = 'absolute_form_host'
    case.mutated(i, label)


def m_semantics(rng, case, i):
    g = case.reqs[i]
    r = rng.random()
    if r < 0.25:  # a body on GET or HEAD, perhaps carrying a request
        g.method = rng.choice(METHODS_NOBODY)
        payload = hidden_request(case.no, i) if rng.random() < 0.6 else b'hello'
        g.frame(rng, rng.choice(('cl', 'chunked')), payload)
        if g.framing == 'chunked' and g.version == b'HTTP/1.0':
            g.version = b'HTTP/1.1'
            if not g.find(b'Host'):
                g.add(b'Host', HOST)
        label = f'body_on_{g.method.decode()}_{g.framing}'
    elif r < 0.4:
        if rng.random() < 0.5:
            _with_body(rng, g, rng.choice(('cl', 'chunked')))
        v = rng.choice((b'100-continue', b'foo', b'100-continue, foo', b'', b'200-ok'))
        g.add(b'Expect', v)
        if rng.random() < 0.3 and g.framing != 'chunked':
            g.version = b'HTTP/1.0'
        label = f'expect={v!r}/{g.version.decode()}'
    elif r < 0.6:  # the connection should end after this request
        if rng.random() < 0.5:
            g.drop(b'Connection')
            g.add(rand_case(rng, b'Connection'),
                  rng.choice((b'close', b'Close', b'keep-alive, close', b'close, keep-alive',
                              b'CLOSE')))
            label = 'connection_close'
        else:
            g.drop(b'Connection')
            g.version = b'HTTP/1.0'
            if g.framing == 'chunked':
                g.frame(rng, 'cl')
            if rng.random() < 0.4:
                g.add(b'Connection', rng.choice((b'keep-alive', b'close', b'keep-alive, close',
                                                 b'Upgrade', b'x, keep-alive')))
            label = 'http10'
    elif r < 0.7:
        g.add(b'Connection', rng.choice((b'Upgrade', b'upgrade, keep-alive')))
        g.add(b'Upgrade', rng.choice((b'websocket', b'h2c', b'foo/1')))
        label = 'upgrade'
    elif r < 0.85:
        g.pre = rng.choice((CRLF * rng.randint(1, 8), b'\n', b'\r\n\n', b'\r', b' \r\n',
                            b'\x00\r\n'))
        label = f'pre={g.pre[:12]!r}'
    else:  # many fields or a large head
        if rng.random() < 0.5:
            for k in range(rng.choice((99, 100, 101, 150))):
                g.add(b'X-F%d' % k, b'v')
            label = 'many_fields'
        else:
            g.add(b'X-Big', b'a' * rng.choice((15_000, 16_500, 20_300, 21_000, 40_000)))
            label = 'big_head'
    case.mutated(i, label)


INTERESTING = b'\r\n \t\x00\x0b\x7f\x80\xff:;,0aZ/'


def m_bytes(rng, case, i):
    """Insert, replace or delete a few bytes anywhere in the request."""
    g = case.reqs[i]
    data = bytearray(g.wire())
    for _ in range(rng.randint(1, 3)):
        pos = rng.randrange(len(data) + 1)
        op = rng.random()
        b = rng.choice(INTERESTING)
        if op < 0.4:
            data.insert(pos, b)
        elif op < 0.75 and pos < len(data):
            data[pos] = b
        elif pos < len(data):
            del data[pos]
    g.raw = bytes(data)
    case.mutated(i, 'bytes')


def m_bare_cr_lf(rng, case, i):
    """A bare CR or LF at any position of the request: one of its CRLFs loses a half,
    or a lone CR/LF goes in between two bytes (head, chunk lines, data or trailers)."""
    g = case.reqs[i]
    data = g.wire()
    ends = [k for k in range(len(data) - 1) if data[k:k + 2] == CRLF]
    if ends and rng.random() < 0.5:
        k = rng.choice(ends)
        keep = rng.choice((b'\r', b'\n'))
        data = data[:k] + keep + data[k + 2:]
        label = f'crlf_to_{keep!r}_at_{k}'
    else:
        k = rng.randrange(len(data) + 1)
        b = rng.choice((b'\r', b'\n'))
        data = data[:k] + b + data[k:]
        label = f'bare_{b!r}_at_{k}'
    g.raw = data
    case.mutated(i, label)


MUTATIONS = [
    (m_content_length, 14), (m_transfer_encoding, 12), (m_smuggle, 8), (m_chunk, 14),
    (m_line_endings, 8), (m_bare_cr_lf, 8), (m_fold, 6), (m_whitespace, 6), (m_control, 8),
    (m_request_line, 8), (m_host, 5), (m_semantics, 12), (m_bytes, 8),
]


def mutated_case(rng, no):
    c = valid_case(rng, no)
    c.kind = 'mutated'
    fns, weights = zip(*MUTATIONS)
    for _ in range(1 if rng.random() < 0.8 else 2):
        fn = rng.choices(fns, weights)[0]
        i = rng.randrange(len(c.reqs))
        if c.reqs[i].raw is not None:
            continue
        fn(rng, c, i)
    r = rng.random()
    if r < 0.04:
        c.tail = rng.choice((b'\r\n', b'\r\n\r\n', b'\n', b'GARBAGE\r\n\r\n', b'\x00', b' '))
        c.mutated(len(c.reqs), f'tail={c.tail!r}')
    elif r < 0.05:  # the stream stops inside a request: the ones before it are intact
        c.truncate = rng.randrange(1, len(c.stream()))
        ends = [len(b''.join(r.wire() for r in c.reqs[:k + 1])) for k in range(len(c.reqs))]
        c.mutated(sum(1 for e in ends if e <= c.truncate), f'truncate={c.truncate}')
    if c.first_mut is None:  # nothing applied (a raw request drew twice)
        m_bytes(rng, c, 0)
    return c


def make_case(rng, no, valid_share=0.4):
    return valid_case(rng, no) if rng.random() < valid_share else mutated_case(rng, no)
