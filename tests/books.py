#!/usr/bin/env python3
"""Sample e-books for Shield's demo and tests (standard library only).

    python3 tests/books.py OUTDIR     writes 3 EPUBs, 2 PDFs (2-8 MB) and index.html,
                                      prints the file names, one per line

Output is deterministic (seeded), so the same command always writes the same bytes.
EPUBs are valid EPUB 3 containers: an uncompressed `mimetype` entry first
("application/epub+zip", no extra field), META-INF/container.xml, a package document,
a navigation document, XHTML chapters of generated prose and a noise PNG cover that
brings the file to its target size. PDFs are hand-written PDF 1.4 files (catalog,
page tree, pages with text content streams, a base-14 font) with an exact xref table.
"""

import html
import random
import struct
import sys
import zipfile
import zlib
from pathlib import Path

WORDS = ('shield cache origin reader chapter library river mountain lantern harbor '
         'winter garden signal archive quiet morning letter window stone summer '
         'journey captain island forest market silver thunder candle meadow echo '
         'orchard compass voyage ember willow tide granite sparrow beacon cinder '
         'the a of and to in was he she it that with for as on his her they at by').split()

BOOKS = [
    # (file name, title, author, target bytes)
    ('the-quiet-harbor.epub', 'The Quiet Harbor', 'A. Lantern', 2_300_000),
    ('winter-orchard.epub', 'Winter Orchard', 'M. Sparrow', 4_700_000),
    ('signal-and-ember.epub', 'Signal and Ember', 'R. Granite', 7_600_000),
    ('field-guide-to-caches.pdf', 'A Field Guide to Caches', 'E. Willow', 3_200_000),
    ('origin-shield-handbook.pdf', 'The Origin Shield Handbook', 'T. Beacon', 6_100_000),
]


def prose(rng, nwords):
    out, sentence = [], []
    for _ in range(nwords):
        sentence.append(rng.choice(WORDS))
        if len(sentence) >= rng.randint(8, 18):
            s = ' '.join(sentence)
            out.append(s[0].upper() + s[1:] + '.')
            sentence = []
    return ' '.join(out)


# ---- EPUB ----------------------------------------------------------------------

def png_noise(rng, width, height):
    """A valid RGB PNG of random pixels (incompressible, so its size is predictable)."""
    raw = b''.join(b'\x00' + rng.randbytes(width * 3) for _ in range(height))

    def chunk(kind, data):
        return (struct.pack('>I', len(data)) + kind + data
                + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff))
    return (b'\x89PNG\r\n\x1a\n'
            + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))
            + chunk(b'IDAT', zlib.compress(raw, 1)) + chunk(b'IEND', b''))


CONTAINER = '''<?xml version="1.0" encoding="UTF-8"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles>
    <rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>
  </rootfiles>
</container>
'''


def chapter_xhtml(title, n, text):
    paras = ''.join(f'    <p>{html.escape(p)}</p>\n' for p in text)
    return f'''<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops" lang="en">
  <head><title>{html.escape(title)} - Chapter {n}</title></head>
  <body>
    <h1>Chapter {n}</h1>
{paras}  </body>
</html>
'''


