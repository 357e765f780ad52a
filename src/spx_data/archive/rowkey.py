"""The archive's row key: one int64 per row that orders rows exactly like (right, strike, timestamp)
within one expiration, used to sort at assembly and to prove order and uniqueness on reading back.

right (1 bit) | strike in thousandths (34 bits, enough for decimal128(10, 3)) | milliseconds since the
session day's midnight (27 bits). Equal neighbours are duplicate keys, and `key >> TS_BITS` identifies a
contract.
"""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

from spx_data.core.datasets import TZ

MS_PER_DAY = 86_400_000
TS_BITS = 27  # 2^27 ms > one day
STRIKE_BITS = 34  # 2^34 > 10^10 thousandths, the range of decimal128(10, 3)
MAX_STRIKE = 10**10
RIGHT_SHIFT = TS_BITS + STRIKE_BITS
STRIKE_MASK = (1 << STRIKE_BITS) - 1
RIGHTS = ("CALL", "PUT")  # index = the key's right bit, so CALL sorts before PUT
ET = ZoneInfo(TZ)
EPOCH = dt.date(1970, 1, 1)


def label(contract: tuple[str, int, int]) -> str:
    symbol, exp_days, c = contract
    thou = c & STRIKE_MASK
    right = RIGHTS[c >> STRIKE_BITS]
    return f"{symbol} {EPOCH + dt.timedelta(days=exp_days)} {thou // 1000}.{thou % 1000:03d} {right}"
