// The SSRF guard: which addresses outbound HTTP may connect to.

/// Refuses private, loopback, link-local, CGNAT, unspecified, multicast, reserved and cloud-metadata addresses,
/// unless an allowed range (`INTEGRATOR_OUTBOUND_ALLOW_CIDRS`) contains them. Cloud-metadata addresses are special:
/// only a range that is exactly that address (`169.254.169.254/32`) allows one, so allowing a whole link-local or
/// private network never opens the metadata service by accident.
public struct AddressPolicy: Sendable {
    /// Ranges that may be reached although a blocked range contains them.
    public var allowed: [IPAddressRange]

    public init(allowing allowed: [IPAddressRange] = []) {
        self.allowed = allowed
    }

    /// Why `address` may not be connected to, or `nil` when it may.
    public func refusal(for address: IPAddress) -> String? {
        let checked = [address] + (address.embeddedIPv4.map { [$0] } ?? [])
        for candidate in checked where Self.metadataAddresses.contains(candidate) {
            let listed = allowed.contains { $0.isSingleAddress && $0.contains(candidate) }
            if !listed { return "cloud metadata address" }
        }
        for candidate in checked {
            guard let blocked = Self.blocked.first(where: { $0.range.contains(candidate) }) else { continue }
            let isAllowed = allowed.contains { range in checked.contains { range.contains($0) } }
            if !isAllowed { return blocked.reason }
        }
        return nil
    }

    /// Instance-metadata services (AWS, GCP, Azure, OpenStack on 169.254.169.254; AWS over IPv6 on fd00:ec2::254).
    static let metadataAddresses: Set<IPAddress> = [IPAddress("169.254.169.254")!, IPAddress("fd00:ec2::254")!]

    /// Blocked ranges, each with the reason shown in errors.
    static let blocked: [(range: IPAddressRange, reason: String)] = [
        ("0.0.0.0/8", "unspecified address"),
        ("10.0.0.0/8", "private address"),
        ("100.64.0.0/10", "carrier-grade NAT address"),
        ("127.0.0.0/8", "loopback address"),
        ("169.254.0.0/16", "link-local address"),
        ("172.16.0.0/12", "private address"),
        ("192.0.0.0/24", "IETF protocol address"),
        ("192.168.0.0/16", "private address"),
        ("198.18.0.0/15", "benchmarking address"),
        ("224.0.0.0/4", "multicast address"),
        ("240.0.0.0/4", "reserved address"),
        ("::/128", "unspecified address"),
        ("::1/128", "loopback address"),
        ("fc00::/7", "private (unique local) address"),
        ("fe80::/10", "link-local address"),
        ("fec0::/10", "site-local address"),
        ("ff00::/8", "multicast address"),
    ].map { (IPAddressRange($0.0)!, $0.1) }
}
