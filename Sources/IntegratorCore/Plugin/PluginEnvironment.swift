// The one environment a process builds for its plugins: everything their code may use, and everything a test replaces.
import Foundation
import Hummingbird
import Logging
import Synchronization

/// What plugin code works with. Built once per process by ``Runtime``, with no globals behind it: a test builds its own
/// runtime on its own database and clock and gets an environment of its own.
public struct PluginEnvironment: Sendable {
    public let settings: Settings
    public let database: Database
    /// Every plugin of this process.
    public let registry: PluginRegistry
    /// Outbound HTTP with the SSRF guard, pooled connections and rate budgets.
    public let outbound: OutboundHTTP
    /// Stored credentials; ``CredentialsService/decrypted(id:)`` opens their secret fields.
    public let credentials: CredentialsService
    public let integrations: IntegrationsService
    /// Enqueues tasks, on their own or inside a ``StoreTransaction``.
    public let tasks: TasksService
    /// Durable one-shot timers (delayed tasks, debounces), on their own or inside a ``StoreTransaction``.
    public let timers: TimerStore
    /// Encrypts values at rest with the process's key ring (AES-GCM, bound to a row id).
    public let secrets: SecretBox
    public let clock: any TimeSource
    public let logger: Logger
    /// Objects a plugin keeps for the life of the process (caches, batchers), one per key, made on first use.
    public let shared = SharedObjects()

    /// Runs `body` in a transaction; tasks enqueued and timers set through it commit with your own writes.
    public func transaction<T: Sendable>(_ body: @escaping @Sendable (StoreTransaction) async throws -> T) async throws -> T {
        try await database.withTransaction(body)
    }

    /// A plugin route's JSON body: 413 over `INTEGRATOR_MAX_BODY_SIZE`, 400 when empty or not JSON, in the API's error shape.
    public func readJSON(_ request: Request) async throws -> JSONValue {
        try await Routes.readJSON(request, maxBodySize: settings.maxBodySize)
    }

    /// `limit` (1…500, default 50) and `cursor` from a plugin route's query string, like every list of the API.
    public func pageRequest(_ request: Request) throws -> PageRequest {
        try Routes.pageRequest(request)
    }

    /// A page in the API's list shape: `{"items": [...], "next_cursor": ...}`.
    public func listResponse<Item>(_ page: Page<Item>, render: (Item) -> JSONValue) -> Response {
        Routes.list(page, render: render)
    }

    /// A logger with the plugin's id as metadata.
    public func logger(for pluginID: String) -> Logger {
        var logger = logger
        logger[metadataKey: "plugin"] = "\(pluginID)"
        return logger
    }
}

/// A plugin's per-process objects. They belong to one ``PluginEnvironment``, so two runtimes in one process (tests)
/// never share them.
public final class SharedObjects: Sendable {
    private let objects = Mutex<[String: any Sendable]>([:])

    /// The object stored under `key`, made by `make` the first time. Name keys after the plugin (`webhooks.batching`).
    public func object<T: Sendable>(_ key: String, make: () -> T) -> T {
        objects.withLock { objects in
            if let existing = objects[key] as? T { return existing }
            let made = make()
            objects[key] = made
            return made
        }
    }
}
