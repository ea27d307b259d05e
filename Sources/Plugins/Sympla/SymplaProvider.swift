// The `sympla` provider: events, orders and participants from Sympla's public API, paged and resumable.
import IntegratorCore

/// The streams the provider can fetch, in the order it fetches them.
enum SymplaStream: String, Sendable, CaseIterable {
    case events
    case orders
    case participants
}

/// Pulls a Sympla account's events and, per event, its orders and participants.
///
/// Sympla lists have no "changed since" filter, so every run pages through everything the filter covers and the
/// record store keeps only what changed. State makes a run resumable, not incremental: each stream's cursor says
/// where the next run starts, and is saved after every page, so a run that dies restarts at the page it was on.
///
/// Cursors (one per stream):
/// - `events`: `{"next_page": 3, "filter": "…"}`.
/// - `orders`, `participants`: `{"events_page": 2, "event_id": 1234, "next_page": 5, "filter": "…"}`:
///   events with a smaller id are done; event 1234 resumes at page 5 (no `next_page`: event 1234 is done too).
/// A finished stream saves the cursor of a fresh start. A cursor saved under another filter is not resumed.
public struct SymplaProvider: ProviderBackend {
    public let id = "sympla"
    public let name = "Sympla events"
    public let category = "event_management"
    public let allowedCredentialTypes = ["sympla"]
    public let configFields: FieldSet = [
        .string(
            "from_date", title: "From date",
            help: "Only events that start at or after this date and time (Sympla's local time), as YYYY-MM-DD HH:mm:ss.",
            format: .dateTime(pattern: "YYYY-MM-DD HH:mm:ss"), examples: ["2023-01-01 00:00:00"],
            placeholder: "YYYY-MM-DD HH:mm:ss"),
        .boolean("published", title: "Published only", help: "By default only published events are listed.", default: true),
        .choices(
            "streams", title: "Streams", options: SymplaStream.allCases.map(\.rawValue),
            help: "What to fetch: events, and per event its orders and participants.", default: ["events"]),
        .integer("page_size", title: "Page size", help: "Records per request; Sympla allows 1 to 200.", default: 100, range: 1...200),
    ]

    public init() {}

    public func fetch(_ context: FetchContext) async throws {
        let filter = SymplaEventFilter(
            from: context.config["from_date"]?.stringValue, published: context.config["published"]?.boolValue ?? true)
        let requested = Set(context.config["streams"]?.arrayValue?.compactMap(\.stringValue) ?? ["events"])
        let pageSize = context.config["page_size"]?.intValue ?? 100
        let api = SymplaAPI(http: context.http, apiKey: context.credentials?.secret("api_key"))
        for stream in SymplaStream.allCases where requested.contains(stream.rawValue) {
            switch stream {
            case .events:
                try await fetchEvents(api, filter: filter, pageSize: pageSize, context: context)
            case .orders, .participants:
                try await fetchPerEvent(stream, api, filter: filter, pageSize: pageSize, context: context)
            }
        }
    }

    public func normalize(_ record: RawRecord) throws -> RawRecord {
        guard let stream = SymplaStream(rawValue: record.stream) else { return record }
        var normalized = record
        normalized.data = SymplaRecord.normalize(record.data, stream: stream)
        return normalized
    }

    private func fetchEvents(_ api: SymplaAPI, filter: SymplaEventFilter, pageSize: Int, context: FetchContext) async throws {
        let stream = SymplaStream.events.rawValue
        let stored = try await context.state.cursor(for: stream)
        var page = stored?["filter"]?.stringValue == filter.key ? stored?["next_page"]?.intValue ?? 1 : 1
        while true {
            try Task.checkCancellation()
            let result = try await api.events(page: page, pageSize: pageSize, filter: filter)
            for item in result.items {
                guard let externalID = Self.id(of: item) else { continue }
                try await context.records.emit(RawRecord(stream: stream, externalID: externalID, data: item))
            }
            context.logger.debug("sympla page", metadata: ["sympla.stream": "\(stream)", "sympla.page": "\(page)"])
            // An empty page that claims more would loop for ever; treat it as the end.
            let finished = !result.hasNext || result.items.isEmpty
            page = finished ? 1 : page + 1
            try await context.state.checkpoint(["next_page": .number(Double(page)), "filter": .string(filter.key)], for: stream)
            if finished { return }
        }
    }

