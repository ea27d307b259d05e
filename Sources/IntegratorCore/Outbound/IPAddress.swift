// IP addresses and CIDR ranges, parsed strictly, for the SSRF guard and its allow-list.
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// An IPv4 or IPv6 address as bytes (4 or 16 of them).
public struct IPAddress: Sendable, Hashable, CustomStringConvertible {
    /// Network byte order.
    public let bytes: [UInt8]

    /// Parses the canonical textual forms only: dotted-quad IPv4 (`10.0.0.1`) or IPv6 (`fd00::1`, brackets allowed).
    /// Shorthand such as `127.1` or `0x7f000001` is not an address here: it goes through the resolver like a host name,
    /// and the resolver's answer is what gets checked.
    public init?(_ text: String) {
        var text = Substring(text)
        if text.hasPrefix("["), text.hasSuffix("]") { text = text.dropFirst().dropLast() }
        // A Character, not a String: with Foundation imported, `contains("…")` goes through NSString (every request
        // checks its host here).
        if text.contains(Character(":")) {
            var raw = in6_addr()
            guard inet_pton(AF_INET6, String(text), &raw) == 1 else { return nil }
            bytes = withUnsafeBytes(of: &raw) { Array($0) }
        } else {
            var raw = in_addr()
            guard inet_pton(AF_INET, String(text), &raw) == 1 else { return nil }
            bytes = withUnsafeBytes(of: &raw) { Array($0) }
        }
    }

    /// From raw bytes; `nil` unless there are 4 or 16.
    public init?(bytes: [UInt8]) {
        guard bytes.count == 4 || bytes.count == 16 else { return nil }
        self.bytes = bytes
    }

    public var isIPv4: Bool { bytes.count == 4 }

    /// The IPv4 address carried inside an IPv4-mapped (`::ffff:a.b.c.d`) or NAT64 (`64:ff9b::a.b.c.d`) IPv6 address;
    /// connecting to those reaches the IPv4 host, so the guard checks both.
    public var embeddedIPv4: IPAddress? {
        guard bytes.count == 16 else { return nil }
        let head = bytes[0..<12]
        let mapped = head.elementsEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff])
        let nat64 = head.elementsEqual([0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0])
        guard mapped || nat64 else { return nil }
        return IPAddress(bytes: Array(bytes[12..<16]))
    }

    /// The canonical text (`127.0.0.1`, `::1`), without brackets.
    public var description: String {
        var buffer = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = isIPv4 ? AF_INET : AF_INET6
        let written = bytes.withUnsafeBytes { raw in
            inet_ntop(family, raw.baseAddress, &buffer, socklen_t(buffer.count))
        }
        guard written != nil else { return bytes.map(String.init).joined(separator: ".") }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A CIDR range such as `10.0.0.0/8` or `fd00::/8`; a bare address means that address alone.
public struct IPAddressRange: Sendable, Hashable, CustomStringConvertible {
    public let network: IPAddress
    public let prefixLength: Int

    /// Parses `address/prefix`. The address must be the network's first address (`10.0.0.0/8`, not `10.1.2.3/8`),
    /// since a typo there usually means the range is not what was meant.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddress(String(parts[0])) else { return nil }
        let width = address.bytes.count * 8
        var prefix = width
        if parts.count == 2 {
            guard let value = Int(parts[1]), (0...width).contains(value), parts[1].allSatisfy(\.isASCII) else { return nil }
            prefix = value
        }
        guard Self.masked(address.bytes, prefix) == address.bytes else { return nil }
        self.network = address
        self.prefixLength = prefix
    }

    /// Whether `address` falls in this range. IPv4 ranges never contain IPv6 addresses and the reverse;
    /// the guard looks at embedded IPv4 addresses separately.
    public func contains(_ address: IPAddress) -> Bool {
        address.bytes.count == network.bytes.count && Self.masked(address.bytes, prefixLength) == network.bytes
    }

    /// Whether the range is one address (`/32` or `/128`).
    public var isSingleAddress: Bool { prefixLength == network.bytes.count * 8 }

    public var description: String { "\(network)/\(prefixLength)" }

    private static func masked(_ bytes: [UInt8], _ prefix: Int) -> [UInt8] {
        bytes.enumerated().map { index, byte in
            let bitsKept = min(8, max(0, prefix - index * 8))
            return bitsKept == 8 ? byte : byte & ~(UInt8.max >> bitsKept)
        }
    }
}
