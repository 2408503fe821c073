#!/usr/bin/env python3
"""mmdb_write.py: writes MaxMind DB (.mmdb) files for the tests.

The tests need geo databases whose answers they know (the loopback ranges
their proxies and exit addresses use, mapped to chosen countries and ASNs),
so they write them at test time with this module instead of shipping binary
files. It writes format version 2.0 as described by the "MaxMind DB File
Format Specification": a binary search tree over the address bits, 16 zero
bytes, a data section, and the metadata map after "\\xab\\xcd\\xefMaxMind.com".

As a module:

    import mmdb_write
    mmdb_write.write(path, [("127.0.1.0/24", {"country": {"iso_code": "DE"}}),
                            ("127.0.2.0/24", {"country_code": "FR"})],
                     ip_version=4, record_size=24,
                     database_type="Test-Country", build_epoch=1700000000)

As a command, from a JSON spec:

    mmdb_write.py SPEC.json OUT.mmdb

    {"ip_version": 6, "record_size": 28, "database_type": "Test-ASN",
     "build_epoch": 1700000000, "description": {"en": "..."},
     "networks": [["127.0.1.0/24", {"autonomous_system_number": 64501,
                                    "autonomous_system_organization": "A"}]]}

Python values map to MMDB types: dict -> map, str -> utf8_string,
bool -> boolean, float -> double, list/tuple -> array, bytes -> bytes,
int -> uint32 (as GeoLite2 stores ASNs; uint64/uint128 when larger, int32
when negative). A type can be forced with the wrappers Uint16(n), Uint32(n),
Uint64(n), Uint128(n), Int32(n), Float(x); in a JSON spec with
{"$type": "uint16", "value": 5}.

Networks are applied in the order given: a later network sets its whole
range, so list wide networks before the narrower ones inside them. In an
IPv6 tree (ip_version=6) an IPv4 network a.b.c.d/n is placed at
::a.b.c.d/(96+n), where libmaxminddb looks IPv4 addresses up. Addresses no
network covers are misses (the record holding the node count).

Identical records are written once and shared; repeated strings (map keys,
country codes) are written once and referred to by pointers, as the
published databases do, so readers meet pointers in every lookup.
"""

import ipaddress
import json
import os
import struct
import sys
import tempfile
import time

METADATA_MARKER = b"\xab\xcd\xefMaxMind.com"

# Type numbers from the specification.
T_POINTER = 1
T_UTF8 = 2
T_DOUBLE = 3
T_BYTES = 4
T_UINT16 = 5
T_UINT32 = 6
T_MAP = 7
T_INT32 = 8
T_UINT64 = 9
T_UINT128 = 10
T_ARRAY = 11
T_BOOLEAN = 14
T_FLOAT = 15


class _Typed:
    """A number with its MMDB type forced."""
    type_no = None

    def __init__(self, value):
        self.value = value

    def __eq__(self, other):
        return type(self) is type(other) and self.value == other.value

    def __hash__(self):
        return hash((type(self).__name__, self.value))

    def __repr__(self):
        return "%s(%r)" % (type(self).__name__, self.value)


class Uint16(_Typed):
    type_no = T_UINT16
    limit = 1 << 16


class Uint32(_Typed):
    type_no = T_UINT32
    limit = 1 << 32


class Uint64(_Typed):
    type_no = T_UINT64
    limit = 1 << 64


class Uint128(_Typed):
    type_no = T_UINT128
    limit = 1 << 128


class Int32(_Typed):
    type_no = T_INT32


class Float(_Typed):
    type_no = T_FLOAT


_JSON_TYPES = {"uint16": Uint16, "uint32": Uint32, "uint64": Uint64,
               "uint128": Uint128, "int32": Int32, "float": Float}


