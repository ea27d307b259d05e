// The outbound client's connections: keep-alive reuse, a reused connection the server closed before answering, HEAD
// and 1xx framing, and https against a real TLS server (`openssl s_server`) with a certificate from a test CA.
import Foundation
import IntegratorCore
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization
import Testing

@Suite("Outbound connections")
struct OutboundConnectionTests {
    /// An HTTP/1.1 server on 127.0.0.1 that counts connections and requests. On every connection it answers the first
    /// `answeredPerConnection` requests, then closes the connection on the next one without a byte of answer: what a
    /// server that closes idle connections does to a request that crosses the close.
    final class CountingServer: Sendable {
        struct Counts: Sendable {
            var connections = 0
            var requests = 0
        }

        let answeredPerConnection: Int
        /// How long each answer takes.
        let delay: TimeAmount
        private let counts = Mutex(Counts())
        var current: Counts { counts.withLock { $0 } }

        init(answeredPerConnection: Int = .max, delay: TimeAmount = .zero) {
            self.answeredPerConnection = answeredPerConnection
            self.delay = delay
        }

        func run<T: Sendable>(_ body: @Sendable (_ port: Int) async throws -> T) async throws -> T {
            let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .childChannelInitializer { channel in
                    self.counts.withLock { $0.connections += 1 }
                    return channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                        try channel.pipeline.syncOperations.addHandler(Responder(server: self))
                    }
                }
                .bind(host: "127.0.0.1", port: 0).get()
            do {
                let value = try await body(channel.localAddress?.port ?? 0)
                try await channel.close()
                return value
            } catch {
                try? await channel.close()
                throw error
            }
        }

        fileprivate func noteRequest() { counts.withLock { $0.requests += 1 } }

        private final class Responder: ChannelInboundHandler {
            typealias InboundIn = HTTPServerRequestPart
            typealias OutboundOut = HTTPServerResponsePart
            let server: CountingServer
            var answered = 0
            var method = HTTPMethod.GET
            var uri = ""

            init(server: CountingServer) { self.server = server }

