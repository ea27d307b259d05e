// How a plugin declares a data source: its config fields, the credentials it accepts, and fetch/normalize.
import Logging

/// A source of records (an events API, a CRM). Stateless: one instance serves every integration of its kind.
public protocol ProviderBackend: Sendable {
    /// Stable identifier stored with each integration, such as `sympla`.
    var id: String { get }
    var name: String { get }
    /// A grouping for the admin UI (`event_management`, `testing`, …).
    var category: String { get }
    /// Credentials type ids this provider accepts. Empty means the provider needs no credentials.
    var allowedCredentialTypes: [String] { get }
    /// Fields of an integration's `config`.
    var configFields: FieldSet { get }
    /// Checks on the config that involve more than one field; paths start with `config.`.
    func validate(config: [String: JSONValue]) -> [FieldIssue]
    /// Pulls records from the source into `context.records`, checkpointing `context.state` as it goes.
    func fetch(_ context: FetchContext) async throws
    /// Maps one raw record to the shape stored and published. The default keeps it as it is.
    func normalize(_ record: RawRecord) throws -> RawRecord
    /// A cron expression offered to whoever creates an integration of this provider (shown as `suggested_schedule`
    /// in `GET /providers`), such as `*/5 * * * *` for a provider meant to run every 5 minutes. Default: none.
    var suggestedSchedule: String? { get }
}

extension ProviderBackend {
    public func validate(config: [String: JSONValue]) -> [FieldIssue] { [] }
    public func normalize(_ record: RawRecord) throws -> RawRecord { record }
    public var suggestedSchedule: String? { nil }
    public var requiresCredentials: Bool { !allowedCredentialTypes.isEmpty }
}

/// One record as a provider yields it.
public struct RawRecord: Sendable, Equatable {
    /// The provider's stream (`events`, `orders`, …).
    public var stream: String
    /// The source's own id for the record, unique within the stream.
    public var externalID: String
    public var data: JSONValue

    public init(stream: String, externalID: String, data: JSONValue) {
        self.stream = stream
        self.externalID = externalID
        self.data = data
    }
}

/// Where a fetch sends its records.
public protocol RecordSink: Sendable {
    func emit(_ record: RawRecord) async throws
}

/// Per-stream cursors that make fetches incremental and resumable.
public protocol FetchState: Sendable {
    /// The cursor saved for `stream`, or `nil` on a first run.
    func cursor(for stream: String) async throws -> JSONValue?
    /// Saves `cursor` for `stream`; after a crash the next run starts from the last checkpoint.
    func checkpoint(_ cursor: JSONValue, for stream: String) async throws
}

/// Everything a provider's fetch receives.
public struct FetchContext: Sendable {
    public var integrationID: String
    public var integrationName: String
    /// The integration's config, validated and with defaults applied.
    public var config: [String: JSONValue]
    /// Decrypted credentials, or `nil` for providers that need none.
    public var credentials: CredentialValues?
    public var state: any FetchState
    public var records: any RecordSink
    public var logger: Logger
    /// HTTP for the fetch, signed with the integration's credentials and guarded against private addresses.
    /// Built by `runtime.outbound.client(for:credentialsID:type:logger:)`.
    public var http: OutboundClient
    /// The process's plugin environment, for providers that work on their own tables or enqueue work (a push
    /// provider such as BLiP's); `nil` when the fetch runs without a runtime (unit tests).
    public var environment: PluginEnvironment?

    /// - Parameter http: defaults to a client that refuses every request, for providers that make none.
    public init(
        integrationID: String, integrationName: String, config: [String: JSONValue], credentials: CredentialValues?,
        state: any FetchState, records: any RecordSink, logger: Logger, http: OutboundClient = .unavailable,
        environment: PluginEnvironment? = nil
    ) {
        self.environment = environment
        self.integrationID = integrationID
        self.integrationName = integrationName
        self.config = config
        self.credentials = credentials
        self.state = state
        self.records = records
        self.logger = logger
        self.http = http
    }
}