def _canon(value):
    """A hashable key that tells two values apart exactly when they encode
    differently (True and 1, 1 and 1.0, Uint16(1) and 1 all differ)."""
    if isinstance(value, dict):
        return ("m", tuple((k, _canon(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return ("a", tuple(_canon(v) for v in value))
    return (type(value).__name__, value)


class _Encoder:
    """Appends encoded values to a buffer; with dedup, repeats of a string
    or of a whole record become pointers to the first copy."""

    def __init__(self, dedup):
        self.buf = bytearray()
        self.dedup = dedup
        self.seen = {}

    def record(self, value):
        """The offset of a record the search tree points to: the earlier
        copy when an identical record was written before."""
        key = _canon(value) if self.dedup else None
        offset = self.seen.get(key) if key is not None else None
        if offset is not None:
            return offset
        offset = len(self.buf)
        self._encode_plain(value)
        if key is not None:
            self.seen[key] = offset
        return offset

    def _control(self, type_no, size):
        """The control byte(s) for a value of type_no and size."""
        if size < 29:
            bits, extra = size, b""
        elif size < 29 + 256:
            bits, extra = 29, bytes([size - 29])
        elif size < 285 + 65536:
            bits, extra = 30, (size - 285).to_bytes(2, "big")
        elif size < 65821 + (1 << 24):
            bits, extra = 31, (size - 65821).to_bytes(3, "big")
        else:
            raise ValueError("mmdb_write: value of size %d too large" % size)
        if type_no <= 7:
            return bytes([(type_no << 5) | bits]) + extra
        return bytes([bits, type_no - 7]) + extra

    def _pointer(self, offset):
        if offset < 2048:
            return bytes([0x20 | (offset >> 8), offset & 0xFF])
        if offset < 2048 + (1 << 19):
            v = offset - 2048
            return bytes([0x28 | (v >> 16)]) + (v & 0xFFFF).to_bytes(2, "big")
        if offset < 526336 + (1 << 27):
            v = offset - 526336
            return bytes([0x30 | (v >> 24)]) + (v & 0xFFFFFF).to_bytes(3, "big")
        return bytes([0x38]) + offset.to_bytes(4, "big")

    def _uint(self, type_no, value, nbytes):
        if value < 0 or value >= 1 << (8 * nbytes):
            raise ValueError("mmdb_write: %d does not fit type %d" % (value, type_no))
        raw = value.to_bytes(nbytes, "big").lstrip(b"\x00")
        self.buf += self._control(type_no, len(raw)) + raw

    def encode(self, value):
        """Appends value; returns its offset in the buffer (or that of the
        earlier copy it now points to)."""
        key = None
        if self.dedup and isinstance(value, (str, dict)):
            key = _canon(value)
            offset = self.seen.get(key)
            if offset is not None:
                here = len(self.buf)
                self.buf += self._pointer(offset)
                return here
        offset = len(self.buf)
        self._encode_plain(value)
        if key is not None:
            self.seen[key] = offset
        return offset

    def _encode_plain(self, value):
        if isinstance(value, bool):
            self.buf += self._control(T_BOOLEAN, 1 if value else 0)
        elif isinstance(value, _Typed):
            if isinstance(value, Int32):
                v = int(value.value)
                if not -(1 << 31) <= v < (1 << 31):
                    raise ValueError("mmdb_write: %d does not fit int32" % v)
                raw = (v & 0xFFFFFFFF).to_bytes(4, "big")
                if v >= 0:
                    raw = raw.lstrip(b"\x00")
                self.buf += self._control(T_INT32, len(raw)) + raw
            elif isinstance(value, Float):
                self.buf += self._control(T_FLOAT, 4) + struct.pack(">f", value.value)
            else:
                nbytes = {T_UINT16: 2, T_UINT32: 4, T_UINT64: 8, T_UINT128: 16}[value.type_no]
                self._uint(value.type_no, int(value.value), nbytes)
        elif isinstance(value, int):
            if value < 0:
                self._encode_plain(Int32(value))
            elif value < 1 << 32:
                self._uint(T_UINT32, value, 4)
            elif value < 1 << 64:
                self._uint(T_UINT64, value, 8)
            else:
                self._uint(T_UINT128, value, 16)
        elif isinstance(value, float):
            self.buf += self._control(T_DOUBLE, 8) + struct.pack(">d", value)
        elif isinstance(value, str):
            raw = value.encode("utf-8")
            self.buf += self._control(T_UTF8, len(raw)) + raw
        elif isinstance(value, (bytes, bytearray)):
            self.buf += self._control(T_BYTES, len(value)) + bytes(value)
        elif isinstance(value, dict):
            self.buf += self._control(T_MAP, len(value))
            for k, v in value.items():
                if not isinstance(k, str):
                    raise ValueError("mmdb_write: map key %r is not a string" % (k,))
                self.encode(k)
                self.encode(v)
        elif isinstance(value, (list, tuple)):
            self.buf += self._control(T_ARRAY, len(value))
            for v in value:
                self.encode(v)
        else:
            raise ValueError("mmdb_write: cannot encode %r" % (value,))


def _network_bits(cidr, ip_version):
    """(address as an int of the tree's width, prefix length in the tree)."""
    net = ipaddress.ip_network(cidr, strict=True)
    if ip_version == 4:
        if net.version != 4:
            raise ValueError("mmdb_write: %s in an IPv4 tree" % cidr)
        return int(net.network_address), net.prefixlen
    if net.version == 4:
        return int(net.network_address), 96 + net.prefixlen
    return int(net.network_address), net.prefixlen


class _Node:
    __slots__ = ("kids", "number")

    def __init__(self, fill=None):
        # Each kid: None (no data), _Node, or an int (offset of the record
        # in the data section).
        self.kids = [fill, fill]
        self.number = -1


class _Tree:
    """The search tree being built. Inserts in address order share most of
    their path with the one before (all 96 leading zero bits of IPv4
    networks in an IPv6 tree), so the last path is kept and walked from
    where the two addresses part."""

    def __init__(self, width):
        self.root = _Node()
        self.width = width
        self.path = [self.root]  # path[d]: the node holding bit d of last_addr
        self.last_addr = 0
        self.last_plen = 0

    def insert(self, addr, plen, data):
        width = self.width
        if plen == 0:
            self.root.kids = [data, data]
            self.path, self.last_plen = [self.root], 0
            return
        # path[d] is still the node for bit d when d < the last prefix
        # length (only kids at that depth were replaced) and the addresses
        # agree on their first d bits.
        same = width - (addr ^ self.last_addr).bit_length()
        start = max(0, min(same, self.last_plen - 1, plen - 1))
        path = self.path
        del path[start + 1:]
        node = path[start]
        for depth in range(start, plen - 1):
            bit = (addr >> (width - 1 - depth)) & 1
            kid = node.kids[bit]
            if not isinstance(kid, _Node):
                # A wider network (or nothing) covered this range: split it
                # so the narrower one can be set inside it.
                kid = _Node(kid)
                node.kids[bit] = kid
            node = kid
            path.append(node)
        node.kids[(addr >> (width - plen)) & 1] = data
        self.last_addr, self.last_plen = addr, plen


def _number(root):
    """Numbers the nodes breadth-first from 0 (the root); returns them in order."""
    order = [root]
    root.number = 0
    i = 0
    while i < len(order):
        for kid in order[i].kids:
            if isinstance(kid, _Node) and kid.number < 0:
                kid.number = len(order)
                order.append(kid)
        i += 1
    return order


def _pack_node(left, right, record_size):
    if record_size == 24:
        return left.to_bytes(3, "big") + right.to_bytes(3, "big")
    if record_size == 28:
        return (left & 0xFFFFFF).to_bytes(3, "big") + \
            bytes([((left >> 24) << 4) | (right >> 24)]) + \
            (right & 0xFFFFFF).to_bytes(3, "big")
    return left.to_bytes(4, "big") + right.to_bytes(4, "big")


def build(networks, ip_version=6, record_size=28, database_type="proxyfs-test",
          build_epoch=None, description=None, languages=None):
    """The bytes of a MaxMind DB holding networks: (CIDR, value) pairs."""
    if ip_version not in (4, 6):
        raise ValueError("mmdb_write: ip_version must be 4 or 6")
    if record_size not in (None, 24, 28, 32):
        raise ValueError("mmdb_write: record_size must be 24, 28, 32 or None (smallest that fits)")
    width = 32 if ip_version == 4 else 128
    data = _Encoder(dedup=True)
    builder = _Tree(width)
    for cidr, value in networks:
        addr, plen = _network_bits(cidr, ip_version)
        builder.insert(addr, plen, data.record(value))
    root = builder.root

    nodes = _number(root)
    node_count = len(nodes)
    largest = node_count + 16 + len(data.buf)
    if record_size is None:
        record_size = next((size for size in (24, 28) if largest < 1 << size), 32)
    if largest >= 1 << record_size:
        raise ValueError("mmdb_write: %d nodes and %d data bytes do not fit %d-bit records"
                         % (node_count, len(data.buf), record_size))

    def record(kid):
        if kid is None:
            return node_count
        if isinstance(kid, _Node):
            return kid.number
        return node_count + 16 + kid

    tree = bytearray()
    for node in nodes:
        tree += _pack_node(record(node.kids[0]), record(node.kids[1]), record_size)

    meta = {
        "binary_format_major_version": Uint16(2),
        "binary_format_minor_version": Uint16(0),
        "build_epoch": Uint64(int(time.time()) if build_epoch is None else build_epoch),
        "database_type": database_type,
        "description": description if description is not None
        else {"en": "proxyfs test database"},
        "ip_version": Uint16(ip_version),
        "languages": list(languages) if languages is not None else ["en"],
        "node_count": Uint32(node_count),
        "record_size": Uint16(record_size),
    }
    menc = _Encoder(dedup=False)
    menc.encode(meta)
    return bytes(tree) + bytes(16) + bytes(data.buf) + METADATA_MARKER + bytes(menc.buf)


def write(path, networks, ip_version=6, record_size=28, database_type="proxyfs-test",
          build_epoch=None, description=None, languages=None):
    """Writes a MaxMind DB to path atomically (a temporary file renamed over
    it, as a database update is installed), so a daemon watching path sees
    the old file or the new one, never a partial one."""
    blob = build(networks, ip_version=ip_version, record_size=record_size,
                 database_type=database_type, build_epoch=build_epoch,
                 description=description, languages=languages)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".mmdb-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.chmod(tmp, 0o644)
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return len(blob)


def _from_json(value):
    if isinstance(value, dict):
        if set(value) == {"$type", "value"}:
            cls = _JSON_TYPES.get(value["$type"])
            if cls is None:
                raise ValueError("mmdb_write: unknown $type %r" % value["$type"])
            return cls(value["value"])
        return {k: _from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_json(v) for v in value]
    return value


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: mmdb_write.py SPEC.json OUT.mmdb\n")
        return 2
    try:
        with open(argv[1]) as f:
            spec = json.load(f)
        networks = [(cidr, _from_json(v)) for cidr, v in spec["networks"]]
        size = write(argv[2], networks,
                     ip_version=spec.get("ip_version", 6),
                     record_size=spec.get("record_size", 28),
                     database_type=spec.get("database_type", "proxyfs-test"),
                     build_epoch=spec.get("build_epoch"),
                     description=spec.get("description"),
                     languages=spec.get("languages"))
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.stderr.write("mmdb_write.py: %s: %s\n" % (argv[1], e))
        return 1
    sys.stderr.write("mmdb_write.py: wrote %s (%d bytes, %d networks)\n"
                     % (argv[2], size, len(networks)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
