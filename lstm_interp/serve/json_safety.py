"""What crosses the wire is valid JSON of valid Unicode, or a message that says where it is not (issue 21).

- In: JSON may escape half of a surrogate pair alone (``"\\ud800"``), which Python decodes to a string no UTF-8 can
  hold; traced, it failed at the response with a codec's message. :func:`check_unicode` refuses it up front,
  naming the field, the character and its offset.
- Out: :func:`json_response` encodes as Starlette's ``JSONResponse`` does (no NaN or infinity, which JSON lacks), but
  a value that cannot be encoded gives a 500 naming where it is (``top[3][0][1]``) rather than the encoder's message.
  The routes check their own numbers first where a request can make them non-finite (an intervention), and refuse
  that with a 422 naming the request's field.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from starlette.responses import JSONResponse, Response

from lstm_interp.serve.api_error import ApiError


def check_unicode(data: Any, where: str = "") -> None:
    """Refuse (400) a string of ``data``, at any depth (keys too), holding a lone surrogate.

    Example::

        >>> check_unicode({"text": "ab", "interventions": [{"name": "layers.1.cell"}]})  # valid: returns
        >>> check_unicode({"text": "ab\\ud800"})  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ApiError: `text` has a lone surrogate U+D800 at character 2; send valid Unicode ...
    """
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError as err:
            raise ApiError(
                400,
                f"`{where or 'the body'}` has a lone surrogate U+{ord(data[err.start]):04X} at character {err.start}; "
                "send valid Unicode (a \\ud800-\\udfff escape must be half of a pair)",
            ) from None
    elif isinstance(data, Mapping):
        for key, value in data.items():
            check_unicode(key, f"a key of {where}" if where else "a key")
            check_unicode(value, f"{where}.{key}" if where else str(key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            check_unicode(value, f"{where}[{i}]")


def first_unencodable(data: Any, where: str = "") -> str | None:
    """Where in ``data`` the first value JSON cannot hold is (a non-finite float, a string no UTF-8 can hold), or
    ``None``."""
    if isinstance(data, float) and not math.isfinite(data):
        return f"{where or 'the response'} = {data!r}"
    if isinstance(data, str):
        try:
            data.encode("utf-8")
        except UnicodeEncodeError:
            return f"{where or 'the response'} (not valid Unicode)"
    elif isinstance(data, Mapping):
        for key, value in data.items():
            found = first_unencodable(value, f"{where}.{key}" if where else str(key))
            if found:
                return found
    elif isinstance(data, list | tuple):
        for i, value in enumerate(data):
            found = first_unencodable(value, f"{where}[{i}]")
            if found:
                return found
    return None


def json_response(content: Any, status_code: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """``content`` as a JSON response; a 500 naming the value if JSON cannot hold one (never the encoder's words)."""
    try:
        return JSONResponse(content, status_code=status_code, headers=headers)
    except ValueError:  # Starlette encodes with allow_nan=False; a UnicodeEncodeError is a ValueError too
        where = first_unencodable(content) or "a value"
        message = f"the server's response could not be sent as JSON: {where}; the server is at fault, not the request"
        # ASCII-escaped, so that the error itself always encodes.
        body = json.dumps({"error": message}, ensure_ascii=True)
        return Response(body, status_code=500, media_type="application/json")
