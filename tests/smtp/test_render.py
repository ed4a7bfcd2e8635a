"""The Date header the renderer writes (formatted once a second, for speed) is the current time."""

from __future__ import annotations

import email.utils
import re
import time

from sendchannel import Message


def test_the_date_header_is_now_in_rfc5322_form() -> None:
    before = time.time()
    rendered = [Message("a@example.com", ["b@example.net"], text=f"{i}\n").as_bytes() for i in range(2)]
    after = time.time()
    for data in rendered:
        match = re.search(rb"^Date: (.+?)\r\n", data, re.MULTILINE)
        assert match is not None
        value = match[1].decode()
        assert value.endswith(" GMT")
        assert int(before) <= email.utils.parsedate_to_datetime(value).timestamp() <= after