    private func fetchPerEvent(
        _ stream: SymplaStream, _ api: SymplaAPI, filter: SymplaEventFilter, pageSize: Int, context: FetchContext
    ) async throws {
        var cursor = PerEventCursor(try await context.state.cursor(for: stream.rawValue), filter: filter)
        var eventsPage = cursor.eventsPage
        while true {
            try Task.checkCancellation()
            let events = try await api.events(page: eventsPage, pageSize: pageSize, filter: filter)
            for event in events.items {
                guard let eventID = event["id"]?.intValue, var page = cursor.firstPage(of: eventID) else { continue }
                while true {
                    try Task.checkCancellation()
                    let result = try await api.perEvent(stream, eventID: eventID, page: page, pageSize: pageSize)
                    for item in result.items {
                        guard let externalID = Self.id(of: item) else { continue }
                        try await context.records.emit(RawRecord(stream: stream.rawValue, externalID: externalID, data: item))
                    }
                    context.logger.debug(
                        "sympla page",
                        metadata: ["sympla.stream": "\(stream.rawValue)", "sympla.event_id": "\(eventID)", "sympla.page": "\(page)"])
                    let finished = !result.hasNext || result.items.isEmpty
                    cursor = PerEventCursor(eventsPage: eventsPage, eventID: eventID, nextPage: finished ? nil : page + 1)
                    try await context.state.checkpoint(cursor.json(filter: filter), for: stream.rawValue)
                    if finished { break }
                    page += 1
                }
            }
            guard events.hasNext, !events.items.isEmpty else {
                try await context.state.checkpoint(PerEventCursor().json(filter: filter), for: stream.rawValue)
                return
            }
            eventsPage += 1
            cursor.eventsPage = eventsPage
            try await context.state.checkpoint(cursor.json(filter: filter), for: stream.rawValue)
        }
    }

    /// Sympla ids are numbers (events, participants) or strings (orders); records keep them as text.
    static func id(of item: JSONValue) -> String? {
        switch item["id"] {
        case .string(let text): return text
        case .number: return item["id"]?.intValue.map(String.init)
        default: return nil
        }
    }
}

/// Where an orders or participants pass resumes; see ``SymplaProvider``.
struct PerEventCursor: Equatable {
    /// The page of the events listing to start from.
    var eventsPage = 1
    /// The last event started; events with smaller ids are done.
    var eventID: Int?
    /// The next page of `eventID`'s listing; `nil` when that event is done.
    var nextPage: Int?

    init(eventsPage: Int = 1, eventID: Int? = nil, nextPage: Int? = nil) {
        self.eventsPage = eventsPage
        self.eventID = eventID
        self.nextPage = nextPage
    }

    /// The saved cursor, or a fresh start when there is none or it was taken under another filter.
    init(_ stored: JSONValue?, filter: SymplaEventFilter) {
        guard let stored, stored["filter"]?.stringValue == filter.key else { return }
        eventsPage = max(1, stored["events_page"]?.intValue ?? 1)
        eventID = stored["event_id"]?.intValue
        nextPage = stored["next_page"]?.intValue
    }

    /// The page to start `eventID` at, or `nil` when it was done before.
    func firstPage(of event: Int) -> Int? {
        guard let eventID else { return 1 }
        if event < eventID { return nil }
        if event > eventID { return 1 }
        return nextPage
    }

    func json(filter: SymplaEventFilter) -> JSONValue {
        var object: [String: JSONValue] = ["events_page": .number(Double(eventsPage)), "filter": .string(filter.key)]
        if let eventID { object["event_id"] = .number(Double(eventID)) }
        if let nextPage { object["next_page"] = .number(Double(nextPage)) }
        return .object(object)
    }
}

extension Plugin {
    /// Sympla: the `sympla` credentials type and provider.
    public static let sympla = Plugin(
        id: "sympla", name: "Sympla", summary: "Events, orders and participants from Sympla's public API.",
        credentialsTypes: [SymplaCredentials()], providers: [SymplaProvider()]
    )
}
