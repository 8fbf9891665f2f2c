#!/usr/bin/env python3
"""Seed tests/fuzz/corpus/config (tests/fuzz/fuzz_config.c) from the config tests.

Every config text of tests/unit/test_config.c (its C string expressions,
MINIMAL / LISTEN / ORIGIN / CATCHALL / AWS expanded, "%s" filled with "1",
key-directory paths made relative so they resolve nowhere) and of
tests/integration/test_config_cli.py (GOOD and every expression built from it),
the shipped configs, integer literals on both sides of 2^31, 2^32 and 2^63, and
the inputs of the loader's fuzz-found regressions.

    tests/fuzz/seed_config.py          # rewrite the seed files (fuzzer finds stay)
"""
import ast
import hashlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / 'tests' / 'fuzz' / 'corpus' / 'config'
MAX_LEN = 8192  # make fuzz's -max_len

# ---- C string expressions ------------------------------------------------------------------

C_TOKEN = re.compile(r'''
    (?P<comment>/\*.*?\*/|//[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*")
  | (?P<char>'(?:[^'\\\n]|\\.)*')
  | (?P<name>[A-Za-z_]\w*)
  | (?P<space>\s+)
  | (?P<other>.)
''', re.S | re.X)

C_ESCAPES = {'n': '\n', 't': '\t', 'r': '\r', '\\': '\\', '"': '"', "'": "'", '0': '\0'}


def c_unescape(body):
    return re.sub(r'\\(x[0-9a-fA-F]+|.)',
                  lambda m: chr(int(m.group(1)[1:], 16)) if m.group(1)[0] == 'x'
                  else C_ESCAPES.get(m.group(1), m.group(1)), body)


def c_string_runs(src, macros):
    """Maximal runs of adjacent string literals and string macros, concatenated."""
    run = []
    for m in C_TOKEN.finditer(src):
        kind = m.lastgroup
        if kind in ('comment', 'space'):
            continue
        if kind == 'string':
            run.append(c_unescape(m.group()[1:-1]))
        elif kind == 'name' and m.group() in macros:
            run.append(macros[m.group()])
        else:
            if run:
                yield ''.join(run)
            run = []


def c_macros(src):
    """#define NAME "..." NAME2 "..." (continued lines joined), in file order."""
    macros = {}
    for m in re.finditer(r'^#define\s+(\w+)\s+((?:[^\n]*\\\n)*[^\n]*)', src, re.M):
        body = m.group(2).replace('\\\n', ' ')
        if not re.match(r'\s*("|[A-Z]+\b)', body):
            continue
        runs = list(c_string_runs(body + ';', macros))
        if len(runs) == 1:
            macros[m.group(1)] = runs[0]
    return macros


def unit_configs():
    src = (ROOT / 'tests' / 'unit' / 'test_config.c').read_text()
    macros = c_macros(src)
    code = re.sub(r'^#(?:[^\n]*\\\n)*[^\n]*', '', src, flags=re.M)
    for text in c_string_runs(code, macros):
        # expected messages, header values, shell commands are not configs
        if not re.search(r'(?m)^\s*[A-Za-z_]\w*\s*=', text) or 't.conf' in text or \
                'inc.conf' in text or 'openssl' in text:
            continue
        yield text.replace('%s', '1').replace('"@/', '"')


# ---- Python expressions built from GOOD ------------------------------------------------------

def cli_configs():
    path = ROOT / 'tests' / 'integration' / 'test_config_cli.py'
    tree = ast.parse(path.read_text())
    good = next(ast.literal_eval(n.value) for n in tree.body if isinstance(n, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == 'GOOD' for t in n.targets))
    yield good
    for node in ast.walk(tree):
        if not isinstance(node, (ast.BinOp, ast.Call)):
            continue
        names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
        if names != {'GOOD'}:
            continue
        try:
            text = eval(compile(ast.Expression(node), str(path), 'eval'), {'GOOD': good})
        except Exception:
            continue
        if isinstance(text, str):
            yield text


# ---- integer literals ------------------------------------------------------------------------

MINIMAL = ('listen = ( { address = "127.0.0.1:8080"; } );\n'
           'origins = ( { name = "books"; type = "s3"; endpoint = '
           '"https://s3.us-east-1.amazonaws.com"; bucket = "ebooks"; } );\n'
           'behaviors = ( { path = "*"; } );\n')

LITERALS = ['0', '-0', '+0', '007', '-007', '0x0', '0x7FFFFFFF', '2147483647', '+2147483647',
            '2147483648', '-2147483648', '-2147483649', '4294967295', '4294967296',
            '4296015872', '4296015872L', '4296015872LL', '4296015872LLL', '0xFFFFFFFF',
            '0xFFFFFFFFL', '0x80000000', '0x100000000', '0x100100000L', '-2147483649L',
            '9223372036854775807L', '9223372036854775808L', '-9223372036854775808L',
            '-9223372036854775809L', '9223372036854775808', '18446744073709551616',
            '99999999999999999999', '99999999999999999999L', '0x7FFFFFFFFFFFFFFFL',
            '0x8000000000000000L', '0xFFFFFFFFFFFFFFFFL', '0x10000000000000000L',
            '1.5', '.5', '-.5e3', '1e3', '4296015872e-9', '1.e5', '5.', '1e', '0x', '0x.5',
            '00000000004296015872', '0001', '1L', '1LL']


