"""The one place that hides credentials in text that is about to be printed, logged or published.

Cameras carry their login in the URL, either as user information (`rtsp://admin:secret@10.0.0.5/stream`)
or in the query string, as many IP cameras expect (`rtsp://10.0.0.5/stream?user=admin&password=secret`).
Every line that shows a camera source or an error about one goes through `redact`: log lines, health's
`last_error`, error messages, `edge-agent sources --explain` and `edge-agent config show`.
"""

from __future__ import annotations

import re

MASK = "***"

# scheme://userinfo@ : the user information runs to the last "@" before the path, query or fragment, so a
# password with an unescaped "@" is hidden whole.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^\s/?#]*@")

# Query and fragment parameters that carry a login or a token (case-insensitive, any of ? & ; as separator).
SECRET_PARAMETERS = (
    "user",
    "username",
    "usr",
    "login",
    "password",
    "passwd",
    "pass",
    "pwd",
    "psw",
    "auth",
    "authorization",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "secret",
    "signature",
    "sig",
    "credentials",
)
# The value runs to the next parameter or the end of the word; closing brackets and commas at the very end
# of the word are the sentence's ("(rtsp://cam/s?password=x), retrying"), not the password's.
_PARAMETER = re.compile(
    r"(?P<name>[?&;#](?:" + "|".join(SECRET_PARAMETERS) + r")=)[^&;#\s'\"]*?(?=[)\]>,.]*(?:[&;#\s'\"]|$))",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """`text` with the user:password of every URL and the value of every login-like query parameter
    replaced by `***`; the scheme, host, port and path stay readable."""
    return _PARAMETER.sub(rf"\g<name>{MASK}", _USERINFO.sub(rf"\g<scheme>{MASK}@", text))
