#!/usr/bin/env python3
"""An independent check of jangteo objects, written from protocol/SPEC.md alone.

It shares no code with the Rust implementation: a strict decoder for CBOR in core
deterministic encoding (SPEC §1), the envelope, its size limits, the author key and
ed25519 signature with the domain tag (SPEC §2), the content id (blake3), and the rules of
each kind's body (SPEC §1.1, §3, §4, §5, §7, §7.2), down to the trade chain an attestation carries.

Usage:
  jangteo_check.py FILE [--now MS]      check every object of a CBOR sequence (RFC 8742)
  jangteo_check.py --spec SPEC.md       check SPEC's vectors: every object vector must be
                                        valid, every reject vector refused with its error

Prints one JSON object per line: {"index", "id", "kind", "valid", "error", "reason"}
(with --spec also "vector" and "expected"). Exits 0 when everything is as it should be,
1 when an object is invalid (or a vector's verdict differs), 2 on bad usage or input.

Needs blake3 (see .ci/requirements.txt); ed25519 is checked here, by ZIP-215 (SPEC §2).
"""

import json
import re
import sys
import time
import unicodedata

import hashlib

import blake3

# ---------------------------------------------------------------------------------------------
# Limits (SPEC §1-§7)

MAX_OBJECT_BYTES = 32 * 1024
MAX_ATTESTATION_BYTES = 128 * 1024
MAX_EQUIVOCATION_BYTES = 2 * MAX_OBJECT_BYTES + 1024
MAX_ANY_OBJECT_BYTES = MAX_ATTESTATION_BYTES
CBOR_MAX_LEVELS = 4
MAX_CLOCK_SKEW_MS = 5 * 60 * 1000
EARLIEST_MS = 1_704_067_200_000
TITLE_MAX_CHARS = 120
DESCRIPTION_MAX_BYTES = 8000
CATEGORY_MAX_BYTES = 32
PRICE_MAX = 10**15
QUANTITY_MAX = 100_000
IMAGES_MAX = 8
LIFETIME_MAX_MS = 180 * 24 * 3600 * 1000
MODERATORS_MAX = 3
NAME_MAX_CHARS = 64
BIO_MAX_BYTES = 1000
NOTE_MAX_BYTES = 1000
CHAIN_MAX = 64
COUNTERS_MAX = 16
COMMENT_MAX_BYTES = 500
ATTESTATION_CHAIN_MIN = 4
REPORT_TEXT_MAX_BYTES = 500
REPORT_REASONS = ["scam", "prohibited", "spam", "miscategorized", "duplicate"]

TRADE_KINDS = ["offer", "counter", "accept", "reject", "cancel", "paid", "shipped",
               "received", "dispute", "resolution"]
KINDS = ["listing", "profile", "attestation"] + TRADE_KINDS + ["equivocation", "report"]
CONDITIONS = ["new", "like-new", "good", "fair", "poor"]

# SPEC §3, "Currencies": active ISO 4217 codes of circulating currencies.
CURRENCIES = set("""
AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD
CAD CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS
GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW
KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR
MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR
SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX
USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG
""".split())


class Refused(Exception):
    """An object breaks a rule: `code` is SPEC §10's stable error code."""

    def __init__(self, code, reason):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def invalid(field, reason):
    return Refused("invalid:" + field, f"{field}: {reason}")


# ---------------------------------------------------------------------------------------------
# Deterministic CBOR (SPEC §1)

class Tag:
    def __init__(self, tag, value):
        self.tag, self.value = tag, value


class Float:
    pass


class Simple:
    def __init__(self, n):
        self.n = n


