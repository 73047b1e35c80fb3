"""Who may do what: an operator token that may change runs, a viewer token that only reads.

The API takes `Authorization: Bearer TOKEN`. The console's login exchanges a
token for a session cookie (HttpOnly, SameSite=Strict) signed with a key
derived from the operator token, so sessions survive a restart and end when
the token changes. A request authenticated by the cookie that changes
anything must also carry the session's forgery token in the X-CSRF-Token
header (the page's script reads it from the readable `weft_csrf` cookie):
another site can make a browser send the cookie, never read it.

Tokens are given (`--token`, $WEFT_TOKEN; `--viewer-token`,
$WEFT_VIEWER_TOKEN) or generated at first start into `server-token` and
`viewer-token` in the store folder, readable by their owner only.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass

from fastapi import Request

from weft.errors import WeftError
from weft.server.problems import Refused

SESSION = "weft_session"
CSRF = "weft_csrf"
CSRF_HEADER = "x-csrf-token"
SESSION_TTL = 12 * 3600.0
OPERATOR, VIEWER = "operator", "viewer"


@dataclass(frozen=True)
class Tokens:
    operator: str
    viewer: str
    files: tuple[str, ...]  # the files generated tokens were read from or written to

    def role(self, token: str) -> str | None:
        for role, known in ((OPERATOR, self.operator), (VIEWER, self.viewer)):
            if hmac.compare_digest(token.encode(), known.encode()):
                return role
        return None


def load(folder: str, operator: str | None, viewer: str | None) -> Tokens:
    """The tokens: the ones given, else those generated into `folder` (made at first start, mode 0600)."""
    files = []
    found = []
    for given, name in ((operator, "server-token"), (viewer, "viewer-token")):
        if given is None:
            path = os.path.join(folder, name)
            given = _generated(path)
            files.append(path)
        if len(given) < 16:
            raise WeftError(f"a {name.split('-')[0]} token must be at least 16 characters")
        found.append(given)
    if found[0] == found[1]:
        raise WeftError("the viewer token must differ from the operator token")
    return Tokens(found[0], found[1], tuple(files))


def _generated(path: str) -> str:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            with open(path, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as e:
            raise WeftError(f"cannot read the token in {path}: {e.strerror}") from None
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    return token


class Sessions:
    """Signed session cookies and their forgery tokens."""

    def __init__(self, tokens: Tokens) -> None:
        self.tokens = tokens
        self._key = hashlib.sha256(b"weft-session\0" + tokens.operator.encode()).digest()

    def _sign(self, text: str) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()

    def issue(self, role: str, now: float | None = None) -> tuple[str, str]:
        """(session cookie value, its forgery token) for `role`."""
        body = f"{role}.{int(now or time.time())}"
        session = f"{body}.{self._sign(body)}"
        return session, self.csrf(session)

    def csrf(self, session: str) -> str:
        return self._sign("csrf\0" + session)

    def role(self, session: str, now: float | None = None) -> str | None:
        role, _, rest = session.partition(".")
        issued, _, signature = rest.partition(".")
        signed = self._sign(f"{role}.{issued}").encode()
        if not (issued.isascii() and issued.isdigit() and hmac.compare_digest(signature.encode(), signed)):
            return None
        if (now or time.time()) - int(issued) > SESSION_TTL or role not in (OPERATOR, VIEWER):
            return None
        return role


@dataclass(frozen=True)
class Caller:
    role: str
    by_cookie: bool
    session: str | None = None


def caller(request: Request) -> Caller:
    """Who sent the request: by its bearer token or its session cookie; 401 for neither."""
    sessions: Sessions = request.app.state.sessions
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        role = sessions.tokens.role(token.strip()) if scheme.lower() == "bearer" else None
        if role is None:
            raise Refused(401, "the bearer token is wrong", {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        return Caller(role, by_cookie=False)
    session = request.cookies.get(SESSION)
    role = sessions.role(session) if session else None
    if role is None:
        why = "the session has ended: sign in again" if session else "sign in, or send Authorization: Bearer TOKEN"
        raise Refused(401, why, {"WWW-Authenticate": "Bearer"})
    return Caller(role, by_cookie=True, session=session)


def reader(request: Request) -> Caller:
    """A dependency: any signed-in caller may read."""
    return caller(request)


def operator(request: Request) -> Caller:
    """A dependency for what changes runs: the operator token, and with a cookie the session's forgery token."""
    who = caller(request)
    if who.role != OPERATOR:
        raise Refused(403, "the viewer token reads only: changing runs takes the operator token")
    if who.by_cookie:
        sent = request.headers.get(CSRF_HEADER, "")
        if not hmac.compare_digest(sent.encode(), request.app.state.sessions.csrf(who.session).encode()):
            raise Refused(403, "missing or wrong X-CSRF-Token header (a request from another site?)")
    return who