def make_epub(path, title, author, target, seed):
    rng = random.Random(seed)
    uid = f'urn:uuid:{rng.getrandbits(128):032x}'
    nchap = 6
    chapters = []
    for n in range(1, nchap + 1):
        paras = [prose(rng, rng.randint(80, 160)) for _ in range(60)]
        chapters.append((f'chapter{n}.xhtml', chapter_xhtml(title, n, paras)))
    nav_items = ''.join(f'      <li><a href="{f}">Chapter {i}</a></li>\n'
                        for i, (f, _) in enumerate(chapters, 1))
    nav = f'''<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops" lang="en">
  <head><title>{html.escape(title)}</title></head>
  <body>
    <nav epub:type="toc" id="toc">
      <h1>Contents</h1>
      <ol>
{nav_items}      </ol>
    </nav>
  </body>
</html>
'''
    manifest = ''.join(f'    <item id="c{i}" href="{f}" media-type="application/xhtml+xml"/>\n'
                       for i, (f, _) in enumerate(chapters, 1))
    spine = ''.join(f'    <itemref idref="c{i}"/>\n' for i in range(1, nchap + 1))
    opf = f'''<?xml version="1.0" encoding="UTF-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="bookid">
  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/">
    <dc:identifier id="bookid">{uid}</dc:identifier>
    <dc:title>{html.escape(title)}</dc:title>
    <dc:creator>{html.escape(author)}</dc:creator>
    <dc:language>en</dc:language>
    <meta property="dcterms:modified">2024-01-01T00:00:00Z</meta>
  </metadata>
  <manifest>
    <item id="nav" href="nav.xhtml" media-type="application/xhtml+xml" properties="nav"/>
    <item id="cover" href="cover.png" media-type="image/png" properties="cover-image"/>
{manifest}  </manifest>
  <spine>
{spine}  </spine>
</package>
'''

    def write(cover):
        with zipfile.ZipFile(path, 'w') as z:
            mt = zipfile.ZipInfo('mimetype', date_time=(2024, 1, 1, 0, 0, 0))
            mt.compress_type = zipfile.ZIP_STORED
            z.writestr(mt, 'application/epub+zip')

            def add(name, data, method=zipfile.ZIP_DEFLATED):
                zi = zipfile.ZipInfo(name, date_time=(2024, 1, 1, 0, 0, 0))
                zi.compress_type = method
                z.writestr(zi, data)
            add('META-INF/container.xml', CONTAINER)
            add('OEBPS/content.opf', opf)
            add('OEBPS/nav.xhtml', nav)
            for f, x in chapters:
                add('OEBPS/' + f, x)
            add('OEBPS/cover.png', cover, zipfile.ZIP_STORED)

    write(png_noise(random.Random(seed), 1, 1))
    room = max(0, target - path.stat().st_size)
    width = 600
    height = max(1, room // (width * 3 + 1))
    write(png_noise(random.Random(seed + 1), width, height))


# ---- PDF ------------------------------------------------------------------------

def pdf_escape(s):
    return s.replace('\\', '\\\\').replace('(', '\\(').replace(')', '\\)')


def make_pdf(path, title, author, target, seed):
    rng = random.Random(seed)
    objs = {}  # number -> bytes (without "n 0 obj" wrapper)
    page_bytes = 60_000
    npages = max(1, target // (page_bytes + 400))
    first_page = 5
    kids = []
    for i in range(npages):
        pno, cno = first_page + 2 * i, first_page + 2 * i + 1
        kids.append(pno)
        lines = [f'BT /F1 18 Tf 72 740 Td ({pdf_escape(title)} - page {i + 1}) Tj ET']
        text = []
        size = 0
        while size < page_bytes:
            ln = prose(rng, 12)
            text.append(f'({pdf_escape(ln)}) Tj T*')
            size += len(ln) + 8
        lines.append('BT /F1 6 Tf 7 TL 40 720 Td')
        lines += text
        lines.append('ET')
        stream = '\n'.join(lines).encode('latin-1')
        objs[cno] = b'<< /Length %d >>\nstream\n' % len(stream) + stream + b'\nendstream'
        objs[pno] = (b'<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] '
                     b'/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>' % cno)
    objs[1] = b'<< /Type /Catalog /Pages 2 0 R >>'
    objs[2] = (b'<< /Type /Pages /Kids [' + b' '.join(b'%d 0 R' % k for k in kids)
               + b'] /Count %d >>' % npages)
    objs[3] = b'<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>'
    objs[4] = (f'<< /Title ({pdf_escape(title)}) /Author ({pdf_escape(author)}) '
               f'/Producer (shield tests/books.py) >>').encode('latin-1')
    out = bytearray(b'%PDF-1.4\n%\xe2\xe3\xcf\xd3\n')
    offsets = {}
    for n in sorted(objs):
        offsets[n] = len(out)
        out += b'%d 0 obj\n' % n + objs[n] + b'\nendobj\n'
    xref = len(out)
    count = max(objs) + 1
    out += b'xref\n0 %d\n' % count
    out += b'0000000000 65535 f\r\n'
    for n in range(1, count):
        out += b'%010d 00000 n\r\n' % offsets[n]
    out += (b'trailer\n<< /Size %d /Root 1 0 R /Info 4 0 R >>\nstartxref\n%d\n%%%%EOF\n'
            % (count, xref))
    path.write_bytes(out)


def make_index(outdir, names):
    items = ''.join(f'<li><a href="/{n}">{html.escape(n)}</a> '
                    f'({(outdir / n).stat().st_size:,} bytes)</li>\n' for n in names)
    (outdir / 'index.html').write_text(
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>Shield demo library</title>'
        f'</head>\n<body><h1>Shield demo library</h1>\n<ul>\n{items}</ul>\n</body></html>\n')


def generate(outdir):
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    names = []
    for i, (name, title, author, target) in enumerate(BOOKS):
        p = outdir / name
        if name.endswith('.epub'):
            make_epub(p, title, author, target, seed=1000 + i)
        else:
            make_pdf(p, title, author, target, seed=1000 + i)
        names.append(name)
    make_index(outdir, names)
    return names + ['index.html']


def main(argv):
    if len(argv) != 2:
        print(f'usage: {argv[0]} OUTDIR', file=sys.stderr)
        return 2
    for n in generate(argv[1]):
        print(n)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
