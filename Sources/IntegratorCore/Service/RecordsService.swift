// Reading what fetches stored: records, change events and fetch state; and resetting state to force a full refetch.
import Foundation

/// The read side of the fetch pipeline, shared by the API and the CLI.
public struct RecordsService: Sendable {
    let integrations: IntegrationsService
    let records: RecordStore
    let events: EventStore
    let state: FetchStateStore

    public init(database: Database, integrations: IntegrationsService) {
        self.integrations = integrations
        self.records = RecordStore(database: database)
        self.events = EventStore(database: database)
        self.state = FetchStateStore(database: database)
    }

    /// One integration's records in creation order.
    /// - Throws: ``ServiceError`` `.notFound` for an unknown integration.
    public func list(integrationID: String, _ filter: RecordFilter, page: PageRequest) async throws -> Page<StoredRecord> {
        let integration = try await integrations.get(id: integrationID)
        return try await records.list(integrationID: integration.id, filter, page: page)
    }

    public func get(id: String) async throws -> StoredRecord {
        guard Identifier.isWellFormed(id), let record = try await records.find(id: id) else {
            throw ServiceError(.notFound, "no record with id \(id)")
        }
        return record
    }

    /// How many records an integration has.
    public func count(integrationID: String) async throws -> Int {
        try await records.count(integrationID: integrationID)
    }

    public func events(_ filter: EventFilter, page: PageRequest) async throws -> Page<ChangeEvent> {
        try await events.list(filter, page: page)
    }

    /// The saved cursor of each of the integration's streams.
    public func state(integrationID: String) async throws -> [StreamCursor] {
        let integration = try await integrations.get(id: integrationID)
        return try await state.cursors(integrationID: integration.id)
    }

    /// Forgets the integration's cursors (or one stream's), so its next fetch reads everything again. Stored
    /// records stay; the refetch reports them unchanged unless they changed.
    /// - Returns: how many streams were reset.
    @discardableResult
    public func resetState(integrationID: String, stream: String? = nil) async throws -> Int {
        let integration = try await integrations.get(id: integrationID)
        return try await state.reset(integrationID: integration.id, stream: stream)
    }
}
