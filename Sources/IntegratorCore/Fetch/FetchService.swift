// Running a provider's fetch for one integration, and enqueueing fetches: what `integration.fetch`,
// `integration.fetch_all`, `POST …/run` and `integrator run` share.
import Foundation
import Logging

/// How fetches write.
public struct FetchOptions: Sendable {
    /// Records per transaction (1…``RecordStore/maximumBatchSize``). Default 500: large enough that the per-statement
    /// cost is spread thin, small enough that a batch's memory and lock time stay small.
    public var batchSize: Int

    public init(batchSize: Int = 500) {
        self.batchSize = min(max(1, batchSize), RecordStore.maximumBatchSize)
    }
}

/// The fetch use cases.
public struct FetchService: Sendable {
    /// The task that fetches one integration; arguments `{"integration_id": "…"}`.
    public static let fetchTaskName = "integration.fetch"
    /// The task that enqueues a fetch for every active integration.
    public static let fetchAllTaskName = "integration.fetch_all"

    let integrations: IntegrationsService
    let integrationStore: IntegrationStore
    let credentials: CredentialsService
    let registry: PluginRegistry
    let records: RecordStore
    let state: FetchStateStore
    let runs: TaskRunStore
    let tasks: TasksService
    let outbound: OutboundHTTP
    let clock: any TimeSource
    let options: FetchOptions
    /// Handed to providers in their ``FetchContext``; `nil` for a service built from parts.
    let environment: PluginEnvironment?

    /// The fetch service of a process, on its plugin environment: batches' change events go to the plugins'
    /// subscribers inside the transactions that store them.
    public init(environment: PluginEnvironment, options: FetchOptions = FetchOptions()) {
        let database = environment.database
        self.integrations = environment.integrations
        self.integrationStore = IntegrationStore(database: database)
        self.credentials = environment.credentials
        self.registry = environment.registry
        self.records = RecordStore(
            database: database, subscribers: EventSubscribers(environment.registry.eventSubscribers, environment: environment))
        self.state = FetchStateStore(database: database)
        self.runs = TaskRunStore(database: database)
        self.tasks = environment.tasks
        self.outbound = environment.outbound
        self.clock = environment.clock
        self.options = options
        self.environment = environment
    }

    /// - Parameters:
    ///   - tasks: enqueues fetch tasks. Enqueueing a built message does not consult the registry, so a service
    ///     built on the plugins' registry (before the engine's own task handlers joined it) is fine here.
    ///   - outbound: makes each fetch's HTTP client, signed with the integration's credentials.
    public init(
        database: Database, integrations: IntegrationsService, credentials: CredentialsService, registry: PluginRegistry,
        runs: TaskRunStore, tasks: TasksService, outbound: OutboundHTTP, clock: any TimeSource,
        options: FetchOptions = FetchOptions()
    ) {
        self.integrations = integrations
        self.integrationStore = IntegrationStore(database: database)
        self.credentials = credentials
        self.registry = registry
        self.records = RecordStore(database: database)
        self.state = FetchStateStore(database: database)
        self.runs = runs
        self.tasks = tasks
        self.outbound = outbound
        self.clock = clock
        self.options = options
        self.environment = nil
    }

    // MARK: Running

    /// Runs the integration's fetch now, in this process, and returns its summary.
    /// - Parameters:
    ///   - logger: the provider gets it with the integration's secret values masked in every line.
    ///   - onProgress: called after every committed write (a batch, with the checkpoints made before it) with the
    ///     counts so far.
    /// - Throws: ``ServiceError`` when the integration cannot be fetched (unknown, inactive, misconfigured),
    ///   ``FetchFailure`` when the provider failed, `CancellationError` when cancelled.
    public func run(
        integrationID: String, logger: Logger, onProgress: @escaping @Sendable (FetchSummary) -> Void = { _ in }
    ) async throws -> FetchSummary {
        let integration = try await integrations.get(id: integrationID)
        guard integration.active else {
            throw ServiceError(.conflict, "integration '\(integration.name)' is inactive; set \"active\": true to fetch it")
        }
        let (provider, config) = try prepared(integration)
        let credentialValues = try await decryptedCredentials(of: integration, for: provider)
        let redactor = SecretRedactor(credentialValues)
        var logger = logger
        logger[metadataKey: "integration.id"] = "\(integration.id)"
        logger[metadataKey: "integration.provider"] = "\(provider.id)"

        let cursors = try await state.cursors(integrationID: integration.id)
        let session = FetchSession(
            integration: integration, provider: provider, store: records,
            cursors: Dictionary(cursors.map { ($0.stream, $0.cursor) }, uniquingKeysWith: { _, last in last }),
            clock: clock, batchSize: options.batchSize, onProgress: onProgress)
        let providerLogger = redactor.wrap(logger)
        let http = outbound.client(
            for: credentialValues, credentialsID: integration.credentialsID,
            type: credentialValues.flatMap { registry.credentialsType($0.typeID) }, logger: providerLogger)
        let context = FetchContext(
            integrationID: integration.id, integrationName: integration.name, config: config, credentials: credentialValues,
            state: session, records: session, logger: providerLogger, http: http, environment: environment)
        logger.debug("fetch started", metadata: ["fetch.resumed_streams": "\(cursors.count)"])
        do {
            try await provider.fetch(context)
        } catch {
            if error is CancellationError || Task.isCancelled {
                await session.settle()
                let received = await session.progress().received
                logger.info("fetch cancelled", metadata: ["fetch.received": "\(received)"])
                throw CancellationError()
            }
            // Keep what was read before the failure: those records are whole, and storing them now saves
            // their events from waiting for the next run.
            if (try? await session.finish()) == nil { await session.settle() }
            let progress = await session.progress()
            let failure = FetchFailure(error, redactor: redactor, progress: progress)
            logger.info("fetch failed", metadata: ["error": "\(failure)"])
            throw failure
        }
        let summary = try await session.finish()
        let counts = summary.records
        logger.info(
            "fetch finished",
            metadata: [
                "fetch.pages": "\(summary.pages)", "fetch.new": "\(counts.new)", "fetch.updated": "\(counts.updated)",
                "fetch.unchanged": "\(counts.unchanged)", "fetch.elapsed_s": "\(String(format: "%.3f", summary.elapsedSeconds))",
            ])
        return summary
    }

