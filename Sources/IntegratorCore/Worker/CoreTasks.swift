// Tasks the engine itself provides.
import Foundation

/// `core.noop`: returns its arguments. For diagnostics and benchmarks.
///
/// Diagnostic: when the process environment names a file in `INTEGRATOR_NOOP_EXECUTION_LOG`, every run appends its
/// task id and a newline to that file, so whoever starts a worker can count how often each task really ran (the tests
/// of crashed workers use it). Only the process's starter chooses the file; a task's arguments cannot.
public struct NoopTask: TaskHandler {
    public let name = "core.noop"
    private let executionLog: ExecutionLog?

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        executionLog = environment["INTEGRATOR_NOOP_EXECUTION_LOG"].flatMap { $0.isEmpty ? nil : ExecutionLog(path: $0) }
    }

    public func run(_ arguments: JSONValue, context: TaskContext) async throws -> JSONValue {
        try executionLog?.append(context.taskID)
        return arguments
    }
}

/// A file that lines are appended to. Each line is one `write` on a descriptor opened with `O_APPEND`, so lines from
/// concurrent tasks (or processes) never interleave. The descriptor stays open for the life of the process.
private final class ExecutionLog: Sendable {
    private let descriptor: Int32
    private let path: String
    private let openError: String?

    /// Opens the file now; if that fails, every append says why.
    init(path: String) {
        descriptor = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o600)
        openError = descriptor < 0 ? String(cString: strerror(errno)) : nil
        self.path = path
    }

    func append(_ line: String) throws {
        if let openError { throw PluginError("cannot open the execution log \(path): \(openError)", permanent: true) }
        let bytes = Array((line + "\n").utf8)
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        guard written == bytes.count else {
            throw PluginError("could not append to the execution log \(path)", permanent: true)
        }
    }
}

extension Plugin {
    /// The engine's own tasks.
    public static let core = Plugin(
        id: "core", name: "Core tasks", summary: "Diagnostics: core.noop returns its arguments.", taskHandlers: [NoopTask()])
}
