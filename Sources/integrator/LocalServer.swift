// A Hummingbird server on 127.0.0.1 and a free port for the length of a benchmark: the fake APIs and receivers the
// benchmarks talk to, and the API itself where a benchmark goes through it.
import Hummingbird
import Logging
import ServiceLifecycle

enum LocalServer {
    /// Serves `router` while `body` runs; `body` gets the base URL (`http://127.0.0.1:PORT`).
    static func serving<T: Sendable>(
        _ router: Router<BasicRequestContext>, name: String, _ body: @Sendable (String) async throws -> T
    ) async throws -> T {
        var logger = Logger(label: name)
        logger.logLevel = .warning
        return try await serving(name: name, logger: logger, { announce in
            Application(
                router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
                onServerRunning: { channel in await announce(channel.localAddress?.port ?? 0) }, logger: logger)
        }, body)
    }

    /// Runs the server `make` builds, which must call the function it is given with its port once listening (on
    /// 127.0.0.1), while `body` runs; `body` gets the base URL.
    static func serving<T: Sendable>(
        name: String, logger: Logger, _ make: (_ announce: @escaping @Sendable (Int) async -> Void) -> any Service,
        _ body: @Sendable (String) async throws -> T
    ) async throws -> T {
        let (ports, announce) = AsyncStream.makeStream(of: Int.self)
        let app = make { port in
            announce.yield(port)
            announce.finish()
        }
        let services = ServiceGroup(configuration: .init(services: [app], logger: logger))
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                // A server that stops before it announced a port (it could not bind) ends the wait for one below.
                defer { announce.finish() }
                try await services.run()
            }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next(), port > 0 else { throw BenchFailure("the \(name) did not start") }
            let result: Result<T, any Error>
            do {
                result = .success(try await body("http://127.0.0.1:\(port)"))
            } catch {
                result = .failure(error)
            }
            await services.triggerGracefulShutdown()
            try? await group.waitForAll()
            return try result.get()
        }
    }
}