class _Reader:
    def __init__(self, data, pos=0):
        self.data, self.pos = data, pos
        self.canonical = True

    def take(self, n):
        if self.pos + n > len(self.data):
            raise Refused("malformed-cbor", "truncated CBOR")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def argument(self, ai):
        """The argument of a head, noting a non-shortest form; None for indefinite."""
        if ai < 24:
            return ai
        if ai == 31:
            return None
        if ai > 27:
            raise Refused("malformed-cbor", f"reserved additional information {ai}")
        size = {24: 1, 25: 2, 26: 4, 27: 8}[ai]
        v = int.from_bytes(self.take(size), "big")
        if v < {24: 24, 25: 256, 26: 65536, 27: 2**32}[ai]:
            self.canonical = False
        return v

    def item(self, depth=0):
        if depth > 500:
            raise Refused("malformed-cbor", "nested too deeply to read")
        ib = self.take(1)[0]
        major, ai = ib >> 5, ib & 31
        if major == 7:
            if ai in (25, 26, 27):
                self.take({25: 2, 26: 4, 27: 8}[ai])
                return Float()
            if ai == 24:
                n = self.take(1)[0]
                self.canonical = False if n < 32 else self.canonical
                return Simple(n)
            if ai == 31:
                raise Refused("malformed-cbor", "unexpected break")
            if ai > 27:
                raise Refused("malformed-cbor", f"reserved simple value {ai}")
            return {20: False, 21: True, 22: None}.get(ai, Simple(ai))
        arg = self.argument(ai)
        if major == 0:
            if arg is None:
                raise Refused("malformed-cbor", "indefinite integer")
            return arg
        if major == 1:
            if arg is None:
                raise Refused("malformed-cbor", "indefinite integer")
            return -1 - arg
        if major in (2, 3):
            if arg is None:
                self.canonical = False
                chunks = []
                while True:
                    if self.take(1)[0] == 0xFF:
                        break
                    self.pos -= 1
                    hb = self.take(1)[0]
                    if hb >> 5 != major or hb & 31 == 31:
                        raise Refused("malformed-cbor", "bad chunk in indefinite string")
                    n = self.argument(hb & 31)
                    chunks.append(self.take(n))
                raw = b"".join(chunks)
            else:
                raw = self.take(arg)
            if major == 2:
                return bytes(raw)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise Refused("malformed-cbor", "text is not UTF-8")
        if major == 4:
            out = []
            if arg is None:
                self.canonical = False
                while self.data[self.pos:self.pos + 1] != b"\xff":
                    out.append(self.item(depth + 1))
                self.take(1)
            else:
                for _ in range(arg):
                    out.append(self.item(depth + 1))
            return out
        if major == 5:
            out = []
            if arg is None:
                self.canonical = False
                while self.data[self.pos:self.pos + 1] != b"\xff":
                    out.append((self.item(depth + 1), self.item(depth + 1)))
                self.take(1)
            else:
                for _ in range(arg):
                    out.append((self.item(depth + 1), self.item(depth + 1)))
            return dict_pairs(out)
        if arg is None:
            raise Refused("malformed-cbor", "indefinite tag")
        return Tag(arg, self.item(depth + 1))


class dict_pairs(list):
    """A decoded map: its (key, value) pairs in wire order."""


def _key_order(k):
    b = k.encode("utf-8")
    return (len(b), b)


def _check_tree(v, level):
    """SPEC §1: at most 4 levels, no floats, no tags, text keys in canonical order."""
    if level > CBOR_MAX_LEVELS:
        raise Refused("too-deep", "CBOR nested deeper than 4 levels")
    if isinstance(v, Float):
        raise Refused("forbidden-cbor", "CBOR float is not allowed")
    if isinstance(v, Tag):
        raise Refused("forbidden-cbor", "CBOR tag is not allowed")
    if isinstance(v, Simple):
        raise Refused("forbidden-cbor", "CBOR simple value is not allowed")
    if isinstance(v, list) and not isinstance(v, dict_pairs):
        for x in v:
            _check_tree(x, level + 1)
    if isinstance(v, dict_pairs):
        prev = None
        for k, x in v:
            if not isinstance(k, str):
                raise Refused("forbidden-cbor", "CBOR non-text map key is not allowed")
            if prev is not None and not _key_order(prev) < _key_order(k):
                raise Refused("not-canonical", "map keys out of order or repeated")
            prev = k
            _check_tree(x, level + 1)


def decode_canonical(data):
    """Decodes exactly one deterministic CBOR item (SPEC §1) or refuses."""
    r = _Reader(data)
    value = r.item()
    _check_tree(value, 1)
    if not r.canonical or r.pos != len(data):
        raise Refused("not-canonical", "CBOR is not in deterministic (canonical) form")
    return value


def item_length(data, pos):
    """The length of the CBOR item starting at `pos` (to split a CBOR sequence)."""
    r = _Reader(data, pos)
    r.item()
    return r.pos - pos


# ---------------------------------------------------------------------------------------------
# Text (SPEC §1.1)

WHITE_SPACE = set(map(chr, [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
                            0x2028, 0x2029, 0x202F, 0x205F, 0x3000]))
