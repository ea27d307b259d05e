// Host name resolution for outbound HTTP: getaddrinfo on NIO's thread pool, with a short cache.
import Foundation
import NIOPosix
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Resolves host names once per request (or per ``ttl``), so the addresses the guard checks are the ones connected to.
final class HostResolver: Sendable {
    private struct Entry {
        var addresses: [IPAddress]
        var expiresAt: Date
    }

    /// How long an answer is reused. Short, so DNS changes are picked up; long enough that paging does not
    /// resolve for every page.
    let ttl: TimeInterval
    private let clock: any TimeSource
    private let cache = Mutex<[String: Entry]>([:])

    init(ttl: TimeInterval, clock: any TimeSource) {
        self.ttl = ttl
        self.clock = clock
    }

    /// The addresses of `host`, in the resolver's order. An address literal is returned as it is.
    /// - Throws: ``OutboundError`` with code `resolution`.
    func addresses(of host: String) async throws -> [IPAddress] {
        if let literal = IPAddress(host) { return [literal] }
        let now = clock.now()
        if let cached = cache.withLock({ $0[host] }), cached.expiresAt > now { return cached.addresses }
        let addresses = try await NIOThreadPool.singleton.runIfActive { try Self.lookUp(host) }
        cache.withLock { cache in
            if cache.count > 1000 { cache = cache.filter { $0.value.expiresAt > now } }
            cache[host] = Entry(addresses: addresses, expiresAt: now.addingTimeInterval(ttl))
        }
        return addresses
    }

    /// Blocking `getaddrinfo`; runs on the thread pool, never on an event loop or the cooperative pool.
    private static func lookUp(_ host: String) throws -> [IPAddress] {
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        #if canImport(Darwin)
        hints.ai_socktype = SOCK_STREAM
        #else
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        #endif
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(host, nil, &hints, &list)
        guard status == 0, let first = list else {
            let reason = String(cString: gai_strerror(status))
            throw OutboundError(.resolution, detail: "could not resolve host '\(host)' (\(reason))")
        }
        defer { freeaddrinfo(first) }
        var addresses: [IPAddress] = []
        var cursor: UnsafeMutablePointer<addrinfo>? = first
        while let entry = cursor {
            if let address = entry.pointee.ai_addr.flatMap(Self.address(of:)), !addresses.contains(address) {
                addresses.append(address)
            }
            cursor = entry.pointee.ai_next
        }
        guard !addresses.isEmpty else {
            throw OutboundError(.resolution, detail: "host '\(host)' has no IPv4 or IPv6 address")
        }
        return addresses
    }

    private static func address(of socketAddress: UnsafeMutablePointer<sockaddr>) -> IPAddress? {
        switch Int32(socketAddress.pointee.sa_family) {
        case AF_INET:
            return socketAddress.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { pointer in
                withUnsafeBytes(of: pointer.pointee.sin_addr) { IPAddress(bytes: Array($0)) }
            }
        case AF_INET6:
            return socketAddress.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { pointer in
                withUnsafeBytes(of: pointer.pointee.sin6_addr) { IPAddress(bytes: Array($0)) }
            }
        default:
            return nil
        }
    }
}
