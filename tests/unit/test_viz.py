"""HTML reports: one return type, the bundle inlined once, numbers and parameters shown, and
everything that enters a page escaped."""

from pathlib import Path

from tests.unit.test_results import build_attribution
from tlscopes.viz import HtmlReport


def test_to_html_returns_a_small_report_object_and_writes_the_file(tmp_path):
    result = build_attribution()
    report = result.to_html()
    assert isinstance(report, HtmlReport) and report.path is None
    assert report.html.startswith("<!DOCTYPE html>") and report._repr_html_() == report.html
    assert len(repr(report)) < 80 and repr(report).startswith("HtmlReport(size=")
    path = tmp_path / "report.html"
    written = result.to_html(path)
    assert written.path == path and path.read_text(encoding="utf-8") == written.html
    assert repr(written).endswith(f"path={str(path)!r})") and len(repr(written)) < 80 + len(
        str(path)
    )
    again = report.save(tmp_path / "again.html")
    assert again.path == Path(tmp_path / "again.html") and report.path is None
    assert result._repr_html_().startswith("<!DOCTYPE html>")
