// Tasks the engine itself provides.

/// `core.noop`: returns its arguments. For diagnostics and benchmarks.
public struct NoopTask: TaskHandler {
    public let name = "core.noop"

    public init() {}

    public func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue { arguments }
}

extension Plugin {
    /// The engine's own tasks.
    public static let core = Plugin(
        id: "core", name: "Core tasks", summary: "Diagnostics: core.noop returns its arguments.", taskHandlers: [NoopTask()])
}