    /// The integration's provider and its config validated again, with the current defaults applied: a config
    /// stored by an older version of the plugin may no longer be acceptable.
    private func prepared(_ integration: Integration) throws -> (any ProviderBackend, [String: JSONValue]) {
        guard let provider = registry.provider(integration.provider) else {
            throw ServiceError(.unsupported, "provider '\(integration.provider)' is not registered in this build")
        }
        var issues: [FieldIssue] = []
        let config = provider.configFields.normalized(.object(integration.config), at: "config", collecting: &issues)
        if issues.isEmpty { issues = provider.validate(config: config) }
        guard issues.isEmpty else {
            throw ServiceError(
                .unsupported,
                "integration '\(integration.name)' has a config provider '\(provider.id)' no longer accepts: \(ValidationFailure(issues)); update it first")
        }
        return (provider, config)
    }

    private func decryptedCredentials(of integration: Integration, for provider: any ProviderBackend) async throws
        -> CredentialValues?
    {
        guard let credentialsID = integration.credentialsID else {
            if provider.requiresCredentials {
                throw ServiceError(.unsupported, "integration '\(integration.name)' has no credentials, which provider '\(provider.id)' needs")
            }
            return nil
        }
        do {
            return try await credentials.decrypted(id: credentialsID)
        } catch let error as SecretBoxError {
            throw ServiceError(.unsupported, "the credentials of integration '\(integration.name)' cannot be decrypted: \(error)")
        }
    }

    // MARK: Finding and enqueueing

    /// An integration by id, or else by name (for the command line).
    public func integration(idOrName: String) async throws -> Integration {
        if Identifier.isWellFormed(idOrName), let found = try await integrationStore.find(id: idOrName) { return found }
        if let found = try await integrationStore.find(name: idOrName) { return found }
        throw ServiceError(.notFound, "no integration with id or name '\(idOrName)'")
    }

    /// Enqueues a fetch of the integration on its queue, with its priority and number of attempts.
    @discardableResult
    public func enqueue(integrationID: String) async throws -> TaskMessage {
        let integration = try await integrations.get(id: integrationID)
        guard integration.active else {
            throw ServiceError(.conflict, "integration '\(integration.name)' is inactive; set \"active\": true to fetch it")
        }
        return try await enqueue(integration)
    }

    private func enqueue(_ integration: Integration) async throws -> TaskMessage {
        try await tasks.enqueue(
            TaskMessage(
                name: Self.fetchTaskName, arguments: ["integration_id": .string(integration.id)], queue: integration.queue,
                priority: integration.priority, enqueuedAt: clock.now(), integrationID: integration.id,
                maxAttempts: integration.maxAttempts))
    }

    /// What ``enqueueAllActive()`` did.
    public struct EnqueuedFetches: Sendable {
        /// Fetch tasks enqueued, one per active integration.
        public var enqueued: [TaskMessage] = []
        /// Ids of active integrations skipped because a fetch of theirs was still queued or running.
        public var skipped: [String] = []
    }

    /// Enqueues a fetch for every active integration, on each one's queue and priority. An integration whose
    /// previous fetch is still queued, retrying or running is skipped, so a slow source does not pile up fetches.
    public func enqueueAllActive() async throws -> EnqueuedFetches {
        var result = EnqueuedFetches()
        var page = PageRequest(limit: PageRequest.maximumLimit)
        repeat {
            let batch = try await integrationStore.list(IntegrationFilter(active: true), page: page)
            let busy = try await runs.integrationsWithUnfinishedTasks(
                named: Self.fetchTaskName, among: batch.items.map(\.id))
            for integration in batch.items {
                if busy.contains(integration.id) {
                    result.skipped.append(integration.id)
                } else {
                    result.enqueued.append(try await enqueue(integration))
                }
            }
            page.after = batch.nextCursor.flatMap(PageRequest.decodeCursor)
        } while page.after != nil
        return result
    }
}