DEFAULT_IGNORABLE = [(0x00AD, 0x00AD), (0x034F, 0x034F), (0x061C, 0x061C), (0x115F, 0x1160),
                     (0x17B4, 0x17B5), (0x180B, 0x180F), (0x200B, 0x200F), (0x202A, 0x202E),
                     (0x2060, 0x206F), (0x3164, 0x3164), (0xFE00, 0xFE0F), (0xFEFF, 0xFEFF),
                     (0xFFA0, 0xFFA0), (0xFFF0, 0xFFF8), (0x1BCA0, 0x1BCA3), (0x1D173, 0x1D17A),
                     (0xE0000, 0xE0FFF)]


def is_control(c):
    return ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F


def is_bidi_control(c):
    return 0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069


def is_visible(c):
    o = ord(c)
    return (c not in WHITE_SPACE and not is_control(c)
            and not any(a <= o <= b for a, b in DEFAULT_IGNORABLE)
            and not unicodedata.category(c).startswith("M"))


def check_line(field, s, max_chars):
    if s == "":
        raise invalid(field, "must not be empty")
    if len(s) > max_chars:  # Python str length counts code points
        raise invalid(field, f"longer than {max_chars} code points")
    if s[0] in WHITE_SPACE or s[-1] in WHITE_SPACE:
        raise invalid(field, "starts or ends with white space")
    if any(is_control(c) for c in s):
        raise invalid(field, "control character")
    if any(is_bidi_control(c) for c in s):
        raise invalid(field, "bidirectional control")
    if not any(is_visible(c) for c in s):
        raise invalid(field, "no visible character")


def check_free_text(field, s, max_bytes, allowed):
    if len(s.encode("utf-8")) > max_bytes:
        raise invalid(field, f"longer than {max_bytes} bytes")
    if any(is_control(c) and c not in allowed for c in s):
        raise invalid(field, "control character")
    if any(is_bidi_control(c) for c in s):
        raise invalid(field, "bidirectional control")


# ---------------------------------------------------------------------------------------------
# Fields of a body map

class Fields:
    def __init__(self, value):
        if not isinstance(value, dict_pairs):
            raise Refused("wrong-type", "body: expected map")
        self.entries = dict(value)

    def _take(self, name):
        return self.entries.pop(name, _ABSENT)

    def uint(self, name):
        v = self._take(name)
        if v is _ABSENT:
            raise Refused("missing-field", f"{name}: missing")
        return as_uint(v, name)

    def text(self, name):
        v = self._take(name)
        if v is _ABSENT:
            raise Refused("missing-field", f"{name}: missing")
        if not isinstance(v, str):
            raise Refused("wrong-type", f"{name}: expected text")
        return v

    def opt_text(self, name):
        v = self._take(name)
        if v is _ABSENT:
            return None
        if not isinstance(v, str):
            raise Refused("wrong-type", f"{name}: expected text")
        if v == "":
            raise Refused("empty-optional", f"{name}: an empty value must be left out")
        return v

    def bytes_(self, name):
        v = self._take(name)
        if v is _ABSENT:
            raise Refused("missing-field", f"{name}: missing")
        if not isinstance(v, bytes):
            raise Refused("wrong-type", f"{name}: expected bytes")
        return v

    def opt_bytes(self, name, size=None):
        v = self._take(name)
        if v is _ABSENT:
            return None
        if not isinstance(v, bytes):
            raise Refused("wrong-type", f"{name}: expected bytes")
        if size is not None and len(v) != size:
            raise Refused("wrong-type", f"{name}: expected {size} bytes")
        return v

    def array(self, name):
        v = self._take(name)
        if v is _ABSENT:
            raise Refused("missing-field", f"{name}: missing")
        if not is_array(v):
            raise Refused("wrong-type", f"{name}: expected array")
        return v

    def opt_array(self, name):
        v = self._take(name)
        if v is _ABSENT:
            return None
        if not is_array(v):
            raise Refused("wrong-type", f"{name}: expected array")
        if not v:
            raise Refused("empty-optional", f"{name}: an empty value must be left out")
        return v

    def opt_keys(self, name):
        items = self.opt_array(name) or []
        if len(items) > MODERATORS_MAX:
            raise Refused("wrong-type", f"{name}: expected fewer keys")
        for k in items:
            if not isinstance(k, bytes) or len(k) != 32:
                raise Refused("wrong-type", f"{name}: expected 32-byte keys")
        return items

    def finish(self):
        if self.entries:
            raise Refused("unknown-field", f"{next(iter(self.entries))}: unknown field")


_ABSENT = object()


def is_array(v):
    return isinstance(v, list) and not isinstance(v, dict_pairs)


def as_uint(v, name):
    if isinstance(v, bool) or not isinstance(v, int) or v < 0 or v >= 2**64:
        raise Refused("wrong-type", f"{name}: expected uint")
    return v


