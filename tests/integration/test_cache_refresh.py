"""Expired objects: revalidation (304 => RefreshHit), replacement, and stale
content served when the refresh fails (SPEC.md "Cache behaviour")."""
import time

from conftest import behavior, get, http_origin
from origin import Reply

BODY_V1 = b'version one of the book\n' * 100
BODY_V2 = b'version two, longer than the first\n' * 100


def versioned(state, max_age=1, extra_cc=''):
    """A route answering If-None-Match like S3 does, serving state['body']."""
    def reply(req):
        etag = state['etag']
        cc = f'max-age={max_age}{extra_cc}'
        if state.get('fail'):
            return Reply(status=state['fail'], body=b'origin trouble\n')
        if req.header('If-None-Match') == etag:
            return Reply(status=304, headers=[('ETag', etag), ('Cache-Control', cc)])
        return Reply(body=state['body'], headers=[('ETag', etag), ('Cache-Control', cc)],
                     content_type='application/epub+zip')
    return reply


def start(shield, origin):
    return shield([http_origin('o', origin)], [behavior('*', 'o')])


def wait_expired(seconds=1.2):
    time.sleep(seconds)  # a TTL has to run out: there is nothing else to wait on


def test_expired_object_is_revalidated_and_refreshed(shield, origin):
    state = {'etag': '"v1"', 'body': BODY_V1}
    origin.route('/book.epub', versioned(state))
    sh = start(shield, origin)
    r1 = get(sh.port, '/book.epub')
    assert r1.status == 200 and r1.header('X-Cache').startswith('Miss')
    assert get(sh.port, '/book.epub').header('X-Cache').startswith('Hit')
    assert origin.count('/book.epub') == 1
    wait_expired()
    r3 = get(sh.port, '/book.epub')
    assert r3.status == 200
    assert r3.header('X-Cache').startswith('RefreshHit'), r3.headers
    assert r3.body == BODY_V1
    assert r3.header('Content-Length') == str(len(BODY_V1))
    assert origin.count('/book.epub') == 2
    reval = origin.requests[-1]
    assert reval.header('If-None-Match') == '"v1"', 'revalidation did not send the ETag'
    r4 = get(sh.port, '/book.epub')  # fresh again after the 304
    assert r4.header('X-Cache').startswith('Hit') and r4.body == BODY_V1
    assert origin.count('/book.epub') == 2


def test_changed_object_replaces_the_expired_one(shield, origin):
    state = {'etag': '"v1"', 'body': BODY_V1}
    origin.route('/book.epub', versioned(state))
    sh = start(shield, origin)
    assert get(sh.port, '/book.epub').body == BODY_V1
    state.update(etag='"v2"', body=BODY_V2)
    wait_expired()
    r = get(sh.port, '/book.epub')
    assert r.status == 200 and r.body == BODY_V2
    assert r.header('X-Cache').startswith('Miss')
    r = get(sh.port, '/book.epub')
    assert r.header('X-Cache').startswith('Hit') and r.body == BODY_V2


def test_stale_served_when_refresh_gets_5xx(shield, origin):
    state = {'etag': '"v1"', 'body': BODY_V1}
    origin.route('/book.epub', versioned(state))
    sh = start(shield, origin)
    assert get(sh.port, '/book.epub').body == BODY_V1
    state['fail'] = 503
    wait_expired()
    r = get(sh.port, '/book.epub')
    assert r.status == 200 and r.body == BODY_V1, 'stale copy not served on a 5xx refresh'
    assert r.header('X-Cache').startswith('Hit')
    assert origin.count('/book.epub') == 2
    state['fail'] = None  # the origin is back: the next request revalidates
    r = get(sh.port, '/book.epub')
    assert r.header('X-Cache').startswith('RefreshHit') and r.body == BODY_V1


def test_stale_served_when_origin_is_down(shield, origin):
    state = {'etag': '"v1"', 'body': BODY_V1}
    origin.route('/book.epub', versioned(state))
    sh = shield([http_origin('o', origin, connect_timeout='1s', attempts=1)],
                [behavior('*', 'o')])
    assert get(sh.port, '/book.epub').body == BODY_V1
    origin.stop()
    wait_expired()
    r = get(sh.port, '/book.epub')
    assert r.status == 200 and r.body == BODY_V1


def test_must_revalidate_forbids_stale(shield, origin):
    state = {'etag': '"v1"', 'body': BODY_V1}
    origin.route('/book.epub', versioned(state, extra_cc=', must-revalidate'))
    sh = start(shield, origin)
    assert get(sh.port, '/book.epub').body == BODY_V1
    state['fail'] = 503
    wait_expired()
    r = get(sh.port, '/book.epub')
    assert r.status == 503, 'must-revalidate content was served stale'


def test_stale_while_revalidate_serves_at_once_and_refreshes_once(shield, origin):
    state = {'n': 0}

    def reply(req):
        state['n'] += 1
        if state['n'] == 1:
            return Reply(body=BODY_V1, headers=[('ETag', '"v1"'), (
                'Cache-Control', 'max-age=1, stale-while-revalidate=30')])
        # the refresh is slow and brings a new version
        return Reply(body=BODY_V2, stall_head=1.5, headers=[('ETag', '"v2"'), (
            'Cache-Control', 'max-age=60')])
    origin.route('/book.epub', reply)
    sh = start(shield, origin)
    assert get(sh.port, '/book.epub').body == BODY_V1
    wait_expired()
    for _ in range(5):  # all answered from the stale copy while the refresh runs
        t0 = time.monotonic()
        r = get(sh.port, '/book.epub')
        assert r.body == BODY_V1 and r.header('X-Cache').startswith('Hit')
        assert time.monotonic() - t0 < 1.0, 'a stale-while-revalidate hit waited for the origin'
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = get(sh.port, '/book.epub')
        if r.body == BODY_V2:
            break
        time.sleep(0.1)
    assert r.body == BODY_V2, 'the background refresh never landed'
    assert origin.count('/book.epub') == 2, 'more than one background refresh'
