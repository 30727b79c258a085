"""HTML of inbound mail: what survives sanitising (and what never does), and the text made
from HTML-only mail. An independent parser (the stdlib's) checks the sanitiser's output."""

from __future__ import annotations

import html.parser
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild.inbound.sanitize import html_to_text, sanitize_html

ALLOWED_TAGS = {"p", "br", "div", "span", "b", "i", "u", "s", "strong", "em", "small", "sub",
                "sup", "a", "ul", "ol", "li", "dl", "dt", "dd", "blockquote", "pre", "code", "hr",
                "img", "table", "caption", "thead", "tbody", "tfoot", "tr", "td", "th",
                "h1", "h2", "h3", "h4", "h5", "h6"}
ALLOWED_ATTRS = {"a": {"href", "title", "rel", "dir"},
                 "img": {"src", "alt", "title", "width", "height", "dir"},
                 "td": {"colspan", "rowspan", "dir"}, "th": {"colspan", "rowspan", "dir"}}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _Audit(html.parser.HTMLParser):
    """Collects every tag and attribute a browser-like parser finds in sanitised output."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.comments: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)

    def handle_decl(self, decl: str) -> None:
        self.comments.append(decl)

    def handle_pi(self, data: str) -> None:
        self.comments.append(data)


def audit(output: str) -> None:
    """Assert the sanitiser's promise on its output: allow-listed tags and attributes only,
    only safe URLs, nothing that runs."""
    parser = _Audit()
    parser.feed(output)
    parser.close()
    assert parser.comments == []
    for tag, attrs in parser.tags:
        assert tag in ALLOWED_TAGS, tag
        assert set(attrs) <= ALLOWED_ATTRS.get(tag, {"dir"}), (tag, attrs)
        href = attrs.get("href")
        if href is not None:
            assert re.match(r"(?i)(https?|mailto):", href), href
            assert attrs.get("rel") == "nofollow noopener"
        src = attrs.get("src")
        if tag == "img":
            assert src is not None and re.match(r"(?i)(cid:|data:image/(png|jpeg|gif|webp);)", src)


# -- sanitize_html ----------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "expected"), [
    ("<p>Hello <b>world</b></p>", "<p>Hello <b>world</b></p>"),
    ("<script>alert(1)</script><p>x</p>", "<p>x</p>"),
    ("<style>p{color:red}</style>text", "text"),
    ("<p onclick=\"steal()\" style=\"position:fixed\" class=x id=y>x</p>", "<p>x</p>"),
    ('<a href="https://example.com/?a=1&amp;b=2">go</a>',
     '<a href="https://example.com/?a=1&amp;b=2" rel="nofollow noopener">go</a>'),
    ('<a href="javascript:alert(1)">x</a>', "<a>x</a>"),
    ('<a href=" JaVa\tScRiPt:alert(1)">x</a>', "<a>x</a>"),
    ('<a href="&#106;avascript:alert(1)">x</a>', "<a>x</a>"),
    ('<a href="vbscript:x">x</a>', "<a>x</a>"),
    ('<a href="data:text/html,<script>alert(1)</script>">x</a>', "<a>x</a>"),
    ('<a href="/relative/admin?delete=1">x</a>', "<a>x</a>"),
    ('<a href="mailto:jane@example.com">Jane</a>',
     '<a href="mailto:jane@example.com" rel="nofollow noopener">Jane</a>'),
    ('<img src="https://tracker.example/p.gif">', ""),
    ('<img src="cid:logo@example.com" alt="Logo" onerror="x()">',
     '<img src="cid:logo@example.com" alt="Logo">'),
    ('<img src="data:image/svg+xml;base64,PHN2Zz4=">', ""),
    ('<iframe src="https://evil.example"></iframe>after', "after"),
    ("<object data=x></object><embed src=x><form action=x><input value=v></form>", ""),
    ("<svg onload=alert(1)><circle/></svg>", ""),
    ("<math><mi xlink:href=javascript:alert(1)>x</mi></math>", "x"),
    ("<!-- secret --><p>x</p><!--[if mso]>hidden<![endif]-->", "<p>x</p>"),
    ("<p title='a\" onmouseover=\"x()'>x</p>", "<p>x</p>"),
    ('<table><tr><td colspan="2" rowspan="x">c</td></tr></table>',
     '<table><tbody><tr><td colspan="2">c</td></tr></tbody></table>'),
    ('<div dir="rtl">שלום</div><div dir="evil">x</div>', '<div dir="rtl">שלום</div><div>x</div>'),
    ("1 < 2 &amp; 3 > 2", "1 &lt; 2 &amp; 3 &gt; 2"),
    ("<p>unclosed <b>bold", "<p>unclosed <b>bold</b></p>"),
    ("</div></div></body><p>x</p></td>", "<p>x</p>"),
    ("<ul><li>one<li>two</ul>", "<ul><li>one</li><li>two</li></ul>"),
    ("<table><tr><td>a<td>b<tr><td>c</table>",
     "<table><tbody><tr><td>a</td><td>b</td></tr><tr><td>c</td></tr></tbody></table>"),
    ("<o:p>Outlook</o:p><font face=Arial>text</font>", "Outlooktext"),
    ("x\x00y\x1bz", "xyz"),
    ('<a href="https://x.example" title="unterminated', ""),
])
def test_sanitize(source: str, expected: str) -> None:
    output = sanitize_html(source)
    assert output == expected
    audit(output)


def test_sanitize_keeps_ordinary_mail_html() -> None:
    source = ('<html><head><meta charset="utf-8"><title>t</title></head><body>'
              '<div dir="ltr"><p>Hi,</p><blockquote><p>quoted</p></blockquote>'
              "<table><thead><tr><th>Item</th></tr></thead><tbody><tr><td>1</td></tr></tbody>"
              "</table><pre><code>x = 1</code></pre><h2>Title</h2><hr><ol><li>a</li></ol>"
              "</div></body></html>")
    assert sanitize_html(source) == (
        '<div dir="ltr"><p>Hi,</p><blockquote><p>quoted</p></blockquote>'
        "<table><thead><tr><th>Item</th></tr></thead><tbody><tr><td>1</td></tr></tbody>"
        "</table><pre><code>x = 1</code></pre><h2>Title</h2><hr><ol><li>a</li></ol></div>")


def test_sanitize_limits_nesting() -> None:
    # too deep to be worth bleach's time: the text is kept, the markup is not
    output = sanitize_html("<div>" * 5000 + "deep" + "</div>" * 5000)
    assert output.count("<div>") <= 100 and output.count("<div>") == output.count("</div>")
    assert "deep" in output


_HTML_PIECES = st.sampled_from([
    "<", ">", "</", "<!--", "-->", "<!", "<?", "<![CDATA[", "]]>", '"', "'", "=", " ", "\t",
    "&", "&#", "&lt;", "&#x3c;", "&amp;", "<a", "<a href=", "javascript:", "java&#09;script:",
    "https://x.example", "cid:a", "data:image/png;base64,AA", "<img src=", "<script>",
    "</script>", "<style>", "</style", "<p>", "</p>", "<b>", "<div", "<table>", "<td>", "<tr>",
    "<li>", "<ul>", " onclick=", "alert(1)", "<svg", "<iframe", "<textarea>", "</textarea>",
    "<title>", "<br/>", "<xmp>", "</xmp>", "\x00", "é", "<o:p>", "<A HREF=", "<ScRiPt>", "/",
])


@FUZZ
@given(st.lists(st.one_of(_HTML_PIECES, st.text(max_size=5)), max_size=60))
def test_sanitize_fuzz(pieces: list[str]) -> None:
    output = sanitize_html("".join(pieces))
    audit(output)
    assert "<script" not in output.lower()
    assert sanitize_html(output) == output  # already clean: nothing more to take away


@pytest.mark.parametrize("unit", ["<a ", "<!--", "<div>", "<b>x</b>", "<", "&#", "<a href='",
                                  "<table><tr><td>", "<ul><li>", "<script>", "<p a=1 b='2' "])
def test_sanitize_hostile_input_stays_linear(unit: str) -> None:
    source = unit * (400_000 // len(unit))
    started = time.monotonic()
    sanitize_html(source)
    html_to_text(source)
    assert time.monotonic() - started < 5


# -- html_to_text ---------------------------------------------------------------------------

def test_text_of_a_typical_mail() -> None:
    source = """<html><head><style>p{margin:0}</style><script>var x = 1;</script></head>
    <body><p>Hello&nbsp;Jane,</p>
    <p>your order <b>#4711</b> shipped.<br>Track it <a href="https://t.example/4711">here</a>.
    </p>
    <ul><li>Item 1</li><li>Item 2<ul><li>part a</li></ul></li></ul>
    <ol><li>first</li><li>second</li></ol>
    <blockquote><p>Where is my order?</p><p>Jane</p></blockquote>
    <p>Mail us: <a href="mailto:shop@example.com">shop@example.com</a></p>
    <pre>  keep
     spacing</pre>
    <table><tr><th>Qty</th><th>Price</th></tr><tr><td>2</td><td>9,90 &euro;</td></tr></table>
    </body></html>"""
    assert html_to_text(source) == (
        "Hello Jane,\n\n"
        "your order #4711 shipped.\nTrack it here (https://t.example/4711).\n\n"
        "- Item 1\n- Item 2\n  - part a\n\n"
        "1. first\n2. second\n\n"
        "> Where is my order?\n>\n> Jane\n\n"
        "Mail us: shop@example.com\n\n"
        "  keep\n     spacing\n\n"
        "Qty\tPrice\n2\t9,90 €")


@pytest.mark.parametrize(("source", "expected"), [
    ("a<br>b<br><br>c", "a\nb\n\nc"),
    ("<div>one</div><div>two</div>", "one\ntwo"),
    ("<p>x</p>\n\n\n<p>y</p>", "x\n\ny"),
    ("&lt;script&gt; &amp;amp; &#x41;&#66; &eacute;", "<script> &amp; AB é"),
    ('<a href="https://x.example">https://x.example</a>', "https://x.example"),
    ('<a href="javascript:alert(1)">click</a>', "click"),
    ('<a href="https://x.example"><img src="cid:a" alt="Logo"></a>', "Logo (https://x.example)"),
    ('<a href="https://x.example"></a>', "https://x.example"),
    ("<title>Subject</title><noscript>enable js</noscript>body", "body"),
    ("  lots   of \n\t  space  ", "lots of space"),
    ("<p>a</p><!-- <p>hidden</p> -->", "a"),
    ("unclosed <b>bold", "unclosed bold"),
    ("", ""),
])
def test_text(source: str, expected: str) -> None:
    assert html_to_text(source) == expected


def test_text_of_deep_nesting_stays_linear() -> None:
    source = "<blockquote><ul><li>" * 3000 + "deep"
    text = html_to_text(source)
    assert text.endswith("- deep")
    # indents and "> " prefixes stop growing at 12 levels: no quadratic output
    assert text.splitlines()[-1].count(">") == 12
    assert len(text) < 5 * len(source)


@FUZZ
@given(st.lists(st.one_of(_HTML_PIECES, st.text(max_size=5)), max_size=60))
def test_text_fuzz(pieces: list[str]) -> None:
    text = html_to_text("".join(pieces))
    assert "\x00" not in text
    assert not text.startswith("\n") and not text.endswith("\n")