def check_price(price, currency):
    if price > PRICE_MAX:
        raise invalid("price", "above the maximum")
    if currency not in CURRENCIES:
        raise invalid("currency", f"{currency!r} is not an accepted ISO 4217 code")


def check_moderator_keys(keys, author):
    if len(keys) > MODERATORS_MAX:
        raise invalid("moderator", "too many")
    if len(set(keys)) != len(keys):
        raise invalid("moderator", "named twice")
    if author in keys:
        raise invalid("moderator", "the author names itself")


# ---------------------------------------------------------------------------------------------
# ed25519 keys (SPEC §2): decodable, not of small order

P = 2**255 - 19
D = (-121665 * pow(121666, P - 2, P)) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)


def _decompress(b):
    y = int.from_bytes(b, "little") & ((1 << 255) - 1)
    sign = b[31] >> 7
    y %= P
    u, v = (y * y - 1) % P, (D * y * y + 1) % P
    x = (u * pow(v, 3, P) * pow(u * pow(v, 7, P), (P - 5) // 8, P)) % P
    if (v * x * x - u) % P != 0:
        if (v * x * x + u) % P != 0:
            return None
        x = x * SQRT_M1 % P
    if x & 1 != sign:
        x = (-x) % P
    return (x, y)


def _add(p1, p2):
    (x1, y1), (x2, y2) = p1, p2
    t = D * x1 * x2 * y1 * y2 % P
    x3 = (x1 * y2 + y1 * x2) * pow(1 + t, P - 2, P) % P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, P - 2, P) % P
    return (x3, y3)


# ed25519 signatures (SPEC §2): ZIP-215, in extended coordinates.

L = 2**252 + 27742317777372353535851937790883648493
IDENTITY = (0, 1, 1, 0)


def _ext(point):
    x, y = point
    return (x, y, 1, x * y % P)


def _ext_add(p1, p2):
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * D * t1 * t2 % P
    d = 2 * z1 * z2 % P
    e, f, g, h = b - a, d - c, d + c, b + a
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _ext_mul(k, point):
    acc = IDENTITY
    while k:
        if k & 1:
            acc = _ext_add(acc, point)
        point = _ext_add(point, point)
        k >>= 1
    return acc


BASE = _ext(_decompress((4 * pow(5, P - 2, P) % P).to_bytes(32, "little")))


def signature_holds(author, message, sig):
    """ZIP-215: A and R decoded as given (y read modulo p), S below l, and
    [8](S·B - R - k·A) the identity, with k = SHA-512(R || A || message) mod l."""
    a, r = _decompress(author), _decompress(sig[:32])
    if a is None or r is None:
        return False
    s = int.from_bytes(sig[32:], "little")
    if s >= L:
        return False
    k = int.from_bytes(hashlib.sha512(sig[:32] + author + message).digest(), "little") % L
    x, y, z, t = _ext_add(_ext(r), _ext_mul(k, _ext(a)))
    diff = _ext_mul(8, _ext_add(_ext_mul(s, BASE), ((-x) % P, y, z, (-t) % P)))
    return diff[0] % P == 0 and (diff[1] - diff[2]) % P == 0


def check_author_key(key):
    point = _decompress(key)
    if point is None:
        raise Refused("bad-author-key", "the author key is not a point of edwards25519")
    for _ in range(3):
        point = _add(point, point)
    if point == (0, 1):
        raise Refused("bad-author-key", "the author key has small order (weak)")


# ---------------------------------------------------------------------------------------------
# Envelope (SPEC §2)

def max_bytes(kind):
    return {"attestation": MAX_ATTESTATION_BYTES,
            "equivocation": MAX_EQUIVOCATION_BYTES}.get(kind, MAX_OBJECT_BYTES)


def decode_envelope(data):
    if len(data) > MAX_ANY_OBJECT_BYTES:
        raise Refused("too-large", f"object is {len(data)} bytes")
    v = decode_canonical(data)
    if not is_array(v) or len(v) != 4:
        raise Refused("wrong-type", "envelope: expected array of 4")
    kind, author, body, sig = v
    if not isinstance(kind, str):
        raise Refused("wrong-type", "kind: expected text")
    if kind not in KINDS:
        raise Refused("unknown-kind", f"unknown object kind {kind!r}")
    if len(data) > max_bytes(kind):
        raise Refused("too-large", f"{kind} is {len(data)} bytes; the limit is {max_bytes(kind)}")
    if not isinstance(author, bytes) or len(author) != 32:
        raise Refused("wrong-type", "author: expected 32 bytes")
    if not isinstance(body, bytes):
        raise Refused("wrong-type", "body: expected bytes")
    if not isinstance(sig, bytes) or len(sig) != 64:
        raise Refused("wrong-type", "sig: expected 64 bytes")
    return kind, author, body, sig


def verify_envelope(data):
    kind, author, body, sig = decode_envelope(data)
    check_author_key(author)
    if not signature_holds(author, b"jangteo/v1/" + kind.encode() + body, sig):
        raise Refused("bad-signature", "bad signature")
    return kind, author, body


# ---------------------------------------------------------------------------------------------
# Bodies (SPEC §3-§7)

def check_listing(body, author, now):
    f = Fields(decode_canonical(body))
    nonce = f.bytes_("nonce")
    if len(nonce) != 16:
        raise Refused("wrong-type", "nonce: expected 16 bytes")
    status = f.text("status")
    if status not in ("active", "retracted"):
        raise Refused("wrong-type", "status: expected active|retracted")
    cond = f.opt_text("condition")
    if cond is not None and cond not in CONDITIONS:
        raise Refused("wrong-type", "condition: expected new|like-new|good|fair|poor")
    images = f.opt_array("images") or []
    if len(images) > IMAGES_MAX:
        raise Refused("wrong-type", "images: expected at most 8")
    if not all(isinstance(i, bytes) and len(i) == 32 for i in images):
        raise Refused("wrong-type", "images: expected 32-byte ids")
    loc = f.opt_array("location")
    if loc is not None:
        if len(loc) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in loc) \
                or not all(-2**31 <= x < 2**31 for x in loc):
            raise Refused("wrong-type", "location: expected [lat, lon] as i32")
    seq, created = f.uint("seq"), f.uint("created")
    updated, expires = f.uint("updated"), f.uint("expires")
    title = f.text("title")
    desc = f.opt_text("desc") or ""
    category = f.text("category")
    price, currency, quantity = f.uint("price"), f.text("currency"), f.uint("quantity")
    mods = f.opt_keys("mods")
    # The listing's proof-of-work stamp (SPEC §3.1): a uint when present. What it must be
    # worth is the network's difficulty, a parameter of the network, not of the bytes.
    stamp = f._take("stamp")
    if stamp is not _ABSENT:
        as_uint(stamp, "stamp")
    f.finish()
    check_line("title", title, TITLE_MAX_CHARS)
    check_free_text("description", desc, DESCRIPTION_MAX_BYTES, "\n\t")
    if not (1 <= len(category) <= CATEGORY_MAX_BYTES) or not re.fullmatch(r"[a-z0-9-]+", category):
        raise invalid("category", "1-32 of a-z, 0-9, -")
    check_price(price, currency)
    if quantity > QUANTITY_MAX:
        raise invalid("quantity", "above the maximum")
    if loc is not None and (abs(loc[0]) > 90_000_000 or abs(loc[1]) > 180_000_000):
        raise invalid("location", "out of range")
    if seq == 0:
        raise invalid("seq", "starts at 1")
    if created < EARLIEST_MS:
        raise invalid("created_at", "before 2024")
    if updated < created:
        raise invalid("updated_at", "earlier than created")
    if updated > now + MAX_CLOCK_SKEW_MS:
        raise invalid("updated_at", "dated in the future")
    if expires <= created or expires - created > LIFETIME_MAX_MS:
        raise invalid("expires_at", "not within 180 days after created")
    check_moderator_keys(mods, author)


