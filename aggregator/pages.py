"""Follower pages: templates/pages rendered in a language, and every response's headers.

The pages load nothing from anywhere (issue 3 §4: no external resources), so the
Content-Security-Policy forbids everything but the one inline style, by its
hash. Tokens travel in URLs: no response may leak one in a Referer or a cache.
"""

from __future__ import annotations

import base64
import hashlib
import math
import tomllib
from collections.abc import Mapping
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aggregator.settings import Settings
from notifiers import render


def security_headers(style: str) -> dict[str, str]:
    """The headers every page carries; the CSP admits only the inline style's hash."""
    digest = base64.b64encode(hashlib.sha256(style.encode("utf-8")).digest())
    policy = (
        "default-src 'none'",
        f"style-src 'sha256-{digest.decode('ascii')}'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
    return {
        "Content-Security-Policy": "; ".join(policy),
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
    }


class Pages:
    """The follower pages (templates/pages), their words (text.toml) and headers."""

    def __init__(self, settings: Settings) -> None:
        directory = render.templates_dir() / "pages"
        with (directory / "text.toml").open("rb") as f:
            self.text: dict[str, dict[str, Any]] = tomllib.load(f)
        self.style = (directory / "style.css").read_text(encoding="utf-8")
        self.headers = security_headers(self.style)
        self.settings = settings
        self.site_url = settings.site.base_url
        self.subscribe_url = f"{settings.site.base_url}subscribe"

    def lang(self, language: str | None = None) -> str:
        """The language asked for when pages exist in it, else the site's."""
        if language in self.text:
            return str(language)
        return self.settings.site.language

    def render(
        self,
        template: str,
        lang: str,
        status: int,
        title: str,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> HTMLResponse:
        site = self.settings.site
        html = (
            render.environment()
            .get_template(f"pages/{template}")
            .render(
                t=self.text[lang],
                title=title,
                site=site.title,
                site_url=self.site_url,
                contact=site.contact,
                contact_href=contact_href(site.contact),
                style=self.style,
                error=status >= 400,
                **context,
            )
        )
        return HTMLResponse(
            html, status_code=status, headers={**self.headers, **(headers or {})}
        )

    def message(
        self,
        key: str,
        lang: str,
        status: int,
        *,
        link: str | None = None,
        headers: Mapping[str, str] | None = None,
        **values: str,
    ) -> HTMLResponse:
        """A page that only tells: ``text.toml [lang.key]`` filled with `values`."""
        entry = self.text[lang][key]
        values = {"site": self.settings.site.title, **values}
        return self.render(
            "message.html.j2",
            lang,
            status,
            entry["title"],
            headers,
            paragraphs=[p.format(**values) for p in entry["body"]],
            link={"text": entry["link"], "href": link} if link else None,
        )

    async def http_error(self, request: Request, exc: Exception) -> Response:
        """Starlette's 404/405 (any HTTPException) as a page, keeping its headers."""
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        extra = exc.headers if isinstance(exc, HTTPException) else None
        keys = {404: "not_found", 405: "method_not_allowed"}
        key = keys.get(status, "server_error" if status >= 500 else "bad_request")
        return self.message(key, self.lang(), status, headers=extra)

    async def server_error(self, request: Request, exc: Exception) -> Response:
        # Sent by Starlette's outermost middleware, past DefaultHeaders: this
        # response carries the headers itself (render adds them to every page).
        return self.message("server_error", self.lang(), 500)

    def duration(self, lang: str, seconds: int) -> str:
        """How long a confirmation link lasts, in whole days (else hours)."""
        t = self.text[lang]
        if seconds >= 86400:
            n, one, many = seconds // 86400, t["duration_day"], t["duration_days"]
        else:
            n = max(1, math.ceil(seconds / 3600))
            one, many = t["duration_hour"], t["duration_hours"]
        return str(one if n == 1 else many).format(n=n)


def contact_href(contact: str) -> str | None:
    if "@" in contact and ":" not in contact:
        return f"mailto:{contact}"
    return render.web_url(contact)


class DefaultHeaders:
    """Gives every response each of `headers` that it did not set itself, so a
    route added later (published files with their own Cache-Control) keeps its
    own, and one that forgets gets the safe default."""

    def __init__(self, app: ASGIApp, headers: Mapping[str, str]) -> None:
        self.app = app
        self.headers = dict(headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_defaults(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.headers.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_defaults)
