// AsyncHTTPClient instances pinned to checked addresses: one pooled client per (host, address) pair.
//
// Why several clients: AsyncHTTPClient resolves host names itself and has no per-request resolver hook. What it has
// is `Configuration.dnsOverride` (host → address), which connects to the given address while keeping the URL's host
// in the `Host` header, in TLS SNI and in certificate validation. The override is fixed per client, so each
// (host, checked address) pair gets its own client; every client shares the process's event loops and keeps its own
// connection pool, so connections are still reused across requests and fetches. Idle clients are shut down after a
// while, and their number is capped.
import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOPosix
import Synchronization

final class PinnedClientPool: Sendable {
    /// A host name and the address it was checked to resolve to. For address literals both are the same address.
    struct Target: Hashable, Sendable {
        var host: String
        var address: IPAddress
    }

    private struct Entry {
        let client: HTTPClient
        var inFlight: Int
        var lastUsed: Date
    }

    private struct State {
        var entries: [Target: Entry] = [:]
        var isShutDown = false
    }

    private let state = Mutex(State())
    private let connectTimeout: TimeInterval
    private let idleLimit: TimeInterval
    private let maxClients: Int
    private let clock: any TimeSource

    /// - Parameters:
    ///   - idleLimit: seconds after which an unused client is shut down.
    ///   - maxClients: clients kept at most; the least recently used idle ones go first.
    init(connectTimeout: TimeInterval, idleLimit: TimeInterval = 300, maxClients: Int = 128, clock: any TimeSource) {
        self.connectTimeout = connectTimeout
        self.idleLimit = idleLimit
        self.maxClients = maxClients
        self.clock = clock
    }

    /// Runs `body` with the client for `target`; the client is not shut down while `body` runs.
    func withClient<T: Sendable>(for target: Target, _ body: (HTTPClient) async throws -> T) async throws -> T {
        let (client, retired) = try acquire(target)
        defer { release(target) }
        await Self.shutDown(retired)
        return try await body(client)
    }

    /// Shuts every client down; later requests fail. Safe to call more than once.
    func shutdown() async {
        let clients = state.withLock { state in
            state.isShutDown = true
            defer { state.entries = [:] }
            return state.entries.values.map(\.client)
        }
        await Self.shutDown(clients)
    }

    private func acquire(_ target: Target) throws -> (HTTPClient, retired: [HTTPClient]) {
        let now = clock.now()
        return try state.withLock { state in
            guard !state.isShutDown else {
                throw OutboundError(.unavailable, detail: "outbound HTTP is shut down")
            }
            var retired: [HTTPClient] = []
            if state.entries[target] == nil {
                retired = Self.retire(from: &state.entries, now: now, idleLimit: idleLimit, keep: maxClients - 1)
                state.entries[target] = Entry(client: makeClient(for: target), inFlight: 0, lastUsed: now)
            }
            state.entries[target]!.inFlight += 1
            state.entries[target]!.lastUsed = now
            return (state.entries[target]!.client, retired)
        }
    }

    private func release(_ target: Target) {
        let now = clock.now()
        state.withLock { state in
            guard state.entries[target] != nil else { return }
            state.entries[target]!.inFlight -= 1
            state.entries[target]!.lastUsed = now
        }
    }

    /// Removes idle clients unused for longer than `idleLimit`, then the least recently used idle ones until at most
    /// `keep` remain. Clients with requests in flight stay.
    private static func retire(
        from entries: inout [Target: Entry], now: Date, idleLimit: TimeInterval, keep: Int
    ) -> [HTTPClient] {
        var retired: [HTTPClient] = []
        let idle = entries.filter { $0.value.inFlight == 0 }.sorted { $0.value.lastUsed < $1.value.lastUsed }
        var excess = entries.count - keep
        for (target, entry) in idle where excess > 0 || now.timeIntervalSince(entry.lastUsed) > idleLimit {
            retired.append(entry.client)
            entries[target] = nil
            excess -= 1
        }
        return retired
    }

    private func makeClient(for target: Target) -> HTTPClient {
        var configuration = HTTPClient.Configuration(
            // Redirects are not followed: a redirect could lead anywhere, past the address check.
            redirectConfiguration: .disallow,
            timeout: .init(connect: .milliseconds(Int64(connectTimeout * 1000))),
            // No proxy: a proxy would connect on our behalf to addresses the guard never saw.
            proxy: nil)
        // Failed connects come back at once instead of being retried inside the pool until the connect timeout: the
        // client's own retry handles them, on the injectable clock, moving on to the host's next checked address.
        configuration.connectionPool.retryConnectionEstablishment = false
        // Nothing here bootstraps a tracer, and the default one (a no-op) still made a span and its attributes for every
        // request: a few percent of a webhook delivery's CPU.
        configuration.tracing.tracer = nil
        if IPAddress(target.host) == nil {
            configuration.dnsOverride = [target.host: target.address.description]
        }
        return HTTPClient(eventLoopGroupProvider: .shared(MultiThreadedEventLoopGroup.singleton), configuration: configuration)
    }

    private static func shutDown(_ clients: [HTTPClient]) async {
        for client in clients {
            // Shutting down an idle client only closes its idle connections; an error here leaves nothing to undo.
            try? await client.shutdown()
        }
    }
}