def check_profile(body, author, now):
    f = Fields(decode_canonical(body))
    name, bio, updated = f.text("name"), f.opt_text("bio") or "", f.uint("updated")
    f.finish()
    check_line("name", name, NAME_MAX_CHARS)
    check_free_text("bio", bio, BIO_MAX_BYTES, "\n")
    if updated > now + MAX_CLOCK_SKEW_MS:
        raise invalid("updated_at", "dated in the future")


def check_report(body, author, now):
    """A report (SPEC §7.2): the rules every node applies to the bytes alone."""
    f = Fields(decode_canonical(body))
    about = f.bytes_("about")
    if len(about) != 32:
        raise Refused("wrong-type", "about: expected 32 bytes")
    f.opt_bytes("listing", 32)
    reason = f.text("reason")
    if reason not in REPORT_REASONS:
        raise Refused("wrong-type", "reason: expected " + ", ".join(REPORT_REASONS))
    text = f.opt_text("text") or ""
    at = f.uint("at")
    f.finish()
    if about == author:
        raise invalid("about", "a report about its own author")
    check_free_text("text", text, REPORT_TEXT_MAX_BYTES, "\n")
    if at < EARLIEST_MS:
        raise invalid("at", "before 2024")
    if at > now + MAX_CLOCK_SKEW_MS:
        raise invalid("at", "dated in the future")


