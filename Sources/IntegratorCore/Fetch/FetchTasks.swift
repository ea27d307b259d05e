// The engine's fetch tasks, `integration.fetch` and `integration.fetch_all`, and the plugin that registers them.

/// `integration.fetch` with `{"integration_id": "…"}`: runs the integration's provider and stores what it yields.
/// Returns the fetch summary.
public struct IntegrationFetchTask: TaskHandler {
    public let name = FetchService.fetchTaskName

    public init() {}

    /// A failed fetch resumes from its last checkpoint, so retries are cheap; they are spaced out to let a
    /// struggling source recover. An integration's `max_attempts` overrides the count.
    public var retryPolicy: RetryPolicy { RetryPolicy(maxAttempts: 3, baseDelay: 10, maxDelay: 600) }

    /// Large sources take a while; a fetch cut off by the timeout goes on from its last checkpoint when retried.
    public var timeout: Duration { .seconds(3600) }

    public func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        guard let integrationID = arguments["integration_id"]?.stringValue, !integrationID.isEmpty else {
            throw PluginError("arguments need \"integration_id\": the id of the integration to fetch", permanent: true)
        }
        let fetches = FetchService(environment: try context.requireEnvironment())
        do {
            return try await fetches.run(integrationID: integrationID, logger: context.logger).json
        } catch let failure as FetchFailure {
            throw PluginError(failure.description, permanent: failure.isPermanent)
        } catch let error as ServiceError {
            // Unknown, inactive or misconfigured integrations stay so until someone changes them.
            throw PluginError(error.message, permanent: error.kind != .unavailable)
        }
    }
}

/// `integration.fetch_all`: enqueues an `integration.fetch` for every active integration, each on its own queue
/// with its own priority. Returns how many were enqueued and which integrations were skipped because their
/// previous fetch had not finished.
public struct FetchAllTask: TaskHandler {
    public let name = FetchService.fetchAllTaskName

    public init() {}

    public func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        let result = try await FetchService(environment: try context.requireEnvironment()).enqueueAllActive()
        context.logger.info(
            "fetches enqueued", metadata: ["fetch.enqueued": "\(result.enqueued.count)", "fetch.skipped": "\(result.skipped.count)"])
        return [
            "enqueued": .number(Double(result.enqueued.count)),
            "tasks": .array(result.enqueued.map { .string($0.id) }),
            "skipped": .array(result.skipped.map(JSONValue.string)),
        ]
    }
}

extension Plugin {
    /// The fetch pipeline, an ordinary built-in plugin: its tasks run providers and store what they yield, handing
    /// change events to the subscribers of every plugin.
    public static let fetchPipeline = Plugin(
        id: "fetch", name: "Fetch pipeline",
        summary: "integration.fetch runs one integration's provider; integration.fetch_all enqueues a fetch per active integration.",
        taskHandlers: [IntegrationFetchTask(), FetchAllTask()])
}
