// A Hummingbird server on 127.0.0.1 and a free port for the length of a benchmark: the fake APIs and receivers the
// benchmarks talk to.
import Hummingbird
import Logging
import ServiceLifecycle

enum LocalServer {
    /// Serves `router` while `body` runs; `body` gets the base URL (`http://127.0.0.1:PORT`).
    static func serving<T: Sendable>(
        _ router: Router<BasicRequestContext>, name: String, _ body: @Sendable (String) async throws -> T
    ) async throws -> T {
        let (ports, announce) = AsyncStream.makeStream(of: Int.self)
        var logger = Logger(label: name)
        logger.logLevel = .warning
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in
                announce.yield(channel.localAddress?.port ?? 0)
                announce.finish()
            }, logger: logger)
        let services = ServiceGroup(configuration: .init(services: [app], logger: logger))
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await services.run() }
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
