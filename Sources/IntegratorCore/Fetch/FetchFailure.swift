// A fetch that stopped: what went wrong (with secrets masked) and how far it had come.

/// A provider's fetch failed. `message` is safe to show and store: the integration's secret values are masked.
public struct FetchFailure: Error, Sendable, CustomStringConvertible {
    public var message: String
    /// `true` when running the fetch again cannot help (bad credentials, a configuration the service refuses).
    public var isPermanent: Bool
    /// The counts up to the failure; records written before it stay stored, and the next run resumes from the
    /// last checkpoint.
    public var progress: FetchSummary

    public init(message: String, isPermanent: Bool, progress: FetchSummary) {
        self.message = message
        self.isPermanent = isPermanent
        self.progress = progress
    }

    /// Wraps what a provider threw. A ``PluginError`` keeps its message and permanence; anything else is named
    /// by its type and description, and counts as worth retrying.
    init(_ error: any Error, redactor: SecretRedactor, progress: FetchSummary) {
        let text: String
        let permanent: Bool
        if let error = error as? PluginError {
            (text, permanent) = (error.message, error.isPermanent)
        } else {
            (text, permanent) = ("\(type(of: error)): \(error)", false)
        }
        self.init(message: redactor.redact(text), isPermanent: permanent, progress: progress)
    }

    /// The message with what had been done, as stored with a failed run.
    public var description: String {
        let counts = progress.records
        guard progress.received > 0 || progress.pages > 0 else { return message }
        return "\(message) (stopped after \(progress.pages) \(progress.pages == 1 ? "page" : "pages") and \(counts.total) stored records:"
            + " \(counts.new) new, \(counts.updated) updated, \(counts.unchanged) unchanged; the next run resumes from the last checkpoint)"
    }
}
