"""MkDocs hook: keep the built site offline, and typeset the notebooks' math without a script.

mkdocs-jupyter renders notebooks through nbconvert's lab template, which always adds a MathJax
loader (with an empty ``src`` when no MathJax URL is given) and a module script that imports
mermaid from a CDN when a page has a mermaid diagram. Neither can be switched off in
mkdocs-jupyter's settings, so this hook removes both blocks from the rendered notebook pages.
``tests/test_docs.py`` checks the built site for any external script, stylesheet or font.

Without MathJax the notebooks' ``$...$`` and ``$$...$$`` math would show as TeX source, so the
hook converts it to MathML, which browsers render natively, when latex2mathml is installed (the
docs extra); math it cannot convert, or every formula without it, stays TeX source.
"""

from __future__ import annotations

import html
import re
from typing import Any

try:
    from latex2mathml.converter import convert as latex_to_mathml
except ImportError:  # the site still builds; the math stays TeX source
    latex_to_mathml = None

# From nbconvert's lab template (base/mathjax.html.j2, lab/mermaidjs.html.j2).
_MATHJAX = re.compile(r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->", re.S)
_MERMAID = re.compile(r'<script type="module">(?:(?!</script>).)*?jp-Mermaid.*?</script>', re.S)
# A rendered Markdown cell (its content holds no <div>), and the parts of it that are code.
_MARKDOWN_CELL = re.compile(r'(data-mime-type="text/markdown">)(.*?)(</div>)', re.S)
_CODE = re.compile(r"(<code\b.*?</code>|<pre\b.*?</pre>)", re.S)
_DISPLAY_MATH = re.compile(r"\$\$(.+?)\$\$", re.S)
_INLINE_MATH = re.compile(r"(?<![\\$])\$([^$\n]+?)\$")


def _mathml(match: re.Match[str], display: str) -> str:
    try:
        return latex_to_mathml(html.unescape(match.group(1)).strip(), display=display)
    except Exception:  # noqa: BLE001 (latex2mathml raises many kinds; keep the source)
        return match.group(0)


def _typeset(text: str) -> str:
    parts = _CODE.split(text)
    for index in range(0, len(parts), 2):  # even parts are outside code
        part = _DISPLAY_MATH.sub(lambda m: _mathml(m, "block"), parts[index])
        parts[index] = _INLINE_MATH.sub(lambda m: _mathml(m, "inline"), part)
    return "".join(parts)


def on_post_page(output: str, page: Any, config: Any) -> str:
    """Remove the notebook template's MathJax and mermaid loaders, and typeset its math."""
    if "jupyter-wrapper" not in output:
        return output
    output = _MERMAID.sub("", _MATHJAX.sub("", output))
    if latex_to_mathml is not None:
        output = _MARKDOWN_CELL.sub(
            lambda m: m.group(1) + _typeset(m.group(2)) + m.group(3), output
        )
    return output
