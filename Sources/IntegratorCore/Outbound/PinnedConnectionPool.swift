// Keep-alive connections to checked addresses, kept per (host, address, port, TLS) so that a connection is only ever
// reused for the host name it was checked and verified for.
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Synchronization

final class PinnedConnectionPool: Sendable {
    /// Where a connection goes: the URL's host name (for `Host`, SNI and certificate checks) and the address it was
    /// checked to resolve to. For address literals both are the same address.
    struct Target: Hashable, Sendable {
        var host: String
        var address: IPAddress
        var port: Int
        var usesTLS: Bool
    }

    private struct Idle {
        let connection: HTTP1Connection
        let since: NIODeadline

        /// Open, and unused for less than `limit`.
        func isFresh(at now: NIODeadline, limit: TimeAmount) -> Bool {
            connection.isReusable && now - since < limit
        }
    }

    private struct State {
        var idle: [Target: [Idle]] = [:]
        /// Requests to each target that hold or wait for one of its permits, and the gate that hands the permits out.
        var gates: [Target: (gate: AsyncGate, users: Int)] = [:]
        var lastSweep = NIODeadline.now()
        var isShutDown = false
    }

    private let state = Mutex(State())
    private let connectTimeout: TimeAmount
    private let idleLimit: TimeAmount
    private let maxConnectionsPerTarget: Int
    private let trustedCertificates: [NIOSSLCertificate]
    private let tls: Mutex<NIOSSLContext?> = Mutex(nil)

    /// - Parameters:
    ///   - idleLimit: how long an unused connection is kept open.
    ///   - maxConnectionsPerTarget: requests (so connections) to one target at a time; later ones wait for a turn.
    ///     A connection is only made when no idle one is left, so no more than this many are ever idle either.
    ///   - trustedCertificates: CA certificates trusted besides the system's.
    init(
        connectTimeout: TimeInterval, idleLimit: TimeInterval = 60, maxConnectionsPerTarget: Int = 32,
        trustedCertificates: [NIOSSLCertificate] = []
    ) {
        self.connectTimeout = .milliseconds(Int64(connectTimeout * 1000))
        self.idleLimit = .milliseconds(Int64(idleLimit * 1000))
        self.maxConnectionsPerTarget = maxConnectionsPerTarget
        self.trustedCertificates = trustedCertificates
    }

    /// Sends `exchange` to `target` over an idle connection when there is one, else over a new one. A reused
    /// connection that the server closed before answering is replaced once when `mayResend` (the request is
    /// idempotent): the server most likely closed it as idle just as the request went out.
    func execute(_ exchange: HTTP1Exchange, to target: Target, mayResend: Bool) async throws -> OutboundResponse {
        let gate = try enter(target)
        defer { leave(target) }
        return try await gate.withPermit {
            try Task.checkCancellation()
            return try await self.send(exchange, to: target, mayResend: mayResend)
        }
    }

    private func send(_ exchange: HTTP1Exchange, to target: Target, mayResend: Bool) async throws -> OutboundResponse {
        if let reused = try takeIdle(target) {
            do {
                return try await run(exchange, on: reused, target: target)
            } catch HTTP1Failure.closed(responseStarted: false) where mayResend {}
        }
        let remaining = exchange.deadline - .now()
        guard remaining > .zero else { throw HTTP1Failure.timedOut(seconds: exchange.timeout) }
        let connection = try await HTTP1Connection.connect(
            to: try SocketAddress(ipAddress: target.address.description, port: target.port),
            tls: target.usesTLS ? try tlsContext() : nil,
            serverName: IPAddress(target.host) == nil ? target.host : nil,
            timeout: min(connectTimeout, remaining))
        return try await run(exchange, on: connection, target: target)
    }

    /// Closes every idle connection; later requests fail, and connections in use close when their request ends.
    /// Safe to call more than once.
    func shutdown() async {
        let idle = state.withLock { state in
            state.isShutDown = true
            defer { state.idle = [:] }
            return state.idle.values.flatMap { $0 }
        }
        for entry in idle { entry.connection.close() }
    }

    private func run(_ exchange: HTTP1Exchange, on connection: HTTP1Connection, target: Target) async throws
        -> OutboundResponse
    {
        let reply: HTTP1Reply
        do {
            reply = try await connection.execute(exchange)
        } catch {
            connection.close()
            throw error
        }
        if !reply.keepAlive || !putBack(connection, target: target) { connection.close() }
        return reply.response
    }

    /// The gate of `target`'s permits, counting the caller as one of its users until ``leave(_:)``.
    private func enter(_ target: Target) throws -> AsyncGate {
        try state.withLock { state in
            guard !state.isShutDown else { throw Self.shutDown }
            if state.gates[target] == nil { state.gates[target] = (AsyncGate(permits: maxConnectionsPerTarget), 0) }
            state.gates[target]!.users += 1
            return state.gates[target]!.gate
        }
    }

    private func leave(_ target: Target) {
        state.withLock { state in
            state.gates[target]?.users -= 1
        }
    }

    /// The most recently used open connection to `target`, closing any that have expired or been closed by the peer.
    private func takeIdle(_ target: Target) throws -> HTTP1Connection? {
        let now = NIODeadline.now()
        let (found, expired) = try state.withLock { state -> (HTTP1Connection?, [HTTP1Connection]) in
            guard !state.isShutDown else { throw Self.shutDown }
            var expired = sweep(&state, now: now)
            while let entry = state.idle[target]?.popLast() {
                if entry.isFresh(at: now, limit: idleLimit) { return (entry.connection, expired) }
                expired.append(entry.connection)
            }
            return (nil, expired)
        }
        for connection in expired { connection.close() }
        return found
    }

    /// Keeps `connection` for the next request to `target`; false once the pool is shut down.
    private func putBack(_ connection: HTTP1Connection, target: Target) -> Bool {
        state.withLock { state in
            guard !state.isShutDown else { return false }
            state.idle[target, default: []].append(Idle(connection: connection, since: .now()))
            return true
        }
    }

    /// At most every `idleLimit`: drops idle connections past the limit or closed by their peer, for every target, so
    /// targets that are no longer called do not hold sockets. Returns the connections to close.
    private func sweep(_ state: inout State, now: NIODeadline) -> [HTTP1Connection] {
        guard now - state.lastSweep >= idleLimit else { return [] }
        state.lastSweep = now
        var expired: [HTTP1Connection] = []
        for (target, entries) in state.idle {
            var keep: [Idle] = []
            for entry in entries {
                if entry.isFresh(at: now, limit: idleLimit) { keep.append(entry) } else { expired.append(entry.connection) }
            }
            state.idle[target] = keep.isEmpty ? nil : keep
        }
        // A target nobody is calling and with no connection left needs no gate.
        state.gates = state.gates.filter { $0.value.users > 0 || state.idle[$0.key] != nil }
        return expired
    }

    private static var shutDown: OutboundError { OutboundError(.unavailable, detail: "outbound HTTP is shut down") }

    /// One TLS context for the process: building it loads the system's trust store, too slow to do per connection.
    private func tlsContext() throws -> NIOSSLContext {
        try tls.withLock { context in
            if let context { return context }
            var configuration = TLSConfiguration.makeClientConfiguration()
            if !trustedCertificates.isEmpty {
                configuration.additionalTrustRoots = [.certificates(trustedCertificates)]
            }
            let made = try NIOSSLContext(configuration: configuration)
            context = made
            return made
        }
    }
}
