"""The webhook policy (backend/services/webhook_policy.py): which URLs and addresses department
webhooks may reach. Pure functions: no database, no network (name lookups are given)."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from backend.services.webhook_policy import (
    AllowList,
    Refused,
    allow_list_from_env,
    check_url,
    classify,
    resolve,
)

NONE = AllowList()

# every range a webhook may not reach unless allow-listed (or ever: unspecified, multicast)
FORBIDDEN = [
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::/128",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
    )
]


def lookup(*answers: str, calls: list[str] | None = None) -> Any:
    """getaddrinfo for names no DNS knows: every lookup answers `answers` (and is noted in
    `calls` when given)."""

    def getaddrinfo(host: str, port: int, *args: Any) -> list[tuple[Any, ...]]:
        if calls is not None:
            calls.append(host)
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port, 0, 0) if ":" in a else (a, port),
            )
            for a in answers
        ]

    return getaddrinfo


# --------------------------------------------------------------------------- examples


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://127.0.0.1/hook", "loopback"),
        ("https://localhost/hook", "local name"),
        ("https://LOCALHOST./hook", "local name"),
        ("https://api.localhost/hook", "local name"),
        ("https://printer.local/hook", "local name"),
        ("https://[::1]/hook", "loopback"),
        ("https://0.0.0.0/hook", "unspecified"),
        ("https://0/hook", "numeric host"),
        ("https://2130706433/hook", "numeric host"),
        ("https://0x7f.1/hook", "numeric host"),
        ("https://0x7f000001/hook", "numeric host"),
        ("https://017700000001/hook", "numeric host"),
        ("https://0177.0.0.1/hook", "numeric host"),
        ("https://127.1/hook", "numeric host"),
        ("https://127.000.000.001/hook", "numeric host"),
        ("https://8.8.8.8./hook", "numeric host"),
        ("https://１２７．０．０．１/hook", "loopback"),  # fullwidth: IDNA makes it 127.0.0.1
        ("https://169.254.169.254/latest/meta-data/", "link-local"),
        ("https://10.0.0.1/", "private"),
        ("https://172.31.255.255/", "private"),
        ("https://192.168.1.1/", "private"),
        ("https://100.64.0.1/", "private"),
        ("https://[fd12:3456::1]/", "private"),
        ("https://[fe80::1]/", "link-local"),
        ("https://[ff02::1]/", "multicast"),
        ("https://224.0.0.1/", "multicast"),
        ("https://[::ffff:127.0.0.1]/", "loopback"),
        ("https://[::ffff:7f00:1]/", "loopback"),
        ("https://[::ffff:a9fe:a9fe]/", "link-local"),
        ("https://[::ffff:0:7f00:1]/", "loopback"),
        ("https://[::127.0.0.1]/", "loopback"),
        ("https://[64:ff9b::a00:1]/", "private"),
        ("https://[2002:c0a8:101::]/", "private"),
        ("https://[::]/", "unspecified"),
        ("https://192.0.2.10/", "reserved"),
        ("https://255.255.255.255/", "reserved"),
        ("http://dept.example/hook", "must use https"),
        ("ftp://dept.example/hook", "https://"),
        ("file:///etc/passwd", "https://"),
        ("https://user:pw@dept.example/", "user name"),
        ("https://dept.example@127.0.0.1/", "user name"),
        ("https:///hook", "name a host"),
        ("https://dept.example:0/", "port 0"),
        ("https://dept.example:99999/", "Not a valid URL"),
        ("https://[::1/", "Not a valid URL"),
        ("https://dept..example/", "not a valid host"),
        ("https://de pt.example/", "spaces"),
        ("https://dept.example/\nX: y", "control"),
        ("https://%31%32%37.0.0.1/", "not a valid host"),
        ("", "required"),
        ("https://" + "a" * 2000 + ".example/", "at most"),
    ],
)
def test_refused_urls(url, why):
    with pytest.raises(Refused) as refused:
        check_url(url, NONE)
    assert why in refused.value.reason, refused.value.reason


@pytest.mark.parametrize(
    ("url", "host", "port", "path"),
    [
        ("https://dept.example/hook", "dept.example", 443, "/hook"),
        (
            "HTTPS://Hooks.Dept.Example:8443/a/b?x=1&y=2#frag",
            "hooks.dept.example",
            8443,
            "/a/b?x=1&y=2",
        ),
        ("https://8.8.8.8", "8.8.8.8", 443, "/"),
        ("https://[2001:4860:4860::8888]:444/h", "2001:4860:4860::8888", 444, "/h"),
        ("https://市场监管.中国/hook", "市场监管.中国".encode("idna").decode(), 443, "/hook"),
        ("https://dept.example./hook", "dept.example", 443, "/hook"),
    ],
)
def test_accepted_urls(url, host, port, path):
    target = check_url(url, NONE)
    assert (target.host, target.port, target.path) == (host, port, path)


def test_the_allow_list():
    allow = AllowList.parse(" 10.20.0.0/16 , Hooks.Gov.Example,127.0.0.1, [fd00::]/8?, ,bad entry")
    assert allow.hosts == frozenset({"hooks.gov.example"})
    assert [str(n) for n in allow.networks] == ["10.20.0.0/16", "127.0.0.1/32"]
    # an allow-listed network: http, and whatever its addresses are
    assert check_url("http://10.20.3.4:8080/h", allow).scheme == "http"
    assert check_url("http://127.0.0.1/h", allow).literal == ipaddress.ip_address("127.0.0.1")
    assert check_url("http://[::ffff:127.0.0.1]/h", allow).port == 80  # mapped: the same
    with pytest.raises(Refused, match="private"):
        check_url("http://10.21.0.1/", allow)
    with pytest.raises(Refused, match="loopback"):
        check_url("https://127.0.0.2/", allow)
    # an allow-listed name: http, and private addresses when it resolves
    target = check_url("http://hooks.gov.example:8080/h", allow)
    assert target.host_allowed
    assert resolve(target, allow, lookup("192.168.7.8", "fd00::5")) == [
        (socket.AF_INET, "192.168.7.8"),
        (socket.AF_INET6, "fd00::5"),
    ]
    with pytest.raises(Refused, match="loopback address and its network is not"):
        resolve(target, allow, lookup("127.0.0.5"))
    with pytest.raises(Refused, match="link-local"):
        resolve(target, allow, lookup("169.254.169.254"))
    assert resolve(target, allow, lookup("127.0.0.1")) == [(socket.AF_INET, "127.0.0.1")]
    # an allow-listed name is not a local name any more
    assert check_url("http://localhost/h", AllowList.parse("localhost")).host == "localhost"
    # never: unspecified and multicast, whatever is listed
    everything = AllowList.parse("0.0.0.0/0, ::/0")
    for url in ("http://0.0.0.0/", "http://224.0.0.1/", "http://[::]/", "http://[ff02::1]/"):
        with pytest.raises(Refused, match="never"):
            check_url(url, everything)
    # http for a name needs the name on the list, not only its network
    with pytest.raises(Refused, match="https"):
        check_url("http://dept.example/", everything)


def test_resolve_checks_every_address_of_one_lookup():
    target = check_url("https://dept.example/hook", NONE)
    calls: list[str] = []

    def counting(host: str, *args: Any) -> Any:
        calls.append(host)
        return lookup("93.184.216.34", "93.184.216.34", "2606:2800:220:1::1")(host, *args)

    assert resolve(target, NONE, counting) == [
        (socket.AF_INET, "93.184.216.34"),
        (socket.AF_INET6, "2606:2800:220:1::1"),
    ]
    assert calls == ["dept.example"]
    for bad in ("127.0.0.1", "10.0.0.1", "::1", "::ffff:10.0.0.1", "fe80::1%eth0", "0.0.0.0"):
        with pytest.raises(Refused, match=r"dept\.example resolves to"):
            resolve(target, NONE, lookup("93.184.216.34", bad))
    with pytest.raises(Refused, match="no IPv4 or IPv6"):
        resolve(target, NONE, lookup())

    def no_such_host(*args: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(socket.gaierror):
        resolve(target, NONE, no_such_host)
    literal = check_url("https://8.8.8.8/", NONE)
    assert resolve(literal, NONE, no_such_host) == [(socket.AF_INET, "8.8.8.8")]  # no lookup


def test_the_allow_list_is_read_from_the_environment(monkeypatch):
    monkeypatch.delenv("GRIDPATROL_WEBHOOK_ALLOW", raising=False)
    assert allow_list_from_env() == AllowList()
    monkeypatch.setenv("GRIDPATROL_WEBHOOK_ALLOW", "192.168.0.0/16,hooks.lan")
    allow = allow_list_from_env()
    assert allow.hosts == frozenset({"hooks.lan"}) and allow.covers(
        ipaddress.ip_address("192.168.3.4")
    )


# --------------------------------------------------------------------------- properties


def _octets(n: int) -> list[int]:
    return [(n >> s) & 0xFF for s in (24, 16, 8, 0)]


def _number(value: int, radix: str) -> str:
    if radix == "hex":
        return hex(value)
    if radix == "HEX":
        return "0X" + format(value, "X")
    if radix == "oct":
        return "0" + format(value, "o")
    return str(value)


RADIX = st.sampled_from(["dec", "hex", "HEX", "oct"])


@st.composite
def ipv4_spellings(draw: Any, n: int, numeric_only: bool = False) -> str:
    """Any way a resolver or URL parser reads as the IPv4 address `n` (`numeric_only`: the
    ASCII IPv4 spellings, not the IPv6 nor the fullwidth ones)."""
    a, b, c, d = _octets(n)
    forms = ["dotted", "int", "a.b.c16", "a.b24", "zero-padded", "trailing-dot"]
    if not numeric_only:
        forms += ["fullwidth", "mapped", "mapped-hex", "mapped-full", "compatible", "nat64"]
        forms.append("translated")
    form = draw(st.sampled_from(forms))
    if form == "dotted":
        return ".".join(_number(o, draw(RADIX)) for o in (a, b, c, d))
    if form == "int":
        return _number(n, draw(RADIX))
    if form == "a.b.c16":
        return ".".join(_number(x, draw(RADIX)) for x in (a, b, (c << 8) | d))
    if form == "a.b24":
        return ".".join(_number(x, draw(RADIX)) for x in (a, (b << 16) | (c << 8) | d))
    if form == "zero-padded":
        return ".".join(f"{o:03d}" for o in (a, b, c, d))
    if form == "trailing-dot":
        return f"{a}.{b}.{c}.{d}."
    if form == "fullwidth":
        return "．".join(
            str(o).translate(str.maketrans("0123456789", "０１２３４５６７８９"))
            for o in (a, b, c, d)
        )
    if form == "mapped":
        return f"[::ffff:{a}.{b}.{c}.{d}]"
    if form == "mapped-hex":
        return f"[::ffff:{n >> 16:x}:{n & 0xFFFF:x}]"
    if form == "mapped-full":
        return f"[0:0:0:0:0:FFFF:{n >> 16:04X}:{n & 0xFFFF:04X}]"
    if form == "compatible":
        return f"[::{a}.{b}.{c}.{d}]"
    if form == "nat64":
        return f"[64:ff9b::{a}.{b}.{c}.{d}]"
    return f"[::ffff:0:{a}.{b}.{c}.{d}]"


@st.composite
def forbidden_hosts(draw: Any) -> tuple[str, ipaddress.IPv4Address | ipaddress.IPv6Address]:
    network = draw(st.sampled_from(FORBIDDEN))
    address = network[draw(st.integers(0, network.num_addresses - 1))]
    if address.version == 4:
        return draw(ipv4_spellings(int(address))), address
    text = draw(st.sampled_from([address.compressed, address.exploded]))
    return "[" + draw(st.sampled_from([text, text.upper()])) + "]", address


@given(
    host=forbidden_hosts(),
    scheme=st.sampled_from(["http", "https"]),
    port=st.one_of(st.none(), st.integers(1, 65535)),
    path=st.sampled_from(["", "/", "/hook", "/a?b=c"]),
)
def test_any_forbidden_address_in_any_numeric_form_is_refused(host, scheme, port, path):
    spelled, address = host
    url = f"{scheme}://{spelled}{'' if port is None else f':{port}'}{path}"
    with pytest.raises(Refused):
        check_url(url, NONE)
    # and as what a name resolves to, at delivery
    target = check_url(f"https://hooks.dept.example{path}", NONE)
    with pytest.raises(Refused):
        resolve(target, NONE, lookup(str(address)))
    # an allow-listed name unlocks private addresses only
    named = AllowList.parse("hooks.dept.example")
    target = check_url(f"http://hooks.dept.example{path}", named)
    if classify(address) == "private":
        assert resolve(target, named, lookup(str(address)))
    else:
        with pytest.raises(Refused):
            resolve(target, named, lookup(str(address)))


PUBLIC = [
    ipaddress.ip_network(n)
    for n in ("1.0.0.0/8", "8.0.0.0/8", "93.184.0.0/16", "114.114.0.0/16", "202.96.0.0/12")
]


@given(network=st.sampled_from(PUBLIC), offset=st.integers(0, 2**24 - 1), data=st.data())
def test_a_public_address_is_accepted_only_as_a_b_c_d(network, offset, data):
    address = network[offset % network.num_addresses]
    assert classify(address) == "public"
    assert check_url(f"https://{address}/hook", NONE).literal == address
    spelled = data.draw(ipv4_spellings(int(address), numeric_only=True))
    assume(spelled != str(address))
    with pytest.raises(Refused, match=r"numeric host|not a valid host"):
        check_url(f"https://{spelled}/hook", NONE)


@given(network=st.sampled_from(FORBIDDEN), offset=st.integers(0, 2**32))
def test_an_allow_listed_network_is_reachable_over_http(network, offset):
    address = network[offset % network.num_addresses]
    assume(classify(address) not in ("unspecified", "multicast"))
    allow = AllowList((network,), frozenset())
    host = f"[{address}]" if address.version == 6 else str(address)
    assert check_url(f"http://{host}:8080/h", allow).literal == address