def decode_trade(kind, body, author, now):
    """A trade message's fields (SPEC §5), checked on their own (not the transition)."""
    f = Fields(decode_canonical(body))
    m = {"kind": kind, "author": author}
    m["at"] = f.uint("at")
    m["trade"] = f.opt_bytes("trade", 32)
    m["prev"] = f.opt_bytes("prev", 32)
    m["seller"] = f.opt_bytes("seller", 32)
    if kind in ("offer", "counter", "accept"):
        listing = f.bytes_("listing")
        if len(listing) != 32:
            raise Refused("wrong-type", "listing: expected 32 bytes")
        m["terms"] = (listing, f.uint("lseq"), f.uint("price"), f.text("currency"),
                      f.uint("quantity"))
    else:
        m["terms"] = None
    m["mods"] = f.opt_keys("mods")
    m["note"] = f.opt_text("note") or ""
    m["outcome"] = f.opt_text("outcome")
    f.finish()
    if m["at"] > now + MAX_CLOCK_SKEW_MS:
        raise invalid("at", "dated in the future")
    check_free_text("note", m["note"], NOTE_MAX_BYTES, "\n")
    is_offer = kind == "offer"
    if is_offer != (m["trade"] is None) or is_offer != (m["prev"] is None):
        raise invalid("prev", "an offer starts a chain; every other message names trade and prev")
    if is_offer != (m["seller"] is not None):
        raise invalid("seller", "named by the offer only")
    if m["seller"] == author:
        raise invalid("seller", "a seller cannot make an offer on their own listing")
    if not is_offer and m["mods"]:
        raise invalid("moderators", "named by the offer only")
    check_moderator_keys(m["mods"], author)
    if m["seller"] is not None and m["seller"] in m["mods"]:
        raise invalid("moderators", "a party to the trade cannot moderate it")
    if m["terms"] is not None:
        _, lseq, price, currency, quantity = m["terms"]
        check_price(price, currency)
        if not 1 <= quantity <= QUANTITY_MAX:
            raise invalid("quantity", "must be 1-100000")
        if lseq == 0:
            raise invalid("listing_seq", "starts at 1")
    outcome = m["outcome"]
    if kind == "shipped":
        if outcome not in ("shipped", "handed-over"):
            raise invalid("outcome", "shipped or handed-over")
    elif kind == "resolution":
        if outcome not in ("refund", "release"):
            raise invalid("outcome", "refund or release")
    elif outcome is not None:
        raise invalid("outcome", "only shipped and resolution carry an outcome")
    if kind in ("dispute", "reject") and m["note"].strip() == "":
        raise invalid("reason", "a reason is required")
    return m


def allowed(state, who, proposer):
    """SPEC §5's transition table."""
    if state in ("offered", "countered") and who != "moderator" and who != proposer:
        k = ["counter", "accept", "reject"]
        if who == "buyer" or state == "countered":
            k.append("cancel")
        return k
    return {("offered", "buyer"): ["cancel"], ("countered", "buyer"): ["cancel"],
            ("countered", "seller"): ["cancel"],
            ("accepted", "buyer"): ["paid", "cancel"], ("accepted", "seller"): ["cancel"],
            ("paid", "seller"): ["shipped", "dispute"], ("paid", "buyer"): ["received", "dispute"],
            ("shipped", "buyer"): ["received", "dispute"], ("shipped", "seller"): ["dispute"],
            ("disputed", "moderator"): ["resolution"]}.get((state, who), [])


NEXT_STATE = {"counter": "countered", "accept": "accepted", "reject": "rejected",
              "cancel": "cancelled", "paid": "paid", "shipped": "shipped",
              "received": "completed", "dispute": "disputed", "resolution": "resolved"}


