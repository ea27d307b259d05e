// A scheduled message as the Scheduler API knows it, reading its upsert body, and the shapes its answers take.
import Foundation
import IntegratorCore

/// One pending message: POSTed as JSON to `webhookURL` at `dueAt`.
public struct ScheduledMessage: Sendable, Equatable {
    public var id: String
    /// Changes on every upsert. A firing carries the version it was set for, so a timer that fired before an upsert
    /// moved the message does nothing; the fired message's webhook event has this id, so a repeated firing stores
    /// no second event.
    public var version: String
    /// `scheduleTo` exactly as the client sent it (the seed answers with what it stored).
    public var scheduleTo: String
    public var dueAt: Date
    public var payload: JSONValue
    public var webhookURL: String

    /// A message with a new version, due at `scheduleTo` (which the caller has checked).
    public init(id: String, scheduleTo: String, dueAt: Date, payload: JSONValue, webhookURL: String) {
        self.init(id: id, version: Identifier.make(), scheduleTo: scheduleTo, dueAt: dueAt, payload: payload, webhookURL: webhookURL)
    }

    init(id: String, version: String, scheduleTo: String, dueAt: Date, payload: JSONValue, webhookURL: String) {
        self.id = id
        self.version = version
        self.scheduleTo = scheduleTo
        self.dueAt = dueAt
        self.payload = payload
        self.webhookURL = webhookURL
    }

    /// `GET /messages/{id}`: the message as stored.
    var json: JSONValue {
        ["id": .string(id), "scheduleTo": .string(scheduleTo), "payload": payload, "webhookUrl": .string(webhookURL)]
    }

    /// An item of `GET /messages/search`: the message and when it runs.
    var searchJSON: JSONValue {
        var members = json.objectValue ?? [:]
        members["nextRun"] = .string(Self.nextRunText(dueAt))
        return .object(members)
    }

    /// An item of `GET /messages`: the seed listed its in-memory jobs; here `job` says what firing does.
    var jobJSON: JSONValue {
        ["messageId": .string(id), "nextRun": .string(Self.nextRunText(dueAt)), "job": .string("POST \(webhookURL)")]
    }

    /// ISO 8601 with a numeric offset, as the seed's `datetime.isoformat()` wrote it: `2025-12-25T10:30:05+00:00`,
    /// with milliseconds only when there are any.
    static func nextRunText(_ date: Date) -> String {
        let milliseconds = (date.timeIntervalSince1970 * 1000).rounded()
        let whole = Date(timeIntervalSince1970: (milliseconds / 1000).rounded(.down))
        let fraction = Int(milliseconds) - Int((milliseconds / 1000).rounded(.down)) * 1000
        let seconds = whole.formatted(Date.ISO8601FormatStyle(timeZoneSeparator: .colon, includingFractionalSeconds: false))
        // The format style writes UTC as "Z"; the seed's clients saw a numeric offset.
        let base = seconds.hasSuffix("Z") ? String(seconds.dropLast()) : seconds
        return fraction == 0 ? base + "+00:00" : base + String(format: ".%03d", fraction) + "+00:00"
    }
}

/// Reading `POST /messages` bodies.
enum ScheduledMessageInput {
    static let maxIDLength = 512
    static let maxURLLength = 2048

    /// The message a body asks for, with a new version; every problem at once, each naming its field. Members the
    /// seed does not know are ignored, as its server ignored them.
    static func read(_ body: JSONValue) throws(ValidationFailure) -> ScheduledMessage {
        var input = try InputObject(body)
        let id = input.string("id", required: true, length: 1...maxIDLength)
        if let id, let problem = idProblem(id) { input.addIssue("id", problem) }
        let scheduleTo = input.string("scheduleTo", required: true, length: 1...100)
        let dueAt = scheduleTo.flatMap { Date(iso8601: $0) }
        if scheduleTo != nil, dueAt == nil { input.addIssue("scheduleTo", Date.iso8601Expectation) }
        let payload = input.raw("payload")
        if payload == nil { input.addIssue("payload", "is required: the JSON posted to webhookUrl") }
        let url = input.string("webhookUrl", required: true, length: 1...maxURLLength)
        if let url, let problem = WebhookConfiguration.urlProblem(url) { input.addIssue("webhookUrl", problem) }
        if let members = body.objectValue {
            for key in members.keys { _ = input.raw(key) }
        }
        try input.finish()
        guard let id, let scheduleTo, let dueAt, let payload, let url else {
            throw ValidationFailure([FieldIssue(field: "body", message: "is incomplete")])
        }
        return ScheduledMessage(id: id, scheduleTo: scheduleTo, dueAt: dueAt, payload: payload, webhookURL: url)
    }

    /// Why `id` cannot be a message id (control characters would break logs and headers), or nil.
    static func idProblem(_ id: String) -> String? {
        if id.isEmpty { return "must not be empty" }
        if id.count > maxIDLength { return "must be at most \(maxIDLength) characters" }
        if id.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) { return "must not contain control characters" }
        return nil
    }

    /// The id in a path segment, percent-decoded (`%2B55…` is `+55…`).
    static func pathID(_ segment: String) throws(ValidationFailure) -> String {
        guard let id = segment.removingPercentEncoding else {
            throw ValidationFailure([FieldIssue(field: "message_id", message: "is not valid percent-encoding")])
        }
        if let problem = idProblem(id) { throw ValidationFailure([FieldIssue(field: "message_id", message: problem)]) }
        return id
    }
}

/// `prefix` and `contains` of search and bulk delete; at least one is required.
struct MessageFilter: Sendable, Equatable {
    var prefix: String?
    var contains: String?

    /// - Throws: a 400 naming both parameters when neither has a value (the seed's answer too).
    init(prefix: String?, contains: String?) throws(ValidationFailure) {
        self.prefix = prefix.flatMap { $0.isEmpty ? nil : $0 }
        self.contains = contains.flatMap { $0.isEmpty ? nil : $0 }
        guard self.prefix != nil || self.contains != nil else {
            throw ValidationFailure([FieldIssue(field: "prefix", message: "or contains is required: give at least one filter")])
        }
    }

    /// Whether `id` passes both filters.
    func matches(_ id: String) -> Bool {
        (prefix.map { id.unicodeScalars.starts(with: $0.unicodeScalars) } ?? true) && (contains.map { id.contains($0) } ?? true)
    }

    /// The least string greater than every string that starts with `prefix`, in code point order (the order of
    /// UTF-8 bytes, in which both databases compare ids): `abc` → `abd`. With it a prefix is a range of the primary
    /// key, which any engine searches by index. `nil` when no such string exists (a prefix of U+10FFFF only).
    static func upperBound(ofPrefix prefix: String) -> String? {
        var scalars = Array(prefix.unicodeScalars)
        while let last = scalars.popLast() {
            var next = last.value + 1
            if (0xD800...0xDFFF).contains(next) { next = 0xE000 }
            if let scalar = Unicode.Scalar(next) {
                scalars.append(scalar)
                var text = String.UnicodeScalarView()
                text.append(contentsOf: scalars)
                return String(text)
            }
        }
        return nil
    }
}