def literal_configs():
    for lit in LITERALS:
        name = re.sub(r'[^0-9A-Za-z]', lambda m: {'-': 'm', '+': 'p', '.': 'd'}[m.group()], lit)
        yield 'lit_memory_size_' + name, MINIMAL + 'cache = { memory_size = %s; };\n' % lit
    yield 'lit_workers_wrap', MINIMAL + 'node = { workers = 4294967297; };\n'
    yield 'lit_in_array', MINIMAL + 'x = [1, 2,\n 4294967296, 3];\n'
    yield 'lit_in_list', MINIMAL + 'x = ( 0x100000000, -2147483649 );\n'
    yield 'lit_drain_negative', MINIMAL + 'timeouts = {\n  drain = -2147483648;\n};\n'
    yield 'lit_ttl_wrap', MINIMAL.replace('path = "*";', 'path = "*"; max_ttl = 4294967296;')
    yield 'lit_alarm_float', MINIMAL + 'alarms = { error_rate_5xx = 4296015872e-9; };\n'
    yield 'lit_hidden_in_text', (MINIMAL + '# 4296015872\n/* 4296015872\n */ x = "4296015872";\n'
                                 'k4296015872 = 1;\n')


# ---- regressions -------------------------------------------------------------------------------

REGRESSIONS = {
    # a NUL byte in a comment hid every later integer from config_literals
    'bug_nul_in_comment': MINIMAL + '# \0\ncache = { memory_size = 4296015872; };\n',
    'bug_nul_in_string': MINIMAL + 'node = { name = "a\0b"; };\ncache = { memory_size = 4296015872; };\n',
    # echoed values with a newline split an error over two lines
    'bug_newline_in_value': MINIMAL + 'node = { name = "a\\nb"; pop = "\\r\\x1b[31m"; };\n',
    # @include of a directory made libconfig's scanner exit the process
    'bug_include_dot': MINIMAL + '@include "."\n',
    'bug_include_dotdot': MINIMAL + 'cache = {\n  @include ".."\n};\n',
    # libconfig drops (and prints) a backslash that escapes nothing: ".\." opened ".."
    'bug_include_lone_backslash': MINIMAL + '@include ".\\."\n',
    # an IPv6 endpoint without its ']' stepped a NULL pointer
    'bug_endpoint_unclosed_bracket': MINIMAL.replace('"https://s3.us-east-1.amazonaws.com"',
                                                     '"http://[::1"'),
    'include_missing': MINIMAL + 'cache = {\n@include "nope.conf"\n};\n',
    # a syntax error at the end of the file was reported one line past it
    'bug_syntax_at_eof': MINIMAL + 'node = \n',
    'bug_syntax_at_eof_comment': MINIMAL + 'node = { name = "x"; }\n/* open\n\n',
    'syntax_unterminated_string': MINIMAL + 'node = { name = "x',
}


def short_hash(text):
    return hashlib.sha1(text.encode('latin-1')).hexdigest()[:8]


def main():
    seeds = {}

    def add(name, text):
        data = text.encode('latin-1') if isinstance(text, str) else text
        if data not in seeds.values():
            seeds[name] = data

    shield = (ROOT / 'conf' / 'shield.conf').read_text()
    add('conf_shield', shield)
    # the whole file is past -max_len: the same settings without the comments fit
    add('conf_shield_nocomments', '\n'.join(l for l in shield.splitlines()
                                            if not l.lstrip().startswith('#')) + '\n')
    add('conf_demo', (ROOT / 'conf' / 'demo.conf').read_text())
    # named by content, so a test added to the suites does not rename every seed after it
    for text in unit_configs():
        add('unit_' + short_hash(text), text)
    for text in cli_configs():
        text = text.replace('PORT', '8080')
        add('cli_' + short_hash(text), text)
    for name, text in literal_configs():
        add(name, text)
    for name, text in REGRESSIONS.items():
        add(name, text)

    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.iterdir():
        if re.match(r'(conf|unit|cli|lit|bug|include|syntax)_', old.name):
            old.unlink()
    for name, data in seeds.items():
        if len(data) > MAX_LEN and name != 'conf_shield':
            print('%s: %d bytes, past -max_len' % (name, len(data)))
        (OUT / name).write_bytes(data)
    print('%d seeds in %s' % (len(seeds), OUT.relative_to(ROOT)))


if __name__ == '__main__':
    main()