def replay_linear(messages):
    """Applies a straight chain (offer first) by SPEC §5's transitions; returns the trade."""
    offer = messages[0]
    if offer["kind"] != "offer":
        raise invalid("chain", "must start with the trade's offer")
    t = {"id": offer["id"], "buyer": offer["author"], "seller": offer["seller"],
         "mods": offer["mods"], "terms": offer["terms"], "proposer": "buyer",
         "state": "offered", "head": offer["id"], "counters": 0, "last_at": offer["at"]}
    for i, m in enumerate(messages[1:], start=2):
        if m["trade"] != t["id"] or m["prev"] != t["head"]:
            raise invalid("chain", f"message {i}: does not follow the current head")
        if i > CHAIN_MAX or (m["kind"] == "counter" and t["counters"] >= COUNTERS_MAX):
            raise invalid("chain", f"message {i}: chain too long")
        a = m["author"]
        who = ("buyer" if a == t["buyer"] else "seller" if a == t["seller"]
               else "moderator" if a in t["mods"] else None)
        if who is None:
            raise invalid("chain", f"message {i}: the author is not a party")
        if m["kind"] not in allowed(t["state"], who, t["proposer"]):
            raise invalid("chain", f"message {i}: {m['kind']} not allowed for the {who} "
                                   f"in state {t['state']}")
        if m["kind"] == "accept" and m["terms"] != t["terms"]:
            raise invalid("chain", f"message {i}: accept must repeat the proposed terms")
        if m["kind"] == "counter":
            if m["terms"][0] != t["terms"][0] or m["terms"][3] != t["terms"][3]:
                raise invalid("chain", f"message {i}: a counter keeps the listing and currency")
            t["terms"], t["proposer"] = m["terms"], who
            t["counters"] += 1
        t["state"] = NEXT_STATE[m["kind"]]
        t["head"] = m["id"]
        t["last_at"] = m["at"]
    return t


def chain_message(data, now):
    try:
        kind, author, body = verify_envelope(data)
        if kind not in TRADE_KINDS:
            raise Refused("unknown-kind", f"{kind} is not a trade message")
        m = decode_trade(kind, body, author, now)
    except Refused as e:
        raise e
    m["id"] = blake3.blake3(data).digest()
    return m


def check_attestation(body, author, now):
    f = Fields(decode_canonical(body))
    chain = f.array("chain")
    if not all(isinstance(c, bytes) for c in chain):
        raise Refused("wrong-type", "chain: expected array of envelopes (bytes)")
    about = f.bytes_("about")
    if len(about) != 32:
        raise Refused("wrong-type", "about: expected 32 bytes")
    role = f.text("role")
    if role not in ("buyer", "seller"):
        raise Refused("wrong-type", "role: expected buyer or seller")
    score = f.uint("score")
    if score > 255:
        raise Refused("wrong-type", "score: expected 1-5")
    comment = f.opt_text("comment") or ""
    at = f.uint("at")
    # The attestation's proof-of-work stamp (SPEC §7.1): a uint when present. What it must be
    # worth follows the network's difficulty, a parameter of the network, not of the bytes.
    stamp = f._take("stamp")
    if stamp is not _ABSENT:
        as_uint(stamp, "stamp")
    f.finish()
    if not 1 <= score <= 5:
        raise invalid("score", "must be 1-5")
    check_free_text("comment", comment, COMMENT_MAX_BYTES, "\n")
    if at > now + MAX_CLOCK_SKEW_MS:
        raise invalid("at", "dated in the future")
    if not ATTESTATION_CHAIN_MIN <= len(chain) <= CHAIN_MAX:
        raise invalid("chain", f"must hold {ATTESTATION_CHAIN_MIN}-{CHAIN_MAX} messages")
    messages = []
    for i, c in enumerate(chain, start=1):
        try:
            messages.append(chain_message(c, now))
        except Refused as e:
            raise invalid("chain", f"message {i}: {e.reason}")
    t = replay_linear(messages)
    if t["state"] != "completed":
        raise invalid("chain", f"the trade is {t['state']}, not completed")
    if author == t["buyer"]:
        my_role, other = "buyer", t["seller"]
    elif author == t["seller"]:
        my_role, other = "seller", t["buyer"]
    else:
        raise invalid("author", "only the buyer or the seller may rate the trade")
    if role != my_role:
        raise invalid("role", f"the author is the {my_role}")
    if about != other:
        raise invalid("about", "must be the other party")
    if at < t["last_at"]:
        raise invalid("at", "earlier than the trade's completion")


def check_equivocation(body, author, now):
    f = Fields(decode_canonical(body))
    a, b = f.bytes_("a"), f.bytes_("b")
    f.finish()
    if a >= b:
        raise invalid("a", "the two envelopes in bytewise order, different")
    for e in (a, b):
        verify_envelope(e)
    ma, mb = chain_message(a, now), chain_message(b, now)
    if ma["author"] != mb["author"]:
        raise invalid("equivocation", "different authors")
    if ma["trade"] is None:
        raise invalid("equivocation", "an offer cannot equivocate")
    if mb["trade"] != ma["trade"] or mb["prev"] != ma["prev"]:
        raise invalid("equivocation", "not after the same message of one trade")


