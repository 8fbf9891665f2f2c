"""Command line: -v, -t (file:line errors), exit codes."""

import re
import subprocess

import pytest

from conftest import SHIELD_BIN, Shield, free_port, port_open


def run(*args, timeout=30):
    p = subprocess.run([SHIELD_BIN, *args], capture_output=True, timeout=timeout,
                       env=Shield.base_env())
    return p.returncode, (p.stdout + p.stderr).decode('utf-8', 'replace')


GOOD = '''# line 1: a minimal valid config
node = { name = "cli-node"; workers = 1; };
listen = ( { address = "127.0.0.1:PORT"; } );
origins = (
  { name = "o"; type = "http"; endpoint = "http://127.0.0.1:9"; }
);
behaviors = (
  { path = "/a/*"; origin = "o"; },
  { path = "*"; origin = "o"; }
);
'''


def write(tmp_path, text, name='t.conf'):
    p = tmp_path / name
    p.write_text(text.replace('PORT', str(free_port())))
    return p


def errors(out, path):
    """{line: message} for every `file:line: message` line naming path."""
    found = {}
    for m in re.finditer(r'^(\S*?)(\S+):(\d+): (.+)$', out, re.M):
        if (m.group(1) + m.group(2)).endswith(path.name):
            found[int(m.group(3))] = m.group(4)
    return found


def test_version():
    rc, out = run('-v')
    assert rc == 0
    assert re.search(r'\b\d+\.\d+\.\d+\b', out), out
    assert 'shield' in out.lower()


def test_check_good_config(tmp_path):
    p = write(tmp_path, GOOD)
    rc, out = run('-t', '-c', str(p))
    assert rc == 0, out
    assert not errors(out, p), out


def test_check_does_not_start(tmp_path):
    port = free_port()
    p = tmp_path / 'g.conf'
    p.write_text(GOOD.replace('PORT', str(port)))
    rc, _ = run('-t', '-c', str(p), timeout=10)  # returns by itself: does not serve
    assert rc == 0
    assert not port_open(port)


BAD = [
    # (name, text, line, message regex)
    ('unknown_key', GOOD + 'bogus_key = 1;\n', 11, r'bogus_key'),
    ('unknown_nested_key', GOOD.replace('workers = 1;', 'workers = 1; colour = "red";'), 2,
     r'colour'),
    ('bad_size', GOOD + 'limits = {\n  max_body_size = "1X";\n};\n', 12, r'(?i)size|1X'),
    ('bad_duration', GOOD + 'timeouts = {\n  header = "10 parsecs";\n};\n', 12,
     r'(?i)duration|parsecs'),
    ('bad_duration_unit', GOOD + 'timeouts = {\n  keepalive = "5x";\n};\n', 12, r'(?i)duration|5x'),
    ('no_final_star', GOOD.replace('  { path = "*"; origin = "o"; }\n', '  { path = "/b/*"; origin = "o"; }\n'),
     None, r'\*'),
    ('unknown_origin', GOOD.replace('{ path = "/a/*"; origin = "o"; }',
                                    '{ path = "/a/*"; origin = "nope"; }'), 8, r'nope'),
    ('bad_origin_type', GOOD.replace('type = "http"', 'type = "ftp"'), 5, r'ftp|type'),
    ('bad_method', GOOD.replace('{ path = "/a/*"; origin = "o"; }',
                                '{ path = "/a/*"; origin = "o"; allowed_methods = ["GET", "FETCH"]; }'),
     8, r'FETCH|method'),
    ('bad_listen_address', GOOD.replace('127.0.0.1:PORT', '127.0.0.1:99999'), 3, r'address|99999'),
    ('syntax_error', GOOD + 'limits = { max_body_size = };\n', 11, r'.'),
    ('workers_type', GOOD.replace('workers = 1;', 'workers = "many";'), 2, r'workers'),
    # libconfig keeps integers without L in 32 bits: 2^32 + 1M loaded as a 1M cache
    ('memory_size_wraps', GOOD + 'cache = {\n  memory_size = 4296015872;\n};\n', 12,
     r'4296015872 is outside the 32-bit range.*4296015872L'),
    ('workers_wraps', GOOD.replace('workers = 1;', 'workers = 4294967297;'), 2, r'4294967297'),
    ('hex_wraps', GOOD + 'limits = {\n  max_connections = 0x100002710;\n};\n', 12,
     r'0x100002710L'),
    ('forward_hop_by_hop', GOOD.replace('{ path = "/a/*"; origin = "o"; }',
                                        '{ path = "/a/*"; origin = "o";\n'
                                        '    forward_headers = ["transfer-encoding"]; }'), 9,
     r'"transfer-encoding" is a hop-by-hop header'),
    ('forward_host', GOOD.replace('{ path = "/a/*"; origin = "o"; }',
                                  '{ path = "/a/*"; origin = "o"; forward_headers = ["Host"]; }'),
     8, r'"Host" is written by Shield'),
]


