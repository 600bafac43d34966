"""The web page at `/`: one self-contained HTML file (inline style and script, no build step).

Its Content-Security-Policy allows exactly the inline script and style it ships (by sha256) and
requests to this origin only, so nothing injected into the page could run or send data away.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path

from starlette.responses import HTMLResponse

PAGE = Path(__file__).with_name("page.html")


def _hashes(html: str, tag: str) -> str:
    blocks = re.findall(rf"<{tag}>(.*?)</{tag}>", html, flags=re.S)
    return " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(b.encode()).digest()).decode()}'" for b in blocks)


@functools.lru_cache(maxsize=1)
def _page() -> tuple[str, dict]:
    html = PAGE.read_text(encoding="utf-8")
    policy = (f"default-src 'none'; script-src {_hashes(html, 'script')}; style-src {_hashes(html, 'style')}; "
              "img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
              "frame-ancestors 'none'")
    headers = {"Content-Security-Policy": policy, "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
    return html, headers


async def page_response(request):
    html, headers = _page()
    return HTMLResponse(html, headers=headers)