def check_object(data, now):
    """Checks one object; returns (id hex, kind or None); raises Refused."""
    kind, author, body = verify_envelope(data)
    if kind == "listing":
        check_listing(body, author, now)
    elif kind == "profile":
        check_profile(body, author, now)
    elif kind == "attestation":
        check_attestation(body, author, now)
    elif kind == "equivocation":
        check_equivocation(body, author, now)
    elif kind == "report":
        check_report(body, author, now)
    else:
        decode_trade(kind, body, author, now)
    return kind


def verdict(data, now):
    out = {"id": blake3.blake3(data).hexdigest(), "kind": None, "valid": True,
           "error": None, "reason": None}
    try:
        out["kind"] = check_object(data, now)
    except Refused as e:
        out.update(valid=False, error=e.code, reason=e.reason)
        try:
            v = decode_canonical(data)
            if is_array(v) and v and isinstance(v[0], str):
                out["kind"] = v[0]
        except Refused:
            pass
    return out


# ---------------------------------------------------------------------------------------------
# Inputs: a CBOR sequence, or SPEC.md's vectors

def split_sequence(data):
    pos, items = 0, []
    while pos < len(data):
        n = item_length(data, pos)
        items.append(data[pos:pos + n])
        pos += n
    return items


def spec_vectors(text):
    """(name, bytes, expected error or None) of every vector in SPEC.md, and the reference time."""
    m = re.search(r"reference time[^`]*`(\d+)`", text)
    if not m:
        raise SystemExit("SPEC.md names no reference time for its vectors")
    now = int(m.group(1))
    out = []
    for block in re.split(r"\n(?=#{2,4} )", text):
        head = block.split("\n", 1)[0]
        if head.startswith("### Vector "):
            env = re.search(r"^- envelope: `([0-9a-f]+)`", block, re.M)
            out.append((head[4:], bytes.fromhex(env.group(1)), None))
        elif head.startswith("### Reject vector "):
            err = re.search(r"^- error: `([^`]+)`", block, re.M).group(1)
            whole = re.search(r"^- bytes: `([0-9a-f]*)`", block, re.M)
            if whole:
                data = bytes.fromhex(whole.group(1))
            else:
                pre = re.search(r"^- bytes before: `([0-9a-f]*)`", block, re.M).group(1)
                fill = re.search(r"^- then: `([0-9a-f]{2})` × (\d+)", block, re.M)
                post = re.search(r"^- bytes after: `([0-9a-f]*)`", block, re.M).group(1)
                data = (bytes.fromhex(pre) + bytes.fromhex(fill.group(1)) * int(fill.group(2))
                        + bytes.fromhex(post))
            out.append((head[4:], data, err))
        elif head.startswith("### Signature vector "):
            data = bytes.fromhex(re.search(r"^- bytes: `([0-9a-f]*)`", block, re.M).group(1))
            err = re.search(r"^- verdict: `([^`]+)`", block, re.M).group(1)
            out.append((head[4:], data, None if err == "valid" else err))
    return now, out


def main(argv):
    args = list(argv)
    now = None
    if "--now" in args:
        i = args.index("--now")
        now = int(args[i + 1])
        del args[i:i + 2]
    if len(args) == 2 and args[0] == "--spec":
        with open(args[1], encoding="utf-8") as fh:
            ref, vectors = spec_vectors(fh.read())
        if not vectors:
            print("no vectors found", file=sys.stderr)
            return 2
        bad = 0
        for i, (name, data, expected) in enumerate(vectors):
            v = verdict(data, now if now is not None else ref)
            v.update(index=i, vector=name, expected=expected)
            ok = v["valid"] if expected is None else (v["error"] == expected)
            bad += not ok
            v["as_expected"] = ok
            print(json.dumps(v, ensure_ascii=False))
        return 1 if bad else 0
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    with open(args[0], "rb") as fh:
        data = fh.read()
    try:
        items = split_sequence(data)
    except Refused as e:
        print(json.dumps({"index": None, "valid": False, "error": e.code,
                          "reason": "the file is not a CBOR sequence: " + e.reason}))
        return 1
    now = now if now is not None else int(time.time() * 1000)
    bad = 0
    for i, item in enumerate(items):
        v = verdict(item, now)
        v["index"] = i
        bad += not v["valid"]
        print(json.dumps(v, ensure_ascii=False))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