@pytest.mark.parametrize('case', BAD, ids=[c[0] for c in BAD])
def test_check_bad_config(tmp_path, case):
    _, text, line, pattern = case
    p = write(tmp_path, text)
    rc, out = run('-t', '-c', str(p))
    assert rc != 0, f'bad config accepted:\n{out}'
    errs = errors(out, p)
    assert errs, f'no "file:line: message" in output:\n{out}'
    if line is None:  # the behaviors list or its last entry
        assert set(errs) & {7, 8, 9, 10}, errs
        line = min(set(errs) & {7, 8, 9, 10})
    else:
        assert line in errs, f'want an error on line {line}, got {errs}'
    assert re.search(pattern, errs[line]), errs[line]


def test_all_errors_reported(tmp_path):
    text = GOOD + 'bogus_key = 1;\nlimits = {\n  max_body_size = "1X";\n};\n'
    p = write(tmp_path, text)
    rc, out = run('-t', '-c', str(p))
    assert rc != 0
    errs = errors(out, p)
    assert 11 in errs and 13 in errs, f'expected errors on lines 11 and 13: {errs}\n{out}'


def test_missing_config_file(tmp_path):
    rc, out = run('-t', '-c', str(tmp_path / 'nope.conf'))
    assert rc != 0
    assert 'nope.conf' in out


def test_bad_config_refuses_to_start(tmp_path):
    port = free_port()
    p = tmp_path / 'b.conf'
    p.write_text(GOOD.replace('PORT', str(port)) + 'bogus_key = 1;\n')
    rc, out = run('-c', str(p), timeout=20)
    assert rc != 0
    assert 11 in errors(out, p), out


def test_sizes_and_durations_accepted(tmp_path):
    text = GOOD + ('limits = { max_body_size = "20K"; max_header_size = 20480; max_url = 8192;'
                   ' max_headers = 100; };\n'
                   'timeouts = { header = "250ms"; body = "30s"; keepalive = "5m"; send = 60;'
                   ' drain = "1h"; };\n')
    p = write(tmp_path, text)
    rc, out = run('-t', '-c', str(p))
    assert rc == 0, out


def test_large_values_accepted(tmp_path):
    """Past 2^31 with the L suffix or as a string: the value written is the value used."""
    text = GOOD + ('cache = { memory_size = 4296015872L; max_object_size = "5G";\n'
                   '  disk = { path = ""; size = 0x1900000000L; }; };\n')
    p = write(tmp_path, text)
    rc, out = run('-t', '-c', str(p))
    assert rc == 0, out


def test_count_messages_say_count(tmp_path):
    """max_connections is a count: its messages used to say "not a size"."""
    p = write(tmp_path, GOOD + 'limits = {\n  max_connections = "lots";\n  max_headers = [1];\n};\n')
    rc, out = run('-t', '-c', str(p))
    assert rc != 0
    errs = errors(out, p)
    assert 'not a count' in errs[12] and 'expected a count' in errs[13], errs
    assert not any('size' in m for m in errs.values()), errs


def test_unknown_option_exit_code():
    rc, out = run('--definitely-not-an-option')
    assert rc != 0
