"""A run's output is kept under a limit, and what is cut is said."""

from belltower.jobtypes import Output


def test_output_keeps_text_and_says_what_was_cut() -> None:
    out = Output(limit=20)
    out.line("0123456789")
    out.line("abcdefghijklmnop")
    assert out.text.startswith("0123456789\nabcdefghi")
    assert "[output cut: 8 more characters were not kept]" in out.text


def test_html_is_optional() -> None:
    out = Output()
    assert out.html_text is None
    out.html("<p>hi</p>")
    assert out.html_text == "<p>hi</p>"