            func channelRead(context: ChannelHandlerContext, data: NIOAny) {
                switch unwrapInboundIn(data) {
                case .head(let head):
                    method = head.method
                    uri = head.uri
                case .body:
                    break
                case .end:
                    server.noteRequest()
                    guard answered < server.answeredPerConnection else {
                        context.close(promise: nil)
                        return
                    }
                    answered += 1
                    if uri == "/continue" {
                        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: .http1_1, status: .continue))), promise: nil)
                    }
                    let body = ByteBuffer(string: "answer \(answered)")
                    var headers = HTTPHeaders([("content-length", "\(body.readableBytes)")])
                    headers.add(name: "x-method", value: method.rawValue)
                    let parts: [HTTPServerResponsePart] = [
                        .head(HTTPResponseHead(version: .http1_1, status: .ok, headers: headers)),
                    ] + (method == .HEAD ? [] : [.body(.byteBuffer(body))]) + [.end(nil)]
                    guard server.delay > .zero else { return Self.write(parts, to: context) }
                    let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
                    context.eventLoop.scheduleTask(in: server.delay) { Self.write(parts, to: bound.value) }
                }
            }

            private static func write(_ parts: [HTTPServerResponsePart], to context: ChannelHandlerContext) {
                for part in parts { context.write(NIOAny(part), promise: nil) }
                context.flush()
            }
        }
    }

    /// Runs `body` with a client that tries each request once, unless `retry` says otherwise.
    static func withOutbound<T: Sendable>(
        trusting certificates: [NIOSSLCertificate] = [], connectionsPerHost: Int = 32, retry: RetryPolicy = .never,
        _ body: @Sendable (OutboundClient) async throws -> T
    ) async throws -> T {
        let outbound = OutboundHTTP(
            options: .init(
                allowedRanges: OutboundTests.loopback, sleeper: ManualSleeper(), trustedCertificates: certificates,
                connectionsPerHost: connectionsPerHost),
            logger: TestDatabase.logger)
        var client = outbound.client(logger: TestDatabase.logger)
        client.retry = retry
        do {
            let value = try await body(client)
            await outbound.shutdown()
            return value
        } catch {
            await outbound.shutdown()
            throw error
        }
    }

    static func failure(_ client: OutboundClient, _ request: OutboundRequest) async -> OutboundError? {
        do {
            _ = try await client.send(request)
            return nil
        } catch {
            return error as? OutboundError
        }
    }

    @Test("sequential requests share one keep-alive connection, and HEAD and 1xx responses keep it in step")
    func keepAlive() async throws {
        let server = CountingServer()
        try await server.run { port in
            try await Self.withOutbound { client in
                for index in 1...10 {
                    let response = try await client.send(.get("http://127.0.0.1:\(port)/n"))
                    #expect(response.status == 200)
                    #expect(String(decoding: response.body, as: UTF8.self) == "answer \(index)")
                }
                let head = try await client.send(OutboundRequest(method: "HEAD", "http://127.0.0.1:\(port)/n"))
                #expect(head.header("x-method") == "HEAD")
                #expect(head.body.isEmpty)
                let afterInterim = try await client.send(
                    OutboundRequest(method: "POST", "http://127.0.0.1:\(port)/continue", body: Data("x".utf8)))
                #expect(afterInterim.status == 200)
                #expect(String(decoding: afterInterim.body, as: UTF8.self) == "answer 12")
                let last = try await client.send(.get("http://127.0.0.1:\(port)/n"))
                #expect(String(decoding: last.body, as: UTF8.self) == "answer 13")
            }
            #expect(server.current.connections == 1)
            #expect(server.current.requests == 13)
        }
    }

    @Test("a reused connection closed before any answer: a GET goes again on a new one, a POST fails as a connection error")
    func staleConnection() async throws {
        let server = CountingServer(answeredPerConnection: 1)
        try await server.run { port in
            try await Self.withOutbound { client in
                _ = try await client.send(.get("http://127.0.0.1:\(port)/n"))
                let again = try await client.send(.get("http://127.0.0.1:\(port)/n"))
                #expect(again.status == 200)
                #expect(server.current.connections == 2)
                #expect(server.current.requests == 3)

                // The POST may have been processed before the close, so it is not sent again by the transport.
                let error = await Self.failure(
                    client, OutboundRequest(method: "POST", "http://127.0.0.1:\(port)/n", body: Data("{}".utf8)))
                #expect(error?.code == .connection)
                #expect(error?.description.contains("closed the connection") == true)
                #expect(server.current.connections == 2)
                #expect(server.current.requests == 4)
            }
        }
    }

    @Test("concurrent requests to one host take turns on at most connectionsPerHost connections")
    func connectionsPerHost() async throws {
        let server = CountingServer(delay: .milliseconds(20))
        try await server.run { port in
            try await Self.withOutbound(connectionsPerHost: 2) { client in
                let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                    for _ in 0..<10 { group.addTask { try await client.send(.get("http://127.0.0.1:\(port)/n")).status } }
                    return try await group.reduce(into: [Int]()) { $0.append($1) }
                }
                #expect(statuses == Array(repeating: 200, count: 10))
            }
            #expect(server.current.requests == 10)
            #expect(server.current.connections == 2)
        }
    }

    // MARK: TLS

    /// A CA and a server certificate it signed for `localhost` only, made by the `openssl` command in `directory`.
    static func makeCertificates(in directory: URL) throws {
        try "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
            .write(to: directory.appendingPathComponent("leaf.ext"), atomically: true, encoding: .utf8)
        let curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        for arguments in [
            ["req", "-x509"] + curve + ["-days", "2", "-subj", "/CN=Integrator test CA", "-keyout", "ca.key", "-out", "ca.pem"],
            ["req"] + curve + ["-subj", "/CN=localhost", "-keyout", "leaf.key", "-out", "leaf.csr"],
            [
                "x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "1",
                "-extfile", "leaf.ext", "-out", "leaf.pem",
            ],
        ] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
            process.arguments = arguments
            process.currentDirectoryURL = directory
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            process.waitUntilExit()
            guard process.terminationStatus == 0 else {
                throw TestSetupError("openssl \(arguments.prefix(2).joined(separator: " ")) failed")
            }
        }
    }

    /// A free port on 127.0.0.1: bound by NIO, then released for `openssl s_server`.
    static func freePort() async throws -> Int {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(host: "127.0.0.1", port: 0).get()
        let port = channel.localAddress?.port ?? 0
        try await channel.close()
        return port
    }

    @Test("https: the certificate must chain to a trusted CA and name the host connected to; SNI carries the name")
    func tls() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("integrator-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try Self.makeCertificates(in: directory)
        try "hello over TLS".write(to: directory.appendingPathComponent("hello.txt"), atomically: true, encoding: .utf8)

        let port = try await Self.freePort()
        let server = Process()
        server.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        // -WWW serves files from the working directory, one HTTP/1.0 response per connection.
        server.arguments = [
            "s_server", "-accept", "127.0.0.1:\(port)", "-cert", "leaf.pem", "-key", "leaf.key", "-WWW", "-quiet",
        ]
        server.currentDirectoryURL = directory
        server.standardOutput = FileHandle.nullDevice
        server.standardError = FileHandle.nullDevice
        try server.run()
        defer { server.terminate() }

        let ca = try NIOSSLCertificate.fromPEMFile(directory.appendingPathComponent("ca.pem").path)
        let url = "https://localhost:\(port)/hello.txt"
        // Where localhost also resolves to ::1 (s_server listens on 127.0.0.1 only), the client's retries move on to the
        // next address; its backoff waits on a manual sleeper, so they take no time.
        let retry = RetryPolicy(maxAttempts: 4, baseDelay: 0.5, maxDelay: 30)
        let response = try await Self.withOutbound(trusting: ca, retry: retry) { client in
            // s_server needs a moment to listen; a refused connect is retried here, not in the client.
            for _ in 0..<100 {
                if let response = try? await client.send(.get(url)) { return response }
                try await Task.sleep(for: .milliseconds(50))
            }
            return try await client.send(.get(url))
        }
        #expect(response.status == 200)
        #expect(String(decoding: response.body, as: UTF8.self) == "hello over TLS")

        try await Self.withOutbound(trusting: ca) { client in
            // The certificate names localhost, not the address.
            let byAddress = await Self.failure(client, .get("https://127.0.0.1:\(port)/hello.txt"))
            #expect(byAddress?.code == .connection)
            #expect(byAddress?.description.contains("certificate does not name 127.0.0.1") == true)
            #expect(byAddress?.description.contains("https://127.0.0.1:\(port)") == true)
        }
        try await Self.withOutbound(retry: retry) { client in
            // Without the test CA the chain is not trusted.
            let untrusted = await Self.failure(client, .get(url))
            #expect(untrusted?.code == .connection)
            #expect(untrusted?.description.contains("CERTIFICATE_VERIFY_FAILED") == true)
            #expect(untrusted?.description.contains("hello.txt") == false)
        }
    }
}
